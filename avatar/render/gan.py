"""Losses that push the renderer toward real detail instead of the blur L1 settles for.

`PatchDiscriminator` is a pix2pix-style patch critic trained from scratch (no pretrained
weights are available offline), conditioned on what the renderer saw; `hinge_d` / `hinge_g`
its losses, `feature_matching` the pix2pixHD term, `laplacian_l1` a high-frequency loss.
No file I/O here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


class PatchDiscriminator(nn.Module):
    """Three stride-2 convolutions and a 1-channel head: one real/fake logit per ~30 px patch.
    Input: the condition and the candidate image, concatenated on channels."""

    def __init__(self, in_channels: int, width: int = 32, layers: int = 3):
        super().__init__()
        blocks, c = [], in_channels
        for i in range(layers):
            out = width * 2 ** i
            blocks.append(nn.Sequential(
                nn.utils.parametrizations.spectral_norm(nn.Conv2d(c, out, 4, 2, 1)),
                nn.LeakyReLU(0.2, inplace=True)))
            c = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, list]:
        """-> (logits [B, 1, h, w], features of every block for feature matching)."""
        x = torch.cat([condition, image * 2 - 1], 1)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return self.head(x), feats


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def feature_matching(fake_feats: list, real_feats: list) -> torch.Tensor:
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def laplacian(rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 1, H, W] Laplacian of the grey level (replicated edges)."""
    g = (rgb * _LUMA.to(rgb)[None, :, None, None]).sum(1, keepdim=True)
    return F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), _LAPLACE.to(rgb)[None, None])


def laplacian_l1(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between the Laplacians of out and target, weighted by weight [B, 1, H, W]."""
    diff = (laplacian(out) - laplacian(target)).abs() * weight
    return diff.sum() / weight.sum().clamp(min=1.0)
