"""Streaming mp4 writer: RGB frames in, H.264 + AAC out, marked as synthetic media.

Frames go straight into ffmpeg's stdin, so memory stays constant however long the video is.
When speech is given, the video gets exactly `frames_for_audio(duration, fps)` frames (missing
frames repeat the last one, extra frames are dropped) and the audio is padded/trimmed to that
many frames' duration, so audio and video end together. The sound is the speech's playback copy
at its own rate (Speech.for_playback: 22.05 kHz for piper, a recording's rate up to 48 kHz), AAC at
AUDIO_BITRATE (ffmpeg's AAC encoder caps mono at about 6 kb/s per kHz: 132 kb/s at 22.05 kHz,
96 kb/s at 16 kHz). The output appears only when ffmpeg has finished successfully (temp file +
rename); a crash or an exception leaves no partial mp4.

stream=True writes a fragmented mp4 (a moov without samples, written with the first fragment so
it can hold the edit lists of the encoders' start delay, then a fragment per keyframe, one
keyframe a second) straight to the output path, so a player can open it while it grows. Its
sound may run up to one AAC frame (1024 samples) past the video: the end trim cannot be known
when the moov is written. Rule on failure: an exception or a failed encode deletes the partial
file; a process killed outright leaves the fragments written so far (playable up to there) and
no side-car, which is how an unfinished clip is told from a finished one.

    with VideoWriter("out.mp4", 1280, 720, 30.0, audio=speech, metadata={...}) as out:
        for batch in frames: out.write(batch)
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from avatar.config import FPS_MAX, FPS_MIN
from avatar.errors import AvatarError
from avatar.io.files import atomic_output, temp_prefix
from avatar.types import Speech
from avatar.video.probe import ffmpeg_exe

AUDIO_BITRATE = "160k"
WATERMARK_TEXT = "SYNTHETIC"
SYNTHETIC_COMMENT = "synthetic media: AI-generated talking-head video (avatar-toolkit)"


def frames_for_audio(duration_s: float, fps: float) -> int:
    """Number of video frames whose duration best matches the audio (at least 1)."""
    return max(1, int(round(duration_s * fps)))


def fit_audio(speech: Speech, n_frames: int, fps: float) -> np.ndarray:
    """The speech's playback samples (at its playback rate) padded with silence or trimmed to
    last exactly n_frames / fps seconds."""
    return np.concatenate(list(fitted_blocks(speech, n_frames, fps, 1 << 62)) or
                          [np.zeros(0, np.float32)])


def fitted_blocks(speech: Speech, n_frames: int, fps: float, block: int = 1 << 20):
    """fit_audio's samples in blocks of at most `block` (no whole copy of a long recording)."""
    samples, rate = speech.for_playback()
    n = int(round(n_frames * rate / fps))
    for start in range(0, n, block):
        part = np.asarray(samples[start:min(start + block, n)], np.float32)
        if len(part) < min(block, n - start):
            part = np.concatenate([part, np.zeros(min(block, n - start) - len(part), np.float32)])
        yield part


