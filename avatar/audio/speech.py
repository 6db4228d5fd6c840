"""Speech for one clip, from a text (piper) or an audio file, checked: length, finite samples."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from avatar import config
from avatar.audio.load import load_speech
from avatar.audio.text import speakable_text
from avatar.audio.tts import synthesize
from avatar.errors import AvatarError
from avatar.types import Speech


def speech_from_text(text: str, voice: str | None = None, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> Speech:
    """Speech of `text` in the bundled English voice, or in the piper voice file `voice`; piper's
    noise from `seed`; progress(sentences done, total)."""
    return synthesize(speakable_text(text, english=voice is None), voice, seed, progress)


def speech_from_audio(path: str | Path) -> Speech:
    """The recording at 16 kHz, with its own rate (up to 48 kHz) kept for playback."""
    path = check_audio_file(path)
    speech = load_speech(path, max_seconds=config.MAX_SPEECH_S, playback=True)
    return check_speech(speech, str(path))


def check_audio_file(path: str | Path) -> Path:
    """Cheap checks before any model is loaded: the file exists, is not empty, not too long."""
    from avatar.video.probe import check_input_file, ffmpeg_header, header_duration

    path = check_input_file(path, "audio")
    duration = header_duration(ffmpeg_header(path))
    if duration > config.MAX_SPEECH_S:
        raise AvatarError(f"audio {path} is {duration / 60:.1f} min long, at most "
                          f"{config.MAX_SPEECH_S / 60:.0f} min fit one clip; cut it into parts")
    return path


def check_speech(speech: Speech, name: str) -> Speech:
    if speech.duration_s > config.MAX_SPEECH_S:
        raise AvatarError(f"{name}: speech is {speech.duration_s / 60:.1f} min long, at most "
                          f"{config.MAX_SPEECH_S / 60:.0f} min fit one clip; cut it into parts")
    if not np.isfinite(speech.samples).all():
        raise AvatarError(f"{name}: the audio holds NaN or inf samples; re-export it")
    if np.abs(speech.samples).max(initial=0.0) < 1e-4:
        tqdm.write(f"warning: {name} is silent; the avatar will keep its mouth closed")
    return speech


class Voice:
    """The TTS component: a piper voice (.onnx with its .onnx.json), or the bundled CC0 English one."""

    def __init__(self, model: str | Path | None = None):
        from avatar.audio.tts import voice_files
        self.model = voice_files(str(model))[0] if model is not None else None

    @property
    def english(self) -> bool:
        return self.model is None

    def check(self, text: str) -> str:
        """The text this voice will speak (AvatarError when it cannot)."""
        return speakable_text(text, english=self.english)

    def load(self) -> "Voice":
        """Load the voice's model now (it is loaded once per process, at the first text else)."""
        from avatar.audio.tts import load_voice
        load_voice(self.model)
        return self

    def speak(self, text: str, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Speech:
        return speech_from_text(text, self.model, seed, progress)
