"""Teeth geometry for the lips window: two rigid arches behind the lips, with their own UVs.

The mouth patch (avatar/render/mouth.py) stretches its texels with the lips, so it can only learn
a blurred mean of teeth and tongue. Real teeth are rigid: the upper row moves with the skull,
the lower row with the jaw. Here each row is a curved strip of quads in MediaPipe's canonical
face space (centimetres, y up, z toward the camera), placed per frame by the similarity that
maps the canonical upper face onto the frame's mesh; the lower row also follows the chin's
displacement. The strips get UVs in the free top-right corner of the texture layout, so a
texture can hold a sharp picture of this person's teeth. Behind the lips in depth, they show
only where the mouth opens; the mouth patch is pushed behind them to stay the dark interior.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from avatar.face.mesh import canonical_mesh

N_QUADS = 10                      # quads along each arch
UPPER_ROW_FACES = 2 * N_QUADS     # the template's faces: the upper row's first, then the lower's
HALF_WIDTH = 2.0                  # cm from the middle to the last tooth shown
ARCH_DEPTH = 1.0                  # cm the arch bends back at its ends
UPPER = (-3.85, -5.0, 3.5)        # (top y, bottom y, z at the middle), cm
LOWER = (-4.55, -5.75, 3.3)
CHIN = 152                        # the chin's vertex: the lower row follows its displacement
JAW_SHARE = 0.8                   # lower incisors move this share of the chin's displacement
UV_UPPER = (0.81, 0.01, 0.99, 0.09)   # u0, v0, u1, v1: the free top-right corner of the layout
UV_LOWER = (0.81, 0.10, 0.99, 0.18)
ATLAS_SHAPE = (48, 160)           # rows, cols of the upper row's picture (teeth_atlas)


def _arch(top: float, bottom: float, z: float, uv_box) -> tuple[np.ndarray, np.ndarray]:
    xs = np.linspace(-HALF_WIDTH, HALF_WIDTH, N_QUADS + 1)
    zs = z - ARCH_DEPTH * (xs / HALF_WIDTH) ** 2
    verts = np.concatenate([np.stack([xs, np.full_like(xs, y), zs], 1) for y in (top, bottom)])
    u0, v0, u1, v1 = uv_box
    us = np.linspace(u0, u1, N_QUADS + 1)
    uvs = np.concatenate([np.stack([us, np.full_like(us, v)], 1) for v in (v0, v1)])
    return verts.astype(np.float32), uvs.astype(np.float32)


def _strip_faces(offset: int) -> np.ndarray:
    n = N_QUADS + 1
    faces = []
    for k in range(N_QUADS):
        a, b, c, d = k, k + 1, n + k, n + k + 1
        faces += [[a, b, c], [b, d, c]]
    return np.asarray(faces, np.int64) + offset


@functools.lru_cache(maxsize=1)
def teeth_template() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(canonical vertices [V, 3], faces [F, 3] local indices, uvs [V, 2], vertices of the upper row)."""
    up_v, up_uv = _arch(*UPPER, UV_UPPER)
    lo_v, lo_uv = _arch(*LOWER, UV_LOWER)
    n = len(up_v)
    faces = np.concatenate([_strip_faces(0), _strip_faces(n)])
    return np.concatenate([up_v, lo_v]), faces, np.concatenate([up_uv, lo_uv]), n


