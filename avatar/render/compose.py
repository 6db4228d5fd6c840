"""Geometry between full frames and the renderer's crop band, and the masks the renderer uses.

The face crop is the track's square box resampled to S x S; the renderer works on its lower band
(rows top..S). `crop_band` cuts that band out of a frame, `paste_band` blends a rendered band back
with a feathered alpha. `band_masks` builds, from the rasterized mesh, the lower-face hole that is
blanked in the renderer's input and the feathered alpha used to composite.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from avatar.face.mesh import LIPS_OUTER

NOSE_TIP = 1
MOUTH_ALPHA_PAD = 0.45     # the lips window replaces the lips box grown by this share of the lips width


def to_crop_pixels(meshes_frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """[T, V, 3] frame pixels -> crop pixels of the square boxes [T, 4] resampled to size x size.

    z is scaled like x, y and its sign is fixed so that smaller z is nearer the camera (checked
    on the nose tip, the vertex nearest the camera).
    """
    boxes = np.asarray(boxes, np.float32)
    scale = size / (boxes[:, 2] - boxes[:, 0])
    out = np.asarray(meshes_frame, np.float32).copy()
    out[..., 0] -= boxes[:, None, 0]
    out[..., 1] -= boxes[:, None, 1]
    out *= scale[:, None, None]
    z = out[..., 2]
    if np.median(z[:, NOSE_TIP] - z.mean(1)) > 0:
        out[..., 2] = -z
    return out


def crop_band(frame: np.ndarray, box, size: int, top: int) -> np.ndarray:
    """Rows top..size of the size x size crop of `box` (edges replicated outside the frame)."""
    x0, y0, x1, _ = [float(v) for v in box]
    s = size / (x1 - x0)
    return crop_window(frame, (x0, y0 + top / s), s, (size - top, size))


def crop_window(frame: np.ndarray, origin, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """The window of `shape` (rows, cols) whose pixel (0, 0) corner sits at `origin` (frame
    pixels), at `scale` window pixels per frame pixel; edges replicated outside the frame.
    At scale 1 and a whole-pixel origin this is an exact copy of the frame's pixels."""
    x0, y0 = float(origin[0]), float(origin[1])
    m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, m, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def paste_band(frame: np.ndarray, band: np.ndarray, alpha: np.ndarray, box, size: int,
               top: int, out: np.ndarray | None = None) -> np.ndarray:
    """Blend band [h, size, 3] float 0..255 into a copy of frame with alpha [h, size] in [0, 1]
    (into `out` instead, a frame-sized uint8 array that may be `frame` itself)."""
    x0, y0, x1, _ = [float(v) for v in box]
    s = size / (x1 - x0)
    return paste_window(frame, band, alpha, (x0, y0 + top / s), s, out)


