"""Which target frame each output frame shows, and the output's size."""
from __future__ import annotations

import numpy as np

from avatar.config import SaySettings
from avatar.errors import AvatarError
from avatar.types import Target
from avatar.video.frames import pingpong_indices


def output_geometry(target: Target, settings: SaySettings) -> tuple[int, int, float]:
    """(width, height, scale from track pixels to output pixels), sizes even."""
    w, h = target.track.frame_size
    if settings.size is None:
        out_w, out_h = w - w % 2, h - h % 2
    else:
        s = int(settings.size) / max(w, h)
        out_w, out_h = max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)
    return out_w, out_h, out_w / w


def check_start_frame(target: Target, settings: SaySettings) -> None:
    if settings.start_frame >= len(target):
        raise AvatarError(f"start frame {settings.start_frame} is past the end of the target video "
                          f"({len(target)} frames); use 0 to {len(target) - 1}")


def frame_indices(target: Target, settings: SaySettings, fps: float, n_frames: int) -> np.ndarray:
    """Which target frame each output frame uses: ping-pong from start_frame, or one frame."""
    check_start_frame(target, settings)
    n_target = len(target)
    if settings.head_motion == "still":
        return np.full(n_frames, settings.start_frame, np.int64)
    step = target.track.fps / fps
    if abs(step - 1.0) < 1e-3:
        return pingpong_indices(settings.start_frame, n_frames, n_target)
    positions = np.floor(settings.start_frame + np.arange(n_frames) * step).astype(np.int64)
    period = max(2 * (n_target - 1), 1)
    k = positions % period
    return np.where(k < n_target, k, period - k) if n_target > 1 else np.zeros(n_frames, np.int64)
