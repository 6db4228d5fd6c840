"""Decode a finished media file completely and report what is really in it.

Used to verify outputs (tests, batch resume, benchmarks): an mp4 counts as valid only if every
video frame and every audio sample decodes without an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from avatar.video.probe import (FfmpegOutput, check_input_file, ffmpeg_exe, ffmpeg_header,
                                has_audio_stream)

_TAG = re.compile(r"^\s{4,}(\w+)\s*:\s(.*)$", re.M)


@dataclass(frozen=True)
class MediaCheck:
    n_frames: int          # decoded video frames
    audio_samples: int     # decoded audio samples (mono) at `sample_rate`
    sample_rate: int
    errors: str            # decoder messages; empty when the file decoded cleanly

    @property
    def audio_s(self) -> float:
        return self.audio_samples / float(self.sample_rate)


def check_media(path: str | Path, sample_rate: int = 16000) -> MediaCheck:
    """Decode all video frames (counted at 16x16 gray) and all audio (mono s16 at sample_rate)."""
    path = check_input_file(path, "media")
    video = _decode(path, ["-map", "0:v:0", "-vf", "scale=16:16", "-pix_fmt", "gray",
                           "-f", "rawvideo", "-"])
    audio = (0, "")
    if has_audio_stream(path):
        audio = _decode(path, ["-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
                               "-f", "s16le", "-"])
    errors = "\n".join(e for e in (video[1], audio[1]) if e)
    return MediaCheck(video[0] // 256, audio[0] // 2, sample_rate, errors)


def _decode(path: Path, output_args: list[str]) -> tuple[int, str]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path)] + output_args
    out = FfmpegOutput(cmd)
    total = sum(len(block) for block in out)
    err = out.stderr or (f"ffmpeg exit code {out.returncode}" if out.returncode else "")
    return total, err


def read_tags(path: str | Path) -> dict[str, str]:
    """Container metadata tags (e.g. 'comment') of a media file, lower-cased keys."""
    path = check_input_file(path, "media")
    header = ffmpeg_header(path).split("Duration:")[0]
    if "Input #0" not in header:
        raise AvatarError(f"{path} is not a readable media file")
    return {k.lower(): v.strip() for k, v in _TAG.findall(header)}