@functools.lru_cache(maxsize=1)
def _rigid_points() -> np.ndarray:
    """Vertices of the upper face (above the nose's base): they do not move with the mouth."""
    v = canonical_mesh().vertices
    return np.nonzero(v[:, 1] > -1.5)[0]


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch element, the similarity (scale [B], orthogonal matrix [B,3,3], shift [B,3])
    taking src [K, 3] onto dst [B, K, 3] in the least-squares sense (Umeyama). A reflection is
    allowed: pixel spaces flip y, and some flip depth too."""
    mu_s, mu_d = src.mean(0), dst.mean(1)
    a, b = src - mu_s, dst - mu_d[:, None]
    cov = np.einsum("bki,kj->bij", b, a) / len(src)
    u, sig, vt = np.linalg.svd(cov)
    rot = u @ vt
    scale = sig.sum(1) / (a ** 2).sum(1).mean()
    shift = mu_d - scale[:, None] * np.einsum("bij,j->bi", rot, mu_s)
    return scale, rot, shift


def teeth_vertices(meshes: np.ndarray) -> np.ndarray:
    """[B, 468, 3] meshes (frame or window pixels) -> [B, V, 3] teeth in the same space."""
    meshes = np.asarray(meshes, np.float64)
    canon = canonical_mesh().vertices.astype(np.float64)
    idx = _rigid_points()
    scale, rot, shift = similarity(canon[idx], meshes[:, idx])
    place = lambda p: scale[:, None, None] * np.einsum("bij,kj->bki", rot, p) + shift[:, None]  # noqa: E731
    template, _, _, n_upper = teeth_template()
    teeth = place(template.astype(np.float64))
    chin_rest = place(canon[CHIN][None])[:, 0]
    teeth[:, n_upper:] += JAW_SHARE * (meshes[:, CHIN] - chin_rest)[:, None]
    return teeth.astype(np.float32)


def with_teeth(vertices: torch.Tensor, faces: np.ndarray, uvs: np.ndarray, patch_faces: np.ndarray,
               push_back: float) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Append the teeth to a patched mesh: vertices [B, V, 3] (window pixels, smaller z nearer;
    the mouth patch's vertices are those of `patch_faces`, pushed `push_back` pixels further
    away so the teeth show in front of it) -> (vertices, faces, uvs) with the teeth added."""
    base = vertices[:, :468].detach().cpu().numpy()
    teeth = torch.as_tensor(teeth_vertices(base), device=vertices.device, dtype=vertices.dtype)
    _, t_faces, t_uvs, _ = teeth_template()
    patch_ids = torch.as_tensor(np.unique(patch_faces), device=vertices.device)
    pushed = vertices.clone()
    pushed[:, patch_ids, 2] += push_back
    n = vertices.shape[1]
    return (torch.cat([pushed, teeth], 1), np.concatenate([faces, t_faces + n]),
            np.concatenate([uvs, t_uvs]))


def atlas_positions(teeth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[B, V, >=2] teeth (teeth_vertices) -> [B, rows, cols, 2]: where each texel of the upper
    row's picture (rows from the row's top edge, columns left to right, as its UVs run) lies,
    by the same two triangles per quad the rasterizer fills."""
    rows, cols = shape
    n = N_QUADS + 1
    top, bottom = teeth[:, :n, None, :2], teeth[:, n:2 * n, None, :2]
    s = (np.arange(cols) + 0.5) / cols * N_QUADS
    k = np.minimum(s.astype(int), N_QUADS - 1)
    f = (s - k)[None, :, None]
    t = ((np.arange(rows) + 0.5) / rows)[:, None, None]
    a, b = top[:, k, 0][:, None], top[:, k + 1, 0][:, None]         # [B, 1, cols, 2]
    c, d = bottom[:, k, 0][:, None], bottom[:, k + 1, 0][:, None]
    first = a + f * (b - a) + t * (c - a)                             # triangle (a, b, c)
    second = d + (1 - f) * (c - d) + (1 - t) * (b - d)                # triangle (b, d, c)
    return np.where((f + t <= 1)[None], first, second).astype(np.float32)


def atlas_grid(uv: torch.Tensor) -> torch.Tensor:
    """[B, h, w, 2] UVs -> grid_sample coordinates of the upper row's picture (outside [-1, 1]
    off the row)."""
    u0, v0, u1, v1 = UV_UPPER
    return torch.stack([(uv[..., 0] - u0) / (u1 - u0) * 2 - 1, (uv[..., 1] - v0) / (v1 - v0) * 2 - 1], -1)
