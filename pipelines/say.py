"""Make a talking-head video of a person saying a text (offline TTS) or an audio file.

    python cli.py say "Hello there" --person demo -o hello.mp4
    python cli.py say --audio speech.wav --person demo -o out.mp4 --head-motion still

The face is rendered into the person's own target video (or --target-video, another clip of the
same person), whose frames ping-pong when the speech is longer than the clip. Every output carries
a visible SYNTHETIC label (turn off with --no-watermark), a 'synthetic' mp4 metadata tag and a
side-car out.json recording the input, person, model hashes and settings.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from avatar.errors import AvatarError

DEFAULT_PERSON = "demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", help="text to speak (English voice); or use --text-file "
                   "or --audio")
    p.add_argument("--text-file", metavar="FILE", help="speak the text in this UTF-8 file")
    p.add_argument("--audio", help="speech audio file (wav, mp3, m4a, flac, or a video's sound)")
    p.add_argument("--voice", help="piper voice .onnx file to speak the text with (its .onnx.json "
                   "beside it), e.g. another language; default: the bundled CC0 English voice")
    add_person_arguments(p)
    add_audio2expr_argument(p)
    p.add_argument("-o", "--output", required=True, help="output .mp4 (side-car .json beside it)")


def add_audio2expr_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio2expr", help="audio-to-expression checkpoint folder "
                   "(default: the shipped checkpoints/audio2expr)")


def add_person_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by say and batch (person, target, look of the video)."""
    p.add_argument("--person", default=DEFAULT_PERSON, help="person name or folder (default demo)")
    p.add_argument("--target-video", help="another clip of the same person/setting to render into")
    p.add_argument("--start-frame", type=int, default=0, help="first target frame (default 0)")
    p.add_argument("--fps", type=float, help="output frame rate (default: the target video's)")
    p.add_argument("--size", type=int, help="longest side of the output in pixels "
                   "(default: the target video's size)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=seed_argument, default=0,
                   help="random seed (synthetic blinks), 0 to 4294967295")
    p.add_argument("--blink", default="auto", choices=("auto", "target", "synthetic", "none"),
                   help="eye blinks: the target video's own (auto with head motion), synthetic "
                   "every 2.5-6 s (auto when still), or none (eyes kept open). Synthetic and none "
                   "copy the eyes from real blinks of the target video (up to three, in turn), so "
                   "they need a target that blinks at least once")
    p.add_argument("--head-motion", default="target", choices=("target", "still"),
                   help="follow the target video's head motion, or hold one frame")
    p.add_argument("--expression-scale", type=float, default=1.0,
                   help="mouth amplitude (1 = as predicted, 0 to 3)")
    p.add_argument("--batch-size", type=int, default=8, help="frames rendered together")
    p.add_argument("--no-watermark", action="store_true",
                   help="leave out the visible SYNTHETIC label (the metadata tag and side-car stay)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (mp4 / side-car json) this toolkit did not make")


def seed_argument(text: str) -> int:
    from avatar.synthesis import MAX_SEED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is out of range; use 0 to {MAX_SEED}")
    return value


def settings_from_args(args):
    from avatar.synthesis import SaySettings
    return SaySettings(fps=args.fps, size=args.size, start_frame=args.start_frame, blink=args.blink,
                       head_motion=args.head_motion, expression_scale=args.expression_scale,
                       seed=args.seed, watermark=not args.no_watermark,
                       target_video=args.target_video, batch_size=args.batch_size).checked()


def check_output_path(output: str, overwrite: bool = False) -> Path:
    """The shared output policy (avatar/io/output.py): .mp4, not inside a person or checkpoint
    folder, replaces only files this toolkit made (unless --overwrite), writable; stale temp
    files of killed runs removed."""
    from avatar.io.output import check_output
    return check_output(output, overwrite=overwrite)


MAX_TEXT_FILE_BYTES = 64 * 1024


def text_to_speak(args) -> str | None:
    """The text from the argument or --text-file. A text argument that is the path of an
    existing file is refused: the user almost surely meant --text-file."""
    from avatar.io.files import read_text
    if args.text_file is not None:
        return read_text(args.text_file, "text file", MAX_TEXT_FILE_BYTES)
    text = args.text
    if text is not None and "\n" not in text and len(text) < 4096 and text.strip() and \
            Path(text.strip()).expanduser().is_file():
        raise AvatarError(f"the text to speak, {text.strip()!r}, is the name of an existing file; "
                          f"to speak what the file says use --text-file {text.strip()}, to speak "
                          "the words themselves reword them")
    return text


def run(args) -> int:
    from avatar.audio.tts import voice_files
    from avatar.io.provenance import audio_record, text_record
    from avatar.synthesis import (check_audio_file, check_start_frame, load_person, load_target,
                                  speakable_text, speech_from_audio, speech_from_text, stage)

    given = [x is not None for x in (args.text, args.text_file, args.audio)]
    if sum(given) != 1:
        raise AvatarError("give either a text to speak, --text-file FILE or --audio FILE "
                          "(exactly one of them)")
    if args.voice is not None and args.audio is not None:
        raise AvatarError("--voice picks who speaks a text; it does not apply to --audio")
    settings = settings_from_args(args)
    text = text_to_speak(args)
    out = check_output_path(args.output, args.overwrite)
    progress = not args.quiet
    t0 = time.perf_counter()
    if args.audio is not None:          # cheap input checks before loading any model
        check_audio_file(args.audio)
    else:
        voice = voice_files(args.voice)[0] if args.voice else None
        spoken = speakable_text(text, english=voice is None)
    person = load_person(args.person, device=args.device)
    target = load_target(person, settings.target_video, progress) if settings.target_video else None
    check_start_frame(target or person.target, settings)
    seconds = {"load": time.perf_counter() - t0}
    with stage("audio" if args.audio is not None else "tts", seconds, progress):
        if args.audio is not None:
            speech = speech_from_audio(args.audio)
            record = audio_record(args.audio, speech.duration_s)
        else:
            speech = speech_from_text(spoken, voice)
            record = text_record(text, voice)
    result = render_speech(person, speech, record, out, settings, target, progress, seconds,
                           args.device, args.audio2expr)
    total = time.perf_counter() - t0
    print(f"wrote {result.path} ({result.n_frames} frames, {speech.duration_s:.2f} s, "
          f"{result.width}x{result.height}) and {result.sidecar.name} in {total:.1f} s "
          f"(real-time factor {total / max(speech.duration_s, 1e-6):.2f})")
    return 0


def render_speech(person, speech, record, out, settings, target=None, progress=True,
                  seconds=None, device="auto", audio2expr=None):
    """Speech -> expressions -> video; used by say and batch."""
    from avatar.synthesis import make_video, model_hashes, predict_expressions, stage

    seconds = dict(seconds or {})
    fps = float(settings.fps or (target or person.target).track.fps)
    with stage("expressions", seconds, progress):
        expressions = predict_expressions(speech, fps, device, audio2expr)
    return make_video(person, speech, expressions, out, settings, record, command="say",
                      target=target, progress=progress, extra_seconds=seconds,
                      models=model_hashes(audio2expr))
