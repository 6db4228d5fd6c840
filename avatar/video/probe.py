"""Find out what a media file holds, using the static ffmpeg that imageio-ffmpeg ships.

There is no ffprobe in that package, so we parse `ffmpeg -i FILE` (stream lines, duration,
display-matrix rotation). Every failure becomes one AvatarError line.
"""
from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Iterator

from avatar.config import FPS_MAX
from avatar.errors import AvatarError
from avatar.types import VideoInfo


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r"(?:^|[ ,])(\d{2,6})x(\d{2,6})(?:[ ,\[]|$)")
_FPS = re.compile(r"(\d+(?:\.\d+)?)\s*(fps|tbr)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.M)


def check_input_file(path: str | Path, what: str = "video") -> Path:
    path = Path(path)
    if not path.exists():
        raise AvatarError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise AvatarError(f"{what} {path} is not a file")
    if path.stat().st_size == 0:
        raise AvatarError(f"{what} file {path} is empty (0 bytes)")
    return path


class FfmpegOutput:
    """An ffmpeg command writing to stdout ('-'), read in blocks of `block_bytes`.

    Iterating starts ffmpeg and yields blocks (the last one may be shorter); when iteration ends,
    also early, ffmpeg is stopped and `returncode` and `stderr` (stripped text) are set.
    """

    def __init__(self, cmd: list[str], block_bytes: int = 1 << 20):
        self.cmd, self.block_bytes = cmd, block_bytes
        self.returncode: int | None = None
        self.stderr = ""

    def __iter__(self) -> Iterator[bytes]:
        proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=2 * self.block_bytes)
        try:
            while block := proc.stdout.read(self.block_bytes):
                yield block
        finally:
            proc.stdout.close()
            self.stderr = proc.stderr.read().decode("utf-8", "replace").strip()
            proc.stderr.close()
            self.returncode = proc.wait()

    def last_error(self) -> str:
        """ffmpeg's last message line, or its exit code when it said nothing."""
        lines = self.stderr.splitlines()
        return lines[-1] if lines else f"ffmpeg exit code {self.returncode}"


def ffmpeg_header(path: str | Path) -> str:
    """stderr of `ffmpeg -i path` (ffmpeg exits 1 there because no output is given)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, errors="replace", timeout=60)
    return proc.stderr


def probe_video(path: str | Path) -> VideoInfo:
    """Size, fps, duration, rotation and audio presence of a video file."""
    path = check_input_file(path)
    header = ffmpeg_header(path)
    stream = _VIDEO.search(header)
    if stream is None:
        raise AvatarError(f"{path} is not a readable video (ffmpeg finds no video stream); "
                          "give an mp4/mov/mkv/webm file with a video track")
    desc = stream.group(1)
    size = _SIZE.search(desc)
    if size is None:
        raise AvatarError(f"{path}: cannot read the frame size of its video stream")
    w, h = int(size.group(1)), int(size.group(2))
    fps = _stream_fps(desc)
    if not fps or fps <= 0 or fps > FPS_MAX:
        raise AvatarError(f"{path}: cannot read a sane frame rate ({fps}); re-encode it, "
                          "e.g. ffmpeg -i in -r 30 out.mp4")
    duration = header_duration(header)
    rotation = _rotation(header)
    if rotation % 180:
        w, h = h, w
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", header) is not None
    n_frames = max(int(round(duration * fps)), 0)
    return VideoInfo(width=w, height=h, fps=fps, n_frames=n_frames, duration_s=duration,
                     rotation=rotation, has_audio=has_audio, source_width=int(size.group(1)),
                     source_height=int(size.group(2)))


def has_audio_stream(path: str | Path) -> bool:
    return re.search(r"Stream #\d+:\d+.*?: Audio:", ffmpeg_header(check_input_file(path, "media"))) is not None


def _stream_fps(desc: str) -> float:
    found = {unit: float(v) for v, unit in _FPS.findall(desc)}
    return found.get("fps") or found.get("tbr") or 0.0


def header_duration(header: str) -> float:
    """Duration in seconds from an ffmpeg header (0.0 when it names none)."""
    m = _DURATION.search(header)
    if not m:
        return 0.0
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), float(m.group(3))
    return hours * 3600 + minutes * 60 + seconds


def _rotation(header: str) -> int:
    m = _ROTATION.search(header)
    if m:
        return int(round(-float(m.group(1)))) % 360
    m = _ROTATE_TAG.search(header)
    return int(m.group(1)) % 360 if m else 0
