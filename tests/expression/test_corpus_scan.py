"""The corpus loader picks videos by what ffmpeg finds in them, not by their suffix."""
from __future__ import annotations

import shutil

import numpy as np

from avatar.expression.data import find_clips
from tests.conftest import write_video


def test_videos_found_by_content_and_others_reported(tmp_path):
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    (tmp_path / "grid_a").mkdir()
    (tmp_path / "vox_b").mkdir()
    write_video(tmp_path / "vox_b" / "clip.mp4", frames)
    shutil.copy(tmp_path / "vox_b" / "clip.mp4", tmp_path / "grid_a" / "s1.mpg")     # any suffix
    shutil.copy(tmp_path / "vox_b" / "clip.mp4", tmp_path / "grid_a" / "noext")
    (tmp_path / "grid_a" / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "grid_a" / "notes.txt").write_text("transcript")
    skipped = []
    found = find_clips([tmp_path], skipped)
    assert sorted((p.name, s) for p, s in found) == [("clip.mp4", "vox_b"), ("noext", "grid_a"),
                                                      ("s1.mpg", "grid_a")]
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"broken.mp4", "notes.txt"}
    assert "ffmpeg" in reasons["broken.mp4"]
