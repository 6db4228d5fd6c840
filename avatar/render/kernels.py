"""The renderer's per-pixel loops compiled with numba, each giving exactly what its PyTorch
version gives (same float32 operations in the same order), several times faster on a CPU.

Rasterizer: the same z-buffer as raster.py's PyTorch path, pixel for pixel (same tie rule).

`visible_keys(tri, height, width)` -> int64 [B*H*W] keys: per pixel the minimum over covering
triangles of (order-preserving depth bits << 32) | (B*F - 1 - global face id), or INT64_MAX
where no triangle covers it. raster.py decodes them. Used when numba is installed and the
vertices are on the CPU; compiled once per machine (numba's cache beside this file when it can
write there, else at the first call of each process).
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

import numpy as np

try:
    import numba
except ImportError:        # PyTorch path only
    numba = None

EPS = np.float32(1e-6)          # raster.EPS as float32, as torch compares a float32 tensor with it
ONE_EPS = np.float32(1 + 1e-6)
TINY_AREA = np.float32(1e-9)
HALF = np.float32(0.5)
TINY_STEP = np.float32(1e-9)    # compose.inside_polygon's step for a flat edge
NONE = np.iinfo(np.int64).max


_ENABLED = ContextVar("compiled_kernels", default=True)


def available() -> bool:
    return numba is not None


def use() -> bool:
    """True when the compiled kernels are to run: numba installed and not inside pytorch_only()."""
    return numba is not None and _ENABLED.get()


@contextlib.contextmanager
def pytorch_only():
    """Within this block the renderer uses its PyTorch code even where numba is installed (the
    renderer's 'torch' runtime; benchmarks of the code before these kernels)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _kernel(tri, height, width, keys):
    b_count, f_count = tri.shape[0], tri.shape[1]
    n_ids = b_count * f_count
    scratch = np.empty(1, np.float32)       # float -> int bit casts without an array per pixel
    for b in range(b_count):
        base = b * height * width
        for f in range(f_count):
            _triangle(tri[b, f], height, width, keys, base, n_ids - 1 - (b * f_count + f), scratch)


def _finite(t):
    for i in range(3):
        for j in range(3):
            if not np.isfinite(t[i, j]):
                return False
    return True


def _triangle(t, height, width, keys, base, inverted_id, scratch):
    if not _finite(t):
        return
    x0, y0, ex1, ey1, ex2, ey2, area = _edges(t)
    if abs(area) < TINY_AREA:
        return
    inv = np.float32(1.0) / area
    z0 = t[0, 2]
    dz1, dz2 = t[1, 2] - z0, t[2, 2] - z0
    c0 = max(int(np.floor(min(t[0, 0], t[1, 0], t[2, 0]) - HALF)), 0)
    r0 = max(int(np.floor(min(t[0, 1], t[1, 1], t[2, 1]) - HALF)), 0)
    c1 = min(int(np.ceil(max(t[0, 0], t[1, 0], t[2, 0]) - HALF)), width - 1)
    r1 = min(int(np.ceil(max(t[0, 1], t[1, 1], t[2, 1]) - HALF)), height - 1)
    for row in range(r0, r1 + 1):
        dy = (np.float32(row) + HALF) - y0
        for col in range(c0, c1 + 1):
            w1, w2 = _weights((np.float32(col) + HALF) - x0, dy, ex1, ey1, ex2, ey2, inv)
            if w1 >= -EPS and w2 >= -EPS and w1 + w2 <= ONE_EPS:
                z = z0 + w1 * dz1 + w2 * dz2
                bits = np.int64(_float_bits(z, scratch))
                key = (bits << 32) | inverted_id
                i = base + row * width + col
                if key < keys[i]:
                    keys[i] = key


def _fragments(keys, tri, faces, uvs, n_faces, height, width, face, bary, uv, depth):
    """Decode the keys: visible triangle (per mesh), barycentrics, UVs and depth per pixel."""
    n_ids = tri.shape[0] * tri.shape[1]
    scratch = np.empty(1, np.float32)
    for i in range(keys.shape[0]):
        if keys[i] == NONE:
            continue
        gid = n_ids - 1 - (keys[i] & 0xFFFFFFFF)
        t = tri[gid // n_faces, gid % n_faces]
        local = i % (height * width)
        x0, y0, ex1, ey1, ex2, ey2, area = _edges(t)
        w1, w2 = _weights((np.float32(local % width) + HALF) - x0,
                          (np.float32(local // width) + HALF) - y0,
                          ex1, ey1, ex2, ey2, np.float32(1.0) / area)
        w0 = np.float32(1.0) - w1 - w2
        f = gid % n_faces
        face[i] = f
        bary[i, 0], bary[i, 1], bary[i, 2] = w0, w1, w2
        for c in range(2):
            uv[i, c] = w0 * uvs[faces[f, 0], c] + w1 * uvs[faces[f, 1], c] + w2 * uvs[faces[f, 2], c]
        bits = np.int32(keys[i] >> 32)
        depth[i] = _bits_float(bits, scratch)


def _edges(t):
    """A triangle's first corner, its two edges from it and twice its signed area."""
    x0, y0 = t[0, 0], t[0, 1]
    ex1, ey1 = t[1, 0] - x0, t[1, 1] - y0
    ex2, ey2 = t[2, 0] - x0, t[2, 1] - y0
    return x0, y0, ex1, ey1, ex2, ey2, ex1 * ey2 - ex2 * ey1


def _weights(dx, dy, ex1, ey1, ex2, ey2, inv):
    """Barycentric weights of corners 1 and 2 at offset (dx, dy) from corner 0."""
    return (dx * ey2 - ex2 * dy) * inv, (ex1 * dy - dx * ey1) * inv


def _bits_float(bits, scratch):
    """The float32 whose order-preserving bits (_float_bits) are `bits`; scratch: a float32 [1]."""
    as_int = scratch.view(np.int32)
    as_int[0] = bits ^ np.int32(0x7FFFFFFF) if bits < 0 else bits
    return scratch[0]


def _inside(points, ring, out):
    """Even-odd crossing rule, as compose.inside_polygon computes it."""
    n_ring = ring.shape[1]
    for b in range(points.shape[0]):
        for i in range(points.shape[1]):
            x, y = points[b, i, 0], points[b, i, 1]
            odd = False
            for k in range(n_ring):
                ax, ay = ring[b, k, 0], ring[b, k, 1]
                bx, by = ring[b, (k + 1) % n_ring, 0], ring[b, (k + 1) % n_ring, 1]
                step = TINY_STEP if by == ay else by - ay
                if ((ay > y) != (by > y)) and x < ax + (bx - ax) * (y - ay) / step:
                    odd = not odd
            out[b, i] = odd


def _sample(tex, uv, mask, out):
    """Bilinear texture lookup as F.grid_sample(mode="bilinear", padding_mode="border",
    align_corners=False) does it; tex [S, S, C] (rows, columns, channels), uv [B, H, W, 2],
    mask [B, H, W] -> out [B, C, H, W] (untouched where mask is False)."""
    size_y, size_x, n_ch = tex.shape
    for b in range(uv.shape[0]):
        for i in range(uv.shape[1]):
            for j in range(uv.shape[2]):
                if not mask[b, i, j]:
                    continue
                x = _unnormalize(uv[b, i, j, 0], size_x)
                y = _unnormalize(uv[b, i, j, 1], size_y)
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                x1, y1 = min(x0 + 1, size_x - 1), min(y0 + 1, size_y - 1)
                fx, fy = x - np.float32(x0), y - np.float32(y0)
                w00 = (np.float32(1) - fx) * (np.float32(1) - fy)
                w01, w10, w11 = fx * (np.float32(1) - fy), (np.float32(1) - fx) * fy, fx * fy
                for c in range(n_ch):
                    out[b, c, i, j] = (tex[y0, x0, c] * w00 + tex[y0, x1, c] * w01
                                       + tex[y1, x0, c] * w10 + tex[y1, x1, c] * w11)


def _interpolate(face, bary, corners, attr, out):
    """out [B, N, C] = sum over a pixel's triangle corners k of bary[b, i, k] * attr[b, corner, :]
    (face [B, N] int64, -1: none -> 0; corners [F, 3]), in raster.interpolate's order."""
    for b in range(face.shape[0]):
        for i in range(face.shape[1]):
            f = face[b, i]
            if f < 0:
                continue
            for c in range(attr.shape[2]):
                acc = bary[b, i, 0] * attr[b, corners[f, 0], c]
                acc = acc + bary[b, i, 1] * attr[b, corners[f, 1], c]
                out[b, i, c] = acc + bary[b, i, 2] * attr[b, corners[f, 2], c]


def _unnormalize(u, size):
    """uv in [0, 1] -> pixel coordinate, clamped to the border (grid = 2 uv - 1)."""
    g = u * np.float32(2) - np.float32(1)
    x = ((g + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)
    return min(max(x, np.float32(0)), np.float32(size - 1))


def _float_bits(z, scratch):
    """Order-preserving int32 bits of the float32 z (negative floats' bits flipped); scratch: a
    float32 [1] reused for the cast."""
    scratch[0] = z
    bits = scratch.view(np.int32)[0]
    return bits ^ np.int32(0x7FFFFFFF) if bits < 0 else bits


if numba is not None:
    _edges = numba.njit(cache=True, nogil=True)(_edges)
    _finite = numba.njit(cache=True, nogil=True)(_finite)
    _weights = numba.njit(cache=True, nogil=True)(_weights)
    _bits_float = numba.njit(cache=True, nogil=True)(_bits_float)
    _fragments = numba.njit(cache=True, nogil=True)(_fragments)
    _unnormalize = numba.njit(cache=True, nogil=True)(_unnormalize)
    _sample = numba.njit(cache=True, nogil=True)(_sample)
    _interpolate = numba.njit(cache=True, nogil=True)(_interpolate)
    _inside = numba.njit(cache=True, nogil=True)(_inside)
    _float_bits = numba.njit(cache=True, nogil=True)(_float_bits)
    _triangle = numba.njit(cache=True, nogil=True)(_triangle)
    _kernel = numba.njit(cache=True, nogil=True)(_kernel)


def visible_keys(tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """tri float32 [B, F, 3, 3] (x, y, z per corner) -> keys int64 [B*H*W] (see module doc)."""
    keys = np.full(tri.shape[0] * height * width, NONE, np.int64)
    _kernel(np.ascontiguousarray(tri, np.float32), int(height), int(width), keys)
    return keys


def fragments(tri: np.ndarray, faces: np.ndarray, uvs: np.ndarray, height: int, width: int):
    """tri float32 [B, F, 3, 3], faces int64 [F, 3], uvs float32 [V, 2] -> (face int64 [B*H*W]
    (-1: none), bary float32 [B*H*W, 3], uv float32 [B*H*W, 2], depth float32 [B*H*W] (+inf))."""
    tri = np.ascontiguousarray(tri, np.float32)
    keys = visible_keys(tri, height, width)
    n = keys.shape[0]
    face = np.full(n, -1, np.int64)
    bary, uv = np.zeros((n, 3), np.float32), np.zeros((n, 2), np.float32)
    depth = np.full(n, np.inf, np.float32)
    _fragments(keys, tri, np.ascontiguousarray(faces, np.int64), np.ascontiguousarray(uvs, np.float32),
               tri.shape[1], int(height), int(width), face, bary, uv, depth)
    return face, bary, uv, depth


def inside_polygon(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """points float32 [B, N, 2], ring float32 [B, K, 2] -> bool [B, N] (compose.inside_polygon)."""
    out = np.zeros(points.shape[:2], np.bool_)
    _inside(np.ascontiguousarray(points, np.float32), np.ascontiguousarray(ring, np.float32), out)
    return out


def sample_texture(texture_hwc: np.ndarray, uv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """texture [S, S, C] float32, uv [B, H, W, 2] in [0, 1], mask [B, H, W] bool -> features
    float32 [B, C, H, W], 0 where mask is False (NeuralTexture.forward's bilinear lookup; the
    layout the U-Net takes, so no strided copy follows)."""
    b, h, w = mask.shape
    out = np.zeros((b, texture_hwc.shape[2], h, w), np.float32)
    _sample(np.ascontiguousarray(texture_hwc, np.float32), np.ascontiguousarray(uv, np.float32),
            np.ascontiguousarray(mask, np.bool_), out)
    return out


def interpolate(face: np.ndarray, bary: np.ndarray, corners: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """face int64 [B, N] (-1: none), bary float32 [B, N, 3], corners int64 [F, 3], attr float32
    [B, V, C] -> float32 [B, N, C] (raster.interpolate: 0 where no triangle)."""
    out = np.zeros((face.shape[0], face.shape[1], attr.shape[2]), np.float32)
    _interpolate(np.ascontiguousarray(face, np.int64), np.ascontiguousarray(bary, np.float32),
                 np.ascontiguousarray(corners, np.int64), np.ascontiguousarray(attr, np.float32), out)
    return out
