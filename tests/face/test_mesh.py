import numpy as np

from avatar.face.mesh import LIPS_INNER, LIPS_OUTER, LANDMARKER_TASK, canonical_mesh, mesh_from_task


def test_shipped_mesh_matches_the_landmarker_bundle():
    shipped, parsed = canonical_mesh(), mesh_from_task(str(LANDMARKER_TASK))
    for name in ("vertices", "uvs", "faces", "rigid_weights"):
        assert np.array_equal(getattr(shipped, name), getattr(parsed, name)), name


def test_mesh_is_in_landmark_order():
    mesh = canonical_mesh()
    assert mesh.vertices.shape == (468, 3) and mesh.faces.shape == (898, 3)
    # landmark 10 is the top of the forehead, 152 the chin, 1 the nose tip (nearest the viewer)
    assert mesh.vertices[10, 1] > mesh.vertices[1, 1] > mesh.vertices[152, 1]
    assert mesh.uvs[10, 1] < 0.2 and mesh.uvs[152, 1] > 0.8
    assert mesh.vertices[1, 2] > np.percentile(mesh.vertices[:, 2], 99)
    assert (mesh.rigid_weights > 0).sum() == 33
    assert len(set(LIPS_INNER) | set(LIPS_OUTER)) == 40
