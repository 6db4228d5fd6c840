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
