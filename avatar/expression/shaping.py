"""The final blendshape weights of each output frame: driving mouth + the target's other channels,
mouth amplitude, blinks (the target's, synthetic, none or the driver's), resampling to the fps."""
from __future__ import annotations

import numpy as np

from avatar.config import SaySettings
from avatar.types import BLENDSHAPE_NAMES, MOUTH_BLENDSHAPES, Expressions

EYE_BLINKS = tuple(BLENDSHAPE_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight"))


def shape_expressions(driving: Expressions, target_blendshapes: np.ndarray, indices: np.ndarray,
                      settings: SaySettings, drive: str = "mouth") -> Expressions:
    """Final blendshape weights per output frame.

    drive="mouth": mouth/jaw channels come from `driving` (scaled by expression_scale), every other
    channel (brows, eyes, cheeks) from the target frame underneath (`target_blendshapes[indices]`),
    so the face agrees with its background. drive="all": every channel from `driving`. Blinks
    follow settings.blink; "auto" means the target's blinks, synthetic ones when the head is
    still, the driver's with "all".
    """
    n = len(indices)
    driving_w = fit_length(driving.weights, n)
    if drive == "all":
        weights = driving_w.copy()
    else:
        weights = target_blendshapes[indices].astype(np.float32).copy()
        mouth = list(MOUTH_BLENDSHAPES)
        weights[:, mouth] = driving_w[:, mouth]
    weights[:, list(MOUTH_BLENDSHAPES)] *= settings.expression_scale
    blink = resolved_blink(settings, drive)
    blinks = list(EYE_BLINKS)
    if blink == "synthetic":
        weights[:, blinks] = synthetic_blinks(n, driving.fps, settings.seed)[:, None]
    elif blink == "none":
        weights[:, blinks] = 0.0
    elif blink == "target":
        weights[:, blinks] = target_blendshapes[indices][:, blinks]
    return Expressions(np.clip(weights, 0.0, 1.0).astype(np.float32), driving.fps)


def resolved_blink(settings: SaySettings, drive: str = "mouth") -> str:
    """settings.blink with "auto" decided: the driver's with drive="all", synthetic when the head
    is still, else the target's."""
    if settings.blink != "auto":
        return settings.blink
    return "driving" if drive == "all" else "synthetic" if settings.head_motion == "still" else "target"


def synthetic_blinks(n: int, fps: float, seed: int) -> np.ndarray:
    """Natural-looking blink weights [n]: a blink every 2.5-6 s, each ~0.25 s, seeded."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float32)
    t = rng.uniform(0.8, 3.0)
    duration = n / fps
    while t < duration:
        length = rng.uniform(0.2, 0.3)
        times = np.arange(n) / fps
        phase = (times - t) / length
        inside = (phase >= 0) & (phase <= 1)
        shape = np.sin(np.pi * np.clip(phase, 0, 1)) ** 2 * rng.uniform(0.8, 1.0)
        out = np.maximum(out, np.where(inside, shape, 0.0).astype(np.float32))
        t += length + rng.uniform(2.5, 6.0)
    return out


def wanted_blinks(driving: Expressions, settings: SaySettings, drive: str, n: int,
                  rest: float) -> np.ndarray | None:
    """The eye-closure curve [n] the visible eyes should follow (None: the target's own eyes):
    `rest` (open) for "none", synthetic blinks, or the driver's blinks on its own scale."""
    mode = resolved_blink(settings, drive)
    if mode == "target":
        return None
    if mode == "none":
        return np.full(n, rest, np.float32)
    if mode == "synthetic":
        return synthetic_blinks(n, driving.fps, settings.seed)
    d = fit_length(driving.weights, n)[:, list(EYE_BLINKS)].mean(1)
    return np.clip((d - np.median(d)) / max(float(d.max() - np.median(d)), 0.2), 0, 1)


def fit_length(weights: np.ndarray, n: int) -> np.ndarray:
    """Trim or extend (repeat the last row) a [T, 52] array to n rows."""
    weights = np.asarray(weights, np.float32)
    if len(weights) == 0:
        return np.zeros((n, weights.shape[1] if weights.ndim == 2 else 52), np.float32)
    if len(weights) >= n:
        return weights[:n]
    return np.concatenate([weights, np.repeat(weights[-1:], n - len(weights), axis=0)])


def resample_expressions(expressions: Expressions, fps: float, n: int) -> Expressions:
    """Linear interpolation of an expression track to `n` frames at `fps`."""
    if abs(expressions.fps - fps) < 1e-6 and len(expressions) >= n:
        return Expressions(expressions.weights[:n], fps)
    src_t = np.arange(len(expressions)) / expressions.fps
    dst_t = np.arange(n) / fps
    w = np.stack([np.interp(dst_t, src_t, expressions.weights[:, c])
                  for c in range(expressions.weights.shape[1])], axis=1)
    return Expressions(w.astype(np.float32), fps)
