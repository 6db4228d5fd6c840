"""Contact sheet of real vs rendered mouths: closed, half open, open, teeth showing.

    python bench/mouth_sheet.py [--person demo] [--weights W] [--frames A:B] [--out docs/render/mouths.png]

Frames are taken from the person's target video, by default from its held-out part (never
trained on), chosen by the tracked jaw opening and the brightness inside the lips (teeth).
Columns: the real frame's lips window | the first stage alone (256^2 crop, pasted) | both stages
(the lips at frame resolution) | |difference| x 4 of both stages. Each window is at the frame's own
resolution, cut without resampling.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar.face.mesh import LIPS_INNER  # noqa: E402
from avatar.render.store import load_weights  # noqa: E402
from avatar.render.train_mouth import person_mouth_samples, render_windows  # noqa: E402
from avatar.types import BLENDSHAPE_NAMES  # noqa: E402


def pick_frames(samples, frames: np.ndarray, jaw: np.ndarray) -> list[tuple[str, int]]:
    """(label, frame) for closed, half open, open, and teeth showing (brightest lips interior)."""
    order = frames[np.argsort(jaw[frames])]
    p = samples.pad
    inner = [_interior_brightness(samples.real[i, p:-p, p:-p], samples.lips[i] - p) for i in frames]
    picks = [("closed", order[0]), ("half open", order[len(order) // 2]), ("open", order[-1]),
             ("teeth", frames[int(np.argmax(inner))])]
    return [(label, int(i)) for label, i in picks]


def _interior_brightness(window: np.ndarray, lips: np.ndarray) -> float:
    from avatar.face.mesh import LIPS
    ring = np.array([lips[list(LIPS).index(i)] for i in LIPS_INNER], np.int32)
    mask = np.zeros(window.shape[:2], np.uint8)
    cv2.fillPoly(mask, [ring], 1)
    if mask.sum() < 20:
        return 0.0
    grey = cv2.cvtColor(window, cv2.COLOR_RGB2GRAY)
    return float(np.percentile(grey[mask > 0], 90)) * min(1.0, mask.sum() / 400)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--person", default="demo")
    ap.add_argument("--weights", type=Path, help="renderer with both stages (default: the person's)")
    ap.add_argument("--frames", help="A:B frame range to pick from (default: the held-out part)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "render" / "mouths.png")
    args = ap.parse_args()
    from avatar.io.person import person_dir
    from avatar.render.data import load_person_geometry
    folder = person_dir(args.person)
    model = load_weights(args.weights or folder / "renderer.safetensors")
    if model.mouth is None:
        raise SystemExit("error: this renderer has no second stage")
    samples = person_mouth_samples(folder, model, progress=False)
    _, track, _, _ = load_person_geometry(folder)
    a, b = map(int, args.frames.split(":")) if args.frames else (samples.holdout_start, len(samples))
    picks = pick_frames(samples, np.arange(a, b), track.blendshapes[:, BLENDSHAPE_NAMES.index("jawOpen")])
    idx = np.array([i for _, i in picks])
    both = render_windows(model, samples, idx, "cpu")
    p = samples.pad
    rows = []
    for k, (label, i) in enumerate(picks):
        real, first = samples.real[i, p:-p, p:-p], samples.first[i, p:-p, p:-p]
        diff = np.clip(np.abs(both[k].astype(np.int16) - real) * 4, 0, 255).astype(np.uint8)
        row = np.concatenate([real, first, both[k], diff], 1).copy()
        cv2.putText(row, f"{label} (frame {i})", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        rows.append(row)
    w = real.shape[1]
    header = np.zeros((18, 4 * w, 3), np.uint8)
    for c, text in enumerate(("real", "first stage (256 crop)", "both stages (shipped)", "|diff| x4")):
        cv2.putText(header, text, (c * w + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    sheet = np.concatenate([header, *rows], 0)
    sheet = cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: {', '.join(f'{label} {i}' for label, i in picks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
