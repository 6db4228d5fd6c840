"""Session 7: speaker-grouped 5-fold CV (the folds, seed and screening of session 5's cv.py) with
the training / network knobs of issue 13's ideas; saves every test clip's prediction so smoothing
and gating can be tuned afterwards (posthoc.py).

PYTHONPATH=. python docs/audio2expr/session7/experiments/cv7.py --out runs/s7/base  [--corr-weight 1 ...]
"""
import argparse, json, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "session5" / "experiments"))
from common import load_all, feats
from avatar.expression.data import Variant
from avatar.expression.model import NetConfig, Audio2ExpressionEnsemble
from avatar.expression.train import TrainConfig, fit_normalizer, screen_clips, train_network, fit_prior
from avatar.expression.prior import PriorConfig, combined_curves, blend_prior
from avatar.expression.checkpoint import load_audio2expr, closed_pose_z
from avatar.expression.evaluate import pearson
from avatar.audio.features import UtteranceNorm, frame_windows, SpeechFeatures
from avatar.types import MOUTH_BLENDSHAPES, JAW_OPEN

def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default="both"); ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0]); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=1); ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=int, default=16); ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--temporal-layers", type=int, default=0); ap.add_argument("--dropout", type=float, default=0.2)
    for k, v in vars(TrainConfig()).items():
        if k not in ("steps", "seed"):
            ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    ap.add_argument("--only-folds", type=int, nargs="*")
    return ap.parse_args()

def net_z(net, c, norm, window):
    w = frame_windows(norm(c.variants[0].features), c.fps, len(c.targets), window)
    with torch.inference_mode():
        return net(torch.from_numpy(w[None]))[0].numpy()

def setup(args):
    clips = load_all()
    art = load_audio2expr().articulation
    for c in clips:
        c.variants = [Variant(feats(c, args.feats), c.targets, "clean")]
        wf = SpeechFeatures(np.concatenate([c.raw["whisper"], c.raw["loud"]], 1), 50.0, "whisper_tiny")
        c.curves = combined_curves(c.phones, wf, art, c.fps, len(c.targets), 0.1, 0.06)
    speakers = sorted({c.speaker for c in clips})
    perm = list(np.random.default_rng(1234).permutation(speakers))
    return clips, perm, [perm[i::5] for i in range(5)]

def run_fold(args, clips, perm, test_spk, frac, net_cfg, tcfg):
    train_spk = [s for s in perm if s not in test_spk]
    train_spk = train_spk[:max(int(round(frac * len(train_spk))), 1)]
    train = [c for c in clips if c.speaker in train_spk]
    sync = screen_clips(train, PriorConfig(), min_r=0.25)
    train = [c for c in train if sync[c.name].used]
    norm = UtteranceNorm.fit([c.variants[0].features for c in train])
    normalizer = fit_normalizer(train)
    v0 = clips[0].variants[0].features.values
    silence = SpeechFeatures(np.tile(v0[np.argmin(v0[:, -1])], (150, 1)), 50.0, clips[0].variants[0].features.kind)
    ens = Audio2ExpressionEnsemble(net_cfg, args.members)
    for m in range(args.members):
        net, losses = train_network(train, net_cfg, replace(tcfg, seed=args.seed + m), silence, normalizer,
                                    progress=False, feature_norm=norm)
        ens.members[m].load_state_dict(net.state_dict())
    ens.eval()
    prior = fit_prior([net_z(ens, c, norm, net_cfg.window) for c in train], [c.curves for c in train], 0.5)
    closed = closed_pose_z(normalizer.mean, normalizer.std, normalizer.rest)
    return ens, norm, prior, closed, len(train), float(np.mean(losses[-50:]))

def main():
    args = parse()
    clips, perm, folds = setup(args)
    net_cfg = NetConfig(feature_dim=clips[0].variants[0].features.values.shape[1], window=args.window,
                        context=args.context, temporal_layers=args.temporal_layers, dropout=args.dropout,
                        n_out=len(MOUTH_BLENDSHAPES))
    tcfg = TrainConfig(steps=args.steps, seed=args.seed, **{k: getattr(args, k) for k in vars(TrainConfig())
                                                             if k not in ("steps", "seed")})
    jaw = list(MOUTH_BLENDSHAPES).index(JAW_OPEN)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args), "folds": folds, "runs": {}}
    for frac in args.fractions:
        per_clip, preds = {}, {}
        for k, test_spk in enumerate(folds):
            if args.only_folds and k not in args.only_folds: continue
            t0 = time.time()
            ens, norm, prior, closed, ntrain, loss = run_fold(args, clips, perm, test_spk, frac, net_cfg, tcfg)
            for c in (c for c in clips if c.speaker in test_spk):
                z = net_z(ens, c, norm, net_cfg.window)
                b = blend_prior(z, c.curves, prior, list(MOUTH_BLENDSHAPES))
                jt = c.targets[:, JAW_OPEN]
                per_clip[c.name] = {"speaker": c.speaker, "fold": k, "net_r": pearson(z[:, jaw], jt),
                                    "blend_r": pearson(b[:, jaw], jt), "frames": len(jt)}
                preds[c.name] = dict(net=z[:, jaw], blend=b[:, jaw], closed=np.float32(closed[jaw]))
            print(f"frac {frac} fold {k}: {ntrain} train clips, {time.time()-t0:.0f}s, loss {loss:.3f}", flush=True)
        by = {}
        for m in per_clip.values(): by.setdefault(m["speaker"], []).append((m["net_r"], m["blend_r"]))
        summ = {"net_r": float(np.mean([np.nanmean([a for a, _ in v]) for v in by.values()])),
                "blend_r": float(np.mean([np.nanmean([b for _, b in v]) for v in by.values()]))}
        results["runs"][str(frac)] = {"per_clip": per_clip, "summary": summ}
        np.savez(out / f"preds_{frac}.npz", **{f"{n}|{k}": v for n, d in preds.items() for k, v in d.items()})
        print(f"== frac {frac}: per-speaker mean  net {summ['net_r']:.3f}  blend {summ['blend_r']:.3f}", flush=True)
        json.dump(results, open(out / "cv.json", "w"), indent=1)

if __name__ == "__main__":
    main()
