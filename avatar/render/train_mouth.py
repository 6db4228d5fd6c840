"""Train the renderer's second stage: the lips re-rendered at the frame's own resolution.

The first stage (neural texture + band U-Net on the 256^2 crop) cannot hold the frame's detail:
even the real frame, taken down to the 256^2 crop and back up into a 720p frame, keeps only about
a quarter of its lip-box detail (variance of the Laplacian). The second stage works on a window
around the lips cut from the composited frame at frame resolution (scale 1: no resampling in or
out), sees the neural texture and UVs rasterized at that resolution, and learns the residual to
the real frame with L1 + SSIM + a Laplacian (high-frequency) loss + a conditional patch GAN with
feature matching. The first stage is frozen.

A run folder holds config.json, checkpoint.safetensors (renderer + optimizer),
discriminator.safetensors, curve.png, samples.png and metrics.json; rerunning continues.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.face.mesh import LIPS, LIPS_OUTER
from avatar.io import person as person_io
from avatar.io.files import atomic_output, write_json
from avatar.render.compose import crop_window, mouth_origins, to_window_pixels
from avatar.render.gan import PatchDiscriminator, feature_matching, hinge_d, hinge_g, laplacian_l1
from avatar.render.metrics import MouthScores, mouth_box
from avatar.render.model import DeferredRenderer
from avatar.render.renderer import FaceRenderer, WindowRaster, mouth_geometry, render_mouth
from avatar.render.store import load_checkpoint, save_checkpoint
from avatar.render.train import checkpoint_interval, lr_scale, ssim_torch, write_curve

LOSSES = ("l1", "ssim", "laplacian", "gan")
# the shipped default: the patch GAN cost mouth PSNR and, once the source frame's detail is
# moved in, added no detail a viewer sees (docs/BENCHMARKS.md, "Renderer: the lips window")
DEFAULT_LOSSES = ("l1", "ssim", "laplacian")
WEIGHTS = {"l1": 1.0, "ssim": 0.5, "laplacian": 1.0, "gan": 0.05, "feature_matching": 1.0}
LR, TEXTURE_LR, D_LR = 1e-3, 5e-3, 2e-4
MAX_LIPS_PX = 112          # lips wider than this (frame pixels) are taken down to it
PAD = 8                    # pixels of random shift (augmentation) around each window


def window_geometry(meshes_frame: np.ndarray) -> tuple[tuple[int, int], float]:
    """((rows, cols), scale) of the lips window for a person: about 1.9 x 1.4 lip widths, whole
    multiples of 16, at frame resolution unless the lips are wider than MAX_LIPS_PX."""
    lips = np.asarray(meshes_frame, np.float32)[:, list(LIPS_OUTER), 0]
    width = float(np.median(lips.max(1) - lips.min(1)))
    if not np.isfinite(width) or width < 8:
        raise AvatarError("the tracked lips are too small for a lips window (under 8 pixels)")
    scale = min(1.0, MAX_LIPS_PX / width)
    w = width * scale
    return (int(math.ceil(1.4 * w / 16) * 16), int(math.ceil(1.9 * w / 16) * 16)), scale


@dataclass(frozen=True)
class MouthSamples:
    """Padded lips windows of every frame: real, after the first stage, and the geometry."""
    real: np.ndarray         # [T, H + 2P, W + 2P, 3] uint8
    first: np.ndarray        # [T, H + 2P, W + 2P, 3] uint8: the frame after the first stage
    vertices: np.ndarray     # [T, 468, 3] driven mesh in padded-window pixels
    lips: np.ndarray         # [T, 40, 2] tracked lip landmarks in padded-window pixels
    feats: np.ndarray        # [T, C, H + 2P, W + 2P] float16 texture features (frozen texture)
    uv: np.ndarray           # [T, H + 2P, W + 2P, 2] float32 rasterized UVs
    mask: np.ndarray         # [T, H + 2P, W + 2P] bool raster mask
    face: np.ndarray         # [T, H + 2P, W + 2P] int32 visible triangle
    bary: np.ndarray         # [T, H + 2P, W + 2P, 3] float16 barycentrics
    trainable: np.ndarray    # [T] bool: frames training may use
    holdout_start: int
    shape: tuple[int, int]
    scale: float
    pad: int = PAD

    def __len__(self) -> int:
        return len(self.real)


def mouth_samples(renderer: FaceRenderer, frames_iter, meshes: np.ndarray, boxes: np.ndarray,
                  landmarks: np.ndarray, holdout_start: int, shape, scale: float,
                  trainable: np.ndarray | None = None, progress: bool = True) -> MouthSamples:
    """Run the first stage over the target frames and keep the padded lips windows."""
    n, (h, w) = len(meshes), shape
    origins = mouth_origins(meshes, shape, scale) - PAD / scale
    full = (h + 2 * PAD, w + 2 * PAD)
    real = np.zeros((n, *full, 3), np.uint8)
    first = np.zeros_like(real)
    bar = tqdm(total=n, desc="first stage on the target", unit="frame", disable=not progress,
               file=sys.stderr)
    batch, t = [], 0
    for frame in frames_iter:
        if t + len(batch) >= n:
            break
        batch.append(frame)
        if len(batch) == 8:
            t = _windows(renderer, batch, meshes, boxes, origins, scale, full, t, real, first)
            bar.update(len(batch))
            batch = []
    if batch:
        t = _windows(renderer, batch, meshes, boxes, origins, scale, full, t, real, first)
        bar.update(len(batch))
    bar.close()
    if t < n:
        raise AvatarError(f"the target video has {t} frames but its track has {n}; re-run train-person")
    lips = (landmarks[:, list(LIPS), :2] - origins[:, None]) * scale
    trainable = np.ones(n, bool) if trainable is None else np.asarray(trainable, bool)
    verts = to_window_pixels(meshes, origins, scale)
    raster = _geometry(renderer.model, verts, full)
    return MouthSamples(real, first, verts, lips.astype(np.float32), *raster,
                        trainable, holdout_start, tuple(shape), float(scale))


def _geometry(model: DeferredRenderer, verts: np.ndarray, full) -> tuple:
    """Rasterize every padded window once (the geometry of a frame never changes in training;
    a shift of the window is a shift of its raster)."""
    out = ([], [], [], [], [])
    model.eval()
    with torch.inference_mode():
        if model.texture is not None:
            model.texture.freeze()
        for s in range(0, len(verts), 16):
            g = mouth_geometry(model, torch.from_numpy(verts[s:s + 16]), *full)
            out[0].append(g.feats.half().numpy())
            out[1].append(g.uv.numpy())
            out[2].append(g.mask.numpy())
            out[3].append(g.face.int().numpy())
            out[4].append(g.bary.half().numpy())
    return tuple(np.concatenate(o) for o in out)


def _windows(renderer, batch, meshes, boxes, origins, scale, full, t, real, first) -> int:
    frames = np.stack(batch)
    k = len(frames)
    done = renderer.first_stage(meshes[t:t + k], frames, boxes[t:t + k])
    for j in range(k):
        real[t + j] = crop_window(frames[j], origins[t + j], scale, full)
        first[t + j] = crop_window(done[j], origins[t + j], scale, full)
    return t + k


# the second stage's settings a new person gets on top of RendererConfig's defaults (which stay
# those of older files, so a renderer file from before keeps rendering as it did). Neither
# session 7 option is among them (docs/BENCHMARKS.md, "Session 7"): the optical-flow
# registration (source_flow=True) gave +0.03 dB mouth PSNR on the demo's held-out frames but
# -0.26 dB on a left-out clip; the teeth atlas (teeth_atlas=teeth.ATLAS_SHAPE) adds detail that
# anti-correlates with the real teeth's (-0.12)
STAGE_SETTINGS: dict = {}


def with_mouth_stage(base: DeferredRenderer, shape, scale: float) -> DeferredRenderer:
    """A renderer with the base's first stage (frozen) and a fresh second stage (its teeth
    atlas is filled when training starts: bake_teeth_atlas)."""
    config = replace(base.config, mouth_window=tuple(int(v) for v in shape), mouth_scale=float(scale),
                     **STAGE_SETTINGS)
    torch.manual_seed(0)
    model = DeferredRenderer(config)
    own = model.state_dict()
    own.update({k: v.float() for k, v in base.state_dict().items() if not k.startswith("mouth.")})
    model.load_state_dict(own)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("mouth."))
    return model


def bake_teeth_atlas(model: DeferredRenderer, samples: MouthSamples) -> int:
    """Fill the second stage's teeth atlas (config teeth_atlas) from a trainable training frame
    whose mouth opening shows the upper row's whole picture (at least 90 % of the most any frame
    shows: a frame with clenched teeth would put the lower row in it), the sharpest of those
    (variance of the Laplacian). Each texel takes that frame's pixel where the rigid teeth place
    it, valid inside the frame's tracked mouth opening, 2 pixels in from its edge. Returns the frame."""
    import cv2
    from avatar.face.mesh import LIPS_INNER
    from avatar.render.teeth import atlas_positions, teeth_vertices
    shape = model.config.teeth_atlas
    idx = np.nonzero(samples.trainable[:samples.holdout_start])[0]
    pos = atlas_positions(teeth_vertices(samples.vertices[idx]), shape)
    ring = [list(LIPS).index(i) for i in LIPS_INNER]
    found = []
    for k, i in enumerate(idx):
        opening = np.zeros(samples.real.shape[1:3], np.uint8)
        cv2.fillPoly(opening, [np.round(samples.lips[i][ring]).astype(np.int32)], 1)
        opening = cv2.erode(opening, np.ones((5, 5), np.uint8))
        inside = cv2.remap(opening, pos[k, ..., 0], pos[k, ..., 1], cv2.INTER_NEAREST) > 0
        rgb = cv2.remap(samples.real[i], pos[k, ..., 0], pos[k, ..., 1], cv2.INTER_LINEAR)
        lap = cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
        found.append((int(inside.sum()), float(lap[inside].var()) if inside.sum() > 16 else 0.0, int(i), rgb, inside))
    most = max(f[0] for f in found)
    _, _, frame, rgb, inside = max((f for f in found if f[0] >= 0.9 * most), key=lambda f: f[1])
    if most > 16:
        atlas = np.concatenate([rgb.astype(np.float32) / 255, inside[..., None].astype(np.float32)], 2)
        model.mouth.teeth_atlas.copy_(torch.from_numpy(atlas).permute(2, 0, 1))
    return frame


