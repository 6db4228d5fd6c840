"""Ceiling: a network that HAS seen the test speakers. Every clip's first 70 % trains (screened as
in cv7.py), its last 30 % is tested; jawOpen r at lag 0 on the tails, per-speaker mean, same
network / prior / seed as cv7.py's defaults.

PYTHONPATH=. python docs/audio2expr/session7/experiments/seen.py --out runs/s7/seen
"""
import json, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv7
from avatar.expression.data import ClipData, Variant
from avatar.expression.evaluate import pearson
from avatar.expression.model import NetConfig
from avatar.expression.prior import blend_prior
from avatar.expression.train import TrainConfig
from avatar.types import MOUTH_BLENDSHAPES, JAW_OPEN

def head(c, cut):
    h = ClipData(c.name, c.speaker, c.fps, c.targets[:cut], c.speech, phones=c.phones)
    h.variants = [Variant(c.variants[0].features, c.targets[:cut], "clean")]
    h.curves, h.raw = c.curves[:cut], c.raw
    return h

def main():
    args = cv7.parse()
    clips, perm, _ = cv7.setup(args)
    cuts = {c.name: int(0.7 * len(c.targets)) for c in clips}
    heads = [head(c, cuts[c.name]) for c in clips]
    net_cfg = NetConfig(feature_dim=clips[0].variants[0].features.values.shape[1], n_out=len(MOUTH_BLENDSHAPES))
    tcfg = TrainConfig(steps=args.steps, seed=args.seed)
    t0 = time.time()
    ens, norm, prior, _, ntrain, _ = cv7.run_fold(args, heads, perm, [], 1.0, net_cfg, tcfg)
    jaw = list(MOUTH_BLENDSHAPES).index(JAW_OPEN)
    by = {}
    for c in clips:
        z = cv7.net_z(ens, c, norm, net_cfg.window)
        b = blend_prior(z, c.curves, prior, list(MOUTH_BLENDSHAPES))
        k = cuts[c.name]
        by.setdefault(c.speaker, []).append((pearson(z[k:, jaw], c.targets[k:, JAW_OPEN]),
                                             pearson(b[k:, jaw], c.targets[k:, JAW_OPEN])))
    res = {"train_clips": ntrain, "seconds": time.time() - t0,
           "net_r": float(np.nanmean([np.nanmean([a for a, _ in v]) for v in by.values()])),
           "blend_r": float(np.nanmean([np.nanmean([b for _, b in v]) for v in by.values()]))}
    print(res)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    json.dump(res, open(Path(args.out) / "seen.json", "w"), indent=1)

if __name__ == "__main__":
    main()
