"""The generalized audio-to-expression network (Neural Voice Puppetry's Audio2ExpressionNet, small).

    windows [B, T, W, D]  (W speech-feature steps around each video frame)
      -> per-frame encoder: 1x1 reduction D->C, 1-D convolutions over the W steps (stride 2)
      -> latent [B, T, L]                              (NVP: L = 32)
      -> temporal filter: softmax attention over the 2K+1 neighbouring frames' latents
      -> linear decoder -> [B, T, 52] in normalized units (z-scores of the blendshapes)

The module does no I/O; `avatar.expression.checkpoint` loads and saves it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class NetConfig:
    feature_dim: int            # of the speech features (audio.features.FEATURE_DIMS[kind])
    window: int = 16            # feature steps per video frame
    channels: int = 64
    latent: int = 32
    context: int = 4            # K: the temporal filter looks at 2K+1 frames
    n_out: int = 52
    dropout: float = 0.2
    temporal_layers: int = 0    # residual dilated 1-D convolutions over frames after the filter

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def reach(self) -> int:
        """Frames on either side that one frame's output depends on (beyond its own window)."""
        return self.context + sum(2 ** i for i in range(self.temporal_layers))


class FrameEncoder(nn.Module):
    """[N, W, D] feature windows -> [N, latent]."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c = cfg.channels
        self.reduce = nn.Conv1d(cfg.feature_dim, c, 1)
        layers, w = [], cfg.window
        while w > 2:
            layers += [nn.Conv1d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            w = (w + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        self.to_latent = nn.Linear(c * w, cfg.latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.reduce(x.transpose(1, 2)), 0.2)
        h = self.convs(self.drop(h))
        return torch.tanh(self.to_latent(h.flatten(1)))


class TemporalFilter(nn.Module):
    """Attention-weighted average of each frame's neighbourhood of latents (NVP's expression filter)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.k = cfg.context
        self.score = nn.Sequential(nn.Conv1d(cfg.latent, 16, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv1d(16, 1, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, T, L] -> [B, T, L], frames near the sequence ends use the end frame (replicate)."""
        k = self.k
        if k == 0:
            return z
        zt = F.pad(z.transpose(1, 2), (k, k), mode="replicate")          # [B, L, T+2k]
        logits = self.score(zt)                                         # [B, 1, T+2k]
        neigh = zt.unfold(2, 2 * k + 1, 1)                              # [B, L, T, 2k+1]
        weights = torch.softmax(logits.unfold(2, 2 * k + 1, 1), dim=-1)  # [B, 1, T, 2k+1]
        return (neigh * weights).sum(-1).transpose(1, 2)


class TemporalStack(nn.Module):
    """Residual dilated convolutions over the frame latents (dilation 1, 2, 4, ...): a wider
    temporal context than the filter's 2K+1 frames; ends padded by replication."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.dilations = [2 ** i for i in range(cfg.temporal_layers)]
        self.convs = nn.ModuleList(nn.Conv1d(cfg.latent, cfg.latent, 3, dilation=d) for d in self.dilations)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.transpose(1, 2)
        for d, conv in zip(self.dilations, self.convs):
            h = h + F.leaky_relu(conv(self.drop(F.pad(h, (d, d), mode="replicate"))), 0.2)
        return h.transpose(1, 2)


class Audio2ExpressionNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = FrameEncoder(cfg)
        self.filter = TemporalFilter(cfg)
        self.stack = TemporalStack(cfg) if cfg.temporal_layers else None
        self.decoder = nn.Linear(cfg.latent, cfg.n_out)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [B, T, W, D] -> normalized expressions [B, T, n_out]."""
        b, t, w, d = windows.shape
        z = self.filter(self.encoder(windows.reshape(b * t, w, d)).reshape(b, t, -1))
        return self.decoder(self.stack(z) if self.stack is not None else z)


class Audio2ExpressionEnsemble(nn.Module):
    """Several networks trained with different seeds; the output is their mean (on ~90 s of data
    one network's held-out r moves by +-0.1 with the seed; the mean is steadier)."""

    def __init__(self, cfg: NetConfig, members: int):
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(Audio2ExpressionNet(cfg) for _ in range(members))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(windows) for m in self.members]).mean(0)
