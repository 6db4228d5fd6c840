"""Command line: `python cli.py COMMAND ...` or the `avatar` console script.

Each command lives in a module of `pipelines/` that defines `add_arguments(parser)` and
`run(args) -> int`. This file only dispatches and turns user mistakes (AvatarError) into one line.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

COMMANDS = {
    "say": ("pipelines.say", "make a talking-head video from text or an audio file"),
    "train-person": ("pipelines.train_person", "fit a person model (tracking, face model, renderer) on a video"),
    "train-prior": ("pipelines.train_prior", "make a renderer prior that train-person starts new people from"),
    "evaluate": ("pipelines.evaluate", "measure a person model on a clip of the same person (PSNR, SSIM, LMD)"),
    "reenact": ("pipelines.reenact", "drive a person with the expressions of another video"),
    "batch": ("pipelines.batch", "run many say-jobs from a JSONL file, resumable"),
    "train-audio2expr": ("pipelines.train_audio2expr", "train the shared audio-to-expression network"),
    "ui": ("pipelines.ui", "a local web page for say, fitting a person and batches (needs the ui extra)"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Every command is listed; only `chosen`'s module is imported (its options and --help), so
    a job does not pay for importing the others."""
    parser = argparse.ArgumentParser(
        prog="avatar", description="Offline talking-head avatars: fit a person once, then make "
        "them say anything. Every output video is marked as synthetic.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text, description=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from avatar.errors import AvatarError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    interrupts = []
    try:
        with _noting_interrupts(interrupts):
            return int(args._module.run(args) or 0)
    except AvatarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        if not interrupts:               # a bug: keep its traceback
            raise
        return _interrupted()            # Ctrl-C inside native code (MediaPipe) that raised its own error
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
    return 130


class _noting_interrupts:
    """Ctrl-C raises KeyboardInterrupt as usual and is also noted in `seen`, so an error that a
    library raised because it was interrupted still reads as an interruption."""

    def __init__(self, seen: list):
        self.seen, self.previous = seen, None

    def _on_sigint(self, signum, frame):
        self.seen.append(signum)
        raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


if __name__ == "__main__":
    sys.exit(main())
