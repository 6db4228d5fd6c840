"""Drive a person with the facial expressions of another video (face reenactment).

    python cli.py reenact --source src.mp4 --person demo -o out.mp4

The source video is tracked (MediaPipe blendshapes, cached); its expressions go through the
person's map onto the person's face, rendered into the person's target video (ping-pong frames
when the source is longer). The source's audio is kept. The output is marked as synthetic like
`say` output (label, metadata tag, side-car JSON).
"""
from __future__ import annotations

import argparse
import time

from avatar.errors import AvatarError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_person_arguments
    p.add_argument("--source", required=True, help="video whose facial expressions drive the person")
    add_person_arguments(p)
    p.add_argument("--drive", default="all", choices=("all", "mouth"),
                   help="take every expression channel from the source (default), or only the "
                   "mouth (brows and eyes then follow the target frames)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (side-car .json beside it)")


def run(args) -> int:
    from avatar.audio import load_speech
    from avatar.face.tracker import track_video
    from avatar.io.provenance import cached_sha256
    from avatar.synthesis import check_start_frame, load_person, load_target, make_video
    from avatar.video.probe import check_input_file, has_audio_stream
    from pipelines.say import check_output_path, settings_from_args

    out = check_output_path(args.output, args.overwrite)
    source = check_input_file(args.source, "source video")
    settings = settings_from_args(args)
    progress = not args.quiet
    t0 = time.perf_counter()
    person = load_person(args.person, device=args.device)
    target = load_target(person, settings.target_video, progress) if settings.target_video else None
    check_start_frame(target or person.target, settings)
    seconds = {"load": time.perf_counter() - t0}
    t = time.perf_counter()
    track = track_video(source, progress=progress)
    if track.found.mean() < 0.5:
        raise AvatarError(f"source video {source}: a face was found in only "
                          f"{100 * track.found.mean():.0f} % of frames; give a clip showing a face")
    seconds["track_source"] = time.perf_counter() - t
    from avatar.synthesis import MAX_SPEECH_S
    speech = load_speech(source, normalize=False, max_seconds=MAX_SPEECH_S) \
        if has_audio_stream(source) else None
    fps = float(settings.fps or (target or person.target).track.fps)
    n_frames = None if speech else max(1, int(round(len(track) * fps / track.fps)))
    record = {"kind": "video", "file": source.name, "sha256": cached_sha256(source),
              "frames": len(track), "fps": track.fps, "audio_kept": speech is not None}
    result = make_video(person, speech, track.expressions(), out, settings, record,
                        command="reenact", target=target, drive=args.drive, n_frames=n_frames,
                        progress=progress, extra_seconds=seconds, models=tracker_hashes())
    print(f"wrote {result.path} ({result.n_frames} frames, {result.width}x{result.height}, "
          f"{'with' if speech else 'without'} the source's audio) and {result.sidecar.name} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def tracker_hashes() -> dict:
    from avatar.face.mesh import LANDMARKER_TASK
    from avatar.io.provenance import cached_sha256
    return {"face_landmarker": {"files_sha256": {LANDMARKER_TASK.name: cached_sha256(LANDMARKER_TASK)}}}
