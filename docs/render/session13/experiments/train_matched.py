"""Session 13: retrain the demo's lips window (600 steps, shipped settings) with detail sources
chosen by mouth shape in training too (one of the K frames with the nearest canonical lips,
more than GAP frames away), then evaluate with offset-15 and matched sources.
python train_matched.py NAME [K] [GAP]"""
import json, sys, time
from pathlib import Path
import numpy as np
import matched
from avatar.render import train_mouth
from avatar.render.store import load_weights, save_weights

NAME = sys.argv[1]
K = int(sys.argv[2]) if len(sys.argv) > 2 else 3
GAP = int(sys.argv[3]) if len(sys.argv) > 3 else 10
OUT = matched.ROOT / "runs/s13" / NAME


def main():
    base = load_weights(matched.DEMO / "renderer.safetensors").float()
    s = matched.samples(base)
    lips = matched.canonical_lips()
    flat = lips.reshape(len(lips), -1)

    def pick(rng, idx, allowed):
        out = np.full(len(idx), -1)
        for k, i in enumerate(idx):
            pool = allowed[np.abs(allowed - i) > GAP]
            if len(pool) and rng.random() >= train_mouth.NO_SOURCE:
                d = ((flat[pool] - flat[i]) ** 2).sum(1)
                out[k] = rng.choice(pool[np.argsort(d)[:K]])
        return out

    train_mouth.pick_sources = pick
    model = train_mouth.with_mouth_stage(base, s.shape, s.scale)
    t = time.time()
    m = train_mouth.train_mouth_stage(model, s, OUT, steps=600, progress=False)
    save_weights(OUT / "renderer.safetensors", model.cpu().eval(), {"mouth_stage": m})
    model.eval()
    n, start = len(s.real), s.holdout_start
    idx, pool = np.arange(start, n), np.arange(0, start)
    report = {"minutes": (time.time() - t) / 60,
              "offset15": matched.evaluate(model, s, idx, train_mouth.eval_sources(idx, n))}
    for sw in (0.0, 0.005):
        report[f"matched_switch{sw}"] = matched.evaluate(model, s, idx, matched.match(lips, idx, pool, sw))
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
