"""Stable square face crops: one box per frame, smoothed over time so the face does not jitter."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

CROP_MARGIN = 1.6        # box side / face landmark extent
CENTRE_SIGMA_S = 0.1     # Gaussian smoothing of the box centre (seconds)
SIZE_SIGMA_S = 1.0       # the box size changes slowly


def raw_crop_boxes(landmarks: np.ndarray, margin: float = CROP_MARGIN) -> np.ndarray:
    """Per-frame square boxes (x0, y0, x1, y1) around the 2D landmarks, unsmoothed."""
    lo, hi = landmarks[:, :, :2].min(1), landmarks[:, :, :2].max(1)
    centre = (lo + hi) / 2
    side = (hi - lo).max(1) * margin
    return boxes_from(centre, side)


def boxes_from(centre: np.ndarray, side: np.ndarray) -> np.ndarray:
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def smooth_crop_boxes(landmarks: np.ndarray, fps: float, margin: float = CROP_MARGIN) -> np.ndarray:
    """Boxes whose centre is smoothed over ~0.1 s and whose size over ~1 s (zero phase, no lag)."""
    raw = raw_crop_boxes(landmarks, margin)
    centre = (raw[:, :2] + raw[:, 2:]) / 2
    side = raw[:, 2] - raw[:, 0]
    if len(raw) > 2:
        centre = gaussian_filter1d(centre, CENTRE_SIGMA_S * fps, axis=0, mode="nearest")
        side = median_filter(side, size=max(3, int(fps / 3) | 1), mode="nearest")
        side = gaussian_filter1d(side, SIZE_SIGMA_S * fps, mode="nearest")
    return boxes_from(centre, side)


def centre_jitter(boxes: np.ndarray) -> float:
    """Mean frame-to-frame movement of the box centre, in pixels."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return float(np.linalg.norm(np.diff(centre, axis=0), axis=1).mean()) if len(boxes) > 1 else 0.0


def crop_frame(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Resample the square `box` of `frame` to size x size (edges replicated outside the frame)."""
    import cv2

    x0, y0, x1, y1 = [float(v) for v in box]
    s = size / (x1 - x0)
    matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
