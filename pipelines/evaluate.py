"""Measure a person's renderer on a clip of the same person and setting.

    python cli.py evaluate --person demo --video clip.mp4 [--drive tracked|audio] [--json out.json]

The clip is tracked (cached) and aligned with the person's face model, then re-rendered into its
own frames, driven by its own tracked expressions (or, with --drive audio, by expressions
predicted from its audio). Which frames count:
- the person's own target video: its held-out last 15 % (never trained on); --all-frames for all;
- one of the clips the person was fitted on: refused (its frames were trained on; evaluate the
  held-out part through the target video instead);
- any other clip: all its frames.
Reported on the 256x256 face crop: PSNR, SSIM, and the mouth landmark distance (LMD: MediaPipe
lip landmarks of rendered vs real crop, pixels); on the mouth box (the real frame's tracked lips,
grown 35 %) at the frame's own resolution: mouth PSNR, detail ratio (variance of the Laplacian,
rendered / real), high-frequency ratio (spectral energy above 1/4 Nyquist, rendered / real) and
flicker ratio (mean frame-to-frame change, rendered / real). Results go to --json and the run
folder (with a side-by-side video, real | rendered); the person folder is only read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from avatar.config import CROP_SIZE, SAY_DEFAULTS
from avatar.errors import AvatarError
from avatar.io import person as person_io

EVAL_CROP = CROP_SIZE


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_device_argument
    p.add_argument("--person", required=True, help="person name or folder")
    p.add_argument("--video", required=True, help="a clip of the same person (e.g. its target.mp4)")
    p.add_argument("--drive", default="tracked", choices=("tracked", "audio"),
                   help="expressions from the clip's tracking (default) or from its audio")
    p.add_argument("--json", help="write the metrics to this JSON file")
    p.add_argument("--out", help="side-by-side video path (default: the run folder "
                   "<AVATAR_HOME>/runs/evaluate-<person>-<clip>-<drive>/)")
    p.add_argument("--weights", help="renderer weights to test instead of the person's "
                   "(e.g. an ablation run's)")
    p.add_argument("--all-frames", action="store_true",
                   help="on the person's own target video: every frame, not only the held-out last 15 %%")
    add_device_argument(p)
    p.add_argument("--batch", type=int, default=SAY_DEFAULTS.batch_size,
                   help=f"frames rendered together (default {SAY_DEFAULTS.batch_size})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from avatar.io.files import write_json
    from avatar.io.person import person_dir, runs_root
    from avatar.video.probe import check_input_file

    folder = person_dir(args.person)
    video = check_input_file(args.video)
    if args.batch < 1:
        raise AvatarError("--batch must be at least 1")
    out = Path(args.out) if args.out else (
        runs_root() / f"evaluate-{folder.name}-{video.stem}-{args.drive}" / "side_by_side.mp4")
    metrics = evaluate_clip(folder, video, drive=args.drive, out_video=out, weights=args.weights,
                            all_frames=args.all_frames, device=args.device, batch=args.batch,
                            progress=not args.quiet)
    print_summary(metrics)
    if args.json:
        write_json(args.json, metrics)
    write_json(out.with_name("metrics.json"), metrics)
    return 0


def first_frame(folder: Path, video: Path, n: int, all_frames: bool) -> tuple[int, str]:
    """(first evaluated frame, what the clip is to this person): the target video's held-out
    part, or all frames of a clip the person was not fitted on; a fitting clip is refused."""
    from avatar.io.files import sha256_file
    from avatar.io.person import read_config
    from avatar.render.data import holdout_start
    config = read_config(folder)
    digest = sha256_file(video)
    if digest == sha256_file(folder / person_io.TARGET):
        return (0, "target video, all frames") if all_frames else (
            holdout_start(n, config), "target video, held-out frames")
    if any(isinstance(i, dict) and i.get("sha256") == digest for i in config.get("inputs", [])):
        raise AvatarError(f"{video.name} is one of the clips {folder.name} was fitted on, so its "
                          f"frames were trained on; evaluate the held-out frames with --video "
                          f"{folder / 'target.mp4'}, or give a clip that was not used")
    return 0, "clip not trained on, all frames"


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
    model = load_face_model(folder / person_io.FACE_MODEL)
    track = track_video(video, max_side=DEFAULT_MAX_SIDE, progress=progress)
    poses, expressions = load_drive(video, drive, track, model)
    n = len(track)
    start, role = first_frame(folder, video, n, all_frames)
    meshes = driven_meshes(model, poses, expressions)
    own = meshes if drive == "tracked" else driven_meshes(model, poses, track.expressions())
    t0 = time.perf_counter()
    result = _render_and_measure(renderer, video, track, meshes, start, out_video, batch, progress, own)
    result.update(person=folder.name, video=str(video), drive=drive, frames=[start, n], role=role,
                  renderer=str(weights or folder / person_io.RENDERER), crop=EVAL_CROP,
                  seconds=round(time.perf_counter() - t0, 1),
                  side_by_side=str(out_video) if out_video else None)
    return result


def _render_and_measure(renderer, video, track, meshes, start, out_video, batch, progress,
                        own_meshes=None) -> dict:
    """own_meshes: the clip's frames' own meshes (tracked expressions); the lips window moves
    real detail from frame i + SOURCE_OFFSET of the range (wrapping round), never from frame
    i itself, onto frame i's new mouth, as `say` does from the target frame."""
    from tqdm import tqdm

    from avatar.render.metrics import LipLandmarks, MouthScores
    from avatar.render.train_mouth import SOURCE_OFFSET
    from avatar.video.reader import VideoReader

    # decode from the first frame and skip: ffmpeg's select filter (VideoReader start_frame)
    # repeats the first selected frame on some clips (seen on obama_bookshelf_c.mp4)
    reader = VideoReader(video, max_side=max(track.frame_size), max_frames=len(track))
    lips = LipLandmarks()
    scores: dict = {"psnr": [], "ssim": [], "lmd": [], "mouth": MouthScores()}
    writer = _side_by_side_writer(out_video, track) if out_video else None
    bar = tqdm(total=len(track) - start, desc="evaluating", unit="frame", disable=not progress,
               file=sys.stderr)
    own = meshes if own_meshes is None else own_meshes
    pending: list = []
    try:
        for item in frames_with_sources(reader, start, len(track), SOURCE_OFFSET):
            pending.append(item)
            if len(pending) == batch:
                _flush(renderer, pending, meshes, own, track, scores, lips, writer)
                bar.update(len(pending))
                pending = []
        if pending:
            _flush(renderer, pending, meshes, own, track, scores, lips, writer)
            bar.update(len(pending))
    finally:
        bar.close()
        lips.close()
        if writer is not None:
            writer.__exit__(*sys.exc_info())
    return summarize(scores)


