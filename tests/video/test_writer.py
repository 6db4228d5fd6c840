"""VideoWriter: exact A/V length, the speech's own rate, watermark, metadata tag, atomic output,
fragmented mp4 for --stream."""
import re
import time

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.types import Speech
from avatar.video.check import check_media, read_tags
from avatar.video.probe import ffmpeg_header
from avatar.video.reader import VideoReader
from avatar.video.writer import (SYNTHETIC_COMMENT, VideoWriter, draw_watermark, frames_for_audio,
                                 watermark_box)


def audio_stream(path) -> tuple[int, int]:
    """(sample rate in Hz, bit rate in kb/s) of the first audio stream, from ffmpeg's header."""
    line = next(l for l in ffmpeg_header(path).splitlines() if "Audio:" in l)
    rate = int(re.search(r"(\d+) Hz", line).group(1))
    kbps = int(re.search(r"(\d+) kb/s", line).group(1))
    return rate, kbps


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


def _noise_speech(seconds, rate, seed=1):
    """16 kHz samples plus a playback copy at `rate`: white noise (every AAC band busy)."""
    rng = np.random.default_rng(seed)
    return Speech(rng.uniform(-0.3, 0.3, int(seconds * 16000)).astype(np.float32), 16000,
                  playback=rng.uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32),
                  playback_rate=rate)


@pytest.mark.parametrize("rate", [22050, 44100])
def test_sound_keeps_the_playback_rate(tmp_path, rate):
    out = tmp_path / "r.mp4"
    with VideoWriter(out, 64, 48, 25.0, audio=_noise_speech(1.37, rate)) as w:
        w.write(np.full((5, 48, 64, 3), 90, np.uint8))
    stored, kbps = audio_stream(out)
    assert stored == rate
    assert kbps >= (150 if rate == 44100 else 95)       # ffmpeg's AAC gives mono 22.05 kHz ~100 at most
    check = check_media(out, rate)
    n = frames_for_audio(1.37, 25.0)
    assert check.errors == "" and check.n_frames == n
    assert check.audio_samples == round(n * rate / 25.0)     # as long as the video


def test_stream_writes_fragments_in_place(tmp_path):
    """stream=True: a fragmented mp4 at the output path while frames come, complete at the end."""
    out = tmp_path / "s.mp4"
    sizes = []
    rng = np.random.default_rng(0)
    with VideoWriter(out, 64, 48, 10.0, audio=_speech(6.0), stream=True) as w:
        for i in range(6):
            w.write(rng.integers(0, 256, (10, 48, 64, 3), dtype=np.uint8))
            sizes.append(_size_after_growth(out, sizes[-1] if i > 2 else 500) if i >= 2 else 0)
    data = out.read_bytes()
    assert data[4:8] == b"ftyp" and b"mvex" in data[:4096] and data.count(b"moof") >= 5
    assert 500 < sizes[2] < sizes[3] < sizes[4] < sizes[5] < len(data)   # fragments while writing
    check = check_media(out, 16000)
    assert check.errors == "" and check.n_frames == 60
    assert 0 <= check.audio_samples - 96000 < 1024          # at most one AAC frame past the video
    assert read_tags(out)["comment"] == SYNTHETIC_COMMENT
    assert w.first_frame_at is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]


def _size_after_growth(path, than: int, timeout_s: float = 20.0) -> int:
    """The file's size once it is larger than `than` (ffmpeg encodes and flushes in the
    background), or its size after timeout_s."""
    end = time.monotonic() + timeout_s
    size = 0
    while time.monotonic() < end:
        size = path.stat().st_size if path.exists() else 0
        if size > than:
            break
        time.sleep(0.05)
    return size


def test_stream_failure_deletes_the_partial_file(tmp_path):
    out = tmp_path / "p.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 48, 10.0, stream=True) as w:
            w.write(np.zeros((12, 48, 64, 3), np.uint8))
            raise RuntimeError("renderer crashed")
    assert list(tmp_path.iterdir()) == []


def test_fitted_blocks_pad_and_trim_like_the_whole():
    from avatar.video.writer import fit_audio, fitted_blocks
    speech = _noise_speech(1.0, 22050)
    for n_frames in (20, 25, 31):                       # trim, exact, pad (25 fps)
        whole = fit_audio(speech, n_frames, 25.0)
        assert len(whole) == round(n_frames * 22050 / 25.0)
        assert np.array_equal(np.concatenate(list(fitted_blocks(speech, n_frames, 25.0, 1000))), whole)
        assert np.array_equal(whole[:min(len(whole), 22050)], speech.playback[:len(whole)])
