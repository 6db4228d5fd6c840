"""Shared test helpers: tiny synthetic videos and faces (no ../shared data needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session tracks into its own cache, never the user's."""
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path_factory.getbasetemp() / "avatar-cache"))


def write_video(path: Path, frames, fps: float = 10.0, audio=None) -> Path:
    """Encode RGB frames [T, H, W, 3] uint8 into an mp4 (no watermark)."""
    from avatar.video.writer import VideoWriter
    frames = np.asarray(frames)
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, audio=audio, watermark=False,
                     crf=12) as out:
        out.write(frames)
    return path


def astronaut_face_frames(n: int = 24, size: int = 256, shift: float = 1.5) -> np.ndarray:
    """n frames of scikit-image's astronaut photo (a real face), drifting slowly to the right."""
    import cv2
    from skimage import data

    img = data.astronaut()[:300, 60:360]          # head and shoulders
    frames = []
    for i in range(n):
        m = np.float32([[1, 0, i * shift], [0, 1, 0]])
        moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    """2.4 s, 10 fps, 256x256 video of a real face (scikit-image's astronaut)."""
    return write_video(tmp_path_factory.mktemp("face") / "face.mp4", astronaut_face_frames(24))
