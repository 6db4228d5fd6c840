"""Training of the audio2expr network on a few minutes of talking faces (CPU).

Targets are z-scored per clip (each speaker has their own jaw range; audio cannot know it), the
network predicts z-scores of the mouth blendshapes, and the shipped config maps them back with the
corpus-average mean and spread. Before training, each clip's audio/video offset is estimated with
the phonetic prior (its lag of best match with the tracked jawOpen, beyond the prior's natural lead)
and removed; clips the prior matches at no lag are left out (`screen_clips`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from avatar.audio.features import network_features
from avatar.expression.data import ClipData
from avatar.expression.evaluate import best_offset
from avatar.expression.model import Audio2ExpressionNet, NetConfig
from avatar.expression.prior import PriorConfig, blend_prior, jaw_prior
from avatar.types import BLENDSHAPE_NAMES, JAW_OPEN, MOUTH_BLENDSHAPES, SpeechFeatures

STD_FLOOR = 0.02


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch: int = 16
    seq_len: int = 24
    lr: float = 2e-3
    weight_decay: float = 1e-3
    jaw_weight: float = 3.0
    velocity_weight: float = 0.5
    silence_prob: float = 0.08
    feature_noise: float = 0.1
    time_mask_prob: float = 0.2
    seed: int = 0
    corr_weight: float = 0.0          # weight of (1 - Pearson r) of jawOpen per training sequence
    target_smooth: float = 0.0        # Gaussian sigma (frames) of the z targets (tracking noise)
    dim_mask_prob: float = 0.0        # share of feature columns masked per sequence
    gain_jitter: float = 0.0          # +- this (loudness-column units, 20 dB) per sequence


@dataclass
class Normalizer:
    """Per-clip z-scoring for training, corpus-average mean/spread for output."""
    mean: np.ndarray      # [52] corpus average of clip means
    std: np.ndarray       # [52] corpus average of clip spreads
    rest: np.ndarray      # [n_mouth] average rest pose (z units) over clips

    @staticmethod
    def clip_stats(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return targets.mean(0), np.maximum(targets.std(0), STD_FLOOR)


def fit_normalizer(clips: list[ClipData]) -> Normalizer:
    weights = np.array([len(c.targets) for c in clips], float)
    means = np.stack([Normalizer.clip_stats(c.targets)[0] for c in clips])
    stds = np.stack([Normalizer.clip_stats(c.targets)[1] for c in clips])
    rests = np.stack([rest_z(c.targets) for c in clips])
    w = weights / weights.sum()
    return Normalizer((w @ means).astype(np.float32), (w @ stds).astype(np.float32),
                      (w @ rests).astype(np.float32))


def rest_z(targets: np.ndarray) -> np.ndarray:
    """Mouth z-scores of the clip's most closed frames (jawOpen below its 15th percentile)."""
    mean, std = Normalizer.clip_stats(targets)
    jaw = targets[:, JAW_OPEN]
    closed = jaw <= np.percentile(jaw, 15)
    return ((targets[closed].mean(0) - mean) / std)[list(MOUTH_BLENDSHAPES)]


def z_targets(targets_variant: np.ndarray, clip_targets: np.ndarray) -> np.ndarray:
    mean, std = Normalizer.clip_stats(clip_targets)
    return ((targets_variant - mean) / std)[:, list(MOUTH_BLENDSHAPES)].astype(np.float32)


# ---- audio/video offset per clip, from the phonetic prior ------------------------------------

@dataclass(frozen=True)
class ClipSync:
    lag: int          # audio at t + lag explains the face at t (beyond the prior's natural lead)
    r: float          # correlation of the prior with the tracked jawOpen at that lag
    used: bool        # in sync enough to train on


def screen_clips(clips: list[ClipData], prior: PriorConfig, min_r: float = 0.25,
                 max_lag: int = 8) -> dict[str, ClipSync]:
    """Per clip, the lag at which the phonetic jaw prior best matches the tracked jawOpen; sets
    `clip.offset_frames` to it. Clips whose best match is below `min_r` (audio that does not drive
    the lips: dubbed, music, another voice) are marked unused."""
    out = {}
    for c in clips:
        pred = jaw_prior(c.phones, c.fps, len(c.targets), prior.lead_s, prior.smooth_s)
        lag, r = best_offset(pred, c.targets[:, JAW_OPEN], max_lag)
        c.offset_frames = float(lag)
        out[c.name] = ClipSync(lag, r, r >= min_r)
    return out


def fit_prior(net_z: list[np.ndarray], curves: list[np.ndarray], weight: float,
              lead_s: float = 0.1, smooth_s: float = 0.06) -> PriorConfig:
    """Prior statistics over the training clips (z units) and the gains that give each blend the
    network's own spread. Per clip: the network's output net_z [T, n_mouth] (MOUTH_BLENDSHAPES) and
    the prior's curves [T, 3] (read with the same lead_s and smooth_s)."""
    outputs = list(MOUTH_BLENDSHAPES)
    base = PriorConfig(weight, lead_s, smooth_s)
    drivers = np.concatenate(curves)[:, [base.curve_index(t) for t in base.targets]]
    cfg = replace(base, mean=tuple(drivers.mean(0)), std=tuple(np.maximum(drivers.std(0), 1e-3)))
    blend = np.concatenate([blend_prior(z, cu, cfg, outputs) for z, cu in zip(net_z, curves)])
    cols = [outputs.index(BLENDSHAPE_NAMES.index(t)) for t in cfg.targets]
    net = np.concatenate(net_z)[:, cols]
    return replace(cfg, gain=tuple(net.std(0) / np.maximum(blend[:, cols].std(0), 1e-6)))


