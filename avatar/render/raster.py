"""A small batched triangle rasterizer in pure PyTorch (CPU and CUDA, no compiled extensions).

Vertices are in crop pixels: x right, y down, z = depth (smaller z = nearer the camera). Pixel
(row i, column j) samples the point (j + 0.5, i + 0.5). Each triangle only tests the pixels of
its own bounding box, so the cost grows with covered area, not with triangles x pixels. The
nearest triangle wins per pixel (exact z-buffer: one scatter-min over depth-then-face keys). Screen-space interpolation is
exact here because our meshes come from a similarity (weak-perspective) transform. Gradients
flow into whatever is sampled with `Fragments.uv` (the texture), not into the vertices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar.render import kernels

BUCKETS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
# bounding-box sides tried in turn: steps of 1.5-1.33x, so a triangle tests at most ~2.25x the
# pixels of its box (powers of two: up to 4x)
MAX_CANDIDATES = 1 << 23    # pixel tests per chunk (memory bound)
EPS = 1e-6                  # pixels this close outside an edge count as inside (no cracks)


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterization result, like pytorch3d's (one face per pixel)."""
    uv: torch.Tensor        # [B, H, W, 2] interpolated UVs (0 where mask is False)
    mask: torch.Tensor      # [B, H, W] bool: a triangle covers the pixel
    depth: torch.Tensor     # [B, H, W] interpolated z (+inf where mask is False)
    face: torch.Tensor      # [B, H, W] int64 index of the visible triangle (-1 where empty)
    bary: torch.Tensor      # [B, H, W, 3] barycentric weights of its corners (0 where empty)


def _size(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor,
              size: int | tuple[int, int]) -> Fragments:
    """vertices [B, V, 3] crop pixels, faces [F, 3] int64, uvs [V, 2] -> Fragments at size
    (an int for square, or (height, width)). On a CPU with numba installed the work is done by
    the compiled kernels of kernels.py (the same fragments, bit for bit)."""
    height, width = _size(size)
    with torch.no_grad():
        tri = vertices.detach().float()[:, faces]                      # [B, F, 3, 3]
    if tri.device.type == "cpu" and kernels.use():
        face, bary, uv, depth = (torch.from_numpy(a) for a in kernels.fragments(
            tri.numpy(), faces.cpu().numpy(), uvs.detach().float().cpu().numpy(), height, width))
    else:
        face, bary, uv, depth = _fragments_torch(tri, faces, uvs, height, width)
    shape = (tri.shape[0], height, width)
    return Fragments(uv.view(*shape, 2), face.view(shape) >= 0, depth.view(shape), face.view(shape),
                     bary.view(*shape, 3))


def _fragments_torch(tri, faces, uvs, height, width):
    """(face [N] (-1: none), bary [N, 3], uv [N, 2], depth [N] (+inf)) for N = B*H*W pixels."""
    npix, device = tri.shape[0] * height * width, tri.device
    winner, zbuf = _visible(tri, height, width)
    mask = winner >= 0
    hit = torch.nonzero(mask).squeeze(1)
    bary = torch.zeros(npix, 3, device=device)
    bary[hit] = _barycentrics(tri.reshape(-1, 3, 3)[winner[hit]], hit, height, width)
    face_hit = winner[hit] % faces.shape[0]
    corner_uv = uvs.to(device=device, dtype=torch.float32)[faces.to(device)[face_hit]]   # [N, 3, 2]
    uv = torch.zeros(npix, 2, device=device)
    uv[hit] = (bary[hit][:, :, None] * corner_uv).sum(1)
    face = torch.full_like(winner, -1)
    face[hit] = face_hit
    return face, bary, uv, zbuf


