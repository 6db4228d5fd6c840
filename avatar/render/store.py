"""The one place that saves and loads renderer weights and training checkpoints (safetensors).

Every file carries its config (JSON in the metadata) and a SHA-256 over its tensors, so a file with
the wrong shapes, from another config, or with changed bytes is refused with one clear line.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from avatar.errors import AvatarError
from avatar.io.files import atomic_output
from avatar.render.model import DeferredRenderer, RendererConfig

WEIGHTS_FORMAT = "avatar-renderer-1"
CHECKPOINT_FORMAT = "avatar-renderer-checkpoint-1"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {**metadata, "sha256": tensors_digest(tensors)}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


# Bounds on a renderer config read from a file, checked before any tensor is allocated.
CONFIG_BOUNDS = {"crop_size": (64, 1024), "texture_size": (8, 4096), "texture_channels": (1, 64),
                 "texture_levels": (1, 8), "mouth_texture_size": (0, 4096),
                 "mouth_texture_channels": (0, 64)}
TUPLE_BOUNDS = {"channels": (1, 8, 1, 1024), "mouth_channels": (1, 8, 1, 1024),
                "mouth_window": (2, 2, 0, 4096)}      # (min len, max len, min value, max value)
MAX_FILE_BYTES = 4 << 30


def _header(path: Path, what: str) -> tuple[dict[str, str], dict[str, tuple]]:
    """(metadata, tensor shapes) from the safetensors header alone (no tensor is read)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise AvatarError(f"{what} {path} is damaged or not a safetensors file ({e}); "
                          "delete it and train again") from None
    return meta, shapes


def check_config_bounds(config: RendererConfig, path: Path, what: str) -> None:
    for name, (lo, hi) in CONFIG_BOUNDS.items():
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise AvatarError(f"{what} {path}: renderer config {name}={value!r} is out of range "
                              f"({lo} to {hi}); the file is damaged or not ours: train again")
    for name, (n_lo, n_hi, lo, hi) in TUPLE_BOUNDS.items():
        if not hasattr(config, name):
            continue
        value = tuple(getattr(config, name))
        if not n_lo <= len(value) <= n_hi or any(
                isinstance(c, bool) or not isinstance(c, int) or not lo <= c <= hi for c in value):
            raise AvatarError(f"{what} {path}: renderer config {name}={list(value)} is out of "
                              f"range ({n_lo}-{n_hi} values from {lo} to {hi}); train again")
    scale = getattr(config, "mouth_scale", 1.0)
    if not (isinstance(scale, (int, float)) and 0.05 <= scale <= 16):
        raise AvatarError(f"{what} {path}: renderer config mouth_scale={scale!r} is out of range "
                          "(0.05 to 16); train again")
    if config.crop_size % 64:
        raise AvatarError(f"{what} {path}: renderer crop_size {config.crop_size} is not a multiple "
                          "of 64; train again")


