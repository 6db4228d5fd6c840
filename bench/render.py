"""Renderer speed: frames per second of FaceRenderer.render at 256^2 and 512^2, batch 1 and 8.

    python bench/render.py [--device cpu] [--threads N] [--json bench/results/render.json]
    python bench/render.py --compare [--json bench/results/render_compare.json]

--compare times, side by side in one run (calls interleaved, best of N each), at 256^2 batch 8:
the first stage alone in PyTorch (the renderer shipped before the lips window), both stages in
PyTorch (first stage + the lips window at frame resolution, window size as in the demo person;
session 5), both stages with the shipped runtime (`runtime="auto"`: OpenVINO on a CPU) and
session 6's lips-window settings (no optical flow, no teeth atlas), and the same with the
settings the demo person ships now.
The lips window gets the frames' own meshes, so it moves their detail as `say` does.

Frames are 1280x720 with a synthetic face (~400 px) moving a little; the renderer has random
weights (speed does not depend on their values). Reported per setting: the whole call (crop,
rasterize, texture + U-Net, feathered paste into the frame) and the parts of it; best-of-N
times (the cores are shared) plus the median of the whole call.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar.render.compose import crop_band, paste_band, to_crop_pixels  # noqa: E402
from avatar.render.model import DeferredRenderer, RendererConfig  # noqa: E402
from avatar.render.renderer import FaceRenderer, mesh_topology, pick_device  # noqa: E402
from avatar.render.mouth import patch_vertices  # noqa: E402
from avatar.render.raster import rasterize  # noqa: E402
from avatar.face.crop import raw_crop_boxes  # noqa: E402
from tests.synthetic import synthetic_model, synthetic_motion  # noqa: E402
from avatar.types import Expressions  # noqa: E402


def scene(n: int, width: int = 1280, height: int = 720):
    model = synthetic_model(face_px=250)
    blend, poses = synthetic_motion(n, 30.0, height)
    poses = type(poses)(poses.scale, poses.rotation, poses.translation + np.array([width / 2 - height / 2, 0, 0], np.float32), poses.fps)
    meshes = poses.apply(model.meshes(model.coefficients(Expressions(blend, 30.0)))).astype(np.float32)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, height, width, 3), dtype=np.uint8)
    return meshes, frames, raw_crop_boxes(meshes)


def timed(fn, repeats: int) -> float:
    """Best time of `repeats` calls after a warm-up: the cores are shared, so the fastest run is
    the closest to what they give when nobody else is using them."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_setting(size: int, batch: int, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    renderer = FaceRenderer(DeferredRenderer(RendererConfig(crop_size=size)), device)
    cfg = renderer.config
    meshes, frames, boxes = scene(batch)
    whole = timed(lambda: renderer.render(meshes, frames, boxes), repeats)
    median = _median_time(lambda: renderer.render(meshes, frames, boxes), repeats)
    verts = torch.from_numpy(to_crop_pixels(meshes, boxes, size)).to(device)
    verts = patch_vertices(verts - torch.tensor([0.0, cfg.band_top, 0.0], device=device))
    faces, uvs = (torch.as_tensor(a, device=device) for a in mesh_topology(True))
    raster = timed(lambda: rasterize(verts, faces, uvs, (cfg.band_height, size)), repeats)
    frags = rasterize(verts, faces, uvs, (cfg.band_height, size))
    rgb = torch.rand(batch, 3, cfg.band_height, size, device=device)
    hole = torch.zeros(batch, 1, cfg.band_height, size, device=device)
    with torch.inference_mode():
        net = timed(lambda: renderer.model(frags.uv, frags.mask, rgb, hole), repeats)
    band = np.zeros((cfg.band_height, size, 3), np.float32)
    alpha = np.ones((cfg.band_height, size), np.float32)
    crop = timed(lambda: [crop_band(f, b, size, cfg.band_top) for f, b in zip(frames, boxes)], repeats)
    paste = timed(lambda: [paste_band(f, band, alpha, b, size, cfg.band_top)
                           for f, b in zip(frames, boxes)], repeats)
    return {"crop_size": size, "batch": batch, "fps": batch / whole, "fps_median": batch / median,
            "ms_per_frame": {"total": 1000 * whole / batch, "rasterize": 1000 * raster / batch,
                             "network": 1000 * net / batch, "crop": 1000 * crop / batch,
                             "paste": 1000 * paste / batch}}


