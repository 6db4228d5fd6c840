"""The MediaPipe canonical face mesh (468 vertices in landmark order, 898 triangles, UVs).

Read from the geometry metadata inside the shipped `face_landmarker.task` bundle (Apache-2.0):
that copy is in landmark order. The OBJ export shipped beside it (`canonical_face_model.obj`) has
its vertices re-ordered by an exporter and does NOT match the landmark indices; it is kept only
as the human-viewable reference.

Parsing the bundle needs mediapipe's protobuf classes, and importing mediapipe costs over a second,
so the parsed mesh also ships as `canonical_mesh.safetensors` (regenerate it with
`python -m avatar.face.mesh`; a test checks that it matches the bundle).
"""
from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "assets"
LANDMARKER_TASK = ASSETS / "face_landmarker.task"
MESH_FILE = ASSETS / "canonical_mesh.safetensors"
_GEOMETRY_ENTRY = "geometry_pipeline_metadata_landmarks.binarypb"

# Lip contours in MediaPipe landmark indices (outer ring and inner ring, each in order around).
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
LIPS = tuple(sorted(set(LIPS_OUTER + LIPS_INNER)))


@dataclass(frozen=True)
class CanonicalMesh:
    vertices: np.ndarray   # [468, 3] centimetres, y up, z towards the viewer
    uvs: np.ndarray        # [468, 2] in [0, 1], v = 0 at the top of the texture
    faces: np.ndarray      # [898, 3] int64
    rigid_weights: np.ndarray  # [468] MediaPipe's weights of the landmarks that barely move


@functools.lru_cache(maxsize=1)
def canonical_mesh() -> CanonicalMesh:
    """The mesh from the shipped safetensors copy (fast), else parsed from the landmarker bundle."""
    if MESH_FILE.is_file():
        from avatar.io.files import load_arrays
        a = load_arrays(MESH_FILE, {"vertices": (468, 3), "uvs": (468, 2), "faces": (None, 3),
                                    "rigid_weights": (468,)}, "canonical mesh")
        return CanonicalMesh(a["vertices"], a["uvs"], a["faces"], a["rigid_weights"])
    return mesh_from_task(str(LANDMARKER_TASK))


def mesh_from_task(task_path: str) -> CanonicalMesh:
    from mediapipe.modules.face_geometry.protos import geometry_pipeline_metadata_pb2 as pb

    with zipfile.ZipFile(task_path) as bundle:
        blob = bundle.read(_GEOMETRY_ENTRY)
    meta = pb.GeometryPipelineMetadata()
    meta.ParseFromString(blob)
    buf = np.asarray(meta.canonical_mesh.vertex_buffer, np.float32).reshape(-1, 5)
    faces = np.asarray(meta.canonical_mesh.index_buffer, np.int64).reshape(-1, 3)
    # The metadata's v already grows downwards (forehead v ~ 0.1, chin v ~ 0.9).
    weights = np.zeros(len(buf), np.float32)
    for item in meta.procrustes_landmark_basis:
        weights[item.landmark_id] = item.weight
    return CanonicalMesh(vertices=buf[:, :3].copy(), uvs=buf[:, 3:5].copy(), faces=faces,
                         rigid_weights=weights)


def export_mesh(path: Path = MESH_FILE) -> None:
    from avatar.io.files import save_arrays
    mesh = mesh_from_task(str(LANDMARKER_TASK))
    save_arrays(path, {"vertices": mesh.vertices, "uvs": mesh.uvs, "faces": mesh.faces,
                       "rigid_weights": mesh.rigid_weights},
                {"source": "face_landmarker.task " + _GEOMETRY_ENTRY, "license": "Apache-2.0"})


if __name__ == "__main__":
    export_mesh()
    print(f"wrote {MESH_FILE}")
