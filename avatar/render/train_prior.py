"""Train a renderer prior on many people at once: one U-Net shared by all, a neural texture per
person (all in the same UV layout), batches taken from each person in turn.

    metrics = train_prior([persons/a, persons/b, ...], out=priors/many, run_dir=runs/prior-many,
                          steps=3000)

The prior written to `out` (avatar/render/prior.py) is the shared U-Net with the mean of the
people's textures as the texture a new person starts from. Each person's last 15 % of frames are
never trained on; their held-out PSNR is measured at the end (the run's metrics.json). The run
folder holds config.json, one weights file per person and state.json every `checkpoint_every`
steps, curve.png and samples.png (the first person's held-out frames): rerunning the same command
continues from there (the weights and the step; AdamW's moments start again).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar.config import CROP_SIZE
from avatar.errors import AvatarError
from avatar.io.files import read_json, write_json
from avatar.render.data import RenderSamples, person_samples
from avatar.render.model import DeferredRenderer, RendererConfig
from avatar.render.prior import save_prior
from avatar.render.renderer import pick_device
from avatar.render.store import load_weights, save_weights
from avatar.render.train import (evaluate_holdout, make_optimizer, train_step, write_curve,
                                 write_samples)

MAX_FRAMES = 600          # per person (evenly spaced training frames): bounded memory


def shared_models(config: RendererConfig, n: int) -> list[DeferredRenderer]:
    """n renderers with their own textures and one U-Net object."""
    torch.manual_seed(0)
    models = [DeferredRenderer(config) for _ in range(n)]
    for model in models[1:]:
        model.unet = models[0].unet
    return models


def thinned(samples: RenderSamples, max_frames: int = MAX_FRAMES) -> RenderSamples:
    """At most `max_frames` evenly spaced training frames, the held-out frames all kept."""
    train = np.arange(samples.holdout_start)
    if len(train) <= max_frames:
        return samples
    keep = np.concatenate([train[np.linspace(0, len(train) - 1, max_frames).round().astype(int)],
                           np.arange(samples.holdout_start, len(samples))])
    return replace(samples, crops=samples.crops[keep], vertices=samples.vertices[keep],
                   boxes=samples.boxes[keep], holdout_start=max_frames)


def mean_texture_model(models: list[DeferredRenderer]) -> DeferredRenderer:
    """A renderer holding the shared U-Net and the mean of the people's textures."""
    out = DeferredRenderer(models[0].config)
    out.load_state_dict(models[0].state_dict())
    with torch.no_grad():
        for i, level in enumerate(out.texture.levels):
            level.copy_(torch.stack([m.texture.levels[i] for m in models]).mean(0))
    return out.eval()


def train_prior(person_dirs: list[Path], out: Path, run_dir: Path, *, steps: int,
                device: str = "auto", crop_size: int = CROP_SIZE, batch_size: int = 4,
                model_config: RendererConfig | None = None, checkpoint_every: int = 100,
                progress: bool = True, threads: int | None = None) -> dict:
    """Train the shared U-Net + per-person textures for `steps` steps, write the prior to `out`;
    return {person: held-out metrics}."""
    if len(person_dirs) < 1 or steps < 1:
        raise AvatarError("give at least one person and a positive number of steps")
    dev = pick_device(device)
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    config = replace(model_config or RendererConfig(), crop_size=crop_size, mouth_window=(0, 0))
    names = [Path(d).name for d in person_dirs]
    if len(set(names)) < len(names):
        raise AvatarError(f"two of the people have the same folder name ({names}); give each once")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"people": names, "renderer": config.to_dict(),
                                         "steps": steps, "batch_size": batch_size,
                                         "device": str(dev), "max_frames": MAX_FRAMES})
    samples = [thinned(person_samples(Path(d), crop_size, config.band_top, progress))
               for d in person_dirs]
    models = shared_models(config, len(samples))
    state = resume_state(run_dir, models, names)
    models = [m.to(dev) for m in models]
    _prior_loop(models, make_optimizer(models[0], [m.texture for m in models]), samples, state, run_dir, names, dev, steps,
                batch_size, checkpoint_every, progress)
    metrics = {n: evaluate_holdout(m, s, dev) for n, m, s in zip(names, models, samples)}
    write_json(run_dir / "metrics.json", metrics)
    save_prior(out, mean_texture_model([m.cpu() for m in models]),
               {"people": names, "steps": state["step"], "heldout": metrics,
                "run": str(run_dir)})
    return metrics


def _prior_loop(models, optimizer, samples, state, run_dir, names, dev, steps, batch_size,
                checkpoint_every, progress) -> None:
    scaler = torch.amp.GradScaler("cuda", enabled=False)     # fp32 everywhere, as before
    bar = tqdm(initial=state["step"], total=steps, desc="training prior", unit="step",
               disable=not progress, file=sys.stderr)
    for m in models:
        m.train()
    window: list[float] = []
    while state["step"] < steps:
        p = state["step"] % len(models)                   # each person in turn
        rng = np.random.default_rng([11, state["step"]])
        window.append(train_step(models[p], optimizer, samples[p], rng, batch_size, dev, scaler))
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}", person=names[p])
        if state["step"] % 10 == 0:
            state["history"].append([state["step"], float(np.mean(window))])
            window = []
        if state["step"] % checkpoint_every == 0 or state["step"] == steps:
            save_run(run_dir, models, names, state, samples[0], dev)
    bar.close()


def save_run(run_dir: Path, models, names, state: dict, first: RenderSamples, dev) -> None:
    """Each person's renderer (fp32), then state.json: a kill between them resumes the step before."""
    (run_dir / "people").mkdir(exist_ok=True)
    for name, model in zip(names, models):
        save_weights(run_dir / "people" / f"{name}.safetensors", model, half=False)
    write_json(run_dir / "state.json", {**state, "people": names})
    write_curve(run_dir / "curve.png", state["history"])
    write_samples(run_dir / "samples.png", models[0], first, dev)
    for model in models:
        model.train()


def resume_state(run_dir: Path, models: list[DeferredRenderer], names: list[str]) -> dict:
    """The saved step and weights of an earlier run of the same people, or a fresh state."""
    if not (run_dir / "state.json").is_file():
        return {"step": 0, "history": []}
    state = read_json(run_dir / "state.json", "prior run state")
    if state.get("people") != names:
        raise AvatarError(f"{run_dir} is a prior run for other people ({state.get('people')}); "
                          "use another run folder")
    for name, model in zip(names, models):
        saved = load_weights(run_dir / "people" / f"{name}.safetensors")
        if saved.config != model.config:
            raise AvatarError(f"{run_dir}: {name}'s saved renderer has another config; use "
                              "another run folder")
        model.texture.load_state_dict(saved.texture.state_dict())
    models[0].unet.load_state_dict(saved.unet.state_dict())
    print(f"resuming {run_dir.name} at step {state['step']}", file=sys.stderr)
    return {"step": int(state["step"]), "history": list(state.get("history", []))}
