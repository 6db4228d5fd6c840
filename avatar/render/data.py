"""Training/evaluation samples for the renderer: face crops + meshes in crop pixels.

The geometry is the same one the renderer gets at run time: blendshapes -> person face model ->
canonical meshes -> head poses -> frame pixels -> crop pixels.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.io.person import (FACE_MODEL, TARGET, TRACK, load_face_model, load_person_config,
                              load_track)
from avatar.render.compose import crop_band, to_crop_pixels
from avatar.types import Expressions, FaceTrack, HeadPoses, PersonFaceModel
from avatar.video.reader import VideoReader

HOLDOUT_FRACTION = 0.15


@dataclass(frozen=True)
class RenderSamples:
    """Frames of one video prepared for the renderer (meshes in crop pixels)."""
    crops: np.ndarray        # [T, S, S, 3] uint8: the real frames' face crops
    vertices: np.ndarray     # [T, 468, 3] float32 crop pixels (z: smaller = nearer)
    boxes: np.ndarray        # [T, 4] crop boxes in frame pixels
    holdout_start: int       # frames from here on are held out
    crop_size: int
    band_top: int

    def __len__(self) -> int:
        return int(self.crops.shape[0])


def driven_meshes(model: PersonFaceModel, poses: HeadPoses, expressions: Expressions) -> np.ndarray:
    """Frame-pixel meshes [T, 468, 3] from blendshapes through the person's face model."""
    return poses.apply(model.meshes(model.coefficients(expressions))).astype(np.float32)


def load_person_geometry(folder: Path) -> tuple[dict, FaceTrack, HeadPoses, PersonFaceModel]:
    config = load_person_config(folder)
    track, poses = load_track(folder / TRACK)
    if poses is None:
        raise AvatarError(f"person {folder} has no head poses in track.safetensors; re-run train-person")
    model = load_face_model(folder / FACE_MODEL)
    return config, track, poses, model


def holdout_start(n: int, config: dict | None = None) -> int:
    start = (config or {}).get("holdout_start")
    if isinstance(start, int) and 0 < start < n:
        return start
    return max(1, n - max(1, int(round(n * HOLDOUT_FRACTION))))


def read_crops(video: Path, boxes: np.ndarray, frame_size: tuple[int, int], size: int,
               progress: bool = True) -> np.ndarray:
    """Decode `video` and cut the face crop of every frame (frame count must match boxes)."""
    reader = VideoReader(video, max_side=max(frame_size))
    if (reader.info.width, reader.info.height) != tuple(frame_size):
        raise AvatarError(f"{video} decodes at {reader.info.width}x{reader.info.height} but its track "
                          f"is for {frame_size[0]}x{frame_size[1]}; re-run train-person")
    crops = np.zeros((len(boxes), size, size, 3), np.uint8)
    n = 0
    for i, frame in enumerate(tqdm(reader, total=len(boxes), desc="reading frames", unit="frame",
                                   disable=not progress, file=sys.stderr)):
        if i >= len(boxes):
            break
        crops[i] = crop_band(frame, boxes[i], size, 0)
        n += 1
    if n < len(boxes):
        raise AvatarError(f"{video} has {n} frames but its track has {len(boxes)}; re-run train-person")
    return crops


def person_samples(folder: Path, size: int, top: int, progress: bool = True) -> RenderSamples:
    """Face crops + crop-pixel meshes of every frame of a person's target video."""
    config, track, poses, model = load_person_geometry(folder)
    meshes = driven_meshes(model, poses, track.expressions())
    boxes = track.crop_boxes.astype(np.float32)
    crops = read_crops(folder / TARGET, boxes, track.frame_size, size, progress)
    return RenderSamples(crops, to_crop_pixels(meshes, boxes, size), boxes,
                         holdout_start(len(track), config), size, top)
