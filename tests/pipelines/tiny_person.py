"""A tiny person folder for end-to-end tests (no ../shared data, no training).

The synthetic person of `avatar.render.synthetic` (posed canonical mesh drawn with a procedural
texture), small and wider than high, plus an untrained, very small DeferredRenderer saved through the renderer's own
store and the file hashes `train-person` records (so the checksum and config paths run for real).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.io.files import read_json, sha256_file, write_json
from avatar.render.synthetic import make_synthetic_person
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


def make_tiny_person(folder: Path) -> Path:
    make_synthetic_person(folder, n_frames=N_FRAMES, size=SIZE, fps=FPS, width=WIDTH)
    save_tiny_renderer(folder / "renderer.safetensors")
    info = read_json(folder / "person.json", "person.json")
    info["files"] = {f: sha256_file(folder / f)           # as train-person records them
                     for f in ("face_model.safetensors", "track.safetensors", "target.mp4")}
    write_json(folder / "person.json", info)
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
