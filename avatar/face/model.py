"""Person face model: Procrustes alignment, mean shape, PCA expression basis, blendshape map.

Canonical space: the frames' axes (x right, y down, z away from the camera), centred on the
rigid landmarks and scaled so the mean face spans 1 unit in x/y. HeadPoses map it back into frame
pixels. Rigid alignment uses MediaPipe's own weights of the landmarks that barely move with
expression (forehead, nose bridge, temples), so mouth motion does not leak into head pose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.config import CROP_SIZE
from avatar.errors import AvatarError
from avatar.face.mesh import canonical_mesh
from avatar.types import N_MESH_VERTICES, FaceTrack, HeadPoses, PersonFaceModel

HOLDOUT_FRACTION = 0.15
VARIANCE_KEPT = 0.995
MAX_COMPONENTS = 48
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray):
    """Weighted Umeyama: s, R, t minimising sum_i w_i |s R src_i + t - dst_i|^2 (no reflection)."""
    w = weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    var_s = (w * (a ** 2).sum(1)).sum()
    scale = (sig * np.diag(fix)).sum() / var_s
    return scale, rot, mu_d - scale * rot @ mu_s


def estimate_poses(points: np.ndarray, reference: np.ndarray, weights: np.ndarray,
                   fps: float) -> HeadPoses:
    """Per-frame similarity mapping `reference` (canonical) onto `points` [T, V, 3]."""
    fits = [similarity(reference, p, weights) for p in points]
    return HeadPoses(np.array([f[0] for f in fits], np.float32),
                     np.array([f[1] for f in fits], np.float32),
                     np.array([f[2] for f in fits], np.float32), fps)


def to_canonical(points: np.ndarray, poses: HeadPoses) -> np.ndarray:
    """Inverse of HeadPoses.apply: frame pixels [T, V, 3] -> canonical."""
    centred = points - poses.translation[:, None, :]
    return np.einsum("tji,tvj->tvi", poses.rotation, centred) / poses.scale[:, None, None]


def normalise(shape: np.ndarray, weights: np.ndarray) -> np.ndarray:
    centred = shape - (weights / weights.sum()) @ shape
    extent = np.ptp(centred[:, :2], axis=0).max()
    return (centred / extent).astype(np.float32)


def mean_shape(points: np.ndarray, weights: np.ndarray, fps: float, iterations: int = 4) -> np.ndarray:
    """Generalised Procrustes: the mean shape of the frames [T, V, 3], in canonical space."""
    reference = normalise(points[len(points) // 2], weights)
    for _ in range(iterations):
        poses = estimate_poses(points, reference, weights, fps)
        reference = normalise(to_canonical(points, poses).mean(0), weights)
    return reference


def pca_basis(residuals: np.ndarray, variance: float = VARIANCE_KEPT,
              max_components: int = MAX_COMPONENTS) -> np.ndarray:
    """Principal directions [K, V, 3] of residuals [T, V, 3] keeping `variance` of the energy."""
    flat = residuals.reshape(len(residuals), -1)
    _, sig, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    energy = np.cumsum(sig ** 2) / max((sig ** 2).sum(), 1e-12)
    k = int(min(np.searchsorted(energy, variance) + 1, max_components, len(sig)))
    return vt[:k].reshape(k, *residuals.shape[1:]).astype(np.float32)


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """y ~ x @ W + b with an L2 penalty lam on W (x, y centred internally)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + lam * len(x) * np.eye(x.shape[1]), xc.T @ yc)
    return w.astype(np.float32), (my - mx @ w).astype(np.float32)


def choose_ridge(x: np.ndarray, y: np.ndarray) -> float:
    """Penalty with the lowest error on the last fifth of the frames, fitted on the rest."""
    cut = max(int(len(x) * 0.8), 1)
    if cut >= len(x) - 1:
        return RIDGE_GRID[2]
    errors = []
    for lam in RIDGE_GRID:
        w, b = fit_ridge(x[:cut], y[:cut], lam)
        errors.append(np.mean((x[cut:] @ w + b - y[cut:]) ** 2))
    return RIDGE_GRID[int(np.argmin(errors))]


def fit_face_model(track: FaceTrack, train_frames: int | None = None) -> tuple[PersonFaceModel, HeadPoses]:
    """Fit the person's face model on the first `train_frames` frames (default: all but the last
    15 %); return it with the head poses of every frame of the track."""
    n = len(track)
    if n < 10:
        raise AvatarError(f"only {n} frames tracked; a person model needs at least 10 (2 s of video)")
    train = train_frames or max(int(round(n * (1 - HOLDOUT_FRACTION))), 10)
    mesh = canonical_mesh()
    points = track.landmarks[:, :N_MESH_VERTICES].astype(np.float64)
    found = track.found[:train]
    fit_points = points[:train][found] if found.sum() >= 10 else points[:train]
    mean = mean_shape(fit_points, mesh.rigid_weights, track.fps)
    poses = estimate_poses(points, mean, mesh.rigid_weights, track.fps)
    canonical = to_canonical(points, poses)
    residuals = canonical[:train] - mean
    basis = pca_basis(residuals)
    coeffs = np.einsum("tvc,kvc->tk", residuals, basis)
    blend = track.blendshapes[:train].astype(np.float64)
    weight, bias = fit_ridge(blend, coeffs, choose_ridge(blend, coeffs))
    model = PersonFaceModel(mean.astype(np.float32), basis, mesh.faces.copy(), mesh.uvs.copy(),
                            weight, bias, metadata={"train_frames": train})
    return model, poses


def align_track(track: FaceTrack, model: PersonFaceModel) -> HeadPoses:
    """Head poses of another clip of the same person, against this person's mean shape."""
    points = track.landmarks[:, :N_MESH_VERTICES].astype(np.float64)
    return estimate_poses(points, model.mean.astype(np.float64), canonical_mesh().rigid_weights,
                          track.fps)


@dataclass(frozen=True)
class FaceModelError:
    blendshape_map_px: float      # mean 2D landmark error of the blendshape-driven mesh
    mean_shape_px: float          # same with the mean shape only (no expression)
    pca_px: float                 # best the basis can do (true coefficients)
    crop_size: int = CROP_SIZE


def face_model_error(track: FaceTrack, poses: HeadPoses, model: PersonFaceModel,
                     frames: slice, crop_size: int = CROP_SIZE) -> FaceModelError:
    """Mean 2D distance (pixels of a crop_size crop) between posed model meshes and landmarks."""
    real = track.landmarks[frames, :N_MESH_VERTICES]
    sub = HeadPoses(poses.scale[frames], poses.rotation[frames], poses.translation[frames], poses.fps)
    px = crop_size / (track.crop_boxes[frames, 2] - track.crop_boxes[frames, 0])
    canonical = to_canonical(real.astype(np.float64), sub)
    true_coeffs = np.einsum("tvc,kvc->tk", canonical - model.mean, model.basis)
    driven = model.coefficients(track.expressions())[frames]

    def error(meshes):
        diff = sub.apply(meshes)[:, :, :2] - real[:, :, :2]
        return float((np.linalg.norm(diff, axis=2) * px[:, None]).mean())

    zeros = np.zeros((len(real), model.n_components), np.float32)
    return FaceModelError(error(model.meshes(driven)), error(model.meshes(zeros)),
                          error(model.meshes(true_coeffs)), crop_size)
