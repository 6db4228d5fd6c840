"""Metrics for audio2expr on held-out speakers, the loudness baseline, and the curve plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.types import BLENDSHAPE_NAMES, JAW_OPEN, MOUTH_BLENDSHAPES

MAX_LAG = 10


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() < 1e-8 or b.std() < 1e-8:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def best_offset(pred: np.ndarray, target: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float]:
    """Lag L maximizing corr(pred[t + L], target[t]); L > 0 means the prediction is L frames late."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        r = pearson(pred[max(lag, 0): len(pred) + min(lag, 0)], target[max(-lag, 0): len(target) + min(-lag, 0)])
        if np.isfinite(r) and r > best[1]:
            best = (lag, r)
    return best


def clip_metrics(pred: np.ndarray, tracked: np.ndarray, loudness_db: np.ndarray,
                 silent: np.ndarray) -> dict:
    """pred, tracked [T, 52]; loudness_db [T]; silent [T] bool (frames with no speech around)."""
    n = min(len(pred), len(tracked), len(loudness_db))
    pred, tracked, loudness_db, silent = pred[:n], tracked[:n], loudness_db[:n], silent[:n]
    jaw_p, jaw_t = pred[:, JAW_OPEN], tracked[:, JAW_OPEN]
    mouth = [i for i in MOUTH_BLENDSHAPES if tracked[:, i].std() > 0.01]
    mouth_r = [pearson(pred[:, i], tracked[:, i]) for i in mouth]
    lag, lag_r = best_offset(jaw_p, jaw_t)
    out = {
        "frames": int(n),
        "jaw_r": pearson(jaw_p, jaw_t),
        "mouth_mean_r": float(np.nanmean(mouth_r)) if mouth_r else float("nan"),
        "mouth_r": {BLENDSHAPE_NAMES[i]: r for i, r in zip(mouth, mouth_r)},
        "mouth_mae": float(np.abs(pred[:, list(MOUTH_BLENDSHAPES)] - tracked[:, list(MOUTH_BLENDSHAPES)]).mean()),
        "jaw_mae": float(np.abs(jaw_p - jaw_t).mean()),
        "best_offset_frames": int(lag), "best_offset_r": float(lag_r),
        "baseline_loudness_jaw_r": pearson(loudness_db, jaw_t),
        "silent_frames": int(silent.sum()),
    }
    if silent.any():
        out["silent_rest_fraction_pred_median"] = float((jaw_p[silent] < np.median(jaw_p)).mean())
        out["silent_rest_fraction_tracked_median"] = float((jaw_p[silent] < np.median(jaw_t)).mean())
        out["silent_mean_jaw_pred"] = float(jaw_p[silent].mean())
        out["silent_mean_jaw_tracked"] = float(jaw_t[silent].mean())
    return out


def summarize(per_clip: dict[str, dict]) -> dict:
    keys = ["jaw_r", "mouth_mean_r", "mouth_mae", "jaw_mae", "best_offset_frames", "baseline_loudness_jaw_r",
            "network_only_jaw_r", "prior_only_jaw_r"]
    frames = np.array([m["frames"] for m in per_clip.values()], float)
    out = {}
    for k in keys:
        vals = np.array([m.get(k, np.nan) for m in per_clip.values()], float)
        ok = np.isfinite(vals)
        out[f"mean_{k}"] = float(vals[ok].mean()) if ok.any() else float("nan")
        out[f"frame_weighted_{k}"] = float((vals[ok] * frames[ok]).sum() / frames[ok].sum()) if ok.any() else float("nan")
    sil = [(m["silent_rest_fraction_pred_median"], m["silent_frames"]) for m in per_clip.values()
           if "silent_rest_fraction_pred_median" in m]
    if sil:
        out["silent_rest_fraction"] = float(sum(f * n for f, n in sil) / sum(n for _, n in sil))
        out["silent_frames"] = int(sum(n for _, n in sil))
    return out


