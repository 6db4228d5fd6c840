"""Streaming frame reader: decodes with ffmpeg into RGB uint8 frames one at a time.

Never holds the whole video in memory. Rotation from the container is applied by ffmpeg;
variable frame rate input is resampled to a constant rate (the stream's average fps); frames
larger than `max_side` are downscaled (4K input tracks as well as 1080p and four times faster).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from avatar.errors import AvatarError
from avatar.types import VideoInfo
from avatar.video.probe import FfmpegOutput, ffmpeg_exe, probe_video


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Even-sized (width, height) with the longest side at most max_side."""
    if max_side and max(width, height) > max_side:
        s = max_side / max(width, height)
        width, height = int(round(width * s / 2)) * 2, int(round(height * s / 2)) * 2
    return width, height


class VideoReader:
    """Iterate RGB frames [H, W, 3] uint8 of a video; `info` describes them.

        reader = VideoReader("in.mp4", max_side=1280)
        for i, frame in enumerate(reader): ...
    """

    def __init__(self, path: str | Path, max_side: int | None = None, start_frame: int = 0,
                 max_frames: int | None = None):
        self.path = Path(path)
        self.max_side = max_side
        info = probe_video(self.path)
        w, h = scaled_size(info.width, info.height, max_side)
        self.info: VideoInfo = replace(info, width=w, height=h)
        self.start_frame = max(int(start_frame), 0)
        self.max_frames = max_frames

    def _command(self) -> list[str]:
        info = self.info
        filters = [f"fps={info.fps:.6f}"]
        if (info.width, info.height) != _rotated_source(info):
            filters.append(f"scale={info.width}:{info.height}:flags=area")
        if self.start_frame:
            filters.append(f"select=gte(n\\,{self.start_frame})")
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(self.path),
               "-map", "0:v:0", "-vf", ",".join(filters), "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24"]
        if self.max_frames is not None:
            cmd += ["-frames:v", str(int(self.max_frames))]
        return cmd + ["-"]

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.info.width, self.info.height
        nbytes = w * h * 3
        out = FfmpegOutput(self._command(), nbytes)
        n = 0
        with contextlib.closing(iter(out)) as blocks:
            for buf in blocks:
                if len(buf) < nbytes:
                    break
                n += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        if n == 0:
            raise AvatarError(f"{self.path}: no frame could be decoded ({out.last_error()}); "
                              "the file is damaged or not a video")

    def read_all(self) -> np.ndarray:
        """All frames as one [T, H, W, 3] array: only for short clips."""
        return np.stack(list(self))


def _rotated_source(info: VideoInfo) -> tuple[int, int]:
    if info.rotation % 180:
        return info.source_height, info.source_width
    return info.source_width, info.source_height
