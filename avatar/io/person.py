"""Person folders: the one owner of their file names, of person.json and of where they live.

    <persons root>/<name>/
        person.json              config (schema below): version, inputs, consent, file hashes, ...
        track.safetensors        FaceTrack + HeadPoses of the target video's frames
        face_model.safetensors   PersonFaceModel
        renderer.safetensors     neural texture + U-Net weights (render stage)
        target.mp4               the target video the face is composited into
        overlay.mp4, contact_sheet.png   previews to look at (not needed to render)

Where persons live: a user's persons in `$AVATAR_HOME/persons` (default
`~/.local/share/avatar-toolkit/persons`, or `$XDG_DATA_HOME/avatar-toolkit/persons`); persons
shipped with the package (`demo`) in its checkpoints' `persons` (avatar.config.checkpoints_dir:
`$AVATAR_CHECKPOINTS`, the wheel's package data or a checkout's `checkpoints/`). A name is
looked up in the user's folder first, then in the shipped one.

person.json is read with limits (1 MiB, nesting depth 16) and checked against `SCHEMA` (types,
bounds, sizes) on every load; a person used for rendering must also be `complete` and record the
sha256 of every file in `HASHED_FILES`, each of which must match (missing hashes are refused, not
trusted). Only this module reads or writes person.json.

A person is built in a hidden staging folder beside its final place (`.staging-<name>`) and
swapped in atomically (`install`) only when complete, so a failed or killed `train-person` never
touches the person that was there, and no folder under a person's name is ever half made.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import re
import shutil
from pathlib import Path

import numpy as np

from avatar.config import FPS_MAX, FPS_MIN, avatar_home, checkpoints_dir, package_checkpoints
from avatar.errors import AvatarError
from avatar.io.files import (atomic_output, exclusive_lock, load_arrays, read_json,
                             remove_stale_temps, save_arrays, sha256_file, write_json)
from avatar.types import N_BLENDSHAPES, N_LANDMARKS, FaceTrack, HeadPoses, PersonFaceModel

FORMAT_VERSION = 1

# --- file names (no other module spells them) ------------------------------------------------
CONFIG = "person.json"
TRACK = "track.safetensors"
FACE_MODEL = "face_model.safetensors"
RENDERER = "renderer.safetensors"
TARGET = "target.mp4"
OVERLAY = "overlay.mp4"
CONTACT_SHEET = "contact_sheet.png"
HASHED_FILES = (TARGET, TRACK, FACE_MODEL, RENDERER)     # sha256 recorded in person.json "files"
TRACKED_FILES = (TARGET, TRACK, FACE_MODEL)              # what tracking alone makes
PERSON_FILES = (CONFIG, *HASHED_FILES, OVERLAY, CONTACT_SHEET)
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 16
MAX_CONSENT_CHARS = 2000
STATUSES = ("tracked", "complete")

# --- where persons live (folders from avatar.config, the one reader of the environment) --------
CHECKPOINTS = checkpoints_dir()
PERSONS_ROOT = CHECKPOINTS / "persons"                   # the shipped persons (alias, see below)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


def user_persons_root() -> Path:
    return avatar_home() / "persons"


def shipped_persons_root() -> Path:
    return Path(PERSONS_ROOT)


def runs_root() -> Path:
    return avatar_home() / "runs"


def persons_roots() -> list[Path]:
    roots = [user_persons_root(), shipped_persons_root()]
    return [r for i, r in enumerate(roots) if r not in roots[:i]]


def protected_roots() -> list[Path]:
    """Folders no output may be written into: every persons root and the shipped checkpoints."""
    return [*persons_roots(), Path(CHECKPOINTS), package_checkpoints()]


def check_person_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name or "") or ".." in name:
        raise AvatarError(f"person name {name!r} is not allowed: use 1-64 letters, digits, '-', '_' "
                          "or '.', starting with a letter or digit (no paths)")
    return name


def known_persons() -> list[str]:
    return sorted({p.name for root in persons_roots() if root.is_dir() for p in root.iterdir()
                   if _NAME.match(p.name) and (p / CONFIG).is_file()})


def person_dir(name_or_path: str, must_exist: bool = True) -> Path:
    """A person is named (looked up in the user's persons, then the shipped ones) or given as a
    folder path (anything with a '/')."""
    candidate = Path(name_or_path)
    if os.sep in name_or_path or (candidate.is_dir() and (candidate / CONFIG).is_file()):
        folder = candidate
    else:
        check_person_name(name_or_path)
        folders = [root / name_or_path for root in persons_roots()]
        folder = next((f for f in folders if (f / CONFIG).is_file()), folders[0])
    if must_exist and not (folder / CONFIG).is_file():
        raise AvatarError(f"person {name_or_path!r} not found (no {folder / CONFIG}); "
                          f"known persons: {', '.join(known_persons()) or 'none'}; fit one with "
                          "train-person")
    return folder


def containing_person(path: str | os.PathLike) -> Path | None:
    """The person folder (or persons root / checkpoints folder) that `path` lies in, if any."""
    path = Path(os.path.abspath(path))
    roots = [Path(os.path.abspath(r)) for r in protected_roots()]
    for folder in [path, *path.parents]:
        if (folder / CONFIG).is_file() or folder in roots or folder.name.startswith(STAGING_PREFIX):
            return folder
    resolved = Path(os.path.realpath(path))
    if resolved != path:
        return containing_person(resolved)
    return None


# --- person.json: schema ---------------------------------------------------------------------

def _num(lo, hi, integer=False):
    def check(v):
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        return ok and not isinstance(v, bool) and lo <= v <= hi
    return check, f"{'an integer' if integer else 'a number'} from {lo} to {hi}"


def _str(n):
    return (lambda v: isinstance(v, str) and len(v) <= n), f"a string of at most {n} characters"


def _dict():
    return (lambda v: isinstance(v, dict)), "a JSON object"


def _frame_size(v):
    return isinstance(v, list) and len(v) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) and 2 <= x <= 16384 for x in v)


def _files(v):
    return isinstance(v, dict) and len(v) <= 32 and all(
        isinstance(k, str) and isinstance(h, str) and _SHA256.match(h) for k, h in v.items())


def _inputs(v):
    return isinstance(v, list) and len(v) <= 100 and all(
        isinstance(i, dict) and isinstance(i.get("sha256"), str) and _SHA256.match(i["sha256"])
        for i in v)


def _consent(v):
    return isinstance(v, dict) and isinstance(v.get("statement"), str) and \
        0 < len(v["statement"].strip()) <= MAX_CONSENT_CHARS


# key -> (check, description, required)
SCHEMA = {
    "format_version": ((lambda v: v == FORMAT_VERSION), f"{FORMAT_VERSION}", True),
    "name": (*_str(64), False),
    "fps": (*_num(FPS_MIN, FPS_MAX), True),
    "frame_size": (_frame_size, "[width, height], integers from 2 to 16384", True),
    "n_frames": (*_num(1, 10_000_000, True), True),
    "holdout_start": (*_num(0, 10_000_000, True), False),
    "status": ((lambda v: v in STATUSES), f"one of {', '.join(STATUSES)}", False),
    "files": (_files, "an object of file name -> sha256 (64 hex digits)", False),
    "inputs": (_inputs, "a list (at most 100) of objects with a sha256", False),
    "consent": (_consent, f"an object with a 'statement' of 1-{MAX_CONSENT_CHARS} characters", False),
    "tracker_version": (*_num(0, 1000, True), False),
    "command": (*_str(10_000), False),
    "created": (*_str(64), False),
    "how_made": (*_str(10_000), False),
    "synthetic": ((lambda v: isinstance(v, bool)), "true or false", False),
    "metrics": (*_dict(), False),
    "renderer": (*_dict(), False),
    "face_model": (*_dict(), False),
}


def validate_config(config: dict, where: str) -> dict:
    """AvatarError naming the first field of person.json that does not fit SCHEMA."""
    if config.get("format_version") != FORMAT_VERSION:
        raise AvatarError(f"{where} has format version {config.get('format_version')!r}, this "
                          f"toolkit reads {FORMAT_VERSION}; re-run train-person")
    for key, (check, description, required) in SCHEMA.items():
        if key not in config:
            if required:
                raise AvatarError(f"{where} lacks '{key}' ({description}); re-run train-person")
            continue
        if not check(config[key]):
            raise AvatarError(f"{where}: '{key}' must be {description}; the file is damaged or "
                              "was edited by hand: restore it or re-run train-person")
    if config.get("holdout_start", 0) > config["n_frames"]:
        raise AvatarError(f"{where}: holdout_start is past n_frames; the file is damaged")
    return config


def read_config(folder: str | os.PathLike) -> dict:
    """person.json of `folder`, size/depth-limited and checked against the schema."""
    path = Path(folder) / CONFIG
    config = read_json(path, "person config", MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH)
    return validate_config(config, f"person config {path}")


load_person_config = read_config          # older name (avatar/render/data.py uses it)


def write_config(folder: str | os.PathLike, config: dict) -> None:
    """Validate and write person.json atomically."""
    path = Path(folder) / CONFIG
    validate_config(config, f"person config {path}")
    write_json(path, config)


def update_config(folder: str | os.PathLike, **changes) -> dict:
    """Read, change top-level keys, validate, write back atomically; returns the new config."""
    config = {**read_config(folder), **changes}
    write_config(folder, config)
    return config


def record_metrics(folder: str | os.PathLike, key: str, metrics: dict) -> dict:
    """Keep a metrics summary in person.json under metrics.<key> (hashes stay valid: person.json
    itself is not hashed)."""
    config = read_config(folder)
    config.setdefault("metrics", {})[key] = metrics
    write_config(folder, config)
    return config


def consent_record(statement: str) -> dict:
    statement = (statement or "").strip()
    if not statement:
        raise AvatarError("--consent is required: say who is shown in the video and that they "
                          "agreed to a synthetic model of them (e.g. --consent \"Alice Smith, "
                          "filmed 2026-05-01, agreed in writing\")")
    if len(statement) > MAX_CONSENT_CHARS:
        raise AvatarError(f"the consent statement is {len(statement)} characters long; keep it "
                          f"under {MAX_CONSENT_CHARS}")
    return {"statement": statement,
            "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def file_hashes(folder: str | os.PathLike, names=HASHED_FILES) -> dict[str, str]:
    folder = Path(folder)
    return {n: sha256_file(folder / n) for n in names if (folder / n).is_file()}


def check_complete(folder: str | os.PathLike, config: dict | None = None,
                   hashes: dict | None = None) -> tuple[dict, dict]:
    """(config, hashes) of a person that can render: status complete, every file of
    HASHED_FILES present with its sha256 recorded and matching. AvatarError otherwise."""
    from avatar.io.provenance import cached_sha256
    folder = Path(folder)
    config = config or read_config(folder)
    name = folder.name
    recorded = config.get("files")
    if not isinstance(recorded, dict):
        raise AvatarError(f"person {name}: person.json records no file hashes, so its files "
                          "cannot be checked; re-run train-person to re-create it")
    missing = [f for f in HASHED_FILES if f not in recorded]
    if missing:
        raise AvatarError(f"person {name}: person.json records no sha256 for "
                          f"{', '.join(missing)}; re-run train-person to re-create it")
    if config.get("status", "complete") != "complete":
        raise AvatarError(f"person {name} is not complete (status {config.get('status')!r}: the "
                          "renderer is not trained); run train-person without --no-render")
    hashes = dict(hashes or {})
    for f in HASHED_FILES:
        if not (folder / f).is_file():
            raise AvatarError(f"person {name} lacks {f}; restore it or re-run train-person")
        hashes.setdefault(f, cached_sha256(folder / f))
        if hashes[f] != recorded[f].removeprefix("sha256:"):
            raise AvatarError(f"person {name}: {f} does not match the sha256 in person.json "
                              "(changed or damaged); restore it or re-run train-person")
    return config, hashes


def load_complete(name_or_path: str) -> tuple[Path, dict, dict]:
    """(folder, config, hashes) of a person ready to render (see check_complete)."""
    from avatar.io.provenance import cached_sha256
    folder = person_dir(name_or_path)
    config, hashes = check_complete(folder, read_config(folder))
    hashes[CONFIG] = cached_sha256(folder / CONFIG)
    return folder, config, hashes


def finalize(folder: str | os.PathLike, config: dict | None = None, status: str | None = None) -> dict:
    """Record the sha256 of every hashed file present and the status; write person.json."""
    folder = Path(folder)
    config = dict(config or read_config(folder))
    config["files"] = file_hashes(folder)
    if status is None:
        status = "complete" if all(f in config["files"] for f in HASHED_FILES) else "tracked"
    config["status"] = status
    write_config(folder, config)
    return config


def install_renderer(folder: str | os.PathLike, weights: str | os.PathLike, run_config: dict,
                     metrics: dict) -> dict:
    """Copy trained renderer weights into the person and record them in person.json."""
    folder = Path(folder)
    with atomic_output(folder / RENDERER) as tmp:
        shutil.copyfile(weights, tmp)
    config = read_config(folder)
    config["renderer"] = {**run_config, "weights": RENDERER}
    config.setdefault("metrics", {})["renderer_holdout"] = metrics
    config.setdefault("files", {})[RENDERER] = sha256_file(folder / RENDERER)
    write_config(folder, config)
    return config


# --- staging and atomic replacement ----------------------------------------------------------

def staging_dir(final: str | os.PathLike) -> Path:
    final = Path(final)
    return final.parent / f"{STAGING_PREFIX}{final.name}"


@contextlib.contextmanager
def building(root: str | os.PathLike, name: str):
    """Hold the lock of person `name` under `root` while it is built (one builder at a time)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / f".{name}.lock", f"another train-person is building person "
                        f"'{name}' in {root}; wait for it to finish"):
        yield