def expected_shapes(config: RendererConfig) -> dict[str, tuple]:
    """Parameter shapes of a renderer with `config`, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = DeferredRenderer(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_shapes(config: RendererConfig, shapes: dict[str, tuple], path: Path, what: str,
                  prefix: str = "") -> None:
    want = expected_shapes(config)
    got = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    bad = sorted(k for k in want if got.get(k) != want[k])
    if bad:
        raise AvatarError(f"{what} {path}: tensor '{bad[0]}' has shape {got.get(bad[0])}, its "
                          f"config needs {want[bad[0]]}; the file is damaged: train again")


def _load(path: Path, what: str, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load_file
    if not path.is_file():
        raise AvatarError(f"{what} {path} does not exist; train the renderer first (train-person)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise AvatarError(f"{what} {path} is larger than {MAX_FILE_BYTES >> 30} GiB; it is not a "
                          "renderer file of this toolkit")
    meta, shapes = _header(path, what)
    if meta.get("format") != fmt:
        raise AvatarError(f"{what} {path} has format {meta.get('format')!r}, expected {fmt!r}; "
                          "it is from another version: train again")
    config = _config_from(meta, path, what)
    check_config_bounds(config, path, what)
    _check_shapes(config, shapes, path, what, "model." if fmt == CHECKPOINT_FORMAT else "")
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise AvatarError(f"{what} {path} is damaged or not a safetensors file ({e}); "
                          "delete it and train again") from None
    if meta.get("sha256") != tensors_digest(tensors):
        raise AvatarError(f"{what} {path} fails its checksum (the file was changed or damaged); "
                          "delete it and train again")
    return tensors, meta


def _config_from(meta: dict, path: Path, what: str) -> RendererConfig:
    from avatar.io.files import parse_json
    try:
        return RendererConfig.from_dict(parse_json(meta["config"], f"{what} {path} config", 8))
    except (KeyError, ValueError, TypeError, OverflowError, AvatarError) as e:
        raise AvatarError(f"{what} {path} has no readable renderer config ({e}); train again") from None


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Copy tensors into model, refusing missing/extra names and shape mismatches."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or extra:
        raise AvatarError(f"{what} {path} does not fit this renderer (missing {missing[:3]}, "
                          f"unexpected {extra[:3]}); it is from another config: train again")
    for name, value in own.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise AvatarError(f"{what} {path}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                              f"expected {tuple(value.shape)}; train again")
        if tensors[name].is_floating_point() and not torch.isfinite(tensors[name]).all():
            raise AvatarError(f"{what} {path}: tensor '{name}' holds NaN or inf; train again")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


# --- final weights ---------------------------------------------------------------------------

def save_weights(path: Path, model: DeferredRenderer, extra: dict | None = None,
                 half: bool = True) -> None:
    """Inference weights (fp16 by default) + config."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "config": json.dumps(model.config.to_dict()),
            "extra": json.dumps(extra or {})}
    _save(path, state, meta)


def load_weights(path: Path, device: str | torch.device = "cpu") -> DeferredRenderer:
    tensors, meta = _load(Path(path), "renderer weights", WEIGHTS_FORMAT)
    model = DeferredRenderer(_config_from(meta, path, "renderer weights"))
    load_state(model, tensors, Path(path), "renderer weights")
    return model.to(device).eval()


# --- training checkpoints --------------------------------------------------------------------

def save_checkpoint(path: Path, model: DeferredRenderer, optimizer: torch.optim.Optimizer,
                    state: dict) -> None:
    """Weights + AdamW moments + `state` (step, elapsed time, loss history: JSON)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, s in optimizer.state_dict()["state"].items():
        for name, value in s.items():
            tensors[f"optim.{i}.{name}"] = torch.as_tensor(value)
    meta = {"format": CHECKPOINT_FORMAT, "config": json.dumps(model.config.to_dict()),
            "state": json.dumps(state)}
    _save(path, tensors, meta)


def load_checkpoint(path: Path, model: DeferredRenderer, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place from `path`; return the saved state dict."""
    path = Path(path)
    tensors, meta = _load(path, "checkpoint", CHECKPOINT_FORMAT)
    config = _config_from(meta, path, "checkpoint")
    if config != model.config:
        raise AvatarError(f"checkpoint {path} was made with another renderer config ({config}); "
                          "use another run folder or the same settings")
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path,
               "checkpoint")
    opt_state = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            opt_state.setdefault(int(i), {})[key] = value
    groups = optimizer.state_dict()["param_groups"]
    n_params = sum(len(g["params"]) for g in groups)
    if any(i >= n_params for i in opt_state):
        raise AvatarError(f"checkpoint {path}: optimizer state does not fit this model; train again")
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (ValueError, RuntimeError) as e:
        raise AvatarError(f"checkpoint {path}: optimizer state does not fit ({e}); train again") from None
    try:
        return json.loads(meta.get("state", "{}"))
    except ValueError:
        raise AvatarError(f"checkpoint {path}: its training state is not valid JSON; train again") from None
