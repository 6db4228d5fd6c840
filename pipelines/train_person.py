"""Fit a person model on one or more videos of one person talking (same room, framing, light).

    python cli.py train-person --video alice.mp4 --name alice
    python cli.py train-person --video a.mp4 --video b.mp4 --name alice --minutes 60

Steps: join the clips into the person's target video -> track every frame (cached by content
hash) -> fit the person face model (mean shape, expression basis, blendshape map; the last 15 %
of frames are held out and measured) -> write the person folder with an overlay video and a
contact sheet to look at -> train the neural texture + renderer (skip with --no-render; resumes
where it stopped when run again).
"""
from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path


from avatar.errors import AvatarError
from avatar.face.crop import centre_jitter, raw_crop_boxes
from avatar.face.model import face_model_error, fit_face_model
from avatar.face.tracker import DEFAULT_MAX_SIDE, TRACKER_VERSION, check_track_quality, track_video
from avatar.io.files import atomic_output, read_json, sha256_file, write_json
from avatar.io.person import (FORMAT_VERSION, PERSONS_ROOT, REPO_ROOT, check_person_name,
                              save_face_model, save_track)
from avatar.video.probe import ffmpeg_exe, probe_video
from avatar.video.reader import scaled_size

MIN_SECONDS = 2.0
TRACKED_FILES = ("target.mp4", "track.safetensors", "face_model.safetensors")  # hashed in person.json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", action="append", required=True, metavar="V",
                   help="video of the person talking; repeat for more clips of the same setting")
    p.add_argument("--name", required=True, help="person name (letters, digits, - _ .)")
    p.add_argument("--persons-dir", type=Path, default=PERSONS_ROOT,
                   help=f"where person folders live (default: {PERSONS_ROOT})")
    p.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs",
                   help="where training runs keep checkpoints, curves and samples (default: runs/)")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help="downscale frames so the longest side is at most this (default 1280)")
    p.add_argument("--minutes", type=float, default=60.0,
                   help="renderer training budget in minutes, counted across resumed runs")
    p.add_argument("--steps", type=int, default=None,
                   help="stop renderer training after this many steps (default: the time budget)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-render", action="store_true", help="stop after tracking + face model")
    p.add_argument("--force", action="store_true",
                   help="replace an existing person of this name made from other videos")