def frames_with_sources(frames, start: int, n: int, offset: int):
    """(i, frame i, j, frame j) for i in [start, n), in order, with j = i + offset wrapped
    round the range (j != i unless the range is one frame). Holds about 2 x offset frames."""
    from collections import deque
    length = n - start
    k = max(0, min(offset, length - 1))
    head, window = [], deque()
    for i, frame in enumerate(frames):
        if i < start:
            continue
        if i >= n:
            break
        if i - start < k:
            head.append(frame)
        window.append((i, frame))
        if len(window) > k:
            j, fj = window.popleft()
            yield j, fj, i, frame
    for j, fj in window:
        yield j, fj, start + j + k - n, head[j + k - n]


def _flush(renderer, items, meshes, own_meshes, track, scores, lips, writer) -> None:
    from avatar.face.mesh import LIPS
    from avatar.render.compose import crop_band
    from avatar.render.metrics import lip_distance, mouth_box, psnr, ssim

    idx = np.array([i for i, _, _, _ in items])
    src = np.array([j for _, _, j, _ in items])
    frames = np.stack([f for _, f, _, _ in items])
    sources = np.stack([f for _, _, _, f in items])
    boxes = track.crop_boxes[idx]
    rendered = renderer.render(meshes[idx], frames, boxes, frame_meshes=own_meshes[src],
                               source_frames=sources)
    for t, real_frame, out_frame, box in zip(idx, frames, rendered, boxes):
        tracked_lips = track.landmarks[t][list(LIPS), :2]
        scores["mouth"].add(out_frame, real_frame, mouth_box(tracked_lips, real_frame.shape))
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
            "n_frames": len(scores["psnr"]), **scores["mouth"].summary(),
            "psnr_per_frame": [round(v, 3) for v in scores["psnr"]]}


def print_summary(m: dict) -> None:
    lmd = f"{m['lmd_px']:.2f} px" if m["lmd_px"] is not None else "n/a (no face found)"
    print(f"{m['person']} on {Path(m['video']).name} [{m['drive']}], frames {m['frames'][0]}-"
          f"{m['frames'][1]} ({m['n_frames']}): PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, "
          f"LMD {lmd} at {m['crop']}x{m['crop']}")
    if m.get("mouth_frames"):
        print(f"mouth box at frame resolution: PSNR {m['mouth_psnr']:.2f} dB, detail ratio "
              f"{m['mouth_detail_ratio']:.2f}, high-frequency ratio {m['mouth_hf_ratio']:.2f}, "
              f"flicker ratio {_fmt(m['mouth_flicker_ratio'])} ({m['role']})")
    if m.get("side_by_side"):
        print(f"side-by-side video: {m['side_by_side']}")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
