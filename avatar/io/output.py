"""The one output policy of every command that writes a video (say, reenact, batch).

Before any work starts, `check_output` refuses an output that
- lies inside a person folder, a persons root or the shipped checkpoints (it would replace
  person.json or target.mp4, or mix user files into the package);
- would replace a file this toolkit did not make (an mp4 without our synthetic-media tag, a
  .json that is not one of our side-cars), unless `overwrite` is set;
- cannot be written (a parent that is a file, a folder that refuses new files: checked by
  creating and deleting a probe temp file);
and removes this toolkit's own stale temp files (left by a killed run) from the output folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from avatar.errors import AvatarError
from avatar.io.files import remove_stale_temps, temp_prefix

SIDECAR_GENERATOR = "avatar-toolkit"


def check_output(path: str | os.PathLike, *, overwrite: bool = False, suffix: str = ".mp4",
                 sidecar: bool = True) -> Path:
    """The output path, checked as described above (AvatarError otherwise)."""
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise AvatarError(f"output {out} must end in {suffix}")
    if out.is_dir():
        raise AvatarError(f"output {out} is a folder; give a file name ending in {suffix}")
    check_not_protected(out)
    check_replaceable(out, overwrite, sidecar)
    check_writable_folder(out.parent)
    remove_stale_temps(out.parent)
    return out


def check_output_folder(folder: str | os.PathLike) -> Path:
    """An output folder (batch --out): not protected, writable; stale temp files removed."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AvatarError(f"output folder {folder} is a file; give a folder")
    check_not_protected(folder / "x")
    check_writable_folder(folder)
    remove_stale_temps(folder)
    return folder


def check_replaceable(out: Path, overwrite: bool = False, sidecar: bool = True) -> None:
    """Neither the video nor its side-car would replace a file this toolkit did not make."""
    for p in [out] + ([sidecar_of(out)] if sidecar else []):
        if p.is_dir():
            raise AvatarError(f"{p} is a folder; {out} needs that name: choose another output name")
        if p.exists() and not overwrite and not made_by_us(p):
            raise AvatarError(f"{p} exists and was not made by this toolkit; choose another "
                              "output name, or pass --overwrite to replace it")


def check_not_protected(out: Path) -> None:
    from avatar.io.person import containing_person
    inside = containing_person(out.parent)
    if inside is not None:
        raise AvatarError(f"output {out} is inside the person/checkpoint folder {inside}; "
                          "those folders belong to the toolkit (their files would be replaced): "
                          "write the output somewhere else")


def check_writable_folder(folder: Path) -> None:
    """The folder (or its nearest existing ancestor, where it would be created) accepts files."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise AvatarError(f"cannot write into {folder}: {existing} is a file, not a folder; "
                          "choose another output path")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("probe"), suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AvatarError(f"cannot write into {existing} ({e.strerror or e}); choose another "
                          "output folder or fix its permissions") from None


def sidecar_of(video: Path) -> Path:
    return Path(video).with_suffix(".json")


def made_by_us(path: Path) -> bool:
    """An mp4 carrying our synthetic-media tag, or a side-car JSON we wrote."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _is_sidecar(path)
    if path.suffix.lower() == ".mp4":
        return _named_by_sidecar(path) or _is_tagged_video(path)
    return False


def _named_by_sidecar(video: Path) -> bool:
    """Our side-car beside it names this video (cheap; the side-car is written after it)."""
    sidecar = sidecar_of(video)
    if not _is_sidecar(sidecar):
        return False
    with contextlib.suppress(OSError, ValueError, AttributeError, KeyError, TypeError):
        return json.loads(sidecar.read_text(encoding="utf-8"))["output"]["video"] == video.name
    return False


def _is_sidecar(path: Path) -> bool:
    with contextlib.suppress(OSError, ValueError, RecursionError, TypeError, KeyError):
        if path.stat().st_size > 4 << 20:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(data, dict) and data.get("synthetic") is True and \
            str(data.get("generator", "")).startswith(SIDECAR_GENERATOR) and "sidecar_version" in data
    return False


def _is_tagged_video(path: Path) -> bool:
    from avatar.video.probe import ffmpeg_header
    from avatar.video.writer import SYNTHETIC_COMMENT
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with contextlib.suppress(Exception):
        return SYNTHETIC_COMMENT in ffmpeg_header(path)
    return False
