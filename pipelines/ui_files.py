"""Where the web page keeps its work, how it takes uploads, what it offers to pick.

    $AVATAR_HOME/ui/requests/<utc time>-<random>/   one folder per say or batch request
    $AVATAR_HOME/ui/fits/<person name>/             the background train-person job of a person
    $AVATAR_HOME/voices/*.onnx (+ .onnx.json)       piper voices offered besides the bundled one

Every request writes only into its own new folder, so two users (or two tabs) never replace each
other's files. Uploads are copied in under a plain name after the size check; the CLI's own
checks (probe, duration, text) then run on the copy.
"""
from __future__ import annotations

import datetime
import re
import shutil
import uuid
from pathlib import Path

from avatar.errors import AvatarError
from avatar.io import person as person_io

DEFAULT_MAX_UPLOAD_MB = 500
BUNDLED_VOICE = "English (bundled voice)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ui_root() -> Path:
    return person_io.avatar_home() / "ui"


def new_request_folder(kind: str) -> Path:
    """A fresh folder no other request can name (time + 96 random bits)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = ui_root() / "requests" / f"{stamp}-{kind}-{uuid.uuid4().hex[:24]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def request_folder(request_id: str) -> Path:
    """The folder of an earlier request, by its id (no paths: the id is one plain name)."""
    if not isinstance(request_id, str) or not re.fullmatch(r"[0-9]{8}-[0-9]{6}-[a-z]+-[0-9a-f]{24}",
                                                           request_id):
        raise AvatarError(f"request {request_id!r} is not a request id of this page")
    folder = ui_root() / "requests" / request_id
    if not folder.is_dir():
        raise AvatarError(f"request {request_id} not found (it may have been cleaned up)")
    return folder


def safe_name(name: str, fallback: str = "upload") -> str:
    """A plain file name: letters, digits, '.', '_' and '-', at most 64 characters."""
    stem, dot, suffix = Path(str(name)).name.rpartition(".")
    stem = _UNSAFE.sub("_", stem if dot else suffix).strip("._-")[:48] or fallback
    suffix = _UNSAFE.sub("", suffix)[:10] if dot else ""
    return f"{stem}.{suffix.lower()}" if suffix else stem


def upload_path(upload) -> Path:
    """The local path of a Gradio upload (a path string, or an object with .name / .path)."""
    for value in (upload, getattr(upload, "path", None), getattr(upload, "name", None)):
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
    raise AvatarError("the upload could not be read; upload the file again")


def take_uploads(uploads, folder: Path, what: str, max_mb: float, max_files: int = 20) -> list[Path]:
    """Copy uploaded files into `folder` under plain, distinct names; AvatarError when one is
    missing, empty, or the files together exceed `max_mb` megabytes."""
    paths = [upload_path(u) for u in (uploads or [])]
    if not paths:
        raise AvatarError(f"no {what} uploaded; choose at least one file")
    if len(paths) > max_files:
        raise AvatarError(f"{len(paths)} {what} files uploaded; at most {max_files} at a time")
    total = 0
    for p in paths:
        if not p.is_file():
            raise AvatarError(f"the uploaded {what} {p.name} is gone; upload it again")
        if p.stat().st_size == 0:
            raise AvatarError(f"the uploaded {what} {p.name} is empty (0 bytes)")
        total += p.stat().st_size
    if total > max_mb * 1024 * 1024:
        raise AvatarError(f"the uploaded {what} files are {total / 2 ** 20:.0f} MB together; "
                          f"at most {max_mb:g} MB are accepted")
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for i, p in enumerate(paths):
        name = safe_name(p.name)
        target = folder / (name if not (folder / name).exists() else f"{i + 1}-{name}")
        shutil.copyfile(p, target)
        copies.append(target)
    return copies


def person_choices() -> list[str]:
    """Names of the user's and the shipped persons that are complete (usable to say something)."""
    names = []
    for name in person_io.known_persons():
        try:
            config = person_io.read_config(person_io.person_dir(name))
        except AvatarError:
            continue
        if config.get("status") == "complete":
            names.append(name)
    return names


def person_thumbnail(name: str | None) -> str | None:
    """The person's contact sheet (frames with the tracked mesh), if it has one."""
    if not name:
        return None
    try:
        sheet = person_io.person_dir(name) / person_io.CONTACT_SHEET
    except AvatarError:
        return None
    return str(sheet) if sheet.is_file() else None


def voices_root() -> Path:
    return person_io.avatar_home() / "voices"


def voice_choices() -> list[tuple[str, str]]:
    """(label, value) pairs: the bundled voice (value "") and every piper voice installed in
    $AVATAR_HOME/voices (a .onnx with its .onnx.json)."""
    found = sorted(p for p in voices_root().glob("*.onnx") if Path(f"{p}.json").is_file()) \
        if voices_root().is_dir() else []
    return [(BUNDLED_VOICE, "")] + [(p.stem, str(p)) for p in found]


def check_voice_choice(value: str | None) -> str | None:
    """A picked voice must be one of the offered ones (never an arbitrary path from the page)."""
    if not value:
        return None
    if value not in {v for _, v in voice_choices()}:
        raise AvatarError(f"voice {Path(str(value)).name!r} is not installed in {voices_root()}")
    return value
