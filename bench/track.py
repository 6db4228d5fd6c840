"""Tracking benchmark: frames per second of decode + MediaPipe tracking, and face-found rate.

    python bench/track.py [VIDEO ...] [--json bench/results/track.json]

With no videos it uses every clip in ../shared/data/person and ../shared/data/speakers.
Tracking is run uncached. Prints one JSON object (per clip and totals).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from avatar.face.crop import centre_jitter, raw_crop_boxes
from avatar.face.tracker import DEFAULT_MAX_SIDE, detect_frames, finish_track
from avatar.io.files import write_json
from avatar.video.reader import VideoReader

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_videos() -> list[Path]:
    return sorted(SHARED.glob("person/*/*.mp4")) + sorted(SHARED.glob("speakers/*/*.mp4"))


def bench_clip(path: Path, max_side: int) -> dict:
    reader = VideoReader(path, max_side=max_side)
    start = time.perf_counter()
    raw = detect_frames(reader, progress=False)
    seconds = time.perf_counter() - start
    track = finish_track(raw)
    return {"clip": str(path.relative_to(SHARED)) if SHARED in path.parents else str(path),
            "size": list(raw.frame_size), "frames": len(raw.found),
            "face_found": round(float(raw.found.mean()), 4), "fps": round(len(raw.found) / seconds, 1),
            "crop_jitter_raw_px": round(centre_jitter(raw_crop_boxes(track.landmarks)), 3),
            "crop_jitter_smoothed_px": round(centre_jitter(track.crop_boxes), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    videos = args.videos or default_videos()
    if not videos:
        print("no videos given and none found in ../shared/data", file=sys.stderr)
        return 2
    clips = [bench_clip(v, args.max_side) for v in videos]
    hd = [c for c in clips if c["size"][1] == 720]
    result = {"benchmark": "track", "machine": machine(), "max_side": args.max_side, "clips": clips,
              "fps_720p_mean": round(sum(c["fps"] for c in hd) / len(hd), 1) if hd else None,
              "min_face_found": min(c["face_found"] for c in clips)}
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(args.json, result)
    return 0


def machine() -> dict:
    import torch
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    sys.exit(main())
