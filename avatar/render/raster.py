"""A small batched triangle rasterizer in pure PyTorch (CPU and CUDA, no compiled extensions).

Vertices are in crop pixels: x right, y down, z = depth (smaller z = nearer the camera). Pixel
(row i, column j) samples the point (j + 0.5, i + 0.5). Each triangle only tests the pixels of
its own bounding box, so the cost grows with covered area, not with triangles x pixels. The
nearest triangle wins per pixel (exact z-buffer via scatter-min). Screen-space interpolation is
exact here because our meshes come from a similarity (weak-perspective) transform. Gradients
flow into whatever is sampled with `Fragments.uv` (the texture), not into the vertices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)   # bounding-box sides tried in turn
MAX_CANDIDATES = 1 << 23    # pixel tests per chunk (memory bound)


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterization result, like pytorch3d's (one face per pixel)."""
    uv: torch.Tensor        # [B, H, W, 2] interpolated UVs (0 where mask is False)
    mask: torch.Tensor      # [B, H, W] bool: a triangle covers the pixel
    depth: torch.Tensor     # [B, H, W] interpolated z (+inf where mask is False)
    face: torch.Tensor      # [B, H, W] int64 index of the visible triangle (-1 where empty)


def _size(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor,
              size: int | tuple[int, int]) -> Fragments:
    """vertices [B, V, 3] crop pixels, faces [F, 3] int64, uvs [V, 2] -> Fragments at size
    (an int for square, or (height, width))."""
    height, width = _size(size)
    b, device = vertices.shape[0], vertices.device
    with torch.no_grad():
        tri = vertices.detach().float()[:, faces]                      # [B, F, 3, 3]
        npix = b * height * width
        zbuf = torch.full((npix,), float("inf"), device=device)
        cands = list(_candidates(tri, height, width))
        for pix, z, _, _ in cands:
            zbuf.scatter_reduce_(0, pix, z, "amin")
        winner = torch.full((npix,), -1, dtype=torch.int64, device=device)
        for pix, z, fid, _ in cands:
            keep = z <= zbuf[pix]
            winner.scatter_reduce_(0, pix[keep], fid[keep], "amax")
        bary = torch.zeros(npix, 3, device=device)
        for pix, z, fid, w in cands:
            keep = (winner[pix] == fid)
            bary[pix[keep]] = w[keep]
    mask = winner >= 0
    face_local = torch.where(mask, winner % faces.shape[0], torch.zeros_like(winner))
    tri_uv = uvs.to(device)[faces][face_local]                         # [N, 3, 2]
    uv = (bary[:, :, None] * tri_uv).sum(1) * mask[:, None]
    depth = torch.where(mask, zbuf, torch.full_like(zbuf, float("inf")))
    face = torch.where(mask, face_local, torch.full_like(winner, -1))
    shape = (b, height, width)
    return Fragments(uv.view(*shape, 2), mask.view(shape), depth.view(shape), face.view(shape))


def _candidates(tri: torch.Tensor, height: int, width: int):
    """Yield (flat pixel index, depth, global face id, barycentrics) of every covered pixel."""
    b, f = tri.shape[:2]
    flat = tri.reshape(b * f, 3, 3)
    lo = torch.floor(flat[:, :, :2].amin(1) - 0.5).clamp(min=0)
    hi = torch.ceil(flat[:, :, :2].amax(1) - 0.5)
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1], device=tri.device, dtype=hi.dtype))
    extent = (hi - lo + 1).amax(1)                                     # box side in pixels
    valid = (extent > 0) & torch.isfinite(flat).all(2).all(1)
    prev = 0
    for side in BUCKETS:
        ids = torch.nonzero(valid & (extent > prev) & (extent <= side)).squeeze(1)
        prev = side
        step = max(1, MAX_CANDIDATES // (side * side))
        for start in range(0, ids.numel(), step):
            yield from _bucket(flat, lo, ids[start:start + step], side, f, height, width)
        if prev >= max(height, width):
            break


def _bucket(flat, lo, ids, side, f, height, width):
    if ids.numel() == 0:
        return
    device = flat.device
    offs = torch.arange(side, device=device, dtype=flat.dtype)
    px = lo[ids, 0, None, None] + offs[None, None, :]                  # [n, 1, side]
    py = lo[ids, 1, None, None] + offs[None, :, None]                  # [n, side, 1]
    px, py = px.expand(-1, side, side).reshape(len(ids), -1), py.expand(-1, side, side).reshape(len(ids), -1)
    w = _barycentric(flat[ids], px + 0.5, py + 0.5)                    # [n, side*side, 3]
    inside = (w >= -1e-6).all(2) & (px < width) & (py < height)
    n_idx, k_idx = torch.nonzero(inside, as_tuple=True)
    if n_idx.numel() == 0:
        return
    w = w[n_idx, k_idx]
    z = (w * flat[ids[n_idx], :, 2]).sum(1)
    gid = ids[n_idx]
    batch = gid // f
    pix = batch * (height * width) + py[n_idx, k_idx].long() * width + px[n_idx, k_idx].long()
    yield pix, z, gid, w


def _barycentric(tri: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Barycentric weights [n, k, 3] of points (x, y) [n, k] in triangles tri [n, 3, 3]."""
    x0, y0 = tri[:, 0, 0, None], tri[:, 0, 1, None]
    x1, y1 = tri[:, 1, 0, None], tri[:, 1, 1, None]
    x2, y2 = tri[:, 2, 0, None], tri[:, 2, 1, None]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    area = torch.where(area.abs() < 1e-9, torch.full_like(area, float("nan")), area)
    w1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / area
    w2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / area
    w0 = 1.0 - w1 - w2
    return torch.stack([w0, w1, w2], dim=-1)
