"""Session 13, issue 12: the lips window's detail source chosen by mouth shape.

Today a frame's detail source is a frame 15 away (evaluation) or the target frame itself (say), so
when the source's mouth is closed the new open mouth gets no teeth. Here the source of each
held-out frame is the training frame whose canonical lip vertices (the person's face model, no
pose) are nearest to the rendered frame's, optionally smoothed over time (a switch cost).
python matched.py [--weights R.safetensors] [--json OUT]   (shipped demo weights by default)"""
import argparse, json, os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from dataclasses import asdict, fields
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
from avatar.face.mesh import LIPS
from avatar.render.data import load_person_geometry
from avatar.render.metrics import MouthScores, mouth_box
from avatar.render.renderer import render_mouth
from avatar.render.store import load_weights
from avatar.render.train_mouth import (MouthSamples, batch_windows, eval_sources,
                                       person_mouth_samples)

DEMO = ROOT / "checkpoints/persons/demo"
CACHE = ROOT / "runs/s13/samples_demo.npz"


def samples(base) -> MouthSamples:
    if CACHE.is_file():
        z = np.load(CACHE)
        kw = {f.name: z[f.name] for f in fields(MouthSamples)}
        kw["holdout_start"], kw["scale"], kw["pad"] = int(kw["holdout_start"]), float(kw["scale"]), int(kw["pad"])
        kw["shape"] = tuple(int(v) for v in kw["shape"])
        return MouthSamples(**kw)
    t = time.time()
    s = person_mouth_samples(DEMO, base, progress=False)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **{k: np.asarray(v) for k, v in asdict(s).items()})
    print(f"samples built in {time.time() - t:.0f}s", file=sys.stderr)
    return s


def canonical_lips(person=DEMO) -> np.ndarray:
    """[T, 40, 2] lip vertices of each frame's driven mesh without the head pose."""
    _, track, _, model = load_person_geometry(person)
    canon = model.meshes(model.coefficients(track.expressions()))
    return canon[:, list(LIPS), :2].astype(np.float32)


def match(lips: np.ndarray, idx: np.ndarray, pool: np.ndarray, switch: float = 0.0) -> np.ndarray:
    """For each frame of idx (in order) a frame of pool: nearest lips, with `switch` added to
    the cost of changing source between consecutive frames (Viterbi)."""
    d = np.sqrt(((lips[idx][:, None] - lips[pool][None]) ** 2).sum(-1).mean(-1))   # [N, P]
    if switch <= 0:
        return pool[d.argmin(1)]
    cost, back = d[0].copy(), np.zeros(d.shape, int)
    for t in range(1, len(idx)):
        best = cost.argmin()
        stay, move = cost, cost[best] + switch
        back[t] = np.where(stay <= move, np.arange(len(pool)), best)
        cost = np.minimum(stay, move) + d[t]
    path = [int(cost.argmin())]
    for t in range(len(idx) - 1, 0, -1):
        path.append(back[t, path[-1]])
    return pool[np.array(path[::-1])]


def evaluate(model, s: MouthSamples, idx: np.ndarray, sources: np.ndarray) -> dict:
    p, (h, w) = s.pad, s.shape
    both = MouthScores()
    with torch.inference_mode():
        for k in range(0, len(idx), 8):
            part = idx[k:k + 8]
            verts, first, _, raster, source, _ = batch_windows(s, part, "cpu", None, sources[k:k + 8])
            out = (render_mouth(model, verts, first, raster, source).output.clamp(0, 1) * 255)
            out = out.round().byte().permute(0, 2, 3, 1).numpy()
            for o, i in zip(out, part):
                real = s.real[i, p:p + h, p:p + w]
                both.add(o, real, mouth_box(s.lips[i] - p, real.shape))
    return both.summary()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(DEMO / "renderer.safetensors"))
    ap.add_argument("--json")
    ap.add_argument("--switch", type=float, nargs="*", default=[0.0, 0.002, 0.005])
    a = ap.parse_args()
    model = load_weights(Path(a.weights)).float().eval()
    s = samples(load_weights(DEMO / "renderer.safetensors").float())
    lips = canonical_lips()
    n, start = len(s.real), s.holdout_start
    idx, pool = np.arange(start, n), np.arange(0, start)
    spread = float(np.sqrt(((lips - lips.mean(0)) ** 2).sum(-1).mean()))
    print(f"{len(idx)} held-out frames, pool {len(pool)}, lips spread {spread:.4f}", flush=True)
    report = {"offset15": evaluate(model, s, idx, eval_sources(idx, n))}
    print("offset15", report["offset15"], flush=True)
    near = np.array([idx[max(0, k - 15)] if k >= 15 else idx[k + 15] for k in range(len(idx))])
    for sw in a.switch:
        src = match(lips, idx, pool, sw)
        err = float(np.sqrt(((lips[idx] - lips[src]) ** 2).sum(-1).mean()))
        key = f"matched_switch{sw}"
        report[key] = evaluate(model, s, idx, src)
        report[key].update(lip_error=err, switches=int((np.diff(src) != 0).sum()))
        print(key, report[key], flush=True)
    report["offset15_lip_error"] = float(np.sqrt(((lips[idx] - lips[near]) ** 2).sum(-1).mean()))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