def plot_curves(path: str | Path, items: list[dict], title: str) -> None:
    """items: dicts with name, fps, pred_jaw, tracked_jaw (optional), loudness (optional), text."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(items), 1, figsize=(12, 2.2 * len(items) + 0.6), squeeze=False)
    for ax, it in zip(axes[:, 0], items):
        t = np.arange(len(it["pred_jaw"])) / it["fps"]
        if it.get("tracked_jaw") is not None:
            ax.plot(t, it["tracked_jaw"][: len(t)], label="tracked jawOpen", color="black", lw=1.2)
        ax.plot(t, it["pred_jaw"], label="predicted jawOpen", color="tab:red", lw=1.2)
        if it.get("loudness") is not None:
            loud = np.asarray(it["loudness"][: len(t)], float)
            span = max(loud.max() - loud.min(), 1e-6)
            top = max(float(np.max(it["pred_jaw"])), 0.1)
            ax.plot(t, (loud - loud.min()) / span * top, label="loudness (scaled)", color="tab:blue",
                    lw=0.8, alpha=0.5)
        ax.set_title(f"{it['name']}   {it.get('text', '')}", fontsize=9)
        ax.set_xlim(0, max(t[-1], 1e-3) if len(t) else 1)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    from avatar.io.files import atomic_output
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=70, format="png")
    plt.close(fig)


# ---- articulation a viewer reads (bench/articulation.py) -------------------------------------

BILABIALS = frozenset({"P", "B", "M", "p", "b", "m"})
CLOSED_MARGIN = 0.025          # lip gap (inter-ocular units) above the closed gap that still counts as closed


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """[T, 478, >=2] MediaPipe landmarks (pixels) -> [T] inner-lip gap (landmarks 13-14) in units of
    the distance between the outer eye corners (33-263), so it compares across faces and sizes."""
    lm = np.asarray(landmarks, np.float64)
    eye = np.linalg.norm(lm[:, 33, :2] - lm[:, 263, :2], axis=1)
    return (np.linalg.norm(lm[:, 13, :2] - lm[:, 14, :2], axis=1) / np.maximum(eye, 1e-6)).astype(np.float32)


def closed_gap(gap: np.ndarray, percentile: float = 2.0) -> float:
    """A face's closed-lip gap: a low percentile of its lip gap over a track where it talks and rests."""
    return float(np.percentile(np.asarray(gap, float), percentile))


def bilabial_events(phones, fps: float, n_frames: int) -> list[tuple[int, int]]:
    """Frame spans [lo, hi) of the p/b/m phones (ARPAbet or IPA labels), each at least one frame and
    widened by one frame on either side (the lips close just before the sound)."""
    out = []
    for p in phones:
        if p.phoneme in BILABIALS:
            lo = int(np.floor(p.start_s * fps)) - 1
            hi = max(int(np.ceil(p.end_s * fps)), lo + 2) + 1
            lo, hi = max(lo, 0), min(hi, n_frames)
            if hi > lo:
                out.append((lo, hi))
    return out


def closure_rate(gap: np.ndarray, events: list[tuple[int, int]], threshold: float) -> float:
    """Share of bilabial events at which the lip gap falls below `threshold` (closed gap + margin)
    in at least one frame; NaN without events."""
    if not events:
        return float("nan")
    gap = np.asarray(gap, float)
    return float(np.mean([gap[lo:hi].min() < threshold for lo, hi in events]))


def rest_rate(gap: np.ndarray, silent: np.ndarray, threshold: float) -> float:
    """Share of silent frames with the lips at rest (gap below `threshold`); NaN without silence."""
    silent = np.asarray(silent, bool)[: len(gap)]
    if not silent.any():
        return float("nan")
    return float((np.asarray(gap, float)[: len(silent)][silent] < threshold).mean())


def amplitude_ratio(ours: np.ndarray, real: np.ndarray, percentile: float = 95.0) -> float:
    """95th percentile of our lip gap over the real speaker's (1 = as wide as real speech)."""
    return float(np.percentile(ours, percentile) / max(np.percentile(real, percentile), 1e-6))
