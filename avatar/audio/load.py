"""Load any audio the user has (wav, mp3, m4a, flac, the audio track of a video) as Speech.

ffmpeg (the static one from imageio-ffmpeg) decodes, downmixes to mono and resamples to
SAMPLE_RATE; we read its output in fixed-size blocks, so decoding memory does not grow with the
file beyond the samples themselves. Leading and trailing silence are kept (they are part of the
timeline the video must follow). Loudness is normalized so that the speech parts sit at
TARGET_DBFS, whatever the recording level was.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from avatar.errors import AvatarError
from avatar.types import Speech
from avatar.video.probe import FfmpegOutput, check_input_file, ffmpeg_exe, ffmpeg_header

SAMPLE_RATE = 16000          # the one internal rate of every Speech
TARGET_DBFS = -20.0          # RMS level of the active (speech) parts after normalization
ACTIVE_RANGE_DB = 35.0       # frames within this many dB of the loudest frames count as active
MIN_DURATION_S = 0.05
_BLOCK_BYTES = 1 << 20


def load_speech(path: str | Path, normalize: bool = True, max_seconds: float | None = None) -> Speech:
    """Decode `path` to mono float32 at 16 kHz; AvatarError on anything that is not usable audio.

    With `max_seconds`, decoding stops as soon as more audio than that has come out of ffmpeg
    (a header can understate the length; memory and time stay bounded by the limit)."""
    path = check_input_file(path, "audio")
    header = ffmpeg_header(path)
    if "Audio:" not in header:
        if "Invalid data found" in header or "Stream #" not in header:
            raise AvatarError(f"{path} is not an audio or video file ffmpeg can read; "
                              "give a wav, mp3, m4a, flac or a video with sound")
        raise AvatarError(f"{path} has no audio track; give a file with sound")
    samples = _decode(path, max_seconds)
    if len(samples) < MIN_DURATION_S * SAMPLE_RATE:
        raise AvatarError(f"{path} holds no audio samples (length {len(samples) / SAMPLE_RATE:.3f} s);"
                          " give a recording at least 0.05 s long")
    if normalize:
        samples = normalize_loudness(samples, SAMPLE_RATE)
    return Speech(samples=samples, sample_rate=SAMPLE_RATE)


def _decode(path: Path, max_seconds: float | None = None) -> np.ndarray:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
           "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    out = FfmpegOutput(cmd, _BLOCK_BYTES)
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) * 4
    blocks, n = [], 0
    with contextlib.closing(iter(out)) as stream:
        for block in stream:
            blocks.append(block)
            n += len(block)
            if limit is not None and n > limit:
                raise AvatarError(f"audio {path} is longer than {_length(max_seconds)} (found "
                                  "while decoding; its header says less); cut it into parts")
    data = b"".join(blocks)
    if out.returncode != 0 and not data:
        raise AvatarError(f"{path}: the audio could not be decoded ({out.last_error()}); "
                          "the file is damaged or in an unsupported format")
    data = data[: len(data) // 4 * 4]
    samples = np.frombuffer(data, np.float32).copy()
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return samples


def _length(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def frame_rms_db(samples: np.ndarray, sample_rate: int, frame_s: float = 0.02) -> np.ndarray:
    """RMS level in dBFS of consecutive frames of frame_s seconds."""
    n = max(int(sample_rate * frame_s), 1)
    usable = len(samples) // n * n
    if usable == 0:
        return np.full(1, -120.0, np.float32)
    frames = samples[:usable].reshape(-1, n).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return (20 * np.log10(np.maximum(rms, 1e-6))).astype(np.float32)


def normalize_loudness(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Scale so the active frames' RMS is TARGET_DBFS; peaks are limited to 0.99. Silence stays silence."""
    db = frame_rms_db(samples, sample_rate)
    if db.max() < -80:                                     # digital silence: nothing to scale
        return samples.astype(np.float32)
    active = db[db > db.max() - ACTIVE_RANGE_DB]
    level = 10 * np.log10(np.mean(10 ** (active / 10.0)))
    gain = 10 ** ((TARGET_DBFS - level) / 20)
    out = samples.astype(np.float32) * np.float32(gain)
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out = _soft_limit(out)
    return out


def _soft_limit(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Samples above `knee` are compressed smoothly towards 1 (tanh), the rest untouched."""
    y = x.copy()
    over = np.abs(y) > knee
    y[over] = np.sign(y[over]) * (knee + (1 - knee) * np.tanh((np.abs(y[over]) - knee) / (1 - knee)))
    return np.clip(y, -0.99, 0.99).astype(np.float32)
