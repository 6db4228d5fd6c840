import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.face import tracker
from avatar.face.crop import centre_jitter, raw_crop_boxes, smooth_crop_boxes
from avatar.face.tracker import RawTrack, check_track_quality, fill_gaps, finish_track, track_video
from avatar.types import N_BLENDSHAPES, N_LANDMARKS
from tests.conftest import astronaut_face_frames, write_video


def test_tracks_a_real_face_in_every_frame(face_video):
    track = track_video(face_video, progress=False)
    assert len(track) == 24 and track.fps == pytest.approx(10.0)
    assert track.found.all()
    assert track.landmarks.shape == (24, N_LANDMARKS, 3)
    assert track.blendshapes.shape == (24, N_BLENDSHAPES)
    # the face drifts right by 1.5 px of the 300-px source per frame = 1.28 px at 256 px
    centres = track.landmarks[:, :, 0].mean(1)
    assert np.polyfit(np.arange(24), centres, 1)[0] == pytest.approx(1.28, abs=0.3)
    # crop boxes are square and hold every landmark
    boxes = track.crop_boxes
    assert np.allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert (track.landmarks[:, :, 0] > boxes[:, None, 0]).all()
    assert (track.landmarks[:, :, 1] < boxes[:, None, 3]).all()


def test_second_run_hits_the_cache(face_video, monkeypatch):
    track_video(face_video, progress=False)

    def fail(*a, **k):
        raise AssertionError("tracked again despite a cached result")

    monkeypatch.setattr(tracker, "detect_frames", fail)
    again = track_video(face_video, progress=False)
    assert len(again) == 24


def test_no_face_is_a_clear_error(tmp_path):
    from skimage import data
    cat = np.stack([data.chelsea()[:256, :256]] * 12)
    video = write_video(tmp_path / "cat.mp4", cat)
    with pytest.raises(AvatarError, match="no face was found"):
        track_video(video, progress=False, cache=False)


def test_two_faces_follow_the_largest(tmp_path, capsys):
    import cv2
    big = astronaut_face_frames(6, size=256, shift=0)
    small = np.stack([cv2.resize(f, (200, 200)) for f in big])
    frames = np.zeros((6, 256, 512, 3), np.uint8)
    frames[:, :, :256] = big
    frames[:, 28:228, 300:500] = small
    track = track_video(write_video(tmp_path / "two.mp4", frames), progress=False, cache=False)
    assert track.found.all()
    assert (track.landmarks[:, :, 0].mean(1) < 256).all()  # the big face, on the left
    assert "more than one face" in capsys.readouterr().err


def test_gaps_are_interpolated_and_long_gaps_reported():
    t = 40
    lm = np.tile(np.linspace(0, 1, N_LANDMARKS * 3, dtype=np.float32), (t, 1)).reshape(t, N_LANDMARKS, 3)
    lm = lm + np.arange(t, dtype=np.float32)[:, None, None] * 10 + 100
    found = np.ones(t, bool)
    found[10:13] = False
    raw = RawTrack(np.where(found[:, None, None], lm, np.nan), np.full((t, N_BLENDSHAPES), 0.2, np.float32),
                   np.tile(np.eye(4, dtype=np.float32), (t, 1, 1)), found, np.ones(t, np.int32), 10.0, (640, 480))
    track = finish_track(raw)
    assert np.allclose(track.landmarks[11], lm[11], atol=1e-3)   # linear motion is restored exactly
    assert check_track_quality(track, "clip").longest_gap_s == pytest.approx(0.3)
    found[15:30] = False
    long_gap = finish_track(RawTrack(raw.landmarks, raw.blendshapes, raw.pose, found, raw.n_faces, 10.0, (640, 480)))
    with pytest.raises(AvatarError, match="longest gap 1.5 s"):
        check_track_quality(long_gap, "clip")


def test_fill_gaps_holds_edges():
    v = np.array([[np.nan], [1.0], [3.0], [np.nan]], np.float32)
    out = fill_gaps(v, ~np.isnan(v[:, 0]))
    assert out[:, 0].tolist() == [1.0, 1.0, 3.0, 3.0]


def test_smoothing_reduces_crop_jitter():
    rng = np.random.default_rng(0)
    t = 90
    base = rng.uniform(0, 100, (1, N_LANDMARKS, 3)).astype(np.float32)
    path = np.linspace(0, 30, t)[:, None, None]          # slow drift right
    noise = rng.normal(0, 2.0, (t, 1, 3))                 # per-frame tracking noise
    lm = (base + path * [1, 0, 0] + noise).astype(np.float32)
    raw = centre_jitter(raw_crop_boxes(lm))
    smooth = centre_jitter(smooth_crop_boxes(lm, 30.0))
    assert smooth < raw / 3
    assert smooth == pytest.approx(30 / (t - 1), rel=0.25)   # the real motion is kept