def draw_watermark(frame: np.ndarray, text: str = WATERMARK_TEXT) -> np.ndarray:
    """Copy of an RGB frame with a small white label on a dark box in the bottom-right corner."""
    out = np.ascontiguousarray(frame).copy()
    x0, y0, x1, y1 = watermark_box(out.shape[1], out.shape[0], text)
    scale, thick = _font(out.shape[1], out.shape[0])
    out[y0:y1, x0:x1] = (out[y0:y1, x0:x1] * 0.25).astype(np.uint8)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = (x1 - x0 - tw) // 2
    cv2.putText(out, text, (x0 + pad, y1 - pad - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return out


def watermark_box(width: int, height: int, text: str = WATERMARK_TEXT) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) that draw_watermark darkens and writes into."""
    scale, thick = _font(width, height)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 3)
    margin = max(2, min(width, height) // 60)
    bw, bh = min(tw + 2 * pad, width), min(th + base + 2 * pad, height)
    x1, y1 = width - margin, height - margin
    return max(0, x1 - bw), max(0, y1 - bh), x1, y1


def _font(width: int, height: int) -> tuple[float, int]:
    side = min(width, height)
    return max(0.3, side / 900.0), max(1, int(round(side / 450.0)))


class VideoWriter:
    """Context manager that encodes RGB uint8 frames [H, W, 3] (or batches [B, H, W, 3]).

    width and height must be even (H.264 yuv420p). With `audio`, the frame count is fixed by the
    audio length; without it, `n_frames` may fix it (else every written frame is kept).
    `metadata` becomes mp4 tags; a `comment` marking the file as synthetic is always set.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float,
                 audio: Speech | None = None, metadata: dict | None = None,
                 watermark: bool = True, n_frames: int | None = None, crf: int = 20,
                 preset: str = "veryfast", stream: bool = False):
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise AvatarError(f"video size {width}x{height} must be even and positive; "
                              "choose an even --size")
        if not FPS_MIN <= fps <= FPS_MAX:
            raise AvatarError(f"frame rate {fps} is out of range; use --fps between {FPS_MIN:g} and {FPS_MAX:g}")
        self.path, self.width, self.height, self.fps = Path(path), width, height, float(fps)
        self.audio, self.watermark = audio, watermark
        self.metadata = {"comment": SYNTHETIC_COMMENT, **(metadata or {})}
        if audio is not None:
            n_frames = frames_for_audio(audio.duration_s, fps)
        self.n_frames = n_frames
        self.crf, self.preset, self.stream = crf, preset, stream
        self.written = 0
        self.first_frame_at: float | None = None     # perf_counter when frame 0 went to ffmpeg
        self._last: np.ndarray | None = None
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen | None = None

    # --- context manager ---------------------------------------------------------------------

    def __enter__(self) -> "VideoWriter":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as e:
                self._abort()
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
            self._stack.close()   # renames the temp file onto self.path
        else:
            self._abort()
            self._stack.__exit__(exc_type, exc, tb)
        return False

    def _start(self) -> None:
        if self.stream:
            self._tmp = self._stack.enter_context(_partial_removed(self.path))
        else:
            self._tmp = self._stack.enter_context(atomic_output(self.path, suffix=".tmp.mp4"))
        self._log = self._stack.enter_context(tempfile.TemporaryFile())
        wav = None
        if self.audio is not None:
            wav = self._stack.enter_context(_temp_wav(self.path.parent))
            _write_wav(wav, fitted_blocks(self.audio, self.n_frames, self.fps),
                       self.audio.for_playback()[1])
        cmd = self._command(wav)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log)

    def _command(self, wav: Path | None) -> list[str]:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
               "-framerate", f"{self.fps:.6f}", "-i", "-"]
        if wav is not None:
            cmd += ["-i", str(wav)]
        cmd += ["-map", "0:v:0"]
        if wav is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", AUDIO_BITRATE]
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                "-pix_fmt", "yuv420p", *self._layout()]
        for key, value in self.metadata.items():
            cmd += ["-metadata", f"{key}={value}"]
        return cmd + ["-f", "mp4", str(self._tmp)]

    def _layout(self) -> list[str]:
        """mp4 layout flags: moov first (faststart), or fragments a player reads while they come."""
        if not self.stream:
            return ["-movflags", "+faststart+use_metadata_tags"]
        return ["-g", str(max(1, int(round(self.fps)))), "-flush_packets", "1",
                "-movflags", "+frag_keyframe+delay_moov+default_base_moof+use_metadata_tags"]

    # --- writing -----------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> None:
        """Append one frame [H, W, 3] or a batch [B, H, W, 3] of RGB uint8."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [B, {self.height}, {self.width}, 3], "
                             f"got {frames.dtype} {frames.shape}")
        if self.n_frames is not None:
            frames = frames[:max(0, self.n_frames - self.written)]
        for frame in frames:
            self._send(frame)

    def _send(self, frame: np.ndarray) -> None:
        if self.watermark:
            frame = draw_watermark(frame)
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise AvatarError(f"ffmpeg stopped while writing {self.path}: {self._error_text()}; "
                              "check free disk space and the output path") from None
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
        self._last = frame
        self.written += 1

    def _finish(self) -> None:
        if self.written == 0:
            raise AvatarError(f"no frames were produced for {self.path}")
        if self.n_frames is not None:
            last = np.ascontiguousarray(self._last).tobytes()
            try:
                for _ in range(self.n_frames - self.written):   # pad: repeat the last frame
                    self._proc.stdin.write(last)
                    self.written += 1
            except BrokenPipeError:
                raise AvatarError(f"ffmpeg stopped while writing {self.path}: "
                                  f"{self._error_text()}") from None
        self._proc.stdin.close()
        code = self._proc.wait()
        if code != 0:
            raise AvatarError(f"ffmpeg failed to encode {self.path} (exit {code}): "
                              f"{self._error_text()}")

    def _abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdin and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def _error_text(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no message"


@contextlib.contextmanager
def _partial_removed(path: Path):
    """Yield `path` itself (written in place); delete it again if the block fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


@contextlib.contextmanager
def _temp_wav(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temp_prefix("audio"), suffix=".wav", dir=folder)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _write_wav(path: Path, blocks, sample_rate: int) -> None:
    """16-bit mono wav of float blocks (clipped to [-1, 1]), written block by block."""
    import soundfile as sf
    with sf.SoundFile(str(path), "w", sample_rate, 1, subtype="PCM_16") as f:
        for block in blocks:
            f.write(np.clip(block, -1.0, 1.0))
