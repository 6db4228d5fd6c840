"""How much of the new mouth's visible upper teeth gets no source detail (the source's mouth is
closed there), held-out windows with evaluation sources: python teeth_cover.py"""
import numpy as np, torch, common
from avatar.render.train_mouth import batch_windows, eval_sources
from avatar.render import renderer as R

s = common.samples(); model = common.shipped().eval()
idx = np.arange(s.holdout_start, len(s)); srcs = eval_sources(idx, len(s))
_, ns = R.window_topology(model.config)
tot, cov, per = 0, 0, []
with torch.inference_mode():
    for a in range(0, len(idx), 8):
        verts, first, real, raster, source, _ = batch_windows(s, idx[a:a+8], "cpu", None, srcs[a:a+8])
        _, _, valid = R.source_detail(model, raster, source[0], source[1])
        up = (raster.face >= ns + 20) & (raster.face < ns + 40)
        for k in range(len(up)):
            n, c = int(up[k].sum()), int((up[k] & (valid[k, 0] > 0)).sum())
            tot += n; cov += c; per.append((n, c))
per = np.array(per)
print(f"upper-teeth pixels visible {tot}, with source detail {cov} ({cov / max(tot, 1):.0%})")
print("frames with >50 teeth px:", int((per[:, 0] > 50).sum()), " of them with <20% covered:",
      int(((per[:, 0] > 50) & (per[:, 1] < 0.2 * per[:, 0])).sum()))
