import subprocess

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.types import Speech
from avatar.video.check import check_media
from avatar.video.probe import ffmpeg_exe, probe_video
from avatar.video.reader import VideoReader, scaled_size
from tests.conftest import write_video


def ramp_frames(n=15, h=48, w=64):
    """Frame i is a flat grey of level 10 + 15 i (survives H.264 well enough to identify)."""
    return np.stack([np.full((h, w, 3), 10 + 15 * i, np.uint8) for i in range(n)])


def test_round_trip_frames_fps_and_audio(tmp_path):
    audio = Speech(np.sin(np.linspace(0, 900, 24000)).astype(np.float32) * 0.3, 16000)  # 1.5 s
    path = write_video(tmp_path / "a.mp4", ramp_frames(15), fps=10.0, audio=audio)
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 48, 10.0, True)
    frames = VideoReader(path).read_all()
    assert frames.shape == (15, 48, 64, 3)
    assert np.allclose(frames[:, 20, 30, 0], 10 + 15 * np.arange(15), atol=3)
    assert check_media(path).audio_s == pytest.approx(1.5, abs=0.03)


def test_start_frame_max_frames_and_downscale(tmp_path):
    path = write_video(tmp_path / "b.mp4", ramp_frames(15, 96, 128), fps=10.0)
    reader = VideoReader(path, max_side=64, start_frame=5, max_frames=4)
    frames = reader.read_all()
    assert frames.shape == (4, 48, 64, 3) and (reader.info.width, reader.info.height) == (64, 48)
    assert np.allclose(frames[:, 10, 10, 0], 10 + 15 * np.arange(5, 9), atol=3)


def test_scaled_size_keeps_aspect_and_even():
    assert scaled_size(3840, 2160, 1280) == (1280, 720)
    assert scaled_size(1080, 1920, 1280) == (720, 1280)
    assert scaled_size(640, 480, 1280) == (640, 480)


def _ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def test_rotated_video_is_read_upright(tmp_path):
    src = tmp_path / "src.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x32:rate=10:duration=1", "-pix_fmt", "yuv420p", str(src))
    rotated = tmp_path / "rot.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated))
    info = probe_video(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (32, 64)
    assert VideoReader(rotated).read_all().shape == (10, 64, 32, 3)


def test_variable_frame_rate_becomes_constant(tmp_path):
    vfr = tmp_path / "vfr.mkv"
    # 20 frames whose timestamps jump: 0..9 at 10 fps, then 10..19 at 5 fps
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2",
            "-vf", "setpts='if(lt(N,10),N/10,1+(N-10)/5)/TB'", "-fps_mode", "vfr", str(vfr))
    reader = VideoReader(vfr)
    frames = reader.read_all()
    assert abs(len(frames) - reader.info.duration_s * reader.info.fps) <= 2


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not a video at all" * 100, "not a readable video"),
])
def test_bad_files_are_clear_errors(tmp_path, content, message):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(AvatarError, match=message):
        VideoReader(bad)


def test_missing_file(tmp_path):
    with pytest.raises(AvatarError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")


def test_truncated_video_reports_damage(tmp_path):
    good = write_video(tmp_path / "g.mp4", ramp_frames(15), fps=10.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:600])
    with pytest.raises(AvatarError):
        VideoReader(cut).read_all()


def test_start_frame_matches_a_full_decode_on_ntsc_b_frame_video(tmp_path):
    """start_frame must give exactly frames k, k+1, ... (an earlier version repeated frame k
    on some real 29.97 fps clips because ffmpeg re-timed the selected frames)."""
    src = tmp_path / "bf.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=30000/1001:duration=2", "-c:v", "libx264",
            "-bf", "3", "-pix_fmt", "yuv420p", str(src))
    full = VideoReader(src).read_all()
    part = VideoReader(src, start_frame=40, max_frames=5).read_all()
    assert np.array_equal(part, full[40:45])
