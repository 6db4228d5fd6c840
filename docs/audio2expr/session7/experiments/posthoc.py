"""Post-hoc on cv7.py's saved test predictions (no training): temporal smoothing of the
prediction (Gaussian sigma in frames), gating silent frames to the closed pose (loudness gate of
the shipped checkpoint, or silero-vad), and two ceilings: r at each clip's best offset (+-8
frames) and r between the clip's own tracked jawOpen and lip gap (tracking noise).

PYTHONPATH=. python docs/audio2expr/session7/experiments/posthoc.py runs/s7/base [more runs] --json out.json
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
from scipy.ndimage import gaussian_filter1d
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "session5" / "experiments"))
from common import load_all
from avatar.expression.checkpoint import speech_gate
from avatar.expression.evaluate import pearson, best_offset
from avatar.types import JAW_OPEN, SpeechFeatures
from avatar.expression.prior import jaw_prior

def gate(c, kind):
    n = len(c.targets)
    if kind == "loud":
        f = SpeechFeatures(c.raw["loud"], 50.0, "whisper_tiny")
        return speech_gate(f, c.fps, n, 30.0)
    v = c.raw["vad"][:, 0]
    idx = np.clip(np.round(np.arange(n) / c.fps * 50).astype(int), 0, len(v) - 1)
    return np.clip(gaussian_filter1d((v[idx] > 0.5).astype(np.float32), 1.0), 0, 1)

def delayed(p, d):
    """The prediction shown d frames later (the first frame repeated)."""
    return np.concatenate([np.repeat(p[:1], d), p[:len(p) - d]]) if d else p

def variants(p, c, closed):
    out = {}
    for d in (0, 1, 2):
        for s in (0, 1, 1.5, 2, 3):
            q = delayed(gaussian_filter1d(p, s) if s else p, d)
            out[f"d{d}_s{s}"] = q
            for g in ("loud", "vad"):
                w = gate(c, g)
                out[f"d{d}_s{s}+{g}"] = w * q + (1 - w) * closed
    return out

def lagged_r(pred, target, lag):
    """r of target[t] with pred[t + lag] (prediction from the audio at t + lag)."""
    if lag >= 0:
        return pearson(pred[lag:], target[:len(target) - lag])
    return pearson(pred[:lag], target[-lag:])

def spk_mean(rows, key):
    by = {}
    for r in rows.values(): by.setdefault(r["speaker"], []).append(r[key])
    with np.errstate(all="ignore"):
        return float(np.nanmean([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in by.values()]))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("runs", nargs="+"); ap.add_argument("--json")
    ap.add_argument("--frac", default="1.0")
    ap.add_argument("--exclude", nargs="*", default=[], help="speakers left out of the means (the held-out 5)")
    a = ap.parse_args()
    clips = {c.name: c for c in load_all() if c.speaker not in a.exclude}
    report = {"ceilings": {}}
    rows = {n: {"speaker": c.speaker, "jaw_vs_lipgap": pearson(c.targets[:, JAW_OPEN], c.raw["lipgap"])} for n, c in clips.items()}
    report["ceilings"]["jaw_vs_lipgap_r"] = spk_mean(rows, "jaw_vs_lipgap")
    for run in a.runs:
        d = np.load(Path(run) / f"preds_{a.frac}.npz")
        res = {}
        for n, c in clips.items():
            if f"{n}|blend" not in d: continue
            jt = c.targets[:, JAW_OPEN]
            r = {"speaker": c.speaker}
            for src in ("net", "blend"):
                for k, v in variants(d[f"{n}|{src}"], c, float(d[f"{n}|closed"])).items():
                    r[f"{src}_{k}"] = pearson(v, jt)
            r["blend_best_offset_r"] = best_offset(d[f"{n}|blend"], jt, 8)[1]
            lag = best_offset(jaw_prior(c.phones, c.fps, len(jt)), jt, 8)[0]   # the data's A/V offset, as training finds it
            r["blend_prior_offset_r"] = lagged_r(d[f"{n}|blend"], jt, lag)
            r["net_prior_offset_r"] = lagged_r(d[f"{n}|net"], jt, lag)
            res[n] = r
        keys = [k for k in next(iter(res.values())) if k != "speaker"]
        report[run] = {k: round(spk_mean(res, k), 4) for k in keys}
        best = sorted(((v, k) for k, v in report[run].items() if k.startswith("blend_d")), reverse=True)[:3]
        print(run, {k: report[run][k] for k in ("net_d0_s0", "blend_d0_s0", "blend_d0_s0+loud", "blend_d1_s0", "blend_d1_s1",
                                                 "blend_d1_s1+loud", "blend_prior_offset_r", "blend_best_offset_r")}, "best:", best)
    print("ceiling jaw vs lip gap (same clip, per-speaker mean):", round(report["ceilings"]["jaw_vs_lipgap_r"], 3))
    if a.json:
        json.dump(report, open(a.json, "w"), indent=1)

if __name__ == "__main__":
    main()
