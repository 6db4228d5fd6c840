"""avatar/video/timeline.py: which target frame each output frame shows, and the output size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar.config import SaySettings
from avatar.errors import AvatarError
from avatar.types import FaceTrack, HeadPoses, Target
from avatar.video.timeline import check_start_frame, frame_indices, output_geometry


def target(n=5, fps=10.0, size=(641, 360)):
    track = FaceTrack(np.zeros((n, 478, 3), np.float32), np.zeros((n, 52), np.float32),
                      np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), np.zeros((n, 4), np.float32),
                      np.ones(n, bool), fps, size)
    poses = HeadPoses(np.ones(n), np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)), fps)
    return Target(Path("t.mp4"), track, poses)


def test_frames_ping_pong_from_the_start_frame():
    idx = frame_indices(target(), SaySettings(start_frame=3), 10.0, 9)
    assert idx.tolist() == [3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert frame_indices(target(), SaySettings(head_motion="still", start_frame=2), 10.0, 4).tolist() == [2] * 4


def test_another_frame_rate_steps_through_the_target():
    idx = frame_indices(target(fps=30.0), SaySettings(), 10.0, 4)
    assert idx.tolist() == [0, 3, 2, 1]                      # 3 target frames per output frame
    assert np.abs(np.diff(frame_indices(target(n=50, fps=30.0), SaySettings(), 25.0, 200))).max() <= 2


def test_start_frame_past_the_end_is_refused():
    with pytest.raises(AvatarError, match="past the end"):
        check_start_frame(target(), SaySettings(start_frame=5))
    check_start_frame(target(), SaySettings(start_frame=4))


def test_output_sizes_are_even():
    assert output_geometry(target(), SaySettings()) == (640, 360, 640 / 641)
    w, h, scale = output_geometry(target(size=(1280, 720)), SaySettings(size=101))
    assert (w, h) == (100, 56) and abs(scale - 100 / 1280) < 1e-9         # even, near 101 wide
