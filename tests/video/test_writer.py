"""VideoWriter: exact A/V length, watermark, metadata tag, atomic output."""
import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.types import Speech
from avatar.video.check import check_media, read_tags
from avatar.video.reader import VideoReader
from avatar.video.writer import (SYNTHETIC_COMMENT, VideoWriter, draw_watermark, frames_for_audio,
                                 watermark_box)


def _speech(seconds, sr=16000):
    rng = np.random.default_rng(0)
    return Speech(rng.uniform(-0.2, 0.2, int(seconds * sr)).astype(np.float32), sr)


@pytest.mark.parametrize("seconds,fps,n_written", [(1.234, 30.0, 10), (1.0, 29.97, 80)])
def test_length_matches_audio(tmp_path, seconds, fps, n_written):
    speech = _speech(seconds)
    out = tmp_path / "a.mp4"
    with VideoWriter(out, 64, 48, fps, audio=speech) as w:
        w.write(np.full((n_written, 48, 64, 3), 128, np.uint8))
    expected = frames_for_audio(seconds, fps)
    check = check_media(out, 16000)
    assert check.errors == ""
    assert check.n_frames == expected                    # padded or trimmed to the audio
    assert check.audio_samples == round(expected * 16000 / fps)   # audio ends with the video
    assert abs(check.audio_s - seconds) <= 0.5 / fps + 1e-6


def test_watermark_and_metadata(tmp_path):
    out = tmp_path / "w.mp4"
    with VideoWriter(out, 320, 240, 25.0, metadata={"person": "p1"}, n_frames=3) as w:
        w.write(np.full((240, 320, 3), 200, np.uint8))
    frames = VideoReader(out).read_all()
    assert len(frames) == 3
    x0, y0, x1, y1 = watermark_box(320, 240)
    box = frames[0, y0:y1, x0:x1].astype(int)
    assert box.min() < 90 and box.max() > 230             # dark backing box with white text
    assert abs(frames[0, :y0 - 4].astype(int) - 200).max() < 8   # rest of frame untouched
    tags = read_tags(out)
    assert tags["comment"] == SYNTHETIC_COMMENT and tags["person"] == "p1"


def test_no_watermark_leaves_pixels(tmp_path):
    out = tmp_path / "n.mp4"
    with VideoWriter(out, 64, 64, 25.0, watermark=False) as w:
        w.write(np.full((2, 64, 64, 3), 200, np.uint8))
    frames = VideoReader(out).read_all()
    assert abs(frames.astype(int) - 200).max() < 8
    assert "comment" in read_tags(out)                     # the tag stays even without the label


def test_draw_watermark_does_not_modify_input():
    frame = np.zeros((100, 200, 3), np.uint8)
    marked = draw_watermark(frame)
    assert frame.max() == 0 and marked.max() > 200


def test_exception_leaves_no_output(tmp_path):
    out = tmp_path / "bad.mp4"
    out.write_bytes(b"previous good output")
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 64, 25.0, audio=_speech(1.0)) as w:
            w.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("renderer crashed")
    assert out.read_bytes() == b"previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]   # no temp files left


def test_odd_size_rejected(tmp_path):
    with pytest.raises(AvatarError, match="even"):
        VideoWriter(tmp_path / "x.mp4", 63, 64, 25.0)


def test_wrong_frame_shape(tmp_path):
    with pytest.raises(ValueError):
        with VideoWriter(tmp_path / "x.mp4", 64, 64, 25.0) as w:
            w.write(np.zeros((32, 64, 3), np.uint8))
    assert not (tmp_path / "x.mp4").exists()
