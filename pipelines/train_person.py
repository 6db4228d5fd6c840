"""Fit a person model on one or more videos of one person talking (same room, framing, light).

    python cli.py train-person --video alice.mp4 --name alice --consent "Alice Smith, agreed 2026-05-01"
    python cli.py train-person --video a.mp4 --video b.mp4 --name alice --minutes 60

Steps: join the clips into the person's target video -> track every frame (cached by content
hash, in chunks: a killed run resumes at its last chunk) -> fit the person face model (mean shape,
expression basis, blendshape map; the last 15 % of frames are held out and measured) -> previews
(overlay video, contact sheet) -> train the neural texture + renderer (skip with --no-render;
resumes from its last checkpoint when run again).

The person is built in a hidden staging folder next to its final place and swapped in atomically
only when complete, so a failed or killed run never harms the person that was there (also with
--force). Persons go to $AVATAR_HOME/persons (default ~/.local/share/avatar-toolkit/persons);
--consent (who is shown and that they agreed) is stored in person.json and repeated in the
side-car of every video made with the person.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path


from avatar.errors import AvatarError
from avatar.face.crop import centre_jitter, raw_crop_boxes
from avatar.face.model import face_model_error, fit_face_model
from avatar.face.tracker import DEFAULT_MAX_SIDE, TRACKER_VERSION, check_track_quality, track_video
from avatar.io import person as person_io
from avatar.io.files import atomic_output, read_json, remove_stale_temps, sha256_file, write_json
from avatar.io.person import FORMAT_VERSION, check_person_name, save_face_model, save_track
from avatar.video.probe import ffmpeg_exe, probe_video
from avatar.video.reader import scaled_size

MIN_SECONDS = 2.0
TRACKED_FILES = person_io.TRACKED_FILES          # hashed in person.json (older name)
INPUTS_MARK = ".inputs.json"                     # in a staging folder: which videos it is for


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_device_argument
    p.add_argument("--video", action="append", required=True, metavar="V",
                   help="video of the person talking; repeat for more clips of the same setting")
    p.add_argument("--name", required=True, help="person name (letters, digits, - _ .)")
    p.add_argument("--consent", metavar="TEXT",
                   help="who is shown in the video and that they agreed to a synthetic model of "
                   "them (required for a new person; stored in person.json and repeated in the "
                   "side-car of every video made with it)")
    p.add_argument("--persons-dir", type=Path, default=None,
                   help="where person folders live (default: $AVATAR_HOME/persons, "
                   f"now {person_io.user_persons_root()})")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where training runs keep checkpoints, curves and samples "
                   f"(default: $AVATAR_HOME/runs, now {person_io.runs_root()})")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"downscale frames so the longest side is at most this (default {DEFAULT_MAX_SIDE})")
    p.add_argument("--minutes", type=float, default=60.0,
                   help="renderer training budget in minutes, counted across resumed runs")
    p.add_argument("--steps", type=int, default=None,
                   help="stop renderer training after this many steps (default: the time budget)")
    add_prior_arguments(p)
    add_device_argument(p)
    p.add_argument("--no-render", action="store_true", help="stop after tracking + face model")
    p.add_argument("--force", action="store_true",
                   help="replace an existing person of this name made from other videos (the old "
                   "one stays until the new one is complete)")


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", type=Path, default=None, metavar="DIR",
                   help="start the renderer from this renderer prior (a folder of prior.safetensors "
                   "+ config.json) instead of random weights (default: the shipped prior, when "
                   "one is shipped)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train the renderer from random weights even when a prior is shipped")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="stop the renderer once N held-out measurements in a row (one per 100 "
                   "steps) gained less than 0.05 dB (default: 5 from a prior, 0 = never from "
                   "scratch); --minutes stays the ceiling")


def renderer_start(args: argparse.Namespace) -> tuple[Path | None, int]:
    """(the prior folder the renderer starts from or None, the early-stopping patience)."""
    from avatar.render.prior import shipped_prior
    if args.from_scratch and args.prior is not None:
        raise AvatarError("give either --prior DIR or --from-scratch, not both")
    prior = None if args.from_scratch else (args.prior or shipped_prior())
    if prior is not None and not Path(prior).is_dir():
        raise AvatarError(f"--prior {prior} is not a folder; give a renderer prior folder or "
                          "--from-scratch")
    patience = args.patience if args.patience is not None else (5 if prior is not None else 0)
    if patience < 0:
        raise AvatarError(f"--patience {patience} must be 0 (never stop early) or more")
    return prior, patience


def run(args: argparse.Namespace) -> int:
    """Build the person in a hidden staging folder beside its final place (resumed if a run was
    killed), then swap it in atomically: the old person, if any, stays usable until then."""
    name = check_person_name(args.name)
    root = Path(args.persons_dir) if args.persons_dir else person_io.user_persons_root()
    if args.steps is not None and args.steps < 1:
        raise AvatarError(f"--steps {args.steps} must be at least 1")
    if not args.no_render:
        from avatar.render.prior import load_prior
        prior, _ = renderer_start(args)
        if prior is not None:
            load_prior(prior)                        # a bad prior fails before the tracking
    videos = [Path(v) for v in args.video]
    infos = check_videos(videos)
    from avatar.io.output import check_writable_folder
    check_writable_folder(root)
    if not args.consent and not (root / name / person_io.CONFIG).is_file() and \
            not person_io.staging_dir(root / name).exists():
        person_io.consent_record("")                 # a new person needs --consent: fail now
    with person_io.building(root, name):
        return _run_locked(args, name, root, videos, infos)


def _run_locked(args, name: str, root: Path, videos, infos) -> int:
    final, staging = root / name, person_io.staging_dir(root / name)
    person_io.clean_trash(root)
    inputs = [{"name": v.name, "sha256": sha256_file(v), "fps": i.fps, "duration_s": i.duration_s,
               "size": [i.width, i.height]} for v, i in zip(videos, infos)]
    old = existing_config(final, inputs, args.force)
    consent = consent_for(args.consent, old, staging, inputs)
    prepare_staging(staging, final, inputs, same=old is not None and same_inputs(old, inputs))
    try:
        build(staging, name, videos, infos, inputs, consent, args)
    except AvatarError:
        shutil.rmtree(staging, ignore_errors=True)     # a user error: nothing to resume
        raise
    person_io.install(staging, final)
    (final / INPUTS_MARK).unlink(missing_ok=True)
    status = person_io.read_config(final)["status"]
    print(f"person folder: {final} ({status}); look at {final / person_io.CONTACT_SHEET} and "
          f"{final / person_io.OVERLAY}")
    return 0


def build(folder: Path, name: str, videos, infos, inputs, consent, args) -> None:
    target = folder / person_io.TARGET
    if not target.is_file():
        size = scaled_size(infos[0].width, infos[0].height, args.max_side)
        build_target_video(videos, target, infos[0].fps, size)
    track = track_video(target, max_side=args.max_side)
    quality = check_track_quality(track, name)
    model, poses = fit_face_model(track)
    n, train = len(track), model.metadata["train_frames"]
    save_track(folder / person_io.TRACK, track, poses)
    save_face_model(folder / person_io.FACE_MODEL, model)
    metrics = {
        "frames": n, "train_frames": train, "face_found_fraction": quality.found_fraction,
        "longest_gap_s": quality.longest_gap_s,
        "crop_jitter_px": {"raw": centre_jitter(raw_crop_boxes(track.landmarks)),
                           "smoothed": centre_jitter(track.crop_boxes)},
        "face_model_holdout": asdict(face_model_error(track, poses, model, slice(train, n))),
        "face_model_train": asdict(face_model_error(track, poses, model, slice(0, train))),
    }
    config = {"format_version": FORMAT_VERSION, "name": name, "inputs": inputs,
              "consent": consent,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command_line(args),
              "fps": track.fps, "frame_size": list(track.frame_size), "n_frames": n,
              "holdout_start": train, "tracker_version": TRACKER_VERSION,
              "face_model": {"n_components": model.n_components}, "metrics": {"tracking": metrics}}
    person_io.finalize(folder, merge_config(folder, config))
    write_previews(folder, target, track)
    print_summary(folder, metrics, model.n_components)
    if not args.no_render:
        train_renderer_stage(folder, args)
    person_io.finalize(folder)


def same_inputs(config: dict, inputs: list[dict]) -> bool:
    return [i.get("sha256") for i in config.get("inputs", [])] == [i["sha256"] for i in inputs]


def existing_config(final: Path, inputs: list[dict], force: bool) -> dict | None:
    """The config of the person already at `final` (None if there is none); AvatarError when it
    was made from other videos and --force is not given."""
    if not final.exists():
        return None
    try:
        old = person_io.read_config(final)
    except AvatarError as e:
        if not force:
            raise AvatarError(f"person '{final.name}' already exists but cannot be read ({e}); "
                              "pass --force to replace it") from None
        return None
    if not same_inputs(old, inputs) and not force:
        raise AvatarError(f"person '{final.name}' already exists and was made from other videos; "
                          "pick another --name or pass --force to replace it")
    return old


def consent_for(statement: str | None, old: dict | None, staging: Path, inputs) -> dict:
    """The consent record: the one given, else the one already recorded for these videos."""
    if statement:
        return person_io.consent_record(statement)
    for config in (old, _staged_config(staging)):
        if config and same_inputs(config, inputs) and config.get("consent"):
            return config["consent"]
    return person_io.consent_record("")              # raises: --consent is required


def _staged_config(staging: Path) -> dict | None:
    try:
        return person_io.read_config(staging)
    except AvatarError:
        return None


def prepare_staging(staging: Path, final: Path, inputs: list[dict], same: bool) -> None:
    """Reuse a staging folder a killed run left for the same videos; otherwise start a new one
    (a copy of the existing person when its videos are the same, so training continues)."""
    marker = staging / INPUTS_MARK
    wanted = [i["sha256"] for i in inputs]
    if staging.exists():
        try:
            staged = read_json(marker, "staging inputs").get("sha256")
        except AvatarError:
            staged = None
        if staged != wanted:
            shutil.rmtree(staging)
    for leftover in staging.parent.glob(staging.name + ".*.copy"):
        shutil.rmtree(leftover, ignore_errors=True)
    if not staging.exists():
        tmp = staging.with_name(staging.name + f".{os.getpid()}.copy")
        if same and final.is_dir():
            person_io.copy_person(final, tmp)
        else:
            tmp.mkdir(parents=True)
        write_json(tmp / INPUTS_MARK, {"sha256": wanted})
        os.rename(tmp, staging)
    remove_stale_temps(staging)


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


def merge_config(folder: Path, config: dict) -> dict:
    """Keep what later stages wrote (renderer config and metrics) when tracking is re-run."""
    old = _staged_config(folder)
    if old is None:
        return config
    merged = {**old, **config}
    merged["metrics"] = {**old.get("metrics", {}), **config["metrics"]}
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
    with VideoWriter(folder / person_io.OVERLAY, size[0], size[1], track.fps, watermark=False,
                     metadata={"comment": "face tracking overlay (real footage, not synthetic)"}) as out:
        for i, frame in enumerate(VideoReader(target, max_frames=len(track))):
            drawn = draw_overlay(frame, track.landmarks[i], track.crop_boxes[i], bool(track.found[i]))
            out.write(cv2.resize(drawn, size, interpolation=cv2.INTER_AREA))
            if i in picks:
                sheet_frames.append(drawn)
    sheet = contact_sheet(sheet_frames, track_labels(track, sorted(picks)))
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    with atomic_output(folder / person_io.CONTACT_SHEET) as tmp:
        tmp.write_bytes(png.tobytes())


def print_summary(folder: Path, metrics: dict, k: int) -> None:
    fm = metrics["face_model_holdout"]
    print(f"person {folder.name.removeprefix(person_io.STAGING_PREFIX)} (being built in {folder})")
    print(f"  frames {metrics['frames']} (held out from {metrics['train_frames']}), face found in "
          f"{metrics['face_found_fraction']:.1%}, crop jitter {metrics['crop_jitter_px']['raw']:.2f}"
          f" -> {metrics['crop_jitter_px']['smoothed']:.2f} px/frame")
    print(f"  face model: {k} components; held-out landmark error {fm['blendshape_map_px']:.2f} px "
          f"(mean shape alone {fm['mean_shape_px']:.2f} px) in a {fm['crop_size']}-px crop")


def train_renderer_stage(folder: Path, args: argparse.Namespace) -> None:
    try:
        from avatar.render import train_renderer
    except ImportError:
        print("note: the renderer stage is not available in this version; tracking is done",
              file=sys.stderr)
        return
    config = person_io.read_config(folder)
    runs = Path(args.runs_dir) if args.runs_dir else person_io.runs_root()
    name = config["name"]
    run_dir = runs / f"render-{name}-{config['files'][person_io.TARGET][:10]}"
    prior, patience = renderer_start(args)
    print(f"  renderer training: {run_dir} (curves, samples, resumable checkpoints); "
          f"{'from the prior ' + str(prior) if prior else 'from scratch'}")
    metrics = train_renderer(folder, minutes=args.minutes, device=args.device, resume=True,
                             steps=args.steps, run_dir=run_dir, write_person=False,
                             prior=prior, patience=patience)
    run_config = read_json(run_dir / "config.json", "run config")
    run_config["person"] = name
    person_io.install_renderer(folder, run_dir / person_io.RENDERER, run_config, metrics)
    print(f"  renderer (step {metrics.get('step')}): held-out PSNR {metrics.get('psnr', float('nan')):.2f} dB, "
          f"SSIM {metrics.get('ssim', float('nan')):.3f} on the 256-px face crop; lower face only "
          f"{metrics.get('psnr_band', float('nan')):.2f} dB")
