"""Load any audio the user has (wav, mp3, m4a, flac, the audio track of a video) as Speech.

ffmpeg (the static one from imageio-ffmpeg) decodes, downmixes to mono and resamples to
SAMPLE_RATE; we read its output in fixed-size blocks, so decoding memory does not grow with the
file beyond the samples themselves. With `playback=True` the same ffmpeg run also writes the
recording at its own rate (capped at MAX_PLAYBACK_RATE) for the output's sound; the 16 kHz
samples are the same either way. Leading and trailing silence are kept (they are part of the
timeline the video must follow). Loudness is normalized so that the speech parts sit at
TARGET_DBFS, whatever the recording level was.
"""
from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import numpy as np

from avatar.errors import AvatarError
from avatar.types import Speech
from avatar.video.probe import FfmpegOutput, check_input_file, ffmpeg_exe, ffmpeg_header

SAMPLE_RATE = 16000          # the one internal rate of every Speech
TARGET_DBFS = -20.0          # RMS level of the active (speech) parts after normalization
ACTIVE_RANGE_DB = 35.0       # frames within this many dB of the loudest frames count as active
MIN_DURATION_S = 0.05
MAX_PLAYBACK_RATE = 48000    # recordings above this are played back at 48 kHz
_BLOCK_BYTES = 1 << 20


def load_speech(path: str | Path, normalize: bool = True, max_seconds: float | None = None,
                playback: bool = False) -> Speech:
    """Decode `path` to mono float32 at 16 kHz; AvatarError on anything that is not usable audio.

    With `max_seconds`, decoding stops as soon as more audio than that has come out of ffmpeg
    (a header can understate the length; memory and time stay bounded by the limit). With
    `playback`, Speech.playback holds the recording at its own rate (above 16 kHz, at most
    48 kHz), scaled by the same loudness gain."""
    path = check_input_file(path, "audio")
    header = ffmpeg_header(path)
    if "Audio:" not in header:
        if "Invalid data found" in header or "Stream #" not in header:
            raise AvatarError(f"{path} is not an audio or video file ffmpeg can read; "
                              "give a wav, mp3, m4a, flac or a video with sound")
        raise AvatarError(f"{path} has no audio track; give a file with sound")
    rate = playback_rate(header) if playback else None
    with tempfile.TemporaryDirectory(prefix="avatar-audio-") as tmp:
        copy = Path(tmp) / "playback.f32" if rate else None
        samples = _decode(path, max_seconds, copy, rate)
        played = _finite(np.fromfile(copy, np.float32)) if copy is not None else None
    if len(samples) < MIN_DURATION_S * SAMPLE_RATE:
        raise AvatarError(f"{path} holds no audio samples (length {len(samples) / SAMPLE_RATE:.3f} s);"
                          " give a recording at least 0.05 s long")
    if normalize:
        gain = loudness_gain(samples, SAMPLE_RATE)
        samples = apply_gain(samples, gain)
        played = apply_gain(played, gain) if played is not None else None
    return Speech(samples=samples, sample_rate=SAMPLE_RATE, playback=played,
                  playback_rate=rate if played is not None else None)


def playback_rate(header: str) -> int | None:
    """The rate to play a recording back at: its own, at most MAX_PLAYBACK_RATE; None when that
    is not above the internal 16 kHz (or unknown)."""
    found = re.search(r"Audio:[^\n]*?(\d+) Hz", header)
    rate = min(int(found.group(1)), MAX_PLAYBACK_RATE) if found else 0
    return rate if rate > SAMPLE_RATE else None


def _decode(path: Path, max_seconds: float | None = None, copy: Path | None = None,
            copy_rate: int | None = None) -> np.ndarray:
    """16 kHz mono samples from ffmpeg's stdout; with `copy`, the same run also writes the audio
    at copy_rate into that file (raw float32)."""
    mono = ["-map", "0:a:0", "-vn", "-ac", "1"]
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
           *mono, "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    if copy is not None:
        cmd += [*mono, "-ar", str(copy_rate), "-f", "f32le", "-y", str(copy)]
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
    return _finite(np.frombuffer(data, np.float32).copy())


def _finite(samples: np.ndarray) -> np.ndarray:
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
    return apply_gain(samples, loudness_gain(samples, sample_rate))


def loudness_gain(samples: np.ndarray, sample_rate: int) -> float:
    """The gain that brings the active frames' RMS to TARGET_DBFS (1 for digital silence)."""
    db = frame_rms_db(samples, sample_rate)
    if db.max() < -80:                                     # digital silence: nothing to scale
        return 1.0
    active = db[db > db.max() - ACTIVE_RANGE_DB]
    level = 10 * np.log10(np.mean(10 ** (active / 10.0)))
    return float(10 ** ((TARGET_DBFS - level) / 20))


def apply_gain(samples: np.ndarray, gain: float) -> np.ndarray:
    """samples * gain as float32, peaks above 0.99 soft-limited."""
    out = np.array(samples, np.float32)                    # one copy, scaled in place
    if gain != 1.0:
        out *= np.float32(gain)
    if len(out) and float(np.abs(out).max()) > 0.99:
        out = _soft_limit(out)
    return out


def _soft_limit(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Samples above `knee` are compressed smoothly towards 1 (tanh), the rest untouched."""
    y = x.copy()
    over = np.abs(y) > knee
    y[over] = np.sign(y[over]) * (knee + (1 - knee) * np.tanh((np.abs(y[over]) - knee) / (1 - knee)))
    return np.clip(y, -0.99, 0.99).astype(np.float32)
