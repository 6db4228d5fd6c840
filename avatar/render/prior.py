"""A renderer prior: the first stage of a renderer (neural texture in the UV layout every person
shares, and the U-Net) that a new person's fit starts from instead of random weights.

    save_prior(folder, model, {"people": ["demo"], ...})     # prior.safetensors + config.json
    prior, info = load_prior(folder)                          # AvatarError for a bad folder
    start_from_prior(new_model, prior)                        # texture + U-Net copied in

Folder: prior.safetensors (renderer weights in avatar/render/store.py's format, fp32, first stage
only) and config.json (format, the renderer config, what the prior was made from, sha256 of the
weights file: a changed file is refused before it is read). A prior made for other sizes (crop,
texture, U-Net channels) than the fit asks for is refused with one line naming the difference.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from avatar.config import checkpoints_dir
from avatar.errors import AvatarError
from avatar.io.files import read_json, sha256_file, write_json
from avatar.render.model import DeferredRenderer, RendererConfig
from avatar.render.store import load_weights, save_weights

PRIOR_FORMAT = "avatar-renderer-prior-1"
WEIGHTS, CONFIG = "prior.safetensors", "config.json"
SHIPPED = "renderer_prior"                    # checkpoints/<this>: the default prior, when shipped
# the settings a prior and a fit must share (the second stage is the fit's own)
SHARED_FIELDS = ("crop_size", "texture_size", "texture_channels", "texture_levels", "channels",
                 "uv_only", "mouth_patch")


def first_stage(model: DeferredRenderer) -> DeferredRenderer:
    """A copy of the model's first stage (texture + U-Net) without its lips window."""
    config = replace(model.config, mouth_window=(0, 0), teeth_atlas=(0, 0))
    copy = DeferredRenderer(config)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("mouth.")}
    copy.load_state_dict(own)
    return copy.eval()


def save_prior(folder: str | Path, model: DeferredRenderer, info: dict) -> Path:
    """Write `model`'s first stage as a prior folder; `info`: what it was made from."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = first_stage(model)
    save_weights(folder / WEIGHTS, first, {"prior": info}, half=False)
    write_json(folder / CONFIG, {"format": PRIOR_FORMAT, "weights": WEIGHTS,
                                 "sha256": sha256_file(folder / WEIGHTS),
                                 "renderer": first.config.to_dict(), **info})
    return folder


def load_prior(folder: str | Path) -> tuple[DeferredRenderer, dict]:
    """(the prior's first-stage renderer, its config.json) or AvatarError saying what is wrong."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise AvatarError(f"renderer prior {folder} has no {CONFIG}; give a folder made by "
                          "train-prior, or --from-scratch")
    info = read_json(folder / CONFIG, "renderer prior config")
    if info.get("format") != PRIOR_FORMAT:
        raise AvatarError(f"renderer prior {folder} has format {info.get('format')!r}, expected "
                          f"{PRIOR_FORMAT!r}; make it again with train-prior")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise AvatarError(f"renderer prior {folder} lacks {WEIGHTS}; make it again with train-prior")
    if sha256_file(weights) != info.get("sha256"):
        raise AvatarError(f"renderer prior {weights} was changed since it was made (checksum); "
                          "make it again with train-prior")
    return load_weights(weights), info


def check_fits(prior: RendererConfig, config: RendererConfig, where: str) -> None:
    """AvatarError when the prior was made for other first-stage sizes than `config`."""
    for name in SHARED_FIELDS:
        mine, theirs = getattr(config, name), getattr(prior, name)
        if mine != theirs:
            raise AvatarError(f"renderer prior {where} was made with {name}={theirs!r}, this fit uses "
                              f"{mine!r}; use a prior of the same settings or --from-scratch")


def start_from_prior(model: DeferredRenderer, prior: DeferredRenderer, where: str = "") -> None:
    """Copy the prior's texture and U-Net into `model` (its lips window, if any, stays as it is)."""
    check_fits(prior.config, model.config, where)
    state = {k: v for k, v in prior.state_dict().items() if not k.startswith("mouth.")}
    with torch.no_grad():
        own = model.state_dict()
        for name, value in state.items():
            own[name].copy_(value.to(own[name].dtype))


def shipped_prior() -> Path | None:
    """The prior shipped with the models (checkpoints/renderer_prior), or None when there is none."""
    folder = checkpoints_dir() / SHIPPED
    return folder if (folder / CONFIG).is_file() else None