SOURCE_REACH = 45          # frames a training sample's detail source may be away from it
SOURCE_OFFSET = 15         # evaluation: frames between a rendered frame and its detail source
NO_SOURCE = 0.2            # share of training samples without a source (say without frame meshes)


def batch_windows(samples: MouthSamples, idx: np.ndarray, dev, rng: np.random.Generator | None,
                  sources: np.ndarray | None = None):
    """(vertices [B,468,3], first [B,3,H,W], real [B,3,H,W] in [0,1], raster, source, lips
    [B,40,2]) with a random shift of up to PAD pixels when rng is given (centred otherwise).
    sources [B]: the frame whose real pixels the second stage may use for each (-1: none)."""
    h, w = samples.shape
    p = samples.pad
    shifts = rng.integers(-p, p + 1, (len(idx), 2)) if rng is not None else np.zeros((len(idx), 2), int)
    cut = lambda a: np.stack([a[i, ..., p + dy:p + dy + h, p + dx:p + dx + w]  # noqa: E731
                              for i, (dx, dy) in zip(idx, shifts)])
    hw = lambda a: np.stack([a[i, p + dy:p + dy + h, p + dx:p + dx + w]  # noqa: E731
                             for i, (dx, dy) in zip(idx, shifts)])
    offset = (p + shifts).astype(np.float32)
    verts = samples.vertices[idx].copy()
    verts[..., :2] -= offset[:, None]
    lips = samples.lips[idx] - offset[:, None]
    to_t = lambda a: torch.from_numpy(a).to(dev).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    from_np = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    raster = WindowRaster(from_np(cut(samples.feats)).float(), from_np(hw(samples.uv)),
                          from_np(hw(samples.mask)), from_np(hw(samples.face)).long(),
                          from_np(hw(samples.bary)).float())
    source = None
    if sources is not None:
        src = np.where(sources < 0, idx, sources)
        real = samples.real[src].copy()
        real[sources < 0] = 0
        src_verts = samples.vertices[src].copy()
        src_verts[sources < 0] = -1e4                 # outside the window: nothing valid
        source = (from_np(src_verts), to_t(real))
    return from_np(verts), to_t(hw(samples.first)), to_t(hw(samples.real)), raster, source, lips


