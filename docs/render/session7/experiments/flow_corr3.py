"""The shipped registration, measured like flow_corr.py: correlation of the transferred fine
detail with the real frame's on the held-out lips windows (evaluation sources), by region, for
the mesh warp alone, the shipped flow (avatar/render/flow.py against the first stage's output),
the same flow against the real frame (an oracle), and the teeth atlas's pixels (upper teeth the
source does not show). python flow_corr3.py"""
import numpy as np, torch, common
import torch.nn.functional as F
from avatar.render.train_mouth import batch_windows, eval_sources
from avatar.render import renderer as R
from avatar.render.flow import refine_positions
from avatar.render.compose import box_mean, erode
from avatar.render.store import load_weights

s = common.samples()
model = load_weights(common.DEMO / "renderer.safetensors").float().eval()      # the shipped one
idx = np.arange(s.holdout_start, len(s)); srcs = eval_sources(idx, len(s))
faces, ns = R.window_topology(model.config)
acc = {}


def add(key, fine, rf, m):
    m = m[:, None].expand_as(fine)
    x, y = fine[m], rf[m]
    e = acc.setdefault(key, [0.0, 0.0, 0.0, 0])
    e[0] += float((x * y).sum()); e[1] += float((x * x).sum()); e[2] += float((y * y).sum()); e[3] += int(m.sum()) // 3


with torch.inference_mode():
    for a in range(0, len(idx), 8):
        verts, first, real, raster, source, _ = batch_windows(s, idx[a:a + 8], "cpu", None, srcs[a:a + 8])
        rf = real - box_mean(box_mean(real, 3), 3)
        face = raster.face
        cls = {"skin+lips": face < ns, "interior": (face >= ns) & (face < ns + 20),
               "upper teeth": (face >= ns + 20) & (face < ns + 40)}
        for ref_name, ref in (("mesh only", None), ("flow vs first stage (shipped)", first), ("flow vs real (oracle)", real)):
            object.__setattr__(model.config, "source_flow", ref is not None)
            atlas = model.mouth.teeth_atlas
            model.mouth.teeth_atlas = None                       # the source alone
            _, fine, valid = R.source_detail(model, raster, source[0], source[1], ref)
            model.mouth.teeth_atlas = atlas
            v = erode(valid, 2)[:, 0] > 0
            for c, m in cls.items():
                add((ref_name, c), fine, rf, m & v & (face >= 0))
            if ref is first:                                     # what the atlas adds
                _, fine_a, valid_a = R.source_detail(model, raster, source[0], source[1], ref)
                va = (erode(valid_a, 2)[:, 0] > 0) & ~(valid[:, 0] > 0)
                add(("atlas (where the source has none)", "upper teeth"), fine_a, rf, va & cls["upper teeth"])
for (name, c), (xy, xx, yy, n) in acc.items():
    print(f"{name:30s} {c:12s} px {n:7d}  corr {xy / np.sqrt(xx * yy + 1e-12):+.3f}  energy src/real {xx / max(yy, 1e-12):.2f}")
