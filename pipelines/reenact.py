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

from avatar import config
from avatar.errors import AvatarError
from avatar.io.provenance import cached_sha256


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipelines.say import add_person_arguments
    p.add_argument("--source", required=True, help="video whose facial expressions drive the person")
    add_person_arguments(p)
    p.add_argument("--drive", default=config.REENACT_DRIVES[0], choices=config.REENACT_DRIVES,
                   help="take every expression channel from the source (default), or only the "
                   "mouth (brows and eyes then follow the target frames)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (side-car .json beside it)")


def run(args) -> int:
    from avatar.render.person import load_person
    from avatar.video.probe import check_input_file
    from avatar.video.timeline import check_start_frame
    from pipelines.say import ProgressBars, settings_from_args
    from pipelines.say_pipeline import SayPipeline, Stages, check_output_path

    out = check_output_path(args.output, args.overwrite)
    source = check_input_file(args.source, "source video")
    settings = settings_from_args(args)
    t0 = time.perf_counter()
    pipe = SayPipeline.of(load_person(args.person, device=args.device), device=args.device)
    with ProgressBars(enabled=not args.quiet) as bars:
        stages = Stages(bars)
        target = pipe.target_for(settings, stages)
        check_start_frame(target, settings)
        track, speech = source_track(source, not args.quiet)
        fps = float(settings.fps or target.track.fps)
        n_frames = None if speech else max(1, int(round(len(track) * fps / track.fps)))
        record = {"kind": "video", "file": source.name, "sha256": cached_sha256(source),
                  "frames": len(track), "fps": track.fps, "audio_kept": speech is not None}
        result = pipe.render(speech, track.expressions(), out, settings, record, target=target,
                             drive=args.drive, n_frames=n_frames, command="reenact",
                             models=tracker_hashes(), stages=stages)
    print(f"wrote {result.path} ({result.n_frames} frames, {result.width}x{result.height}, "
          f"{'with' if speech else 'without'} the source's audio) and {result.sidecar.name} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def source_track(source, progress: bool):
    """The source video's face track and its speech (None when it has no audio)."""
    from avatar.audio import load_speech
    from avatar.face.tracker import track_video
    from avatar.video.probe import has_audio_stream

    track = track_video(source, progress=progress)
    if track.found.mean() < 0.5:
        raise AvatarError(f"source video {source}: a face was found in only "
                          f"{100 * track.found.mean():.0f} % of frames; give a clip showing a face")
    speech = load_speech(source, normalize=False, max_seconds=config.MAX_SPEECH_S) \
        if has_audio_stream(source) else None
    return track, speech


def tracker_hashes() -> dict:
    from avatar.face.mesh import LANDMARKER_TASK
    from avatar.io.provenance import cached_sha256
    return {"face_landmarker": {"files_sha256": {LANDMARKER_TASK.name: cached_sha256(LANDMARKER_TASK)}}}