def compare(device: torch.device, repeats: int, batch: int = 8) -> dict:
    """Today's renderers and the shipped one side by side, calls interleaved so all see the same
    load: the first stage alone (before the lips window), both stages in PyTorch (session 5),
    and both stages with the shipped runtime (OpenVINO where installed)."""
    from avatar.io.person import person_dir
    from avatar.render.store import load_weights
    shipped = load_weights(person_dir("demo") / "renderer.safetensors").config
    window = shipped.mouth_window if shipped.has_mouth_stage else (128, 176)
    now = {k: getattr(shipped, k) for k in ("source_flow", "teeth_atlas")}
    torch.manual_seed(0)
    first = DeferredRenderer(RendererConfig())
    both = DeferredRenderer(RendererConfig(mouth_window=window))
    torch.manual_seed(0)
    latest = DeferredRenderer(RendererConfig(mouth_window=window, **now))
    renderers = {"first_stage_torch": FaceRenderer(first, device, "torch"),
                 "both_stages_torch": FaceRenderer(both, device, "torch"),
                 "both_stages_session6": FaceRenderer(copy.deepcopy(both), device, "auto"),
                 "both_stages_shipped": FaceRenderer(latest, device, "auto")}
    meshes, frames, boxes = scene(batch)
    times: dict[str, list[float]] = {k: [] for k in renderers}
    for _ in range(repeats + 1):
        for name, r in renderers.items():
            t = time.perf_counter()
            r.render(meshes, frames, boxes, frame_meshes=meshes)
            times[name].append(time.perf_counter() - t)
    best = {k: min(v[1:]) for k, v in times.items()}
    med = {k: float(np.median(v[1:])) for k, v in times.items()}
    ratio = lambda t, a, b: t[a] / t[b]  # noqa: E731  (speed of b relative to a)
    return {"batch": batch, "crop_size": 256, "lips_window": list(window),
            "runtimes": {k: r.runtime for k, r in renderers.items()},
            "fps_best": {k: batch / v for k, v in best.items()},
            "fps_median": {k: batch / v for k, v in med.items()},
            "shipped_vs_first_stage_torch": {"best": ratio(best, "first_stage_torch", "both_stages_shipped"),
                                             "median": ratio(med, "first_stage_torch", "both_stages_shipped")},
            "shipped_vs_both_stages_torch": {"best": ratio(best, "both_stages_torch", "both_stages_shipped"),
                                             "median": ratio(med, "both_stages_torch", "both_stages_shipped")},
            "shipped_vs_session6": {"best": ratio(best, "both_stages_session6", "both_stages_shipped"),
                                    "median": ratio(med, "both_stages_session6", "both_stages_shipped")},
            "shipped_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in now.items()},
            "versions": _versions(), "load_average": os.getloadavg()}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"cpu": platform.processor() or platform.machine()}
    for name in ("torch", "openvino", "numba"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    from avatar.render.runtime import native_bf16, resolve_runtime
    out["native_bf16"] = resolve_runtime("auto", torch.device("cpu")) != "torch" and native_bf16()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--json", default=None, help="default bench/results/render.json "
                   "(render_compare.json with --compare)")
    p.add_argument("--compare", action="store_true", help="first stage alone vs both stages")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    results_dir = Path(__file__).parent / "results"
    if args.compare:
        text = json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                           **compare(device, args.repeats)}, indent=2)
        print(text)
        Path(args.json or results_dir / "render_compare.json").write_text(text + "\n")
        return 0
    results = [bench_setting(int(s), int(b), device, args.repeats)
               for s in args.sizes.split(",") for b in args.batches.split(",")]
    cfg = RendererConfig()
    report = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "frame": "1280x720", "network": {"channels": list(cfg.channels),
                                                 "texture": [cfg.texture_channels, cfg.texture_size]},
              "note": "fps and ms_per_frame: best of `repeats` runs (shared cores); fps_median: "
                      "median run. Renders the lower 5/8 band of the crop.",
              "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.json or results_dir / "render.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