def clean_trash(root: str | os.PathLike) -> None:
    """Remove old persons a killed swap left in the trash, and stale temp files."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(TRASH_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    remove_stale_temps(root)


def copy_person(src: Path, dst: Path) -> None:
    """Copy a person folder's files (person.json last, so a partial copy never reads complete)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in [n for n in PERSON_FILES if n != CONFIG] + [CONFIG]:
        if (src / name).is_file():
            with atomic_output(dst / name) as tmp:
                shutil.copyfile(src / name, tmp)


def install(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put the finished staging folder in place of `final` atomically (Linux renameat2
    RENAME_EXCHANGE; elsewhere two renames), then delete the old person."""
    staging, final = Path(staging), Path(final)
    if not final.exists():
        os.rename(staging, final)
        _fsync_dir(final.parent)
        return
    if not _exchange(staging, final):
        trash = final.parent / f"{TRASH_PREFIX}{final.name}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
        return
    _fsync_dir(final.parent)
    trash = final.parent / f"{TRASH_PREFIX}{final.name}-{os.getpid()}"
    os.rename(staging, trash)                 # the old person, now under the staging name
    shutil.rmtree(trash, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                              ctypes.c_uint]
        at_fdcwd, rename_exchange = -100, 2
        return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return False


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- FaceTrack + HeadPoses -------------------------------------------------------------------

def save_track(path: Path, track: FaceTrack, poses: HeadPoses | None = None) -> None:
    arrays = {"landmarks": track.landmarks, "blendshapes": track.blendshapes, "pose": track.pose,
              "crop_boxes": track.crop_boxes, "found": track.found.astype(np.uint8)}
    if poses is not None:
        arrays.update(pose_scale=poses.scale, pose_rotation=poses.rotation,
                      pose_translation=poses.translation)
    meta = {"fps": repr(float(track.fps)), "width": str(track.frame_size[0]),
            "height": str(track.frame_size[1]), "format_version": str(FORMAT_VERSION)}
    save_arrays(path, {k: np.asarray(v, np.float32 if k != "found" else np.uint8)
                       for k, v in arrays.items()}, meta)


def load_track(path: Path) -> tuple[FaceTrack, HeadPoses | None]:
    from safetensors import safe_open
    arrays = load_arrays(path, {"landmarks": (None, N_LANDMARKS, 3),
                                "blendshapes": (None, N_BLENDSHAPES), "pose": (None, 4, 4),
                                "crop_boxes": (None, 4), "found": (None,)}, "face track")
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    try:
        fps, size = float(meta["fps"]), (int(meta["width"]), int(meta["height"]))
    except (KeyError, ValueError):
        raise AvatarError(f"face track {path} lacks fps/size metadata; re-run tracking") from None
    if not (FPS_MIN <= fps <= FPS_MAX and 2 <= size[0] <= 16384 and 2 <= size[1] <= 16384):
        raise AvatarError(f"face track {path}: fps {fps} or size {size} out of range; file damaged")
    n = len(arrays["landmarks"])
    if any(len(a) != n for a in arrays.values()):
        raise AvatarError(f"face track {path}: arrays have different frame counts; file damaged")
    track = FaceTrack(arrays["landmarks"], arrays["blendshapes"], arrays["pose"],
                      arrays["crop_boxes"], arrays["found"].astype(bool), fps, size)
    poses = None
    if "pose_scale" in arrays:
        poses = HeadPoses(arrays["pose_scale"], arrays["pose_rotation"],
                          arrays["pose_translation"], fps)
    return track, poses


# --- PersonFaceModel -------------------------------------------------------------------------

def save_face_model(path: Path, model: PersonFaceModel) -> None:
    save_arrays(path, {"mean": model.mean.astype(np.float32), "basis": model.basis.astype(np.float32),
                       "faces": model.faces.astype(np.int64), "uvs": model.uvs.astype(np.float32),
                       "map_weight": model.map_weight.astype(np.float32),
                       "map_bias": model.map_bias.astype(np.float32)},
                {"format_version": str(FORMAT_VERSION)})


def load_face_model(path: Path) -> PersonFaceModel:
    a = load_arrays(path, {"mean": (None, 3), "basis": (None, None, 3), "faces": (None, 3),
                           "uvs": (None, 2), "map_weight": (N_BLENDSHAPES, None),
                           "map_bias": (None,)}, "face model")
    v, k = a["mean"].shape[0], a["basis"].shape[0]
    if a["basis"].shape[1] != v or a["uvs"].shape[0] != v or a["map_weight"].shape[1] != k \
            or a["map_bias"].shape[0] != k:
        raise AvatarError(f"face model {path}: tensor shapes disagree; the file is damaged")
    if a["faces"].min() < 0 or a["faces"].max() >= v:
        raise AvatarError(f"face model {path}: triangle indices out of range; the file is damaged")
    return PersonFaceModel(a["mean"], a["basis"], a["faces"], a["uvs"], a["map_weight"],
                           a["map_bias"])
