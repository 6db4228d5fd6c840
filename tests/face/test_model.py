import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avatar.face.mesh import canonical_mesh
from avatar.face.model import (align_track, face_model_error, fit_face_model, fit_ridge, pca_basis,
                               similarity)
from avatar.types import N_BLENDSHAPES, N_LANDMARKS, N_MESH_VERTICES, FaceTrack, HeadPoses


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    rot = Rotation.from_euler("xyz", [10, -25, 5], degrees=True).as_matrix()
    dst = 3.5 * src @ rot.T + [4, -2, 7]
    s, r, t = similarity(src, dst, np.ones(50))
    assert s == pytest.approx(3.5) and np.allclose(r, rot) and np.allclose(t, [4, -2, 7])


def test_similarity_never_reflects():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(30, 3))
    _, r, _ = similarity(src, src * [-1, 1, 1], np.ones(30))
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_pca_finds_the_generating_directions():
    rng = np.random.default_rng(3)
    dirs = np.linalg.qr(rng.normal(size=(60, 3)))[0].T          # 3 orthonormal directions
    coeffs = rng.normal(size=(200, 3)) * [5, 2, 1]
    basis = pca_basis((coeffs @ dirs).reshape(200, 20, 3), variance=0.999)
    assert basis.shape == (3, 20, 3)
    projected = dirs @ basis.reshape(3, -1).T            # the basis spans the same subspace
    assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-6)


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (300, 52))
    w = rng.normal(size=(52, 4))
    w_hat, b_hat = fit_ridge(x, x @ w + 0.5, lam=1e-8)
    assert np.allclose(w_hat, w, atol=1e-4) and np.allclose(b_hat, 0.5, atol=1e-4)


def synthetic_track(t: int = 120, seed: int = 5):
    """Landmarks made by a known model: mean + blendshape-driven basis, posed by known similarities."""
    rng = np.random.default_rng(seed)
    mean = canonical_mesh().vertices * [1, -1, -1] / 16.0        # y down, z away, ~1 unit wide
    basis = rng.normal(size=(3, N_MESH_VERTICES, 3)) * 0.01
    basis[:, canonical_mesh().rigid_weights > 0] = 0       # expressions leave the rigid points
    blend = rng.uniform(0, 1, (t, N_BLENDSHAPES)).astype(np.float32)
    mapping = np.zeros((N_BLENDSHAPES, 3))
    mapping[25, 0], mapping[9, 1], mapping[44, 2] = 2.0, -1.5, 1.0
    meshes = mean + np.tensordot(blend @ mapping, basis, axes=(1, 0))
    angles = np.stack([np.sin(np.arange(t) / 9) * 8, np.cos(np.arange(t) / 13) * 12, np.zeros(t)], 1)
    poses = HeadPoses(np.full(t, 180.0), Rotation.from_euler("xyz", angles, degrees=True).as_matrix(),
                      np.stack([320 + np.arange(t), 240 + np.zeros(t), np.zeros(t)], 1), 30.0)
    pts = poses.apply(meshes)
    lm = np.concatenate([pts, np.repeat(pts[:, :10], 1, axis=1)], axis=1).astype(np.float32)
    assert lm.shape[1] == N_LANDMARKS
    lo, hi = pts[:, :, :2].min(1), pts[:, :, :2].max(1)
    c, side = (lo + hi) / 2, (hi - lo).max(1) * 1.6
    boxes = np.concatenate([c - side[:, None] / 2, c + side[:, None] / 2], 1)
    track = FaceTrack(lm, blend, np.tile(np.eye(4, dtype=np.float32), (t, 1, 1)),
                      boxes.astype(np.float32), np.ones(t, bool), 30.0, (640, 480))
    return track, poses


def test_face_model_reconstructs_held_out_frames_of_a_known_model():
    track, true_poses = synthetic_track()
    model, poses = fit_face_model(track)
    train = model.metadata["train_frames"]
    assert train == 102 and 3 <= model.n_components <= 6
    err = face_model_error(track, poses, model, slice(train, len(track)))
    assert err.blendshape_map_px < 0.05             # exact linear model: near-perfect
    assert err.mean_shape_px > 10 * err.blendshape_map_px
    # relative head motion is recovered (canonical frame is defined up to one similarity)
    rel_true = true_poses.rotation[1:] @ true_poses.rotation[:1].transpose(0, 2, 1)
    rel_fit = poses.rotation[1:] @ poses.rotation[:1].transpose(0, 2, 1)
    assert np.allclose(rel_true, rel_fit, atol=2e-3)
    again = align_track(track, model)
    assert np.allclose(again.scale, poses.scale, rtol=1e-4)


def test_too_few_frames_is_an_error():
    from avatar.errors import AvatarError
    track, _ = synthetic_track(t=6)
    with pytest.raises(AvatarError, match="at least 10"):
        fit_face_model(track)
