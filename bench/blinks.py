"""Blink check: do the output videos blink as asked? Measured by tracking them again.

    python bench/blinks.py --person demo --audio ../shared/data/audio/imagine.wav \
        [--json bench/results/blinks.json] [--sheet docs/render/blinks.png]

Renders three `say --audio` clips of the person (in child processes, as a user would):
1. `--head-motion still` (blink auto -> synthetic): r between the blink curve asked for and the
   eyeBlink MediaPipe tracks in the output (a still frame that never blinks scores ~0);
2. head motion from the target, `--blink target`: the target's own blinks, for reference;
3. same, `--blink none`: the tracked level on the frames where the target blinks should drop to
   the resting level.
Writes JSON and a contact sheet of the eyes (rows: still + synthetic, target, none).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def render(person: str, audio: str, out: Path, *options: str) -> None:
    subprocess.run([sys.executable, str(REPO / "cli.py"), "say", "--audio", audio, "--person",
                    person, "-o", str(out), "--quiet", "--no-watermark", *options], check=True)


def eye_strip(path: Path, frames: list[int], landmarks: np.ndarray) -> np.ndarray:
    """Crops around both eyes of the given frames, side by side."""
    from avatar.video.reader import VideoReader
    wanted, tiles = set(frames), {}
    for i, frame in enumerate(VideoReader(path)):
        if i in wanted:
            x, y = landmarks[i, 168, :2].astype(int)
            tiles[i] = frame[max(y - 60, 0):y + 40, max(x - 130, 0):x + 130]
        if i >= max(frames):
            break
    return np.concatenate([tiles[i] for i in frames], 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--person", default="demo")
    p.add_argument("--audio", default=str(REPO.parent / "shared/data/audio/imagine.wav"))
    p.add_argument("--json", default=str(REPO / "bench/results/blinks.json"))
    p.add_argument("--sheet", default=str(REPO / "docs/render/blinks.png"))
    args = p.parse_args()
    import cv2
    from avatar.face.tracker import track_video
    from avatar.render.eyes import MIN_BLINK_RISE, blink_levels, find_blinks
    from avatar.expression.shaping import synthetic_blinks
    from avatar.render.person import load_person

    person = load_person(args.person, "cpu")
    own = blink_levels(person.target.track)
    with tempfile.TemporaryDirectory() as tmp:
        clips = {name: Path(tmp) / f"{name}.mp4" for name in ("still", "target", "none")}
        render(args.person, args.audio, clips["still"], "--head-motion", "still")
        render(args.person, args.audio, clips["target"], "--blink", "target")
        render(args.person, args.audio, clips["none"], "--blink", "none")
        tracks = {name: track_video(path, progress=False) for name, path in clips.items()}
        levels = {name: blink_levels(t) for name, t in tracks.items()}
        n, fps = len(levels["still"]), tracks["still"].fps
        asked = synthetic_blinks(n, fps, 0)
        under = own[:len(levels["target"])]            # ping-pong starts at frame 0, forward
        shut = under > np.median(own) + MIN_BLINK_RISE
        result = {
            "machine": platform.processor() or platform.machine(), "person": args.person,
            "audio": Path(args.audio).name, "frames": n,
            "still_r_asked_vs_tracked": round(float(np.corrcoef(asked, levels["still"])[0, 1]), 3),
            "still_tracked_level_where_asked_shut": round(float(levels["still"][asked > 0.5].mean()), 3),
            "still_tracked_level_elsewhere": round(float(levels["still"][asked < 0.05].mean()), 3),
            "bank_blinks": len(find_blinks(own, person.target.poses.rotation, 0)),
            "target_blink_frames": int(shut.sum()),
            "target_tracked_level_there": round(float(levels["target"][shut].mean()), 3),
            "none_tracked_level_there": round(float(levels["none"][shut].mean()), 3),
            "none_tracked_level_elsewhere": round(float(levels["none"][~shut].mean()), 3),
        }
        peak = int(np.argmax(asked))
        still_frames = list(range(max(peak - 4, 0), min(peak + 4, n)))
        first = int(np.argmax(shut)) if shut.any() else peak
        target_frames = list(range(max(first - 2, 0), min(first + 6, n)))
        rows = [eye_strip(clips["still"], still_frames, tracks["still"].landmarks),
                eye_strip(clips["target"], target_frames, tracks["target"].landmarks),
                eye_strip(clips["none"], target_frames, tracks["none"].landmarks)]
    width = min(r.shape[1] for r in rows)
    sheet = np.concatenate([r[:, :width] for r in rows], 0)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.sheet, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
