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

from avatar import config
from avatar.config import SAY_DEFAULTS as D
from avatar.errors import AvatarError


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
    p.add_argument("--stream", action="store_true",
                   help="write a fragmented mp4 straight to the output, playable while it is "
                   "written (deleted again if the run fails; the side-car comes last)")


def add_audio2expr_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio2expr", help="audio-to-expression checkpoint folder "
                   "(default: the shipped checkpoints/audio2expr)")


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=config.DEFAULT_DEVICE,
                   help=f"{', '.join(config.DEVICES)} or cuda:N: where the networks run "
                   f"(default {config.DEFAULT_DEVICE}: a GPU when there is one)")


def add_person_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by say, reenact and batch (person, target, look of the video); their
    defaults are SaySettings' (avatar/config.py)."""
    p.add_argument("--person", default=config.DEFAULT_PERSON,
                   help=f"person name or folder (default {config.DEFAULT_PERSON})")
    p.add_argument("--target-video", help="another clip of the same person/setting to render into")
    p.add_argument("--start-frame", type=int, default=D.start_frame,
                   help=f"first target frame (default {D.start_frame})")
    p.add_argument("--fps", type=float, help="output frame rate (default: the target video's; "
                   f"{config.FPS_MIN:g} to {config.FPS_MAX:g})")
    p.add_argument("--size", type=int, help="longest side of the output in pixels "
                   "(default: the target video's size)")
    add_device_argument(p)
    p.add_argument("--seed", type=seed_argument, default=D.seed,
                   help=f"random seed (the voice's variation, synthetic blinks), 0 to {config.MAX_SEED}")
    p.add_argument("--blink", default=D.blink, choices=config.BLINK_MODES,
                   help="eye blinks: the target video's own (auto with head motion), synthetic "
                   "every 2.5-6 s (auto when still), or none (eyes kept open). Synthetic and none "
                   "copy the eyes from real blinks of the target video (up to three, in turn), so "
                   "they need a target that blinks at least once")
    p.add_argument("--head-motion", default=D.head_motion, choices=config.HEAD_MOTIONS,
                   help="follow the target video's head motion, or hold one frame")
    p.add_argument("--expression-scale", type=float, default=D.expression_scale,
                   help=f"mouth amplitude (1 = as predicted, 0 to {config.MAX_EXPRESSION_SCALE:g})")
    p.add_argument("--batch-size", type=int, default=D.batch_size,
                   help=f"frames rendered together (default {D.batch_size})")
    p.add_argument("--no-watermark", action="store_true",
                   help="leave out the visible SYNTHETIC label (the metadata tag and side-car stay)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (mp4 / side-car json) this toolkit did not make")


def seed_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= config.MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is out of range; use 0 to {config.MAX_SEED}")
    return value


def settings_from_args(args) -> config.SaySettings:
    return config.SaySettings(
        fps=args.fps, size=args.size, start_frame=args.start_frame, blink=args.blink,
        head_motion=args.head_motion, expression_scale=args.expression_scale, seed=args.seed,
        watermark=not args.no_watermark, target_video=args.target_video,
        batch_size=args.batch_size).checked()


def text_to_speak(args) -> str | None:
    """The text from the argument or --text-file. A text argument that is the path of an
    existing file is refused: the user almost surely meant --text-file."""
    from avatar.io.files import read_text
    if args.text_file is not None:
        return read_text(args.text_file, "text file", config.MAX_TEXT_FILE_BYTES)
    text = args.text
    if text is not None and "\n" not in text and len(text) < 4096 and text.strip() and \
            Path(text.strip()).expanduser().is_file():
        raise AvatarError(f"the text to speak, {text.strip()!r}, is the name of an existing file; "
                          f"to speak what the file says use --text-file {text.strip()}, to speak "
                          "the words themselves reword them")
    return text


def check_inputs(args) -> tuple[str | None, config.SaySettings]:
    """Cheap checks of everything the user gave, before any model is loaded."""
    from avatar.audio.speech import Voice, check_audio_file
    from pipelines.say_pipeline import check_output_path

    given = [x is not None for x in (args.text, args.text_file, args.audio)]
    if sum(given) != 1:
        raise AvatarError("give either a text to speak, --text-file FILE or --audio FILE "
                          "(exactly one of them)")
    if args.voice is not None and args.audio is not None:
        raise AvatarError("--voice picks who speaks a text; it does not apply to --audio")
    settings = settings_from_args(args)
    text = text_to_speak(args)
    check_output_path(args.output, args.overwrite)
    if args.audio is not None:
        check_audio_file(args.audio)
    else:
        Voice(args.voice).check(text)
    return text, settings


def run(args) -> int:
    from pipelines.say_pipeline import SayPipeline

    text, settings = check_inputs(args)
    t0 = time.perf_counter()
    with ProgressBars(enabled=not args.quiet) as bars:
        pipe = SayPipeline.from_person(args.person, device=args.device, audio2expr=args.audio2expr,
                                       voice=args.voice, load_voice=text is not None,
                                       progress=bars)
        loaded = time.perf_counter()
        result = pipe(text, audio=args.audio, output=args.output, settings=settings,
                      overwrite=args.overwrite, progress=bars, stream=args.stream)
    total = time.perf_counter() - t0
    first = result.seconds.get("first_frame")
    print(f"wrote {result.path} ({result.n_frames} frames, {result.duration_s:.2f} s, "
          f"{result.width}x{result.height}) and {result.sidecar.name} in {total:.1f} s "
          f"(models {loaded - t0:.1f} s, first frame after {first or 0:.1f} s more, "
          f"real-time factor {total / max(result.duration_s, 1e-6):.2f})")
    return 0


class ProgressBars:
    """A SayPipeline progress callback that draws one tqdm bar per stage on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            fmt = None if stage == "render" else "{desc}: {percentage:3.0f}% [{elapsed}]"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, bar_format=fmt,
                                          unit="frame" if stage == "render" else "it")
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
