"""Person folders and the records stored in them (the one place that loads/saves them).

    <persons root>/<name>/
        person.json              config: format version, source video hash, fps, frame size, ...
        track.safetensors        FaceTrack + HeadPoses of the target video's frames
        face_model.safetensors   PersonFaceModel
        renderer.safetensors     neural texture + U-Net weights (render stage)
        target.mp4               the target video the face is composited into
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from avatar.errors import AvatarError
from avatar.io.files import load_arrays, read_json, save_arrays
from avatar.types import N_BLENDSHAPES, N_LANDMARKS, FaceTrack, HeadPoses, PersonFaceModel

FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = Path(os.environ.get("AVATAR_CHECKPOINTS", REPO_ROOT / "checkpoints"))
PERSONS_ROOT = CHECKPOINTS / "persons"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_person_name(name: str) -> str:
    if not _NAME.match(name or "") or ".." in name:
        raise AvatarError(f"person name {name!r} is not allowed: use 1-64 letters, digits, '-', '_' "
                          "or '.', starting with a letter or digit (no paths)")
    return name


def person_dir(name_or_path: str, must_exist: bool = True) -> Path:
    """A person is named (looked up under checkpoints/persons) or given as a folder path."""
    candidate = Path(name_or_path)
    if os.sep in name_or_path or (candidate.is_dir() and (candidate / "person.json").is_file()):
        folder = candidate
    else:
        folder = PERSONS_ROOT / check_person_name(name_or_path)
    if must_exist and not (folder / "person.json").is_file():
        known = sorted(p.name for p in PERSONS_ROOT.glob("*") if (p / "person.json").is_file())
        raise AvatarError(f"person {name_or_path!r} not found (no {folder / 'person.json'}); "
                          f"known persons: {', '.join(known) or 'none'}; fit one with train-person")
    return folder


def load_person_config(folder: Path) -> dict:
    config = read_json(folder / "person.json", "person config")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise AvatarError(f"person {folder} has format version {version!r}, this toolkit reads "
                          f"{FORMAT_VERSION}; re-run train-person")
    return config


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
