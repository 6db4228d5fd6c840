"""A learned phonetic prior: Whisper features -> articulation curves, trained on TTS speech only.

Piper speaks a sentence and says exactly when each of its phonemes sounds, so text becomes an
unlimited supply of speech with exact articulation targets (the textbook jaw opening, lip closure
and lip rounding of `avatar.audio.phones`, for piper's IPA symbols). A small dilated 1-D conv net learns
to read these curves from the Whisper encoder features that audio2expr uses anyway; pitch shifts,
tempo and noise stand in for other voices. It sees no video, so it cannot overfit our ~40 s of
talking faces, and on real speakers it complements the PocketSphinx phones (`prior.py` averages
the two). Sentences come from the docstrings of Python's own standard library (present wherever
Python is).
"""
from __future__ import annotations

import ast
import glob
import re
import sysconfig
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avatar.audio.phones import articulation
from avatar.types import PhonemeTiming, Speech

RATE_HZ = 50.0                               # the Whisper feature rate: one curve value per frame

def stdlib_sentences(min_words: int = 5, max_words: int = 20) -> list[str]:
    """Plain English sentences from the docstrings of Python's standard library."""
    out = []
    for path in sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py")):
        try:
            with open(path, encoding="utf-8", errors="ignore") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                text = re.sub(r"\s+", " ", ast.get_docstring(node))
                out += [s for s in re.split(r"(?<=[.!?])\s+", text)
                        if min_words <= len(s.split()) <= max_words and re.fullmatch(r"[A-Za-z ,'.;!?-]+", s)]
    return out


@dataclass(frozen=True)
class ArticulationConfig:
    feature_dim: int            # of the speech features (audio.features.FEATURE_DIMS[kind])
    channels: int = 96
    dilations: tuple[int, ...] = (1, 2, 4)    # receptive field 1 + 4 * (1 + 2 + 4) = 29 frames
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return {**asdict(self), "dilations": list(self.dilations)}


class ArticulationNet(nn.Module):
    """[B, T, D] feature frames (normalized) -> [B, T, 3] articulation in [0, 1]."""

    def __init__(self, cfg: ArticulationConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.inp = nn.Conv1d(cfg.feature_dim, c, 1)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 5, padding=2 * d, dilation=d) for d in cfg.dilations)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Conv1d(c, 3, 1)
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.feature_mean) / self.feature_std
        h = F.leaky_relu(self.inp(self.drop(x.transpose(1, 2))), 0.2)
        for conv in self.convs:
            h = h + F.leaky_relu(conv(h), 0.2)
        return torch.sigmoid(self.out(h)).transpose(1, 2)

    def curves(self, features: np.ndarray) -> np.ndarray:
        """[T, D] features of one utterance -> [T, 3] articulation (numpy, no grad)."""
        with torch.inference_mode():
            return self(torch.from_numpy(np.ascontiguousarray(features, np.float32))[None])[0].numpy()


def tts_example(sentence: str, feature_kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features [T, D], articulation [T, 3]) of one sentence spoken by piper at a random tempo,
    maybe pitch-shifted and noisy, with silence around it."""
    import librosa
    from avatar.audio.features import speech_features
    from avatar.audio.load import normalize_loudness
    from avatar.audio.tts import speak_with_timings
    samples, phonemes = speak_with_timings(sentence, length_scale=float(rng.uniform(0.8, 1.3)),
                                           noise_scale=float(rng.uniform(0.5, 0.9)))
    if rng.random() < 0.6:
        samples = librosa.effects.pitch_shift(samples, sr=16000, n_steps=float(rng.choice([-1, 1]) * rng.uniform(1, 4)))
    front, back = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5)
    x = np.concatenate([np.zeros(int(front * 16000)), samples, np.zeros(int(back * 16000))]).astype(np.float32)
    if rng.random() < 0.3:
        x += (rng.standard_normal(len(x)) * np.sqrt(np.mean(x ** 2)) * 10 ** (-rng.uniform(15, 30) / 20)).astype(np.float32)
    features = speech_features(Speech(normalize_loudness(x, 16000), 16000), feature_kind).values
    shifted = [PhonemeTiming(p.phoneme, p.start_s + front, p.end_s + front) for p in phonemes]
    return features, articulation(shifted, RATE_HZ, len(features))


def train_articulation(examples: list[tuple[np.ndarray, np.ndarray]], cfg: ArticulationConfig,
                       steps: int = 1500, seed: int = 0, crop: int = 150) -> tuple[ArticulationNet, list[float]]:
    """Adam on the MSE of the three curves over random crops of the TTS examples."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ArticulationNet(cfg)
    allf = np.concatenate([f for f, _ in examples])
    net.feature_mean.copy_(torch.from_numpy(allf.mean(0)))
    net.feature_std.copy_(torch.from_numpy(allf.std(0) + 1e-3))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
    losses = []
    net.train()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(16):
            f, t = examples[int(rng.integers(len(examples)))]
            start = int(rng.integers(0, max(len(f) - crop, 0) + 1))
            idx = np.arange(start, start + crop).clip(0, len(f) - 1)
            xs.append(f[idx])
            ys.append(t[idx])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        x = x + 0.1 * torch.randn_like(x) * net.feature_std
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return net.eval(), losses
