"""Image metrics for the renderer on face crops: PSNR, SSIM and mouth landmark distance (LMD)."""
from __future__ import annotations

import numpy as np

from avatar.face.mesh import LANDMARKER_TASK, LIPS


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


class LipLandmarks:
    """MediaPipe FaceLandmarker (image mode) returning the 40 lip landmarks in pixels, or None."""

    def __init__(self):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(LANDMARKER_TASK)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        h, w = rgb.shape[:2]
        pts = result.face_landmarks[0]
        return np.array([[pts[i].x * w, pts[i].y * h] for i in LIPS], np.float32)

    def close(self) -> None:
        self._landmarker.close()


def lip_distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Mean distance between matching lip landmarks (pixels), None if either is missing."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(a - b, axis=1).mean())


# --- the mouth box: where a viewer looks -----------------------------------------------------
# All on the lips' bounding box grown by 35 % (about the box ../shared/tools/mouth_detail.py
# uses), grey level, at the resolution of the frames compared.

MOUTH_BOX_GROW = 0.35


def mouth_box(lips_xy: np.ndarray, shape: tuple[int, ...], grow: float = MOUTH_BOX_GROW):
    """(x0, y0, x1, y1) whole pixels of the lips' box [N, 2] grown by `grow`, inside `shape`."""
    lips_xy = np.asarray(lips_xy, np.float64)
    centre = lips_xy.mean(0)
    half = (lips_xy.max(0) - lips_xy.min(0)) * (1 + grow) / 2
    x0, y0 = np.maximum(0, centre - half).astype(int)
    x1, y1 = np.minimum([shape[1], shape[0]], centre + half).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def grey(rgb: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)


def laplacian_variance(g: np.ndarray) -> float:
    """Variance of the Laplacian: the usual focus measure (grows with fine detail)."""
    import cv2
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def high_frequency_share(g: np.ndarray) -> float:
    """Share of the (mean-removed) spectral energy above 1/4 of Nyquist (elliptic radius)."""
    spec = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean()))) ** 2
    h, w = g.shape
    yy, xx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    r = np.sqrt((yy / (h / 2)) ** 2 + (xx / (w / 2)) ** 2)
    return float(spec[r > 0.25].sum() / max(spec.sum(), 1e-9))


def mouth_frame_scores(rendered: np.ndarray, real: np.ndarray, box) -> dict | None:
    """Detail ratio, high-frequency ratio and PSNR of one frame pair inside `box`."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 8 or y1 - y0 < 4:
        return None
    a, b = rendered[y0:y1, x0:x1], real[y0:y1, x0:x1]
    return _box_scores(a, b, grey(a), grey(b))


def _box_scores(a: np.ndarray, b: np.ndarray, ga: np.ndarray, gb: np.ndarray) -> dict:
    lap_b, hf_b = laplacian_variance(gb), high_frequency_share(gb)
    return {"detail": laplacian_variance(ga) / lap_b if lap_b > 0 else None,
            "hf": high_frequency_share(ga) / hf_b if hf_b > 0 else None,
            "psnr": psnr(a, b)}


class MouthScores:
    """Accumulates the mouth-box metrics over a clip, frame by frame in order.

    `add(rendered, real, box)`; `summary()` gives the medians over frames of the detail ratio
    (variance of the Laplacian, rendered / real) and the high-frequency ratio, the mouth PSNR
    (from the mean squared error over all boxes) and the flicker ratio: the mean absolute
    frame-to-frame change inside the box (the current frame's box on both frames), rendered /
    real, summed over the clip.
    """

    def __init__(self):
        self.detail, self.hf, self.sq, self.n_px = [], [], 0.0, 0
        self.change = [0.0, 0.0]
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, rendered: np.ndarray, real: np.ndarray, box) -> None:
        x0, y0, x1, y1 = box
        if x1 - x0 < 8 or y1 - y0 < 4:
            self._prev = None
            return
        crop_a, crop_b = rendered[y0:y1, x0:x1], real[y0:y1, x0:x1]
        a, b = grey(crop_a), grey(crop_b)
        s = _box_scores(crop_a, crop_b, a, b)
        if s["detail"] is not None:
            self.detail.append(s["detail"])
        if s["hf"] is not None:
            self.hf.append(s["hf"])
        self.sq += float(((crop_a.astype(np.float64) - crop_b) ** 2).sum())
        self.n_px += a.size * 3
        if self._prev is not None:
            pa, pb = self._prev
            self.change[0] += float(np.abs(a - grey(pa[y0:y1, x0:x1])).mean())
            self.change[1] += float(np.abs(b - grey(pb[y0:y1, x0:x1])).mean())
        self._prev = (rendered, real)

    def summary(self) -> dict:
        med = lambda v: float(np.median(v)) if v else None  # noqa: E731
        mse = self.sq / self.n_px if self.n_px else None
        return {"mouth_detail_ratio": med(self.detail), "mouth_hf_ratio": med(self.hf),
                "mouth_psnr": float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10))) if mse is not None else None,
                "mouth_flicker_ratio": self.change[0] / self.change[1] if self.change[1] > 0 else None,
                "mouth_frames": len(self.detail)}
