"""Test fixture: a tiny synthetic person folder (for tests and benchmarks without real footage).

The canonical mesh is posed with smooth head motion and a jaw-opening expression, and drawn with a
procedural texture (skin stripes, a dark mouth interior) over a gradient background whose blue
level is 60 + 8 * (frame index mod 24), so tests can tell target frames apart; the folder has
the same files a real `train-person` writes, so every renderer code path can run on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avatar.face.crop import raw_crop_boxes
from avatar.face.mesh import LIPS_INNER, canonical_mesh
from avatar.io.files import write_json
from avatar.io.person import FORMAT_VERSION, save_face_model, save_track
from avatar.render.mouth import N_RING, with_mouth_patch
from avatar.render.raster import rasterize
from avatar.types import JAW_OPEN, N_BLENDSHAPES, Expressions, FaceTrack, HeadPoses, PersonFaceModel


def synthetic_model(face_px: float = 100.0, seed: int = 0) -> PersonFaceModel:
    """Face model in pixel units (y down, z away from the camera) with a jaw-open component."""
    mesh = canonical_mesh()
    v = mesh.vertices
    s = face_px / float(np.ptp(v[:, 0]))
    mean = np.stack([v[:, 0] * s, -v[:, 1] * s, -v[:, 2] * s], 1).astype(np.float32)
    mouth_y = mean[list(LIPS_INNER), 1].mean()
    jaw = np.zeros_like(mean)
    below = mean[:, 1] > mouth_y - 0.5
    jaw[below, 1] = 0.1 * face_px * np.clip((mean[below, 1] - mouth_y + 1) / 2, 0, 1)
    rng = np.random.default_rng(seed)
    smile = np.zeros_like(mean)
    smile[:, 0] = 0.03 * face_px * np.tanh(mean[:, 0] / (0.2 * face_px)) * (mean[:, 1] > mouth_y - 5)
    basis = np.stack([jaw, smile]).astype(np.float32)
    weight = np.zeros((N_BLENDSHAPES, 2), np.float32)
    weight[JAW_OPEN, 0] = 1.0
    weight[44, 1] = 1.0            # mouthSmileLeft drives the second component
    bias = rng.normal(0, 0.01, 2).astype(np.float32)
    return PersonFaceModel(mean, basis, mesh.faces.copy(), mesh.uvs.copy(), weight, bias)


def synthetic_motion(n: int, fps: float, size: int) -> tuple[np.ndarray, HeadPoses]:
    """Blendshapes [n, 52] and head poses around the frame centre."""
    t = np.arange(n) / fps
    blend = np.zeros((n, N_BLENDSHAPES), np.float32)
    blend[:, JAW_OPEN] = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    blend[:, 44] = 0.5 + 0.5 * np.sin(2 * np.pi * 0.4 * t)
    yaw = 0.15 * np.sin(2 * np.pi * 0.3 * t)
    rot = np.zeros((n, 3, 3), np.float32)
    rot[:, 0, 0], rot[:, 0, 2] = np.cos(yaw), np.sin(yaw)
    rot[:, 1, 1] = 1
    rot[:, 2, 0], rot[:, 2, 2] = -np.sin(yaw), np.cos(yaw)
    trans = np.stack([size / 2 + 6 * np.sin(2 * np.pi * 0.2 * t), size / 2 + 3 * np.cos(t),
                      np.full(n, 200.0)], 1).astype(np.float32)
    return blend, HeadPoses(np.full(n, 1.0, np.float32), rot, trans, fps)


def procedural_texture(uv: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] for uv [..., 2]; `patch` marks mouth-interior pixels."""
    u, v = uv[..., 0], uv[..., 1]
    r = 0.75 + 0.1 * torch.sin(40 * u)
    g = 0.55 + 0.1 * torch.sin(30 * v)
    b = 0.45 + 0.05 * torch.cos(25 * (u + v))
    rgb = torch.stack([r, g, b], -1)
    teeth = torch.stack([0.9 + 0 * u, 0.9 + 0 * u, 0.85 + 0 * u], -1)
    inner = torch.where((v < 0.06)[..., None], teeth, torch.stack([0.35 + 0 * u, 0.05 + 0 * u, 0.08 + 0 * u], -1))
    return torch.where(patch[..., None], inner, rgb)


def draw_frames(meshes_px: np.ndarray, size: int) -> np.ndarray:
    faces, uvs, verts = with_mouth_patch(canonical_mesh().faces, canonical_mesh().uvs,
                                         torch.from_numpy(meshes_px))
    frags = rasterize(verts, torch.from_numpy(faces), torch.from_numpy(uvs), size)
    patch = frags.face >= len(faces) - N_RING
    face_rgb = procedural_texture(frags.uv, patch)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    index_blue = (60 + 8 * (torch.arange(len(meshes_px)) % 24)).float() / 255     # frame id
    bg = torch.stack([(0.2 + 0.3 * xx).expand_as(face_rgb[..., 0]), (0.3 + 0.2 * yy).expand_as(face_rgb[..., 0]),
                      index_blue[:, None, None].expand_as(face_rgb[..., 0])], -1)
    rgb = torch.where(frags.mask[..., None], face_rgb, bg)
    return (rgb.clamp(0, 1) * 255).round().byte().numpy()


def make_synthetic_person(folder: Path, n_frames: int = 24, size: int = 192, fps: float = 10.0,
                          width: int | None = None) -> Path:
    """Write a complete synthetic person folder (person.json, track, face model, target.mp4).
    Frames are size x size, or `width` wide (the face stays in the left size x size square)."""
    from avatar.video.writer import VideoWriter
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = synthetic_model(face_px=size * 0.45)
    blend, poses = synthetic_motion(n_frames, fps, size)
    meshes = poses.apply(model.meshes(model.coefficients(Expressions(blend, fps)))).astype(np.float32)
    frames = draw_frames(meshes, size)
    width = width or size
    if width > size:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, width - size), (0, 0)), mode="edge")
    landmarks = np.concatenate([meshes, meshes[:, :10]], 1)
    track = FaceTrack(landmarks, blend, np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1)),
                      raw_crop_boxes(meshes), np.ones(n_frames, bool), fps, (width, size))
    save_track(folder / "track.safetensors", track, poses)
    save_face_model(folder / "face_model.safetensors", model)
    with VideoWriter(folder / "target.mp4", width, size, fps, watermark=False, crf=10) as out:
        out.write(frames)
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION, "name": folder.name,
                                        "fps": fps, "frame_size": [width, size], "n_frames": n_frames,
                                        "synthetic": True})
    return folder

