"""Random access to the frames of a (short) target video, in constant memory.

A generated clip follows the target video's frames; when the speech is longer than what is left
of the target, the frame order ping-pongs (forward, backward, forward, ...) so that the head never
jumps. Frames are decoded once, in order; when the order will turn back, decoded frames are
spilled to a temp file and read back with pread, so RAM holds only the frames of one batch.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

import numpy as np

from avatar.errors import AvatarError
from avatar.background import in_background
from avatar.video.reader import VideoReader


def pingpong_indices(start: int, count: int, n_frames: int) -> np.ndarray:
    """`count` frame indices that walk from `start` to the end, back to 0, forward again, ...

    Consecutive indices always differ by at most one, so the background never jumps.
    """
    if n_frames <= 0:
        raise ValueError("n_frames must be positive")
    if n_frames == 1:
        return np.zeros(count, np.int64)
    period = 2 * (n_frames - 1)
    k = (np.arange(count, dtype=np.int64) + int(start)) % period
    return np.where(k < n_frames, k, period - k)


class TargetFrames:
    """Frames of `path`, decoded at (width, height) = `size` (even), fetched by index.

        frames = TargetFrames("target.mp4", (1280, 720), needed=indices)
        batch = frames.get(indices[0:16])      # [16, 720, 1280, 3] uint8
        frames.close()

    Indices must be requested in the order of `needed` (the writer's order); decoding runs ahead
    only as far as the largest index asked for. `prefetch(indices)` decodes the first ones in a
    background thread while the caller does other work (say: while the speech features run).
    """

    def __init__(self, path: str | Path, size: tuple[int, int], needed: np.ndarray):
        self.path = Path(path)
        self.width, self.height = size
        self.frame_bytes = self.width * self.height * 3
        reader = VideoReader(self.path)
        if (reader.info.width, reader.info.height) != (self.width, self.height):
            reader = _scaled_reader(self.path, size)
        self._frames: Iterator[np.ndarray] = iter(reader)
        needed = np.asarray(needed, np.int64)
        self.last_needed = int(needed.max()) if len(needed) else 0
        # Spill only if some frame is needed again after a later one (ping-pong or still).
        self._spill = bool(len(needed) > 1 and (np.diff(needed) <= 0).any())
        self._fd: int | None = None
        if self._spill:
            fd, name = tempfile.mkstemp(prefix="avatar-frames-", suffix=".rgb")
            os.unlink(name)                   # anonymous: vanishes when closed or on a crash
            self._fd = fd
        self.decoded = 0
        self._current: tuple[int, np.ndarray] | None = None
        self._ahead: tuple[np.ndarray, Future] | None = None

    def prefetch(self, indices: np.ndarray) -> None:
        """Start decoding `indices` (the next ones the caller will get) in a background thread;
        the get() of the same indices returns them."""
        indices = np.array(indices, np.int64)
        self._wait_ahead()
        self._ahead = (indices, in_background(self._decode, indices, name="avatar-prefetch"))

    def _wait_ahead(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The prefetched (indices, frames), after its thread is done; None if none."""
        if self._ahead is None:
            return None
        indices, future = self._ahead
        self._ahead = None
        return indices, future.result()

    def get(self, indices: np.ndarray) -> np.ndarray:
        ahead = self._wait_ahead()
        if ahead is not None and np.array_equal(ahead[0], indices):
            return ahead[1]
        return self._decode(indices)

    def _decode(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), self.height, self.width, 3), np.uint8)
        for j, index in enumerate(indices):
            out[j] = self._frame(int(index))
        return out

    def _frame(self, index: int) -> np.ndarray:
        while self.decoded <= index:
            self._decode_next()
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        if not self._spill:
            raise RuntimeError(f"frame {index} requested out of order without spilling")
        buf = os.pread(self._fd, self.frame_bytes, index * self.frame_bytes)
        return np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)

    def _decode_next(self) -> None:
        try:
            frame = next(self._frames)
        except StopIteration:
            raise AvatarError(f"target video {self.path} ended after {self.decoded} frames, but its "
                              f"track has more; re-create the person (train-person)") from None
        if self._spill:
            os.pwrite(self._fd, frame.tobytes(), self.decoded * self.frame_bytes)
        self._current = (self.decoded, frame)
        self.decoded += 1
        if self.decoded > self.last_needed:
            self._close_reader()                  # all needed frames are in: let ffmpeg go

    def _close_reader(self) -> None:
        close = getattr(self._frames, "close", None)
        if close:
            close()

    def close(self) -> None:
        try:
            self._wait_ahead()
        except Exception:                         # noqa: BLE001 - closing: the get() would raise it
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._close_reader()

    def __enter__(self) -> "TargetFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ScaledReader(VideoReader):
    """VideoReader that scales to an exact (width, height)."""

    def __init__(self, path: Path, size: tuple[int, int]):
        super().__init__(path)
        from dataclasses import replace
        self.info = replace(self.info, width=size[0], height=size[1])


def _scaled_reader(path: Path, size: tuple[int, int]) -> VideoReader:
    return _ScaledReader(path, size)