def run(args: argparse.Namespace) -> int:
    name = check_person_name(args.name)
    videos = [Path(v) for v in args.video]
    infos = check_videos(videos)
    folder = args.persons_dir / name
    inputs = [{"name": v.name, "sha256": sha256_file(v), "fps": i.fps, "duration_s": i.duration_s,
               "size": [i.width, i.height]} for v, i in zip(videos, infos)]
    fresh = prepare_folder(folder, inputs, args.force)
    target = folder / "target.mp4"
    if fresh or not target.is_file():
        size = scaled_size(infos[0].width, infos[0].height, args.max_side)
        build_target_video(videos, target, infos[0].fps, size)
    track = track_video(target, max_side=args.max_side)
    quality = check_track_quality(track, name)
    model, poses = fit_face_model(track)
    n, train = len(track), model.metadata["train_frames"]
    save_track(folder / "track.safetensors", track, poses)
    save_face_model(folder / "face_model.safetensors", model)
    metrics = {
        "frames": n, "train_frames": train, "face_found_fraction": quality.found_fraction,
        "longest_gap_s": quality.longest_gap_s,
        "crop_jitter_px": {"raw": centre_jitter(raw_crop_boxes(track.landmarks)),
                           "smoothed": centre_jitter(track.crop_boxes)},
        "face_model_holdout": asdict(face_model_error(track, poses, model, slice(train, n))),
        "face_model_train": asdict(face_model_error(track, poses, model, slice(0, train))),
    }
    config = {"format_version": FORMAT_VERSION, "name": name, "inputs": inputs,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command_line(args),
              "fps": track.fps, "frame_size": list(track.frame_size), "n_frames": n,
              "holdout_start": train, "tracker_version": TRACKER_VERSION,
              "face_model": {"n_components": model.n_components}, "metrics": {"tracking": metrics},
              "files": {f: sha256_file(folder / f) for f in TRACKED_FILES}, "status": "tracked"}
    write_json(folder / "person.json", merge_config(folder, config))
    write_previews(folder, target, track)
    print_summary(folder, metrics, model.n_components)
    if not args.no_render:
        train_renderer_stage(folder, args)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The train-person command that reproduces this person (recorded in person.json)."""
    parts = ["train-person"] + [f"--video {v}" for v in args.video] + [f"--name {args.name}"]
    if args.max_side != DEFAULT_MAX_SIDE:
        parts.append(f"--max-side {args.max_side}")
    parts.append("--no-render" if args.no_render else f"--minutes {args.minutes:g}")
    if args.steps and not args.no_render:
        parts.append(f"--steps {args.steps}")
    return " ".join(parts)


def check_videos(videos: list[Path]):
    infos = [probe_video(v) for v in videos]
    total = sum(i.duration_s for i in infos)
    if total < MIN_SECONDS:
        raise AvatarError(f"the video is {total:.1f} s long; a person needs at least "
                          f"{MIN_SECONDS:.0f} s of footage (30 s or more gives better results)")
    if len({round(i.fps, 2) for i in infos}) > 1:
        raise AvatarError("the clips have different frame rates "
                          f"({', '.join(f'{i.fps:g}' for i in infos)}); give clips of one recording")
    if len({(i.width, i.height) for i in infos}) > 1:
        raise AvatarError("the clips have different frame sizes; give clips of one recording setting")
    return infos


def prepare_folder(folder: Path, inputs: list[dict], force: bool) -> bool:
    """True when the folder is new (or replaced); False when it holds a run on the same inputs."""
    config_path = folder / "person.json"
    if not config_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        return True
    old = read_json(config_path, "person config")
    same = [i["sha256"] for i in old.get("inputs", [])] == [i["sha256"] for i in inputs]
    if same:
        return False
    if not force:
        raise AvatarError(f"person '{folder.name}' already exists and was made from other videos; "
                          "pick another --name or pass --force to replace it")
    for leftover in ("target.mp4", "renderer.safetensors", "track.safetensors", "person.json"):
        (folder / leftover).unlink(missing_ok=True)
    return True


def merge_config(folder: Path, config: dict) -> dict:
    """Keep what later stages wrote (renderer config and metrics) when tracking is re-run."""
    path = folder / "person.json"
    if not path.is_file():
        return config
    old = read_json(path, "person config")
    merged = {**old, **config}
    merged["metrics"] = {**old.get("metrics", {}), **config["metrics"]}
    merged["files"] = {**old.get("files", {}), **config["files"]}
    if old.get("status") == "complete":
        merged["status"] = "complete"
    return merged


def build_target_video(videos: list[Path], out: Path, fps: float, size: tuple[int, int]) -> None:
    """Join the clips into one constant-rate H.264 video at the tracking size (no audio)."""
    w, h = size
    chains = [f"[{i}:v:0]fps={fps:.6f},scale={w}:{h}:flags=area,setsar=1,format=yuv420p[v{i}]"
              for i in range(len(videos))]
    joined = "".join(f"[v{i}]" for i in range(len(videos)))
    graph = ";".join(chains) + f";{joined}concat=n={len(videos)}:v=1:a=0[out]"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    for v in videos:
        cmd += ["-i", str(v)]
    with atomic_output(out) as tmp:
        cmd += ["-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-preset", "medium",
                "-crf", "17", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise AvatarError(f"could not decode the input videos ({last}); re-encode them "
                              "with a standard tool (H.264 mp4) and try again")


def write_previews(folder: Path, target: Path, track) -> None:
    """contact_sheet.png (12 frames with the tracked mesh) and overlay.mp4 (every frame, 640 px)."""
    import cv2

    from avatar.face.preview import contact_sheet, draw_overlay, sheet_frame_indices, track_labels
    from avatar.video.reader import VideoReader
    from avatar.video.writer import VideoWriter

    picks = set(sheet_frame_indices(len(track)))
    w, h = track.frame_size
    scale = min(1.0, 640 / max(w, h))
    size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
    sheet_frames = []
    with VideoWriter(folder / "overlay.mp4", size[0], size[1], track.fps, watermark=False,
                     metadata={"comment": "face tracking overlay (real footage, not synthetic)"}) as out:
        for i, frame in enumerate(VideoReader(target, max_frames=len(track))):
            drawn = draw_overlay(frame, track.landmarks[i], track.crop_boxes[i], bool(track.found[i]))
            out.write(cv2.resize(drawn, size, interpolation=cv2.INTER_AREA))
            if i in picks:
                sheet_frames.append(drawn)
    sheet = contact_sheet(sheet_frames, track_labels(track, sorted(picks)))
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    with atomic_output(folder / "contact_sheet.png") as tmp:
        tmp.write_bytes(png.tobytes())


def print_summary(folder: Path, metrics: dict, k: int) -> None:
    fm = metrics["face_model_holdout"]
    print(f"person folder: {folder}")
    print(f"  frames {metrics['frames']} (held out from {metrics['train_frames']}), face found in "
          f"{metrics['face_found_fraction']:.1%}, crop jitter {metrics['crop_jitter_px']['raw']:.2f}"
          f" -> {metrics['crop_jitter_px']['smoothed']:.2f} px/frame")
    print(f"  face model: {k} components; held-out landmark error {fm['blendshape_map_px']:.2f} px "
          f"(mean shape alone {fm['mean_shape_px']:.2f} px) in a {fm['crop_size']}-px crop")
    print(f"  look at: {folder / 'contact_sheet.png'} and {folder / 'overlay.mp4'}")


def train_renderer_stage(folder: Path, args: argparse.Namespace) -> None:
    try:
        from avatar.render import train_renderer
    except ImportError:
        print("note: the renderer stage is not available in this version; tracking is done",
              file=sys.stderr)
        return
    config = read_json(folder / "person.json", "person config")
    run_dir = args.runs_dir / f"render-{folder.name}-{config['files']['target.mp4'][:10]}"
    print(f"  renderer training: {run_dir} (curves, samples, resumable checkpoints)")
    metrics = train_renderer(folder, minutes=args.minutes, device=args.device, resume=True,
                             steps=args.steps, run_dir=run_dir)
    config = read_json(folder / "person.json", "person config")
    write_json(folder / "person.json", {**config, "status": "complete"})
    print(f"  renderer (step {metrics.get('step')}): held-out PSNR {metrics.get('psnr', float('nan')):.2f} dB, "
          f"SSIM {metrics.get('ssim', float('nan')):.3f} on the 256-px face crop; lower face only "
          f"{metrics.get('psnr_band', float('nan')):.2f} dB")
