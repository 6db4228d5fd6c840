"""The phonetic prior: recognized phones -> textbook articulation -> mouth blendshapes per frame.

NVP learns audio -> expressions from hours of video; we have ~90 s. The prior needs no training:
the articulation curves of `avatar.audio.phones.articulation` (jaw opening, lip closure, lip
rounding), smoothed (coarticulation) and read `lead_s` ahead of each frame (the mouth moves
before the sound). Each blendshape in PRIOR_TARGETS is the network's output averaged in z units
with the curve that drives it (`PriorConfig.weight`), then rescaled so the blend moves as much as
the network alone did on the training corpus.

A second source of the same curves is optional: `articulation.py`'s network, trained on TTS
speech only, reads them from the Whisper features; the prior then averages both sources.

The phones' jaw curve also scores training clips: the lag at which it best matches a clip's tracked
jawOpen is the clip's audio/video offset, and a clip that matches at no lag (dubbed or unrelated
audio) is left out of training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from avatar.audio.phones import CURVES, articulation
from avatar.types import BLENDSHAPE_NAMES, PhonemeTiming, SpeechFeatures

_RATE = 100.0          # the articulation curves' samples per second

# blendshape -> the articulation curve that drives it (leave-one-speaker-out, each gained r)
PRIOR_TARGETS = {
    "jawOpen": "jaw_opening",
    "mouthPucker": "lip_rounding", "mouthFunnel": "lip_rounding",
    "mouthPressLeft": "lip_closure", "mouthPressRight": "lip_closure", "mouthRollLower": "lip_closure",
}


@dataclass(frozen=True)
class PriorConfig:
    weight: float = 0.5                 # share of the prior in each blend (0: network only)
    lead_s: float = 0.1                 # the mouth moves this long before the sound
    smooth_s: float = 0.06              # Gaussian sigma of the coarticulation smoothing
    targets: tuple[str, ...] = tuple(PRIOR_TARGETS)
    mean: tuple[float, ...] = ()        # per target: its curve's mean over the training clips
    std: tuple[float, ...] = ()         # and spread (for z units)
    gain: tuple[float, ...] = ()        # rescales each blend to the network's spread

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        n = len(self.targets)
        for name in ("mean", "std", "gain"):
            values = tuple(float(v) for v in getattr(self, name)) or (1.0 if name != "mean" else 0.0,) * n
            object.__setattr__(self, name, values)
            if len(values) != n:
                raise ValueError(f"prior {name} needs one value per target ({n})")
        unknown = set(self.targets) - set(PRIOR_TARGETS)
        if unknown:
            raise ValueError(f"no articulation curve drives {sorted(unknown)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def curve_index(self, target: str) -> int:
        return CURVES.index(PRIOR_TARGETS[target])


def prior_curves(phones: tuple[PhonemeTiming, ...], fps: float, n_frames: int,
                 lead_s: float = 0.1, smooth_s: float = 0.06) -> np.ndarray:
    """[n_frames, 3] articulation (jaw opening, lip closure, lip rounding) for frame times t / fps."""
    end = max([p.end_s for p in phones], default=0.0)
    n = int(np.ceil(max(end, n_frames / fps) * _RATE)) + 1
    return at_frames(articulation(phones, _RATE, n), _RATE, fps, n_frames, lead_s, smooth_s)


def at_frames(curves: np.ndarray, rate_hz: float, fps: float, n_frames: int, lead_s: float,
              smooth_s: float) -> np.ndarray:
    """Curves sampled at rate_hz -> smoothed (Gaussian sigma smooth_s) and read lead_s ahead of
    each video frame t / fps."""
    if smooth_s > 0:
        curves = gaussian_filter1d(curves, smooth_s * rate_hz, axis=0, mode="nearest")
    idx = np.clip(np.round((np.arange(n_frames) / fps + lead_s) * rate_hz).astype(int), 0, len(curves) - 1)
    return curves[idx].astype(np.float32)


def combined_curves(phones: tuple[PhonemeTiming, ...], features: SpeechFeatures, articulation,
                    fps: float, n_frames: int, lead_s: float, smooth_s: float) -> np.ndarray:
    """The prior's curves: the phones' articulation (heard by PocketSphinx, or piper's timings),
    averaged with the TTS-trained articulation net's reading of the features when there is one."""
    curves = prior_curves(phones, fps, n_frames, lead_s, smooth_s)
    if articulation is None:
        return curves
    learned = at_frames(articulation.curves(features.values), features.rate_hz, fps, n_frames, lead_s, smooth_s)
    return 0.5 * (curves + learned)


def jaw_prior(phones: tuple[PhonemeTiming, ...], fps: float, n_frames: int,
              lead_s: float = 0.1, smooth_s: float = 0.06) -> np.ndarray:
    """[n_frames] jaw opening in [0, 1] implied by the phones."""
    return prior_curves(phones, fps, n_frames, lead_s, smooth_s)[:, 0]


def blend_prior(net_z: np.ndarray, curves: np.ndarray, cfg: PriorConfig, outputs: list[int]) -> np.ndarray:
    """net_z [T, len(outputs)] (z units, columns = blendshape indices `outputs`) with each prior
    target replaced by the weighted average of network and curve, times the target's gain."""
    out = net_z.copy()
    for k, target in enumerate(cfg.targets):
        col = outputs.index(BLENDSHAPE_NAMES.index(target))
        curve_z = (curves[:, cfg.curve_index(target)] - cfg.mean[k]) / max(cfg.std[k], 1e-6)
        out[:, col] = (cfg.weight * curve_z + (1.0 - cfg.weight) * net_z[:, col]) * cfg.gain[k]
    return out
