"""The say tab's work: one request -> the same `say` job the command line runs -> mp4 + side-car.

The page's choices become a `say` argument list, parsed by the CLI's own parser and run by
`pipelines.say.run`, so every check, message, default and output policy is the command's. The
clip lands in a new request folder of its own ($AVATAR_HOME/ui/requests/...).
"""
from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from pipelines import ui_files


@dataclass(frozen=True)
class SayRequest:
    text: str = ""
    audio: str | None = None              # path of an uploaded or recorded file
    person: str = "demo"
    voice: str = ""                       # "" = the bundled voice, else one of voice_choices()
    head_motion: str = "target"
    blink: str = "auto"
    expression_scale: float = 1.0
    no_watermark: bool = False            # only from the page's explicit, labelled checkbox


@dataclass(frozen=True)
class ServerOptions:
    """What the `ui` command was started with and applies to every request."""
    device: str = "auto"
    audio2expr: str | None = None
    max_upload_mb: float = ui_files.DEFAULT_MAX_UPLOAD_MB


@dataclass(frozen=True)
class Clip:
    video: Path
    sidecar: Path
    summary: str                          # one line: frames, length, size, watermark


def say_argv(request: SayRequest, out: Path, options: ServerOptions) -> list[str]:
    """The `say` command line for a request (the text last, after '--', so it is never an option)."""
    if request.person not in ui_files.person_choices():
        raise AvatarError(f"person {request.person!r} is not one of the persons this page offers")
    argv = ["say", "--person", request.person, "--head-motion", str(request.head_motion),
            "--blink", str(request.blink), "--expression-scale", f"{float(request.expression_scale):g}",
            "--device", options.device, "-o", str(out)]
    voice = ui_files.check_voice_choice(request.voice)
    if voice and request.audio is None:
        argv += ["--voice", voice]
    if options.audio2expr:
        argv += ["--audio2expr", str(options.audio2expr)]
    if request.no_watermark:
        argv.append("--no-watermark")
    if request.audio is not None:
        argv += ["--audio", str(request.audio)]
        if request.text.strip():
            argv += ["--", request.text]     # both given: the command's own error says so
    else:
        argv += ["--", request.text or ""]
    return argv


def parse_say(argv: list[str]) -> argparse.Namespace:
    import cli
    parser = cli.build_parser("say")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return parser.parse_args(argv)
    except SystemExit:
        last = (errors.getvalue().strip().splitlines() or ["invalid settings"])[-1]
        raise AvatarError(last.split("error: ", 1)[-1]) from None


def make_clip(request: SayRequest, options: ServerOptions, progress: bool = True) -> Clip:
    """Run the say job for one request in a new request folder; AvatarError for user mistakes."""
    from pipelines import say
    if request.audio is not None:
        check_audio_upload(request.audio, options.max_upload_mb)
    folder = ui_files.new_request_folder("say")
    out = folder / f"{ui_files.safe_name(request.person, 'person')}-{folder.name[:15]}.mp4"
    args = parse_say(say_argv(request, out, options))
    args.quiet = not progress
    say.run(args)
    return Clip(out, out.with_suffix(".json"), clip_summary(out))


def clip_summary(video: Path) -> str:
    """One line about a finished clip, from its side-car."""
    from avatar.io.files import read_json
    meta = read_json(video.with_suffix(".json"), "side-car")
    o = meta.get("output", {})
    mark = "with" if o.get("watermark") else "WITHOUT"
    return (f"{video.name}: {o.get('frames')} frames, {o.get('duration_s')} s, "
            f"{o.get('width')}x{o.get('height')}, {mark} the visible SYNTHETIC label; "
            f"side-car {video.with_suffix('.json').name}")


def check_audio_upload(path: str, max_mb: float) -> None:
    p = ui_files.upload_path(path)
    if p.is_file() and p.stat().st_size > max_mb * 1024 * 1024:
        raise AvatarError(f"the audio file is {p.stat().st_size / 2 ** 20:.0f} MB; at most "
                          f"{max_mb:g} MB are accepted")
