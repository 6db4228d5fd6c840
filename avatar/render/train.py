"""Train the neural texture + U-Net of one person (resumable, time-budgeted, CPU or CUDA).

A run folder (default runs/render-<person>-<variant>-<size>/) holds config.json,
checkpoint.safetensors (weights + AdamW state + step + loss history, every N steps), curve.png and
samples_<step>.png (held-out frames: real | rendered | difference x4). Rerunning the same command
continues from the last checkpoint; the `minutes` budget counts the run's total training time.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar.config import CROP_SIZE
from avatar.errors import AvatarError
from avatar.io.files import atomic_output, read_json, write_json
from avatar.io import person as person_io
from avatar.render.compose import box_mean
from avatar.render.metrics import psnr, ssim
from avatar.render.data import RenderSamples, person_samples
from avatar.render.model import DeferredRenderer, RendererConfig
from avatar.render.renderer import pick_device, render_band
from avatar.render.store import load_checkpoint, save_checkpoint, save_weights

MOUTH_WEIGHT = 4.0       # extra L1 weight inside the lips box
SSIM_WEIGHT = 0.5
TEXTURE_LR, NET_LR = 5e-3, 1e-3
MOUTH_STAGE_STEPS = 1500  # the lips window at frame resolution (second stage)
EVAL_EVERY = 100          # steps between held-out PSNR measurements


def ssim_torch(a: torch.Tensor, b: torch.Tensor, r: int = 3) -> torch.Tensor:
    """Mean SSIM of images [B, C, H, W] in [0, 1] with a (2r+1)^2 box window."""
    pool = lambda x: box_mean(x, r, "reflect")  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a ** 2
    var_b = pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()


def loss_terms(res, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    weight = 1 + MOUTH_WEIGHT * res.mouth
    l1 = (weight * (res.output - target).abs()).mean() / weight.mean()
    structural = 1 - ssim_torch(res.output, target)
    total = l1 + SSIM_WEIGHT * structural
    return total, {"l1": l1.item(), "ssim_loss": structural.item()}


def default_run_dir(person_dir: Path, config: RendererConfig) -> Path:
    variant = "uvonly" if config.uv_only else ("nomouth" if not config.mouth_patch else "texture")
    return person_io.runs_root() / f"render-{Path(person_dir).resolve().name}-{variant}-{config.crop_size}"


def make_optimizer(model: DeferredRenderer, textures: list | None = None) -> torch.optim.AdamW:
    """AdamW over the U-Net and the texture(s): `textures` (e.g. one per person of a prior run),
    default the model's own."""
    textures = [model.texture] if textures is None else textures
    groups = [{"params": list(model.unet.parameters()), "lr": NET_LR, "weight_decay": 1e-4}]
    params = [p for texture in textures if texture is not None for p in texture.parameters()]
    if params:
        groups.append({"params": params, "lr": TEXTURE_LR, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=(0.9, 0.99))


def lr_scale(progress: float) -> float:
    """Constant, then a cosine decay to 5 % over the last 40 % of the budget."""
    if progress < 0.6:
        return 1.0
    t = min(1.0, (progress - 0.6) / 0.4)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def batch_tensors(samples: RenderSamples, idx: np.ndarray, device, top: int, shift_px: int = 0,
                  rng: np.random.Generator | None = None):
    """Vertices [B,468,3] and real bands [B,3,h,S] in [0,1]; optional random shift (augmentation)."""
    verts = samples.vertices[idx].copy()
    crops = samples.crops[idx]
    if shift_px and rng is not None:
        out, s = np.empty_like(crops), shift_px
        for i in range(len(idx)):
            dx, dy = rng.integers(-s, s + 1, 2)
            padded = np.pad(crops[i], ((s, s), (s, s), (0, 0)), mode="edge")
            out[i] = padded[s - dy:s - dy + crops.shape[1], s - dx:s - dx + crops.shape[2]]
            verts[i, :, 0] += dx
            verts[i, :, 1] += dy
        crops = out
    band = torch.from_numpy(np.ascontiguousarray(crops[:, top:])).to(device)
    band = band.permute(0, 3, 1, 2).float() / 255
    return torch.from_numpy(verts).to(device), band


def _start(config: RendererConfig, dev: torch.device, run_dir: Path, resume: bool,
           prior: Path | None = None):
    """A new model (seeded; texture and U-Net from `prior`, a prior folder, when given) and its
    optimizer, or the run's checkpoint continued."""
    torch.manual_seed(0)
    model = DeferredRenderer(config)
    if prior is not None:
        from avatar.render.prior import load_prior, start_from_prior
        start_from_prior(model, load_prior(prior)[0], str(prior))
    model = model.to(dev)
    optimizer = make_optimizer(model)
    state = {"step": 0, "elapsed_s": 0.0, "history": [], "heldout": []}
    ckpt = run_dir / "checkpoint.safetensors"
    if resume and ckpt.is_file():
        state = {"heldout": [], **load_checkpoint(ckpt, model, optimizer)}
        print(f"resuming {run_dir.name} at step {state['step']}", file=sys.stderr)
    return model, optimizer, state


# held-out frames the watch renders every `every` steps (evenly spaced; the fit's final metrics use
# all of them): 225 frames every 100 steps took 24 % of a 15-minute fit's CPU (session 16)
WATCH_FRAMES = 48


class HeldOutWatch:
    """Held-out PSNR every `every` steps on at most `max_frames` held-out frames (into
    state["heldout"]: step, minutes, PSNR, mouth PSNR); the fit stops once `patience` evaluations
    in a row stayed below the best before them plus `min_gain` dB (patience 0: never)."""

    def __init__(self, samples: RenderSamples, every: int, patience: int, min_gain: float = 0.05,
                 max_frames: int = WATCH_FRAMES):
        self.samples, self.every, self.patience, self.min_gain = samples, every, patience, min_gain
        self.max_frames = max_frames
        self.active = every > 0 and samples.holdout_start < len(samples)

    def due(self, step: int) -> bool:
        return self.active and step % self.every == 0

    def record(self, model, state: dict, dev, elapsed_s: float) -> float:
        m = evaluate_holdout(model, self.samples, dev, self.max_frames)
        model.train()
        state["heldout"].append([state["step"], round(elapsed_s / 60, 2), round(m["psnr"], 3),
                                 round(m.get("psnr_mouth", float("nan")), 3)])
        return m["psnr"]

    def stopped(self, state: dict) -> bool:
        seen = [h[2] for h in state.get("heldout", [])]
        if self.patience <= 0 or len(seen) <= self.patience:
            return False
        return max(seen[-self.patience:]) < max(seen[:-self.patience]) + self.min_gain


def train_renderer(person_dir: Path, *, minutes: float, device: str = "auto", resume: bool = True,
                   run_dir: Path | None = None, crop_size: int = CROP_SIZE, steps: int | None = None,
                   ablation_uv_only: bool = False, mouth_patch: bool = True,
                   batch_size: int | None = None, checkpoint_every: int | None = None,
                   threads: int | None = None, write_person: bool | None = None,
                   samples: RenderSamples | None = None, progress: bool = True,
                   model_config: RendererConfig | None = None,
                   mouth_stage_steps: int | None = None, prior: Path | None = None,
                   eval_every: int = EVAL_EVERY, patience: int = 0) -> dict:
    """Train (or continue) the renderer of a person; return held-out metrics.

    The last 15 % of the target video's frames (or person.json's holdout_start) are never trained
    on. Writes <person>/renderer.safetensors (fp16) and person.json "renderer"/"metrics" unless
    this is an ablation run (write_person defaults to True only for the full model).
    `model_config` sets texture/U-Net sizes (crop size and variant come from the arguments).
    Then the second stage (the lips window at frame resolution, avatar/render/train_mouth.py)
    trains for `mouth_stage_steps` on top of the frozen first stage (0: none; default
    MOUTH_STAGE_STEPS, or `steps` when fewer), in run_dir/mouth.
    `prior`: a renderer prior folder (avatar/render/prior.py) the texture and U-Net start from.
    The held-out PSNR is measured every `eval_every` steps (progress bar, curve.png); with
    `patience` > 0 the fit ends once that many measurements in a row gained nothing.
    """
    person_dir = Path(person_dir)
    check_budget(crop_size, minutes, steps)
    dev = pick_device(device)
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    config = replace(model_config or RendererConfig(), crop_size=crop_size, uv_only=ablation_uv_only,
                     mouth_patch=mouth_patch)
    run_dir = Path(run_dir) if run_dir else default_run_dir(person_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = person_samples(person_dir, crop_size, config.band_top, progress)
    if samples.crop_size != crop_size:
        raise ValueError("samples were prepared for another crop size")
    model, optimizer, state = _start(config, dev, run_dir, resume, prior)
    batch_size = batch_size or (16 if dev.type == "cuda" else 4)
    checkpoint_every = checkpoint_every or checkpoint_interval(steps)
    run_config = {"person": str(person_dir), "renderer": config.to_dict(), "minutes": minutes,
                  "steps": steps, "batch_size": batch_size, "device": str(dev),
                  "holdout_start": samples.holdout_start, "n_frames": len(samples),
                  **TRAINING_RECORD, "checkpoint_every": checkpoint_every,
                  "prior": prior_record(prior), "eval_every": eval_every, "patience": patience}
    write_json(run_dir / "config.json", run_config)
    watch = HeldOutWatch(samples, eval_every, patience)
    state = _loop(model, optimizer, samples, state, run_dir, dev, minutes, steps, batch_size,
                  checkpoint_every, progress, watch)
    metrics = evaluate_holdout(model, samples, dev)
    metrics.update(step=state["step"], train_minutes=round(state["elapsed_s"] / 60, 2),
                   device=str(dev), variant=default_run_dir(person_dir, config).name.split("-")[-2])
    if mouth_stage_steps is None:
        mouth_stage_steps = min(MOUTH_STAGE_STEPS, steps or MOUTH_STAGE_STEPS)
    if mouth_stage_steps > 0 and not ablation_uv_only:
        model, metrics["mouth_stage"] = _second_stage(person_dir, model.cpu(), run_dir / "mouth",
                                                      mouth_stage_steps, dev, progress)
    write_json(run_dir / "metrics.json", metrics)
    save_weights(run_dir / person_io.RENDERER, model.cpu(), {"metrics": metrics})
    if write_person if write_person is not None else (not ablation_uv_only and mouth_patch):
        _write_person(person_dir, model, run_config, metrics)
    return metrics


TRAINING_RECORD = {"mouth_weight": MOUTH_WEIGHT, "ssim_weight": SSIM_WEIGHT,
                   "lr": {"texture": TEXTURE_LR, "net": NET_LR}}


def check_budget(crop_size: int, minutes: float, steps: int | None) -> None:
    if crop_size % 128:
        raise AvatarError(f"crop size {crop_size} must be a multiple of 128 (e.g. 256 or 512)")
    if minutes <= 0 and not steps:
        raise AvatarError("give a positive --minutes budget or a step count")


def prior_record(prior: Path | None) -> dict | None:
    """What the run config says of the prior it started from."""
    if prior is None:
        return None
    from avatar.render.prior import CONFIG
    info = read_json(Path(prior) / CONFIG, "renderer prior config")
    return {"folder": str(prior), "sha256": info.get("sha256"), "people": info.get("people")}


def checkpoint_interval(steps: int | None) -> int:
    """Steps between checkpoints: a tenth of the run (10 to 100), 100 for a time-budgeted run,
    so a kill loses at most a tenth of a short run."""
    return max(10, min(100, steps // 10)) if steps else 100


def _second_stage(person_dir: Path, first: DeferredRenderer, run_dir: Path, steps: int, dev,
                  progress: bool) -> tuple[DeferredRenderer, dict]:
    from avatar.render.train_mouth import person_mouth_samples, train_mouth_stage, with_mouth_stage
    samples = person_mouth_samples(person_dir, first, str(dev), progress=progress)
    model = with_mouth_stage(first, samples.shape, samples.scale)
    metrics = train_mouth_stage(model, samples, run_dir, steps=steps, device=dev, progress=progress)
    return model.cpu().eval(), metrics


def _loop(model, optimizer, samples, state, run_dir, dev, minutes, steps, batch_size,
          checkpoint_every, progress, watch: HeldOutWatch) -> dict:
    budget_s = minutes * 60 if minutes > 0 else float("inf")
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    bar = tqdm(initial=state["step"], total=steps, desc="training renderer", unit="step",
               disable=not progress, file=sys.stderr)
    window: list[float] = []
    model.train()
    start, elapsed0 = time.time(), state["elapsed_s"]
    while True:
        elapsed = elapsed0 + time.time() - start
        if (steps and state["step"] >= steps) or elapsed >= budget_s or watch.stopped(state):
            break
        progress_frac = state["step"] / steps if steps else elapsed / budget_s
        for group, base in zip(optimizer.param_groups, _base_lrs(model)):
            group["lr"] = base * lr_scale(progress_frac)
        rng = np.random.default_rng([7, state["step"]])     # batch depends only on the step
        window.append(train_step(model, optimizer, samples, rng, batch_size, dev, scaler))
        state["step"] += 1
        bar.update(1)
        if watch.due(state["step"]):
            watch.record(model, state, dev, elapsed0 + time.time() - start)
        bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}", **held_out_postfix(state))
        if state["step"] % 10 == 0:
            state["history"].append([state["step"], float(np.mean(window))])
            window = []
        if state["step"] % checkpoint_every == 0:
            state["elapsed_s"] = elapsed0 + time.time() - start
            _checkpoint(model, optimizer, samples, state, run_dir, dev)
    bar.close()
    state["elapsed_s"] = elapsed0 + time.time() - start
    if window:
        state["history"].append([state["step"], float(np.mean(window))])
    _checkpoint(model, optimizer, samples, state, run_dir, dev)
    return state


def train_step(model, optimizer, samples: RenderSamples, rng: np.random.Generator, batch_size: int,
               dev, scaler: torch.amp.GradScaler) -> float:
    """One optimizer step on `batch_size` training frames drawn with `rng` (randomly shifted:
    augmentation), in fp16 autocast when `scaler` is enabled; the loss."""
    train_idx = np.arange(samples.holdout_start)
    idx = rng.choice(train_idx, size=batch_size, replace=len(train_idx) < batch_size)
    verts, band = batch_tensors(samples, idx, dev, model.config.band_top,
                                shift_px=model.config.crop_size // 64, rng=rng)
    with torch.autocast("cuda", dtype=torch.float16, enabled=scaler.is_enabled()):
        loss, _ = loss_terms(render_band(model, verts, band), band)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def held_out_postfix(state: dict) -> dict:
    held = state.get("heldout") or []
    return {"held_out": f"{held[-1][2]:.2f} dB"} if held else {}


def _base_lrs(model) -> list[float]:
    return [NET_LR] + ([TEXTURE_LR] if model.texture is not None else [])


def _checkpoint(model, optimizer, samples, state, run_dir: Path, dev) -> None:
    save_checkpoint(run_dir / "checkpoint.safetensors", model, optimizer, state)
    write_curve(run_dir / "curve.png", state["history"], state.get("heldout"))
    write_samples(run_dir / "samples.png", model, samples, dev)
    model.train()


def write_curve(path: Path, history: list, heldout: list | None = None) -> None:
    """Training loss per step and, on a second axis, the held-out PSNR where it was measured."""
    if not history:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h = np.asarray(history, np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(h[:, 0], h[:, 1])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (L1 + 0.5 (1 - SSIM))")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if heldout:
        held = np.asarray(heldout, np.float64)
        right = ax.twinx()
        right.plot(held[:, 0], held[:, 2], "o-", color="tab:orange", markersize=3)
        right.set_ylabel("held-out PSNR (dB)", color="tab:orange")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_samples(path: Path, model, samples: RenderSamples, dev, count: int = 4) -> None:
    """Grid of held-out frames: real | rendered | |difference| x 4."""
    import cv2
    held = np.arange(samples.holdout_start, len(samples))
    if len(held) == 0:
        held = np.arange(len(samples))
    idx = held[np.linspace(0, len(held) - 1, min(count, len(held))).astype(int)]
    rendered = render_crops(model, samples, idx, dev)
    real = samples.crops[idx]
    diff = np.clip(np.abs(rendered.astype(np.int16) - real) * 4, 0, 255).astype(np.uint8)
    grid = np.concatenate([np.concatenate([r, o, d], 1) for r, o, d in zip(real, rendered, diff)], 0)
    ok, data = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.tobytes())


def render_crops(model, samples: RenderSamples, idx: np.ndarray, dev, batch: int = 8) -> np.ndarray:
    """Full face crops uint8 [N, S, S, 3]: real upper part + composited rendered band."""
    return _rendered_with_masks(model, samples, idx, dev, batch)[0]


def _rendered_with_masks(model, samples: RenderSamples, idx: np.ndarray, dev, batch: int = 8):
    """render_crops' crops and, from the same renders, the band's re-rendered face and lips
    masks (alpha > 0.5, mouth > 0.5) [N, h, S] bool."""
    model.eval()
    top = model.config.band_top
    out = samples.crops[idx].copy()
    face, mouth = [], []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            verts, band = batch_tensors(samples, idx[s:s + batch], dev, top)
            res = render_band(model, verts, band)
            rgb = (res.output.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            out[s:s + batch, top:] = rgb
            face.append(res.alpha[:, 0].cpu().numpy() > 0.5)
            mouth.append(res.mouth[:, 0].cpu().numpy() > 0.5)
    empty = np.zeros((0, samples.crop_size - top, samples.crop_size), bool)
    return out, np.concatenate(face) if face else empty, np.concatenate(mouth) if mouth else empty


def crop_metrics(rendered: np.ndarray, real: np.ndarray, top: int) -> dict:
    ps = [psnr(o, r) for o, r in zip(rendered, real)]
    band = [psnr(o[top:], r[top:]) for o, r in zip(rendered, real)]
    ss = [ssim(o, r) for o, r in zip(rendered, real)]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_band": float(np.mean(band))}


def evaluate_holdout(model, samples: RenderSamples, dev, max_frames: int | None = None) -> dict:
    """PSNR/SSIM of held-out crops (rendered with their own tracked geometry), plus PSNR of the
    re-rendered lower face alone (psnr_face: where alpha > 0.5) and of the lips box (psnr_mouth);
    on `max_frames` evenly spaced held-out frames when there are more."""
    held = np.arange(samples.holdout_start, len(samples))
    if len(held) == 0:
        return {}
    if max_frames and len(held) > max_frames:
        held = held[np.linspace(0, len(held) - 1, max_frames).round().astype(int)]
    rendered, face, mouth = _rendered_with_masks(model, samples, held, dev)
    m = crop_metrics(rendered, samples.crops[held], model.config.band_top)
    m.update(_region_psnr(rendered, samples.crops[held], model.config.band_top, face, mouth))
    m["holdout_frames"] = int(len(held))
    return m


def _region_psnr(rendered: np.ndarray, real: np.ndarray, top: int, face: np.ndarray,
                 mouth: np.ndarray) -> dict:
    """PSNR of the band inside the face and the lips masks."""
    sq = ((rendered[:, top:].astype(np.float64) - real[:, top:]) ** 2).mean(-1)
    return {k: float(10 * np.log10(255.0 ** 2 / max(sq[mask].mean(), 1e-10)))
            for k, mask in (("psnr_face", face), ("psnr_mouth", mouth))}


def _write_person(person_dir: Path, model, run_config: dict, metrics: dict) -> None:
    import tempfile
    with tempfile.TemporaryDirectory(dir=person_dir.parent) as tmp:
        weights = Path(tmp) / person_io.RENDERER
        save_weights(weights, model.cpu(), {"metrics": metrics})
        person_io.install_renderer(person_dir, weights, run_config, metrics)