def pick_sources(rng: np.random.Generator, idx: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """A detail source for each training sample: another allowed frame within SOURCE_REACH
    frames (never the frame itself), or -1 for NO_SOURCE of them."""
    out = np.full(len(idx), -1)
    for k, i in enumerate(idx):
        near = allowed[(np.abs(allowed - i) <= SOURCE_REACH) & (allowed != i)]
        if len(near) and rng.random() >= NO_SOURCE:
            out[k] = rng.choice(near)
    return out


def eval_sources(idx: np.ndarray, n: int, offset: int = SOURCE_OFFSET) -> np.ndarray:
    """For evaluation: each frame's detail comes from `offset` frames earlier (later for the
    first ones), never from the frame compared with."""
    back = idx - offset
    return np.where(back >= idx.min(), back, np.minimum(idx + offset, n - 1))


def generator_loss(res, real, window, disc, losses) -> tuple[torch.Tensor, dict]:
    alpha = res.alpha
    terms = {}
    if "l1" in losses:
        terms["l1"] = (alpha * (res.output - real).abs()).sum() / (alpha.sum() * 3).clamp(min=1)
    if "ssim" in losses:
        terms["ssim"] = 1 - ssim_torch(res.output, real)
    if "laplacian" in losses:
        terms["laplacian"] = laplacian_l1(res.output, real, alpha)
    if "gan" in losses:
        fake_logits, fake_feats = disc(window * 2 - 1, res.output)
        with torch.no_grad():
            _, real_feats = disc(window * 2 - 1, real)
        terms["gan"] = hinge_g(fake_logits)
        terms["feature_matching"] = feature_matching(fake_feats, real_feats)
    total = sum(WEIGHTS[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def train_mouth_stage(model: DeferredRenderer, samples: MouthSamples, run_dir: Path, *,
                      steps: int, minutes: float = 0.0, losses=DEFAULT_LOSSES, batch_size: int = 8,
                      device: str | torch.device = "cpu", checkpoint_every: int | None = None,
                      progress: bool = True) -> dict:
    """Train model.mouth (the rest frozen) on the trainable frames before holdout_start;
    resumes from run_dir; returns held-out metrics of the first stage alone and with this one."""
    losses = tuple(losses)
    unknown = set(losses) - set(LOSSES)
    if unknown or not losses:
        raise AvatarError(f"unknown second-stage losses {sorted(unknown)}; choose from {', '.join(LOSSES)}")
    dev = torch.device(device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(dev)
    opt = _optimizer(model)
    disc = PatchDiscriminator(6).to(dev) if "gan" in losses else None
    d_opt = torch.optim.Adam(disc.parameters(), lr=D_LR, betas=(0.5, 0.999)) if disc else None
    state = _resume(run_dir, model, opt, disc, d_opt)
    if getattr(model.mouth, "teeth_atlas", None) is not None and state["step"] == 0:
        state["teeth_atlas_frame"] = bake_teeth_atlas(model, samples)
    every = checkpoint_every or checkpoint_interval(steps)
    write_json(run_dir / "config.json", {"losses": list(losses), "weights": WEIGHTS, "steps": steps,
                                         "minutes": minutes, "batch_size": batch_size, "lr": LR,
                                         "d_lr": D_LR, "window": list(samples.shape),
                                         "scale": samples.scale, "checkpoint_every": every,
                                         "renderer": model.config.to_dict()})
    train_idx = np.nonzero(samples.trainable[:samples.holdout_start])[0]
    if len(train_idx) == 0:
        raise AvatarError("no frames left to train the lips window on")
    budget = minutes * 60 if minutes > 0 else float("inf")
    bar = tqdm(initial=state["step"], total=steps, desc="training lips window", unit="step",
               disable=not progress, file=sys.stderr)
    start, elapsed0, window_losses = time.time(), state["elapsed_s"], []
    model.train()
    while state["step"] < steps and elapsed0 + time.time() - start < budget:
        loss, terms = _train_step(model, opt, (disc, d_opt), samples, train_idx, state["step"] / steps,
                                  np.random.default_rng([11, state["step"]]), batch_size, dev, losses)
        state["step"] += 1
        window_losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(window_losses[-20:]):.4f}")
        if state["step"] % 10 == 0:
            state["history"].append([state["step"], float(np.mean(window_losses)), terms])
            window_losses = []
        if state["step"] % every == 0 or state["step"] >= steps:
            state["elapsed_s"] = elapsed0 + time.time() - start
            _save(run_dir, model, opt, disc, d_opt, state, samples, dev)
    bar.close()
    state["elapsed_s"] = elapsed0 + time.time() - start
    _save(run_dir, model, opt, disc, d_opt, state, samples, dev)
    metrics = evaluate_mouth(model, samples, dev)
    metrics.update(step=state["step"], train_minutes=round(state["elapsed_s"] / 60, 2), losses=list(losses))
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def _train_step(model, opt, discriminator, samples: MouthSamples, train_idx: np.ndarray,
                progress: float, rng: np.random.Generator, batch_size: int, dev, losses):
    """One optimizer step (and one of the discriminator, with the GAN loss) at `progress` of the
    run (learning-rate schedule); returns the generator loss and its terms."""
    disc, d_opt = discriminator
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * lr_scale(progress)
    idx = rng.choice(train_idx, size=batch_size, replace=len(train_idx) < batch_size)
    sources = pick_sources(rng, idx, train_idx) if model.config.source_detail else None
    verts, first, real, raster, source, _ = batch_windows(samples, idx, dev, rng, sources)
    res = render_mouth(model, verts, first, raster, source)
    if disc is not None:
        _disc_step(disc, d_opt, first, real, res.output.detach())
    loss, terms = generator_loss(res, real, first, disc, losses)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, terms


def _optimizer(model: DeferredRenderer) -> torch.optim.AdamW:
    texture = [p for n, p in model.mouth.named_parameters() if n.startswith("texture.")]
    net = [p for n, p in model.mouth.named_parameters() if not n.startswith("texture.")]
    groups = [{"params": net, "lr": LR, "base_lr": LR, "weight_decay": 1e-4}]
    if texture:
        groups.append({"params": texture, "lr": TEXTURE_LR, "base_lr": TEXTURE_LR, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=(0.9, 0.99))


def _disc_step(disc, d_opt, first, real, fake) -> None:
    real_logits, _ = disc(first * 2 - 1, real)
    fake_logits, _ = disc(first * 2 - 1, fake)
    loss = hinge_d(real_logits, fake_logits)
    d_opt.zero_grad(set_to_none=True)
    loss.backward()
    d_opt.step()


def _resume(run_dir: Path, model, opt, disc, d_opt) -> dict:
    ckpt = run_dir / "checkpoint.safetensors"
    if not ckpt.is_file():
        return {"step": 0, "elapsed_s": 0.0, "history": []}
    state = load_checkpoint(ckpt, model, opt)
    if disc is not None and (run_dir / "discriminator.safetensors").is_file():
        _load_disc(run_dir / "discriminator.safetensors", disc, d_opt)
    print(f"resuming {run_dir.name} at step {state['step']}", file=sys.stderr)
    return state


def _save(run_dir: Path, model, opt, disc, d_opt, state, samples, dev) -> None:
    save_checkpoint(run_dir / "checkpoint.safetensors", model, opt, state)
    if disc is not None:
        _save_disc(run_dir / "discriminator.safetensors", disc, d_opt)
    _write_curve(run_dir / "curve.png", state["history"])
    write_samples(run_dir / "samples.png", model, samples, dev)
    model.train()


def _save_disc(path: Path, disc, d_opt) -> None:
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}
    for i, s in d_opt.state_dict()["state"].items():
        for name, value in s.items():
            tensors[f"optim.{i}.{name}"] = torch.as_tensor(value).cpu().contiguous()
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "avatar-discriminator-1"})


def _load_disc(path: Path, disc, d_opt) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        tensors = load_file(str(path))
        disc.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, i, key = name.split(".", 2)
                opt_state.setdefault(int(i), {})[key] = value
        d_opt.load_state_dict({"state": opt_state, "param_groups": d_opt.state_dict()["param_groups"]})
    except (SafetensorError, RuntimeError, ValueError, KeyError) as e:
        raise AvatarError(f"discriminator checkpoint {path} does not load ({e}); delete the run "
                          "folder and train again") from None


def render_windows(model, samples: MouthSamples, idx: np.ndarray, dev, batch: int = 8) -> np.ndarray:
    """uint8 [N, H, W, 3] composited (centred) windows of frames idx."""
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            part = idx[s:s + batch]
            sources = eval_sources(idx, len(samples))[s:s + batch] if model.config.source_detail else None
            verts, first, _, raster, source, _ = batch_windows(samples, part, dev, None, sources)
            res = render_mouth(model, verts, first, raster, source)
            out.append((res.output.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *samples.shape, 3), np.uint8)


def evaluate_mouth(model, samples: MouthSamples, dev, idx: np.ndarray | None = None) -> dict:
    """Mouth-box metrics on frames idx (default: the held-out ones) for the first stage alone
    and with the second stage, both against the real frames."""
    if idx is None:
        idx = np.arange(samples.holdout_start, len(samples))
    if len(idx) == 0:
        return {}
    p, (h, w) = samples.pad, samples.shape
    rendered = render_windows(model, samples, idx, dev)
    both, first_only = MouthScores(), MouthScores()
    for k, i in enumerate(idx):
        real = samples.real[i, p:p + h, p:p + w]
        box = mouth_box(samples.lips[i] - p, real.shape)
        both.add(rendered[k], real, box)
        first_only.add(samples.first[i, p:p + h, p:p + w], real, box)
    return {"frames": int(len(idx)), "with_mouth_stage": both.summary(),
            "first_stage_only": first_only.summary()}


def write_samples(path: Path, model, samples: MouthSamples, dev, count: int = 6) -> None:
    """Held-out windows, rows: real | first stage | second stage | |difference| x 4."""
    import cv2
    held = np.arange(samples.holdout_start, len(samples))
    held = held if len(held) else np.arange(len(samples))
    idx = held[np.linspace(0, len(held) - 1, min(count, len(held))).astype(int)]
    p, (h, w) = samples.pad, samples.shape
    out = render_windows(model, samples, idx, dev)
    rows = []
    for k, i in enumerate(idx):
        real = samples.real[i, p:p + h, p:p + w]
        first = samples.first[i, p:p + h, p:p + w]
        diff = np.clip(np.abs(out[k].astype(np.int16) - real) * 4, 0, 255).astype(np.uint8)
        rows.append(np.concatenate([real, first, out[k], diff], 1))
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _write_curve(path: Path, history: list) -> None:
    write_curve(path, [h[:2] for h in history])


def person_mouth_samples(person_dir: Path, base: DeferredRenderer, device: str = "cpu",
                         trainable: np.ndarray | None = None, progress: bool = True) -> MouthSamples:
    """Lips windows of a person's target video, its first stage rendered by `base`."""
    from avatar.render.data import driven_meshes, holdout_start, load_person_geometry
    from avatar.video.reader import VideoReader
    config, track, poses, face_model = load_person_geometry(Path(person_dir))
    meshes = driven_meshes(face_model, poses, track.expressions())
    shape, scale = window_geometry(meshes)
    first_stage = replace(base.config, mouth_window=(0, 0))
    model = DeferredRenderer(first_stage)
    model.load_state_dict({k: v.float() for k, v in base.state_dict().items() if not k.startswith("mouth.")})
    renderer = FaceRenderer(model, torch.device(device))
    reader = VideoReader(Path(person_dir) / person_io.TARGET, max_side=max(track.frame_size))
    return mouth_samples(renderer, iter(reader), meshes, track.crop_boxes.astype(np.float32),
                         track.landmarks, holdout_start(len(track), config), shape, scale,
                         trainable, progress)
