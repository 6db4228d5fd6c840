"""A tiny person folder for end-to-end tests (no ../shared data, no training).

The synthetic person of `tests.synthetic` (posed canonical mesh drawn with a procedural
texture), small and wider than high, plus an untrained, very small DeferredRenderer saved through the renderer's own
store and the file hashes `train-person` records (so the checksum and config paths run for real).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.synthetic import make_synthetic_person
from avatar.types import N_BLENDSHAPES

SIZE, WIDTH, FPS, N_FRAMES = 96, 128, 10.0, 16


def save_tiny_renderer(path: Path) -> None:
    import torch
    from avatar.render.model import DeferredRenderer, RendererConfig
    from avatar.render.store import save_weights
    torch.manual_seed(0)
    config = RendererConfig(crop_size=64, texture_size=32, texture_channels=4, texture_levels=2,
                            channels=(8, 8))
    save_weights(path, DeferredRenderer(config))


CONSENT = "synthetic test person (no real person is shown)"


def make_tiny_person(folder: Path) -> Path:
    from avatar.io import person as person_io
    make_synthetic_person(folder, n_frames=N_FRAMES, size=SIZE, fps=FPS, width=WIDTH)
    save_tiny_renderer(folder / person_io.RENDERER)
    config = person_io.read_config(folder)
    config["consent"] = person_io.consent_record(CONSENT)
    person_io.finalize(folder, config)                   # hashes + status, as train-person does
    return folder


def make_tiny_audio2expr(folder: Path) -> Path:
    """An untrained, very small audio2expr checkpoint on log-mel features (fast on CPU)."""
    import torch
    from avatar.expression import Audio2ExpressionNet, NetConfig, save_audio2expr
    from avatar.types import MOUTH_BLENDSHAPES
    torch.manual_seed(0)
    net = Audio2ExpressionNet(NetConfig(feature_dim=80, window=16, channels=8, latent=8, context=2,
                                        n_out=len(MOUTH_BLENDSHAPES), dropout=0.0))
    mean = np.full(N_BLENDSHAPES, 0.1, np.float32)
    std = np.full(N_BLENDSHAPES, 0.1, np.float32)
    save_audio2expr(folder, net, "logmel80", mean, std)
    return folder
