"""Limits, defaults and choices of every job, and the one place environment variables are read.

argparse reads its defaults and choices from here (pipelines/*.add_arguments), the library checks
against the same values, so a default or a limit is spelled once. `SaySettings` is the frozen
record of everything that shapes a say / reenact / batch clip besides speech and person; its field
defaults are the command line's defaults.

Environment (read only by the functions below):
    AVATAR_HOME          user data folder (persons, runs); default $XDG_DATA_HOME/avatar-toolkit
                         or ~/.local/share/avatar-toolkit
    AVATAR_CHECKPOINTS   shipped models folder; default the installed package's checkpoints
    AVATAR_CACHE         tracking cache; default $XDG_CACHE_HOME/avatar-toolkit or
                         ~/.cache/avatar-toolkit
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from avatar.errors import AvatarError

# --- limits ------------------------------------------------------------------------------------
FPS_MIN, FPS_MAX = 1.0, 240.0       # any frame rate: of inputs, tracks, outputs
MAX_SIZE = 4096                      # longest side of an output video, pixels
MIN_SIZE = 16
MAX_SEED = 2 ** 32 - 1
MAX_TEXT_CHARS = 5000                # about 5 minutes of speech: one clip
MAX_TEXT_FILE_BYTES = 64 * 1024
MAX_SPEECH_S = 30 * 60.0             # longest speech one clip renders
MAX_EXPRESSION_SCALE = 3.0
MAX_BATCH_SIZE = 256

# --- choices and defaults ----------------------------------------------------------------------
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"              # a GPU when there is one, for every job
DEFAULT_PERSON = "demo"
BLINK_MODES = ("auto", "target", "synthetic", "none")
HEAD_MOTIONS = ("target", "still")
REENACT_DRIVES = ("all", "mouth")
CROP_SIZE = 256                      # face crop the first render stage (and evaluation) works on
FEATURE_KIND = "whisper_tiny"        # speech features of the articulation net
FEATURE_DIM = 385                    # whisper_tiny: 384 encoder channels + loudness


@dataclass(frozen=True)
class SaySettings:
    """Everything that shapes the output video besides the speech and the person."""
    fps: float | None = None               # default: the target video's
    size: int | None = None                # longest side in pixels; default: the target's size
    start_frame: int = 0
    blink: str = "auto"                    # auto: target's blinks, synthetic when still
    head_motion: str = "target"            # target: follow the target's head; still: one frame
    expression_scale: float = 1.0          # mouth amplitude
    seed: int = 0
    watermark: bool = True
    target_video: str | None = None
    batch_size: int = 8

    def checked(self) -> "SaySettings":
        """self, or AvatarError naming the first setting out of range."""
        for check in (_check_frame_settings, _check_look, _check_numbers):
            check(self)
        return self


def _check_frame_settings(s: SaySettings) -> None:
    if s.fps is not None and not FPS_MIN <= float(s.fps) <= FPS_MAX:
        raise AvatarError(f"fps {s.fps} is out of range; use a value between {FPS_MIN:g} and "
                          f"{FPS_MAX:g}")
    if s.size is not None and not MIN_SIZE <= int(s.size) <= MAX_SIZE:
        raise AvatarError(f"size {s.size} is out of range; use {MIN_SIZE} to {MAX_SIZE} pixels "
                          "(longest side)")
    if int(s.start_frame) < 0:
        raise AvatarError(f"start frame {s.start_frame} is negative; use 0 or more")
    if not 1 <= int(s.batch_size) <= MAX_BATCH_SIZE:
        raise AvatarError(f"batch size {s.batch_size} is out of range; use 1 to {MAX_BATCH_SIZE}")


def _check_look(s: SaySettings) -> None:
    if s.blink not in BLINK_MODES:
        raise AvatarError(f"blink {s.blink!r} is unknown; use one of {', '.join(BLINK_MODES)}")
    if s.head_motion not in HEAD_MOTIONS:
        raise AvatarError(f"head motion {s.head_motion!r} is unknown; use one of "
                          f"{', '.join(HEAD_MOTIONS)}")


def _check_numbers(s: SaySettings) -> None:
    if not (math.isfinite(s.expression_scale) and 0.0 <= s.expression_scale <= MAX_EXPRESSION_SCALE):
        raise AvatarError(f"expression scale {s.expression_scale} is out of range; "
                          f"use 0 to {MAX_EXPRESSION_SCALE:g} (1 = as predicted)")
    if isinstance(s.seed, bool) or not isinstance(s.seed, int) or not 0 <= s.seed <= MAX_SEED:
        raise AvatarError(f"seed {s.seed} is out of range; use a whole number from 0 to {MAX_SEED}")


SAY_DEFAULTS = SaySettings()
SETTING_NAMES = tuple(f.name for f in fields(SaySettings))


def settings_from(options: dict) -> SaySettings:
    """SaySettings from a dict of option names (unknown names are a user error)."""
    unknown = sorted(set(options) - set(SETTING_NAMES))
    if unknown:
        raise AvatarError(f"unknown option(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(SETTING_NAMES))}")
    return replace(SAY_DEFAULTS, **options).checked()


# --- where things live (the only reads of the environment) -------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parent


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def avatar_home() -> Path:
    """The user data folder: persons, runs and everything else a user makes."""
    data = _env_path("XDG_DATA_HOME") or Path("~/.local/share").expanduser()
    return _env_path("AVATAR_HOME") or data / "avatar-toolkit"


def cache_dir() -> Path:
    """Tracking results cached by the video's content hash."""
    cache = _env_path("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return _env_path("AVATAR_CACHE") or cache / "avatar-toolkit"


def checkpoints_dir() -> Path:
    """The shipped models in use: $AVATAR_CHECKPOINTS, else the package's (package_checkpoints)."""
    return _env_path("AVATAR_CHECKPOINTS") or package_checkpoints()


def package_checkpoints() -> Path:
    """The models shipped with the code: package data of an installed wheel (avatar/checkpoints),
    or the repository's checkpoints/ in a source checkout (an editable install)."""
    installed = PACKAGE_DIR / "checkpoints"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "checkpoints"
