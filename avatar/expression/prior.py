"""The phonetic prior for jawOpen: recognized phones -> textbook jaw opening -> video frames.

NVP learns audio -> expressions from hours of video; we have ~90 s. The prior needs no training:
the jaw-opening curve of `avatar.audio.phones.articulation`, smoothed (coarticulation) and read
`lead_s` ahead of each frame (the jaw starts to open before the vowel sounds). The network's
jawOpen and the prior are averaged in z units (`PriorConfig.weight`), then rescaled so the blend
moves as much as the network alone did on the training corpus.

The same curve scores training clips: the lag at which it best matches a clip's tracked jawOpen is
the clip's audio/video offset, and a clip that matches at no lag (dubbed or unrelated audio) is
left out of training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from avatar.audio.phones import articulation
from avatar.types import PhonemeTiming

_RATE = 100.0          # the articulation curve's samples per second


@dataclass(frozen=True)
class PriorConfig:
    weight: float = 0.5       # share of the prior in the jawOpen blend (0: network only)
    lead_s: float = 0.1       # the jaw moves this long before the sound
    smooth_s: float = 0.06    # Gaussian sigma of the coarticulation smoothing
    mean: float = 0.0         # of the prior curve over the training clips (for z units)
    std: float = 1.0
    gain: float = 1.0         # rescales the blend to the network's spread

    def to_dict(self) -> dict:
        return asdict(self)


def jaw_prior(phones: tuple[PhonemeTiming, ...], fps: float, n_frames: int,
              lead_s: float = 0.1, smooth_s: float = 0.06) -> np.ndarray:
    """[n_frames] jaw opening in [0, 1] implied by the phones, for frame times t / fps."""
    end = max([p.end_s for p in phones], default=0.0)
    n = int(np.ceil(max(end, n_frames / fps) * _RATE)) + 1
    curve = articulation(phones, _RATE, n)[:, 0]
    if smooth_s > 0:
        curve = gaussian_filter1d(curve, smooth_s * _RATE, mode="nearest")
    idx = np.clip(np.round((np.arange(n_frames) / fps + lead_s) * _RATE).astype(int), 0, n - 1)
    return curve[idx].astype(np.float32)


def blend_jaw(net_z: np.ndarray, prior: np.ndarray, cfg: PriorConfig) -> np.ndarray:
    """jawOpen in z units: the network's and the prior's, averaged with cfg.weight, times gain."""
    prior_z = (prior - cfg.mean) / max(cfg.std, 1e-6)
    return (cfg.weight * prior_z + (1.0 - cfg.weight) * net_z) * cfg.gain
