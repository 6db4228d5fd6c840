import time, numpy as np, torch
from dataclasses import replace
torch.set_num_threads(1)
from avatar.render.data import driven_meshes, load_person_geometry
from avatar.render.renderer import FaceRenderer
from avatar.render.store import load_weights
from avatar.render.model import DeferredRenderer
from avatar.video.reader import VideoReader
from pathlib import Path
demo = Path("/work/main/checkpoints/persons/demo")
_, track, poses, fm = load_person_geometry(demo)
meshes = driven_meshes(fm, poses, track.expressions())
frames = np.stack([f for _, f in zip(range(32), VideoReader(demo / "target.mp4", max_side=1280))])
boxes = track.crop_boxes[:32].astype(np.float32); m = meshes[:32]
base = load_weights(demo / "renderer.safetensors").float()
cfgs = {"shipped": (32, 48, 64, 96), "c24": (24, 32, 48, 64), "c16": (16, 24, 32, 48), "c32_3lvl": (32, 48, 64)}
rs = {}
for k, ch in cfgs.items():
    cfg = replace(base.config, channels=ch, mouth_window=(0, 0))
    r = FaceRenderer(DeferredRenderer(cfg).eval(), torch.device("cpu"), "openvino-fp32"); r.workers = 1; r._pool = None
    rs[k] = (r, sum(p.numel() for n, p in r.model.named_parameters() if not n.startswith("texture")))
best = {k: 1e9 for k in rs}
for rep in range(4):
    for k, (r, _) in rs.items():
        t = time.perf_counter(); [r.first_stage(m[i:i+8], frames[i:i+8], boxes[i:i+8]) for i in range(0, 32, 8)]
        best[k] = min(best[k], (time.perf_counter() - t) / 32 * 1000)
for k in rs: print(k, cfgs[k], "params", rs[k][1], f"first stage {best[k]:.1f} ms/frame", f"ratio {best['shipped']/best[k]:.2f}x")
