"""The fit tab's work: the resumable `train-person` job in a background process, by person name.

    start_fit(uploads, "alice", "Alice Smith, agreed 2026-05-01", minutes=30, options)
    fit_view("alice")       # status, the CLI's progress bars, previews as soon as they exist

The clips are copied into $AVATAR_HOME/ui/fits/<name>/videos and `train-person` runs on them
exactly as from a terminal (ui_background), so a fit survives closing the page, stopping the
server resumes like any killed fit (start it again), and any page shows a running fit by its
person's name. Consent goes to person.json through train-person's --consent.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from avatar.io import person as person_io
from avatar.io.files import exclusive_lock
from pipelines import ui_background, ui_files

MAX_MINUTES = 24 * 60


def fits_root() -> Path:
    return ui_files.ui_root() / "fits"


def fit_folder(name: str) -> Path:
    return fits_root() / person_io.check_person_name(name)


def fit_names() -> list[str]:
    """Persons with a fit started from this page (newest first)."""
    root = fits_root()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / ui_background.JOB).is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / ui_background.JOB).stat().st_mtime,
                                   reverse=True)]


def fit_argv(videos: list[Path], name: str, consent: str, minutes: float, device: str) -> list[str]:
    argv = ["train-person", "--name", name, "--consent", consent, "--device", device]
    for v in videos:
        argv += ["--video", str(v)]
    return argv + (["--no-render"] if minutes == 0 else ["--minutes", f"{minutes:g}"])


def start_fit(uploads, name: str, consent: str, minutes: float, device: str = "auto",
              max_mb: float = ui_files.DEFAULT_MAX_UPLOAD_MB) -> Path:
    """Check the request like train-person does, copy the clips, start the job; its folder."""
    name = person_io.check_person_name((name or "").strip())
    person_io.consent_record(consent)          # the page always asks for the statement
    minutes = check_minutes(minutes)
    fits_root().mkdir(parents=True, exist_ok=True)
    with exclusive_lock(fits_root() / ".start.lock", "another fit is being started this moment; "
                        "try again in a few seconds"):
        folder = fit_folder(name)
        if (folder / ui_background.JOB).is_file() and \
                ui_background.state(folder).status == "running":
            raise AvatarError(f"a fit of {name!r} is already running; it is shown below (stop "
                              "it first to start another)")
        _start_locked(folder, uploads, name, consent.strip(), minutes, device, max_mb)
    return folder


def _start_locked(folder: Path, uploads, name: str, consent: str, minutes: float, device: str,
                  max_mb: float) -> None:
    from pipelines.train_person import check_videos
    incoming = folder.with_name(f".{name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    videos = ui_files.take_uploads(uploads, incoming, "video", max_mb)
    try:
        check_videos(videos)
    except AvatarError:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    shutil.rmtree(folder / "videos", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    incoming.rename(folder / "videos")
    videos = [folder / "videos" / v.name for v in videos]
    ui_background.start(folder, fit_argv(videos, name, consent, minutes, device))


def check_minutes(minutes) -> float:
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        raise AvatarError(f"time budget {minutes!r} is not a number of minutes") from None
    if not 0 <= value <= MAX_MINUTES:
        raise AvatarError(f"time budget {value:g} min is out of range; use 0 (tracking and face "
                          f"model only) to {MAX_MINUTES} minutes")
    return value


@dataclass(frozen=True)
class FitView:
    name: str
    state: ui_background.JobState
    contact_sheet: Path | None
    overlay: Path | None
    curve: Path | None
    samples: Path | None

    def headline(self) -> str:
        words = {"running": "running", "done": "finished", "failed": "failed",
                 "stopped": "stopped (start it again with the same clips to resume)"}
        line = f"fit of {self.name}: {words[self.state.status]}"
        failed = self.state.status == "failed" and self.state.error
        return f"{line}; {self.state.error}" if failed else line


def fit_view(name: str) -> FitView:
    """Everything the page shows about the fit of `name` (AvatarError when there is none)."""
    folder = fit_folder(name)
    if not (folder / ui_background.JOB).is_file():
        raise AvatarError(f"no fit of {name!r} was started from this page")
    state = ui_background.state(folder)
    person = newest_person_folder(name)
    run = newest_run(name)
    return FitView(name, state, _existing(person, person_io.CONTACT_SHEET),
                   _existing(person, person_io.OVERLAY), _existing(run, "curve.png"),
                   _existing(run, "samples.png"))


def newest_person_folder(name: str) -> Path | None:
    """The person being built (staging) or, when none is being built, the installed one."""
    final = person_io.user_persons_root() / name
    staging = person_io.staging_dir(final)
    return staging if staging.is_dir() else final if final.is_dir() else None


def newest_run(name: str) -> Path | None:
    """The renderer training run of the person (train-person names it render-<name>-<hash>)."""
    root = person_io.runs_root()
    runs = [p for p in root.glob(f"render-{name}-*") if p.is_dir()] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def _existing(folder: Path | None, name: str) -> Path | None:
    return folder / name if folder is not None and (folder / name).is_file() else None


def stop_fit(name: str) -> bool:
    return ui_background.stop(fit_folder(name))