def paste_window(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, origin, scale: float,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Blend a window (as cut by `crop_window`) of float 0..255 RGB [h, w, 3] into a copy of
    frame with alpha [h, w] in [0, 1] (into `out` instead: see paste_band)."""
    x0, y0 = float(origin[0]), float(origin[1])
    s = 1.0 / scale                               # frame pixels per window pixel
    h, w = alpha.shape
    fh, fw = frame.shape[:2]
    rx0, ry0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    rx1, ry1 = min(int(np.ceil(x0 + w * s)) + 1, fw), min(int(np.ceil(y0 + h * s)) + 1, fh)
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    if rx1 <= rx0 or ry1 <= ry0:
        return out
    m = np.array([[s, 0, x0 - rx0], [0, s, y0 - ry0]], np.float32)  # window -> ROI
    size_roi = (rx1 - rx0, ry1 - ry0)
    # premultiplied rgb and alpha warped apart (the same values as one RGBA warp, and no
    # strided channel views for OpenCV to copy: 2x faster)
    def warp(x):
        return cv2.warpAffine(np.asarray(x, np.float32), m, size_roi, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped_rgb, warped_alpha = warp(rgb * alpha[..., None]), warp(alpha)
    # roi * (1 - a) + premultiplied rgb, rounded and saturated to uint8 (as np.clip + round):
    # OpenCV's arithmetic does it in two passes, 4x faster than numpy's seven
    roi = frame[ry0:ry1, rx0:rx1]
    keep = cv2.multiply(roi, cv2.merge([1 - warped_alpha] * 3), dtype=cv2.CV_32F)
    out[ry0:ry1, rx0:rx1] = cv2.add(keep, warped_rgb, dtype=cv2.CV_8U)
    return out


def _dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Square dilation of a 0/1 mask by r pixels (box sums: fast for large r)."""
    if r <= 0:
        return mask
    if _opencv_ok(mask):
        return _per_plane(mask, lambda p: cv2.dilate(p, np.ones((2 * r + 1, 2 * r + 1), np.uint8)))
    return (box_mean(mask, r, "constant") > 0.5 / (2 * r + 1) ** 2).float()


def _extend_down(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Each pixel also becomes set if any of the n pixels above it is set."""
    if n <= 0:
        return mask
    if _opencv_ok(mask):          # a column of n + 1 pixels ending at the pixel itself
        column = np.ones((n + 1, 1), np.uint8)
        return _per_plane(mask, lambda p: cv2.dilate(p, column, anchor=(0, n)))
    c = F.pad(mask, (0, 0, n + 1, 0)).cumsum(-2)
    h = mask.shape[-2]
    return ((c[..., n + 1:, :] - c[..., :h, :]) > 0.5).float()


def erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Square erosion of a 0/1 mask [B, 1, h, w] by r pixels, pixels outside the image not
    counted: -max_pool2d(-mask, 2r+1, 1, r), the same values; on a CPU without a gradient by
    OpenCV (4-10x faster than PyTorch's max pool there)."""
    if r <= 0:
        return mask
    if mask.device.type != "cpu" or mask.requires_grad or mask.dtype != torch.float32:
        return -F.max_pool2d(-mask, 2 * r + 1, 1, r)
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    planes = mask.detach().contiguous().numpy()
    out = np.stack([cv2.erode(p[0], kernel) for p in planes])[:, None]
    return torch.from_numpy(out)


def box_mean(x: torch.Tensor, r: int, mode: str = "replicate") -> torch.Tensor:
    """Mean over a (2r+1)^2 window (edges padded with `mode`), via running sums: fast on CPU."""
    if r <= 0:
        return x
    k = 2 * r + 1
    for dim in (-1, -2):
        pad = (r + 1, r, 0, 0) if dim == -1 else (0, 0, r + 1, r)
        c = F.pad(x, pad, mode=mode).cumsum(dim)
        n = c.shape[dim]
        x = (c.narrow(dim, k, n - k) - c.narrow(dim, 0, n - k)) / k
    return x


def _blur(mask: torch.Tensor, r: int) -> torch.Tensor:
    """box_mean(mask, r); on a CPU without a gradient by OpenCV's box filter (the same to float
    rounding)."""
    if r > 0 and _opencv_ok(mask):
        k = (2 * r + 1, 2 * r + 1)
        return _per_plane(mask, lambda p: cv2.boxFilter(p, -1, k, borderType=cv2.BORDER_REPLICATE))
    return box_mean(mask, r)


def _opencv_ok(mask: torch.Tensor) -> bool:
    """A [B, 1, h, w] float32 mask on the CPU with no gradient: OpenCV's filters may replace the
    PyTorch ones (several times faster there)."""
    return (mask.device.type == "cpu" and not mask.requires_grad and mask.dtype == torch.float32
            and mask.dim() == 4 and mask.shape[1] == 1)


def _per_plane(mask: torch.Tensor, op) -> torch.Tensor:
    planes = mask.detach().contiguous().numpy()
    return torch.from_numpy(np.stack([op(p[0]).reshape(p.shape[1:]) for p in planes])[:, None])


def band_masks(raster_mask: torch.Tensor, vertices_band: torch.Tensor, size: int):
    """Lower-face masks on the band: (hole [B,1,h,w] 0/1, alpha [B,1,h,w] feathered, mouth [B,1,h,w]).

    The face region is the rasterized mesh below the nose tip, grown by size/32 and extended
    size/16 downwards (room for the jaw to move); alpha is that region blurred by size/32, and the
    hole (blanked in the input) covers alpha's whole support. `mouth` marks the lips' box (loss
    weight).
    """
    b, h, w = raster_mask.shape
    r = max(1, size // 32)
    rows = torch.arange(h, device=raster_mask.device, dtype=torch.float32)[None, :, None]
    nose_y = vertices_band[:, NOSE_TIP, 1][:, None, None]
    region = (raster_mask & (rows >= nose_y)).float()[:, None]
    region = _extend_down(_dilate(region, r), max(1, size // 16))
    region[:, :, :2 * r] = 0     # keep the band's top edge untouched
    alpha = _blur(region, r)
    hole = (_dilate(region, r + 1) > 0).float()
    return hole, alpha, mouth_mask(vertices_band, h, w)


def mouth_mask(vertices_band: torch.Tensor, h: int, w: int, grow: float = 0.25) -> torch.Tensor:
    lips = vertices_band[:, list(LIPS_OUTER), :2]
    lo, hi = lips.amin(1), lips.amax(1)
    pad = (hi - lo) * grow
    lo, hi = lo - pad, hi + pad
    xs = torch.arange(w, device=lips.device, dtype=lips.dtype) + 0.5
    ys = torch.arange(h, device=lips.device, dtype=lips.dtype) + 0.5
    inx = (xs[None] >= lo[:, 0:1]) & (xs[None] <= hi[:, 0:1])
    iny = (ys[None] >= lo[:, 1:2]) & (ys[None] <= hi[:, 1:2])
    return (iny[:, :, None] & inx[:, None, :]).float()[:, None]


# --- the lips window of the second stage (frame resolution) ----------------------------------

def lips_centres(meshes_frame: np.ndarray) -> np.ndarray:
    """[T, 2] centre of the outer lip landmarks, frame pixels."""
    return np.asarray(meshes_frame, np.float32)[:, list(LIPS_OUTER), :2].mean(1)


def mouth_origins(meshes_frame: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    """[T, 2] frame-pixel corners of the lips windows, rounded to whole pixels at scale 1 so the
    window is cut and pasted without resampling."""
    h, w = shape
    corner = lips_centres(meshes_frame) - np.array([w, h], np.float32) / (2 * scale)
    return np.round(corner) if scale == 1 else corner


def to_window_pixels(meshes_frame: np.ndarray, origins: np.ndarray, scale: float) -> np.ndarray:
    """[T, V, 3] frame pixels -> window pixels (z scaled alike, smaller z nearer)."""
    origins = np.asarray(origins, np.float32)
    side = np.float32(1.0 / scale)
    boxes = np.concatenate([origins, origins + side], 1)
    return to_crop_pixels(meshes_frame, boxes, 1)


def mouth_alpha(vertices_window: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, 1, h, w] compositing weight of the second stage: 1 on the lips box grown by MOUTH_ALPHA_PAD
    of the lips' width on every side, feathered over a sixteenth of the window width, and 0 at
    the window's border."""
    lips = vertices_window[:, list(LIPS_OUTER), :2]
    lo, hi = lips.amin(1), lips.amax(1)
    pad = MOUTH_ALPHA_PAD * (hi[:, :1] - lo[:, :1])
    feather = max(2, w // 16)
    xs = torch.arange(w, device=lips.device, dtype=lips.dtype) + 0.5
    ys = torch.arange(h, device=lips.device, dtype=lips.dtype) + 0.5

    def ramp(coord, a, b, size):
        inside = torch.minimum(coord[None] - (a - pad), (b + pad) - coord[None]) / feather
        edge = torch.minimum(coord, size - coord)[None] / feather - 1     # 0 at the border
        return torch.clamp(torch.minimum(inside + 1, edge), 0, 1)

    ax = ramp(xs, lo[:, 0:1], hi[:, 0:1], w)
    ay = ramp(ys, lo[:, 1:2], hi[:, 1:2], h)
    return (ay[:, :, None] * ax[:, None, :])[:, None]


def inside_polygon(points: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """points [B, N, 2], polygon corners ring [B, K, 2] (in order) -> [B, N] bool: inside
    (even-odd crossing rule). On a CPU with numba: the same answer from kernels.py, ~10x faster."""
    from avatar.render import kernels
    if points.device.type == "cpu" and kernels.use() and points.dtype == ring.dtype == torch.float32:
        return torch.from_numpy(kernels.inside_polygon(points.detach().numpy(), ring.detach().numpy()))
    x, y = points[..., 0:1], points[..., 1:2]
    a, b = ring[:, None], torch.roll(ring, -1, 1)[:, None]
    ay, by = a[..., 1], b[..., 1]
    step = torch.where(by == ay, torch.full_like(by, 1e-9), by - ay)
    crosses = ((ay > y) != (by > y)) & (x < a[..., 0] + (b[..., 0] - a[..., 0]) * (y - ay) / step)
    return crosses.sum(-1) % 2 == 1
