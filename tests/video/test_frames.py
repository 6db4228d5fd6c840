"""Ping-pong frame order and random access to target frames."""
import numpy as np

from avatar.video.frames import TargetFrames, pingpong_indices
from avatar.video.writer import VideoWriter


def test_pingpong_never_jumps():
    idx = pingpong_indices(3, 40, 6)
    assert idx[:8].tolist() == [3, 4, 5, 4, 3, 2, 1, 0]
    assert idx.min() == 0 and idx.max() == 5
    assert np.abs(np.diff(idx)).max() == 1
    assert pingpong_indices(0, 5, 1).tolist() == [0] * 5
    assert pingpong_indices(0, 4, 10).tolist() == [0, 1, 2, 3]


def _numbered_video(path, n=6, w=32, h=24):
    with VideoWriter(path, w, h, 10.0, watermark=False, crf=0) as out:
        for i in range(n):
            out.write(np.full((h, w, 3), 20 + 40 * i, np.uint8))
    return path


def test_target_frames_pingpong_and_scaling(tmp_path):
    video = _numbered_video(tmp_path / "t.mp4")
    idx = pingpong_indices(2, 12, 6)                      # 2 3 4 5 4 3 2 1 0 1 2 3
    with TargetFrames(video, (16, 12), idx) as frames:
        got = np.concatenate([frames.get(idx[i:i + 5]) for i in range(0, len(idx), 5)])
    assert got.shape == (12, 12, 16, 3)
    levels = got.reshape(12, -1).mean(1)
    assert np.abs(levels - (20 + 40 * idx)).max() < 6    # each output frame is the right source


def test_target_frames_forward_only_has_no_spill(tmp_path):
    video = _numbered_video(tmp_path / "t.mp4")
    with TargetFrames(video, (32, 24), np.arange(4)) as frames:
        assert not frames._spill
        got = frames.get(np.arange(4))
        assert frames.decoded == 4                        # decoding stops where it is needed
    assert np.abs(got.reshape(4, -1).mean(1) - [20, 60, 100, 140]).max() < 6


def test_prefetched_frames_are_the_same_frames(tmp_path):
    video = _numbered_video(tmp_path / "t.mp4")
    idx = pingpong_indices(3, 10, 6)                      # 3 4 5 4 3 2 1 0 1 2
    with TargetFrames(video, (32, 24), idx) as plain:
        want = np.concatenate([plain.get(idx[:2]), plain.get(idx[2:])])
    with TargetFrames(video, (32, 24), idx) as frames:
        frames.prefetch(idx[:2])
        got = np.concatenate([frames.get(idx[:2]), frames.get(idx[2:])])
    assert np.array_equal(got, want)
    with TargetFrames(video, (32, 24), idx) as frames:    # asked for other frames: decoded anew
        frames.prefetch(idx[:2])
        assert np.array_equal(frames.get(idx[:4]), want[:4])
    frames = TargetFrames(video, (32, 24), idx)
    frames.prefetch(idx[:3])
    frames.close()                                        # closing waits for the prefetch thread
    assert frames._ahead is None