def _visible(tri: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(global face id [B*H*W] of the nearest triangle per pixel (-1: none), its depth).
    One scatter-min over keys that sort by depth first and then by the larger face id: the
    depth's float bits (made order-preserving) above, the inverted face id below."""
    n_ids = tri.shape[0] * tri.shape[1]
    none = torch.iinfo(torch.int64).max
    key = torch.full((tri.shape[0] * height * width,), none, dtype=torch.int64, device=tri.device)
    for pix, z, fid in _candidates(tri, height, width):
        key.scatter_reduce_(0, pix, (_ordered_bits(z) << 32) | (n_ids - 1 - fid), "amin")
    found = key != none
    winner = torch.where(found, n_ids - 1 - (key & 0xFFFFFFFF), torch.full_like(key, -1))
    bits = (key >> 32).to(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)                # undo _ordered_bits
    zbuf = torch.where(found, bits.view(torch.float32), torch.full_like(bits.view(torch.float32), float("inf")))
    return winner, zbuf


def _ordered_bits(z: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 whose order is the floats' order (negative floats' bits flipped)."""
    bits = z.contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)


def _barycentrics(tri: torch.Tensor, pix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Barycentric weights [N, 3] of the centres of pixels pix (flat indices into [B, H, W]) in
    triangles tri [N, 3, 3]: the same float operations as `_bucket`'s, so the same values."""
    local = pix % (height * width)
    px, py = (local % width).to(tri.dtype), (local // width).to(tri.dtype)
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    ex1, ey1 = tri[:, 1, 0] - x0, tri[:, 1, 1] - y0
    ex2, ey2 = tri[:, 2, 0] - x0, tri[:, 2, 1] - y0
    inv = 1.0 / (ex1 * ey2 - ex2 * ey1)
    dx, dy = px + 0.5 - x0, py + 0.5 - y0
    w1 = (dx * ey2 - ex2 * dy) * inv
    w2 = (ex1 * dy - dx * ey1) * inv
    return torch.stack([1 - w1 - w2, w1, w2], 1)


def interpolate(fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes [B, V, C] (one set per batch element) -> [B, H, W, C] at every
    pixel, interpolated with the barycentrics of `fragments` (anything with Fragments' face,
    bary and mask, e.g. the renderer's WindowRaster; 0 where no triangle)."""
    b, h, w = fragments.face.shape
    if (attributes.device.type == "cpu" and attributes.dtype == torch.float32 and kernels.use()
            and not attributes.requires_grad and not fragments.bary.requires_grad):
        face = torch.where(fragments.mask, fragments.face, -1).reshape(b, -1)
        out = kernels.interpolate(face.numpy(), fragments.bary.detach().reshape(b, -1, 3).numpy(),
                                  faces.cpu().numpy(), attributes.detach().numpy())
        return torch.from_numpy(out).reshape(b, h, w, -1)
    face = fragments.face.clamp(min=0).reshape(b, -1)                    # [B, N]
    corners = faces.to(face.device)[face]                                # [B, N, 3]
    batch = torch.arange(b, device=face.device)[:, None, None]
    values = attributes[batch, corners]                                  # [B, N, 3, C]
    out = (fragments.bary.reshape(b, -1, 3, 1) * values).sum(2)
    return (out * fragments.mask.reshape(b, -1, 1)).reshape(b, h, w, -1)


def _candidates(tri: torch.Tensor, height: int, width: int):
    """Yield (flat pixel index, depth, global face id) of every covered pixel."""
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
    tri = flat[ids]
    offs = torch.arange(side, device=flat.device, dtype=flat.dtype)
    x0, y0 = tri[:, 0, 0, None, None], tri[:, 0, 1, None, None]
    ex1, ey1 = tri[:, 1, 0, None, None] - x0, tri[:, 1, 1, None, None] - y0
    ex2, ey2 = tri[:, 2, 0, None, None] - x0, tri[:, 2, 1, None, None] - y0
    area = ex1 * ey2 - ex2 * ey1
    inv = torch.where(area.abs() < 1e-9, torch.full_like(area, float("nan")), 1.0 / area)
    px = lo[ids, 0, None, None] + offs[None, None, :]                  # [n, 1, side] columns
    py = lo[ids, 1, None, None] + offs[None, :, None]                  # [n, side, 1] rows
    dx, dy = px + 0.5 - x0, py + 0.5 - y0                               # pixel centres
    w1 = (dx * ey2 - ex2 * dy) * inv                                    # [n, side, side]
    w2 = (ex1 * dy - dx * ey1) * inv
    inside = (w1 >= -EPS) & (w2 >= -EPS) & (w1 + w2 <= 1 + EPS) & (px < width) & (py < height)
    n_idx, r_idx, c_idx = torch.nonzero(inside, as_tuple=True)
    if n_idx.numel() == 0:
        return
    w1, w2 = w1[n_idx, r_idx, c_idx], w2[n_idx, r_idx, c_idx]
    gid = ids[n_idx]
    zs = flat[gid, :, 2]
    z = zs[:, 0] + w1 * (zs[:, 1] - zs[:, 0]) + w2 * (zs[:, 2] - zs[:, 0])
    row = lo[gid, 1].long() + r_idx
    col = lo[gid, 0].long() + c_idx
    pix = (gid // f) * (height * width) + row * width + col
    yield pix, z, gid
