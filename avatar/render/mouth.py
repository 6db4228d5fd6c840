"""Close the lip hole of the canonical mesh with a patch that has its own UV region.

MediaPipe's tessellation spans the mouth with a strip of 18 triangles between the inner lips,
whose UVs all lie on the lips' thin inner edge, so the texture cannot hold teeth there. We drop
that strip and close the hole with our own patch: the inner-lip ring (LIPS_INNER, 20 vertices, from the left corner along the upper lip to the right
corner and back along the lower lip) is duplicated and joined to one new centre vertex by a fan of
20 triangles. The duplicates get UVs on an ellipse in the free top-left corner of UV space (the
face layout leaves [0, 0.19]^2 empty), so the neural texture can learn teeth and tongue there.
When the mouth is closed the patch has no area and is invisible.
"""
from __future__ import annotations

import numpy as np
import torch

from avatar.face.mesh import LIPS_INNER

MOUTH_UV_CENTRE = (0.095, 0.07)
MOUTH_UV_RADII = (0.085, 0.06)
N_RING = len(LIPS_INNER)


def mouth_patch_uvs() -> np.ndarray:
    """[21, 2] UVs of the ring duplicates (on an ellipse, upper lip on top) and the centre."""
    angles = np.pi - np.arange(N_RING) * (2 * np.pi / N_RING)
    cu, cv = MOUTH_UV_CENTRE
    ru, rv = MOUTH_UV_RADII
    ring = np.stack([cu + ru * np.cos(angles), cv - rv * np.sin(angles)], 1)
    return np.concatenate([ring, [[cu, cv]]]).astype(np.float32)


def mouth_patch_faces(n_vertices: int) -> np.ndarray:
    """[20, 3] fan triangles over the appended vertices n_vertices .. n_vertices + 20."""
    ring = n_vertices + np.arange(N_RING)
    centre = n_vertices + N_RING
    return np.stack([ring, np.roll(ring, -1), np.full(N_RING, centre)], 1).astype(np.int64)


def lip_strip(faces: np.ndarray) -> np.ndarray:
    """[F] bool: triangles made only of inner-lip vertices (the strip that closes the mouth)."""
    return np.isin(np.asarray(faces), LIPS_INNER).all(1)


def with_mouth_patch(faces: np.ndarray, uvs: np.ndarray, vertices: torch.Tensor | None = None):
    """Swap the lip strip for the mouth patch: returns (faces [F-18+20, 3], uvs [V+21, 2],
    vertices [B, V+21, 3] or None).

    faces/uvs are numpy; vertices (crop pixels or any space with z = depth) a tensor or None.
    """
    n = uvs.shape[0]
    faces = np.asarray(faces, np.int64)
    new_faces = np.concatenate([faces[~lip_strip(faces)], mouth_patch_faces(n)])
    new_uvs = np.concatenate([np.asarray(uvs, np.float32), mouth_patch_uvs()])
    return new_faces, new_uvs, (None if vertices is None else patch_vertices(vertices))


def patch_vertices(vertices: torch.Tensor) -> torch.Tensor:
    """[B, V, 3] -> [B, V+21, 3]: append the inner-lip ring again and its centroid."""
    ring = vertices[:, list(LIPS_INNER)]
    centre = ring.mean(1, keepdim=True)
    return torch.cat([vertices, ring, centre], 1)
