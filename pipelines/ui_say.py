"""The say tab's work: one request -> the same `say` job the command line runs -> mp4 + side-car.

The page's choices become a `say` argument list, parsed by the CLI's own parser and checked by
`pipelines.say.check_inputs`, then run by the same `SayPipeline` as `say.run` (its progress
events drive the page's per-stage bars as they drive the command's tqdm bars), so every check,
message, default and output policy is the command's. The clip lands in a new request folder of
its own ($AVATAR_HOME/ui/requests/...).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import threading
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


@dataclass(frozen=True)
class PreparedSay:
    """A request checked by the command's own cheap checks, with its new output path."""
    args: argparse.Namespace
    text: str | None
    settings: object                      # avatar.config.SaySettings
    output: Path


def prepare(request: SayRequest, options: ServerOptions) -> PreparedSay:
    """Parse and check a request exactly as `say` checks its command line (no model is loaded);
    the output goes into a new request folder. AvatarError for a user mistake."""
    from pipelines import say
    if request.audio is not None:
        check_audio_upload(request.audio, options.max_upload_mb)
    folder = ui_files.new_request_folder("say")
    out = folder / f"{ui_files.safe_name(request.person, 'person')}-{folder.name[:15]}.mp4"
    try:
        args = parse_say(say_argv(request, out, options))
        text, settings = say.check_inputs(args)
    except AvatarError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return PreparedSay(args, text, settings, out)


def make_clip(prepared: PreparedSay, progress=None) -> Clip:
    """Run the say pipeline on a prepared request; `progress(stage, done, total)` gets the same
    events the command's progress bars draw."""
    args = prepared.args
    pipe = pipeline_for(args.person, args.device, args.audio2expr, args.voice, progress)
    result = pipe(prepared.text, audio=args.audio, output=prepared.output,
                  settings=prepared.settings, progress=progress)
    return Clip(result.path, result.sidecar, clip_summary(result.path))


_PIPELINES: dict = {}
_PIPELINES_LOCK = threading.Lock()


def pipeline_for(person: str, device: str, audio2expr: str | None, voice: str | None,
                 progress=None):
    """SayPipeline.from_person (its "load" events to `progress`), kept for the next request of
    the same person (reloaded when the person's folder changed, e.g. a fit finished)."""
    from avatar.io import person as person_io
    from pipelines.say_pipeline import SayPipeline
    stamp = (person_io.person_dir(person) / person_io.CONFIG).stat().st_mtime_ns
    key = (person, stamp, device, audio2expr)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            _PIPELINES.clear()                  # one person in memory at a time
            _PIPELINES[key] = SayPipeline.from_person(person, device=device, audio2expr=audio2expr,
                                                      progress=progress)
        pipe = _PIPELINES[key]
    return pipe.with_voice(voice) if voice else pipe


def clip_summary(video: Path) -> str:
    """One line about a finished clip, from its side-car."""
    from avatar.io.files import read_json
    meta = read_json(video.with_suffix(".json"), "side-car")
    o = meta.get("output", {})
    mark = "with" if o.get("watermark") else "WITHOUT"
    return (f"{video.name}: {o.get('frames')} frames, {float(o.get('duration_s', 0)):.2f} s, "
            f"{o.get('width')}x{o.get('height')}, {mark} the visible SYNTHETIC label; "
            f"side-car {video.with_suffix('.json').name}")


def check_audio_upload(path: str, max_mb: float) -> None:
    p = ui_files.upload_path(path)
    if p.is_file() and p.stat().st_size > max_mb * 1024 * 1024:
        raise AvatarError(f"the audio file is {p.stat().st_size / 2 ** 20:.0f} MB; at most "
                          f"{max_mb:g} MB are accepted")