def smooth_targets(z: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Targets low-passed in time (Gaussian, sigma in frames; 0: unchanged): tracking jitter
    that no audio can explain is taken out of what the network is asked to fit."""
    if sigma_frames <= 0:
        return z
    from scipy.ndimage import gaussian_filter1d
    return gaussian_filter1d(z, sigma_frames, axis=0, mode="nearest").astype(np.float32)


def sequence_corr_loss(pred: torch.Tensor, target: torch.Tensor, min_std: float = 0.1) -> torch.Tensor:
    """Mean over sequences of 1 - Pearson r between pred [B, T] and target [B, T] along time;
    sequences whose target barely moves (silence, std < min_std) are left out."""
    p = pred - pred.mean(1, keepdim=True)
    t = target - target.mean(1, keepdim=True)
    r = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1) + 1e-6)
    keep = (target.std(1) >= min_std).float()
    return ((1.0 - r) * keep).sum() / keep.sum().clamp(min=1.0)


# ---- network training -----------------------------------------------------------------------

class Sampler:
    """Random training sequences (windows + z targets) over clips and their variants."""

    def __init__(self, clips: list[ClipData], window: int, silence: SpeechFeatures,
                 normalizer: Normalizer, rng: np.random.Generator, feature_norm=None,
                 target_smooth: float = 0.0):
        self.clips, self.window, self.norm, self.rng = clips, window, normalizer, rng
        self.silence = network_features(silence, feature_norm)
        self.features = [[network_features(v.features, feature_norm) for v in c.variants] for c in clips]
        self.z = [[smooth_targets(z_targets(v.targets, c.targets), target_smooth) for v in c.variants]
                  for c in clips]
        self.rests = [rest_z(c.targets) for c in clips]
        lengths = np.array([len(c.targets) for c in clips], float)
        self.p = lengths / lengths.sum()

    def sequence(self, length: int, silence_prob: float) -> tuple[np.ndarray, np.ndarray]:
        ci = int(self.rng.choice(len(self.clips), p=self.p))
        clip = self.clips[ci]
        if self.rng.random() < silence_prob:
            idx = self.rng.integers(0, len(self.silence.values), (length, self.window))
            return self.silence.values[idx], np.repeat(self.rests[ci][None], length, 0)
        vi = int(self.rng.integers(len(clip.variants)))
        z = self.z[ci][vi]
        n = len(z)
        start = int(self.rng.integers(0, max(n - length, 0) + 1))
        frames = np.arange(start, start + length).clip(0, n - 1)
        return clip.windows(vi, frames, self.window, self.features[ci][vi]), z[frames]

    def batch(self, size: int, length: int, silence_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(self.sequence(length, silence_prob) for _ in range(size)))
        return torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys)).float()


def train_network(clips: list[ClipData], net_cfg: NetConfig, cfg: TrainConfig,
                  silence: SpeechFeatures, normalizer: Normalizer, progress: bool = True,
                  deadline_s: float | None = None,
                  feature_norm=None) -> tuple[Audio2ExpressionNet, list[float]]:
    """Adam on weighted MSE of mouth z-scores + velocity MSE; returns the net (eval mode) and losses.
    `feature_norm` (an UtteranceNorm) is applied to every variant's features first."""
    import time
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sampler = Sampler(clips, net_cfg.window, silence, normalizer, rng, feature_norm, cfg.target_smooth)
    net = Audio2ExpressionNet(net_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    weights = torch.ones(net_cfg.n_out)
    weights[list(MOUTH_BLENDSHAPES).index(JAW_OPEN)] = cfg.jaw_weight
    weights = weights / weights.mean()
    jaw = list(MOUTH_BLENDSHAPES).index(JAW_OPEN)
    losses, start = [], time.monotonic()
    net.train()
    for step in tqdm(range(cfg.steps), desc="train audio2expr", disable=not progress, mininterval=5):
        x, y = sampler.batch(cfg.batch, cfg.seq_len, cfg.silence_prob)
        x = _augment_features(x, cfg, rng)
        pred = net(x)
        loss = ((pred - y) ** 2 * weights).mean()
        loss = loss + cfg.velocity_weight * (((pred[:, 1:] - pred[:, :-1]) - (y[:, 1:] - y[:, :-1])) ** 2 * weights).mean()
        if cfg.corr_weight > 0:
            loss = loss + cfg.corr_weight * sequence_corr_loss(pred[..., jaw], y[..., jaw])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if deadline_s is not None and time.monotonic() - start > deadline_s:
            break
    net.eval()
    return net, losses


def _augment_features(x: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """Feature noise, SpecAugment-style masking of a few window steps and (optional) of feature
    columns per sequence, and a random gain on the loudness column (the last) per sequence."""
    x = x + cfg.feature_noise * torch.randn_like(x) * x.std()
    b, t, w, d = x.shape
    if cfg.time_mask_prob > 0:
        mask = torch.from_numpy(rng.random((b, t, w, 1)) < cfg.time_mask_prob * 0.25).float()
        x = x * (1 - mask) + mask * x.mean()
    if cfg.dim_mask_prob > 0:
        cols = torch.from_numpy(rng.random((b, 1, 1, d)) < cfg.dim_mask_prob).float()
        cols[..., -1] = 0.0
        x = x * (1 - cols)
    if cfg.gain_jitter > 0:
        shift = torch.from_numpy(rng.uniform(-cfg.gain_jitter, cfg.gain_jitter, (b, 1, 1))).float()
        x = torch.cat([x[..., :-1], x[..., -1:] + shift[..., None]], -1)
    return x

