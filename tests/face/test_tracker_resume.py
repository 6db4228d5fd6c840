"""Issue 14 case 4: tracking killed half way resumes at its last finished chunk."""
import numpy as np
import pytest

from avatar.face import tracker


class Killed(Exception):
    pass


def _count_frames(monkeypatch, kill_after=None):
    """Count landmarker calls (frames tracked); raise Killed after `kill_after` of them."""
    calls = {"n": 0}
    real = tracker._landmarker

    def landmarker(num_faces):
        mp, lm = real(num_faces)
        detect = lm.detect_for_video

        class Wrapped:
            def __enter__(self):
                lm.__enter__()
                return self

            def __exit__(self, *exc):
                return lm.__exit__(*exc)

            def detect_for_video(self, image, ts):
                if kill_after is not None and calls["n"] >= kill_after:
                    raise Killed()
                calls["n"] += 1
                return detect(image, ts)
        return mp, Wrapped()

    monkeypatch.setattr(tracker, "_landmarker", landmarker)
    return calls


def test_killed_tracking_resumes_from_the_last_chunk(face_video, monkeypatch, tmp_path):
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tracker, "CHUNK_FRAMES", 8, raising=False)
    with monkeypatch.context() as m:
        _count_frames(m, kill_after=13)               # killed in the second chunk
        with pytest.raises(Killed):
            tracker.track_video(face_video, progress=False)
    calls = _count_frames(monkeypatch)
    resumed = tracker.track_video(face_video, progress=False)
    assert calls["n"] == 24 - 8                        # frames 8..23: one chunk kept, 5 frames lost
    assert not list((tmp_path / "cache").rglob("*.parts"))   # chunks dropped once complete
    full = tracker.track_video(face_video, progress=False, cache=False)
    np.testing.assert_allclose(resumed.landmarks, full.landmarks, atol=1e-4)
    assert (resumed.found == full.found).all()
