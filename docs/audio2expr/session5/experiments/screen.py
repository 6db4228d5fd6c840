import numpy as np, json
from common import load_all
from avatar.expression.prior import jaw_prior, PriorConfig
from avatar.expression.evaluate import best_offset, pearson
from avatar.types import JAW_OPEN
clips = load_all()
rows = {}
for c in clips:
    jt = c.targets[:, JAW_OPEN]
    a = jaw_prior(c.phones, c.fps, len(jt)); b = jaw_prior(c.hama_phones, c.fps, len(jt))
    la, ra = best_offset(a, jt, 8); lb, rb = best_offset(b, jt, 8)
    rows[c.name] = dict(ps_lag=la, ps_r=ra, ps_r0=pearson(a, jt), hama_lag=lb, hama_r=rb, hama_r0=pearson(b, jt), frames=len(jt))
    print(f"{c.name:45s} {len(jt):5d}  ps {la:+3d} {ra:.2f} (lag0 {pearson(a,jt):.2f})   hama {lb:+3d} {rb:.2f} (lag0 {pearson(b,jt):.2f})")
json.dump(rows, open("runs/exp/screen.json", "w"), indent=1)
print("mean ps r0", np.nanmean([r["ps_r0"] for r in rows.values()]), "hama r0", np.nanmean([r["hama_r0"] for r in rows.values()]))
