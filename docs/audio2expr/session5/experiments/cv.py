"""Speaker-grouped K-fold CV on cached features. python runs/exp/cv.py --feats both --steps 800 --fractions 1"""
import argparse, json, time, sys
import numpy as np, torch
torch.set_num_threads(1)
from dataclasses import replace
from common import load_all, feats
from avatar.expression.data import Variant
from avatar.expression.model import NetConfig
from avatar.expression.train import TrainConfig, fit_normalizer, screen_clips, train_network, fit_prior
from avatar.expression.prior import PriorConfig, combined_curves, blend_prior
from avatar.expression.checkpoint import load_audio2expr
from avatar.expression.evaluate import pearson, best_offset
from avatar.audio.features import UtteranceNorm, frame_windows, SpeechFeatures
from avatar.types import MOUTH_BLENDSHAPES, JAW_OPEN, Speech
from avatar.audio.features import speech_features

ap = argparse.ArgumentParser()
ap.add_argument("--feats", default="whisper"); ap.add_argument("--steps", type=int, default=800)
ap.add_argument("--fractions", type=float, nargs="+", default=[1.0]); ap.add_argument("--folds", type=int, default=5)
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--min-sync", type=float, default=0.25)
ap.add_argument("--norm", default="utterance"); ap.add_argument("--out", required=True)
ap.add_argument("--only-folds", type=int, nargs="*")
args = ap.parse_args()

clips = load_all()
shipped = load_audio2expr()
art = shipped.articulation
for c in clips:
    f = feats(c, args.feats)
    c.variants = [Variant(f, c.targets, "clean")]
    wf = SpeechFeatures(np.concatenate([c.raw["whisper"], c.raw["loud"]], 1), 50.0, "whisper_tiny")
    c.curves = combined_curves(c.phones, wf, art, c.fps, len(c.targets), 0.1, 0.06)
speakers = sorted({c.speaker for c in clips})
rng = np.random.default_rng(1234)
perm = list(rng.permutation(speakers))
folds = [perm[i::args.folds] for i in range(args.folds)]
print(len(speakers), "speakers;", [len(f) for f in folds], flush=True)
net_cfg = NetConfig(feature_dim=clips[0].variants[0].features.values.shape[1], window=16, n_out=len(MOUTH_BLENDSHAPES))
silence = SpeechFeatures(np.tile(clips[0].variants[0].features.values[np.argmin(clips[0].variants[0].features.values[:, -1])], (150, 1)), 50.0, clips[0].variants[0].features.kind)
jaw_col = list(MOUTH_BLENDSHAPES).index(JAW_OPEN)
results = {"args": vars(args), "folds": folds, "runs": {}}
def net_z(net, c, norm):
    f = norm(c.variants[0].features) if norm else c.variants[0].features
    w = frame_windows(f, c.fps, len(c.targets), 16)
    with torch.inference_mode():
        return net(torch.from_numpy(w[None]))[0].numpy()
for frac in args.fractions:
    per_clip = {}
    screen = {}
    for k, test_spk in enumerate(folds):
        if args.only_folds and k not in args.only_folds: continue
        t0 = time.time()
        train_spk = [s for s in perm if s not in test_spk]
        n_keep = max(int(round(frac * len(train_spk))), 1)
        train_spk = train_spk[:n_keep]
        train = [c for c in clips if c.speaker in train_spk]
        test = [c for c in clips if c.speaker in test_spk]
        sync = screen_clips(train, PriorConfig(), min_r=args.min_sync)
        screen.update({n: [s.lag, s.r, s.used] for n, s in sync.items()})
        train = [c for c in train if sync[c.name].used]
        norm = UtteranceNorm.fit([c.variants[0].features for c in train]) if args.norm == "utterance" else None
        normalizer = fit_normalizer(train)
        net, losses = train_network(train, net_cfg, TrainConfig(steps=args.steps, seed=args.seed), silence, normalizer,
                                    progress=False, feature_norm=norm)
        tz = [net_z(net, c, norm) for c in train]
        prior = fit_prior(tz, [c.curves for c in train], 0.5)
        for c in test:
            z = net_z(net, c, norm)
            jt = c.targets[:, JAW_OPEN]
            b = blend_prior(z, c.curves, prior, list(MOUTH_BLENDSHAPES))
            lag, _ = best_offset(b[:, jaw_col], jt)
            per_clip[c.name] = {"speaker": c.speaker, "fold": k, "net_r": pearson(z[:, jaw_col], jt),
                                "blend_r": pearson(b[:, jaw_col], jt), "prior_r": pearson(c.curves[:, 0], jt),
                                "best_offset": lag, "frames": len(jt),
                                "net_std": float(z[:, jaw_col].std()), "blend_std": float(b[:, jaw_col].std()),
                                "blend_p95": float(np.percentile(b[:, jaw_col], 95)),
                                "target_p95": float(np.percentile((jt - jt.mean()) / max(jt.std(), 0.02), 95))}
        spk_r = {}
        print(f"frac {frac} fold {k}: {len(train)} train clips ({sum(len(c.targets) for c in train)} fr), "
              f"{time.time()-t0:.0f}s, loss {np.mean(losses[-50:]):.3f}; test " +
              " ".join(f"{c.name.split('__')[0]}:{per_clip[c.name]['net_r']:.2f}/{per_clip[c.name]['blend_r']:.2f}" for c in test), flush=True)
    def spk_mean(key):
        by = {}
        for m in per_clip.values(): by.setdefault(m["speaker"], []).append(m[key])
        return {s: float(np.nanmean(v)) for s, v in by.items()}
    summ = {key: float(np.nanmean(list(spk_mean(key).values()))) for key in ("net_r", "blend_r", "prior_r")}
    results["runs"][str(frac)] = {"per_clip": per_clip, "per_speaker": {k: spk_mean(k) for k in ("net_r", "blend_r", "prior_r")},
                                  "summary": summ, "screen": screen}
    print(f"== frac {frac}: per-speaker mean  net {summ['net_r']:.3f}  blend {summ['blend_r']:.3f}  prior {summ['prior_r']:.3f}", flush=True)
    json.dump(results, open(args.out, "w"), indent=1)
