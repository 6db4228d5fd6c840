"""Measure a person's renderer on a clip of the same person and setting.

    python cli.py evaluate --person demo --video clip.mp4 [--drive tracked|audio] [--json out.json]

The clip is tracked (cached) and aligned with the person's face model; its last 15 % of frames
(or all with --all-frames) are re-rendered into the clip's own frames, driven by the clip's own
tracked expressions (or, with --drive audio, by expressions predicted from its audio). Reported on
the 256x256 face crop: PSNR, SSIM, and the mouth landmark distance (LMD: MediaPipe lip landmarks
of rendered vs real crop, pixels). Also writes a side-by-side video (real | rendered).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from avatar.errors import AvatarError

HOLDOUT_FRACTION = 0.15
EVAL_CROP = 256


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--person", required=True, help="person name or folder")
    p.add_argument("--video", required=True, help="a clip of the same person (e.g. its target.mp4)")
    p.add_argument("--drive", default="tracked", choices=("tracked", "audio"),
                   help="expressions from the clip's tracking (default) or from its audio")
    p.add_argument("--json", help="write the metrics to this JSON file")
    p.add_argument("--out", help="side-by-side video path (default runs/evaluate-<person>-<clip>/)")
    p.add_argument("--weights", help="renderer weights to test instead of the person's "
                   "(e.g. an ablation run's)")
    p.add_argument("--all-frames", action="store_true", help="evaluate every frame, not the last 15 %%")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch", type=int, default=8, help="frames rendered together")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from avatar.io.files import write_json
    from avatar.io.person import REPO_ROOT, person_dir
    from avatar.video.probe import check_input_file

    folder = person_dir(args.person)
    video = check_input_file(args.video)
    if args.batch < 1:
        raise AvatarError("--batch must be at least 1")
    out = Path(args.out) if args.out else (
        REPO_ROOT / "runs" / f"evaluate-{folder.name}-{video.stem}-{args.drive}" / "side_by_side.mp4")
    metrics = evaluate_clip(folder, video, drive=args.drive, out_video=out, weights=args.weights,
                            all_frames=args.all_frames, device=args.device, batch=args.batch,
                            progress=not args.quiet)
    print_summary(metrics)
    if args.json:
        write_json(args.json, metrics)
    write_json(out.with_name("metrics.json"), metrics)
    if not args.weights:
        record_in_person(folder, metrics)
    return 0


def record_in_person(folder: Path, metrics: dict) -> None:
    """Keep the summary in person.json under metrics.evaluate.<clip>:<drive>."""
    from avatar.io.files import read_json, write_json
    config = read_json(folder / "person.json", "person config")
    summary = {k: metrics[k] for k in ("psnr", "ssim", "lmd_px", "n_frames", "frames", "crop")}
    key = f"{Path(metrics['video']).name}:{metrics['drive']}"
    config.setdefault("metrics", {}).setdefault("evaluate", {})[key] = summary
    write_json(folder / "person.json", config)


def load_drive(video: Path, drive: str, track, model):
    """Head poses + expressions of the clip (tracked, or predicted from its audio)."""
    from avatar.face.model import align_track
    poses = align_track(track, model)
    if drive == "tracked":
        return poses, track.expressions()
    try:
        from avatar.audio import load_speech
        from avatar.expression.checkpoint import load_audio2expr
    except ModuleNotFoundError as e:
        raise AvatarError(f"--drive audio is not available yet ({e.name} is missing); "
                          "use --drive tracked") from None
    from avatar.types import Expressions
    from avatar.video.probe import has_audio_stream
    if not has_audio_stream(video):
        raise AvatarError(f"{video} has no audio track; use --drive tracked")
    predicted = load_audio2expr().predict(load_speech(video), track.fps)
    weights = predicted.weights[:len(track)]
    if len(weights) < len(track):
        weights = np.concatenate([weights, np.repeat(weights[-1:], len(track) - len(weights), 0)])
    return poses, Expressions(weights, track.fps)


def evaluate_clip(folder: Path, video: Path, *, drive: str = "tracked", out_video: Path | None = None,
                  weights: str | None = None, all_frames: bool = False, device: str = "auto",
                  batch: int = 8, progress: bool = True) -> dict:
    from avatar.face.tracker import DEFAULT_MAX_SIDE, track_video
    from avatar.io.person import load_face_model
    from avatar.render.data import driven_meshes
    from avatar.render.renderer import FaceRenderer

    renderer = FaceRenderer.from_file(weights, device) if weights else FaceRenderer.load(folder, device)
    model = load_face_model(folder / "face_model.safetensors")
    track = track_video(video, max_side=DEFAULT_MAX_SIDE, progress=progress)
    poses, expressions = load_drive(video, drive, track, model)
    n = len(track)
    start = 0 if all_frames else n - max(1, int(round(n * HOLDOUT_FRACTION)))
    meshes = driven_meshes(model, poses, expressions)
    t0 = time.perf_counter()
    result = _render_and_measure(renderer, video, track, meshes, start, out_video, batch, progress)
    result.update(person=folder.name, video=str(video), drive=drive, frames=[start, n],
                  renderer=str(weights or folder / "renderer.safetensors"), crop=EVAL_CROP,
                  seconds=round(time.perf_counter() - t0, 1),
                  side_by_side=str(out_video) if out_video else None)
    return result


def _render_and_measure(renderer, video, track, meshes, start, out_video, batch, progress) -> dict:
    from tqdm import tqdm

    from avatar.render.metrics import LipLandmarks
    from avatar.video.reader import VideoReader

    # decode from the first frame and skip: ffmpeg's select filter (VideoReader start_frame)
    # repeats the first selected frame on some clips (seen on obama_bookshelf_c.mp4)
    reader = VideoReader(video, max_side=max(track.frame_size), max_frames=len(track))
    lips = LipLandmarks()
    scores: dict[str, list] = {"psnr": [], "ssim": [], "lmd": []}
    writer = _side_by_side_writer(out_video, track) if out_video else None
    bar = tqdm(total=len(track) - start, desc="evaluating", unit="frame", disable=not progress,
               file=sys.stderr)
    pending: list[np.ndarray] = []
    t = start
    try:
        for i, frame in enumerate(reader):
            if i < start:
                continue
            pending.append(frame)
            if len(pending) == batch:
                _flush(renderer, pending, meshes, track, t, scores, lips, writer)
                t += len(pending)
                bar.update(len(pending))
                pending = []
        if pending:
            _flush(renderer, pending, meshes, track, t, scores, lips, writer)
            bar.update(len(pending))
    finally:
        bar.close()
        lips.close()
        if writer is not None:
            writer.__exit__(*sys.exc_info())
    return summarize(scores)


def _flush(renderer, frames, meshes, track, t, scores, lips, writer) -> None:
    from avatar.render.compose import crop_band
    from avatar.render.metrics import lip_distance, psnr, ssim

    frames = np.stack(frames)
    k = len(frames)
    boxes = track.crop_boxes[t:t + k]
    rendered = renderer.render(meshes[t:t + k], frames, boxes)
    for real_frame, out_frame, box in zip(frames, rendered, boxes):
        real = crop_band(real_frame, box, EVAL_CROP, 0)
        out = crop_band(out_frame, box, EVAL_CROP, 0)
        scores["psnr"].append(psnr(out, real))
        scores["ssim"].append(ssim(out, real))
        scores["lmd"].append(lip_distance(lips(out), lips(real)))
    if writer is not None:
        writer.write(np.stack([_side_by_side(a, b) for a, b in zip(frames, rendered)]))


def _side_by_side_writer(path: Path, track):
    from avatar.video.writer import VideoWriter
    w, h = _half_size(track.frame_size)
    writer = VideoWriter(path, 2 * w, h, track.fps, metadata={"title": "real | rendered"})
    return writer.__enter__()


def _half_size(size) -> tuple[int, int]:
    w, h = size
    s = min(1.0, 640 / max(w, h))
    return int(round(w * s / 2)) * 2, int(round(h * s / 2)) * 2


def _side_by_side(real: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    import cv2
    w, h = _half_size((real.shape[1], real.shape[0]))
    small = [cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in (real, rendered)]
    return np.concatenate(small, 1)


def summarize(scores: dict) -> dict:
    lmd = [v for v in scores["lmd"] if v is not None]
    return {"psnr": float(np.mean(scores["psnr"])), "ssim": float(np.mean(scores["ssim"])),
            "lmd_px": float(np.mean(lmd)) if lmd else None, "lmd_frames": len(lmd),
            "n_frames": len(scores["psnr"]),
            "psnr_per_frame": [round(v, 3) for v in scores["psnr"]]}


def print_summary(m: dict) -> None:
    lmd = f"{m['lmd_px']:.2f} px" if m["lmd_px"] is not None else "n/a (no face found)"
    print(f"{m['person']} on {Path(m['video']).name} [{m['drive']}], frames {m['frames'][0]}-"
          f"{m['frames'][1]} ({m['n_frames']}): PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, "
          f"LMD {lmd} at {m['crop']}x{m['crop']}")
    if m.get("side_by_side"):
        print(f"side-by-side video: {m['side_by_side']}")
