"""Face tracking of a video with MediaPipe FaceLandmarker (VIDEO mode).

Per frame: 478 landmarks, 52 ARKit blendshapes and the facial transformation matrix. Results are
cached by the video's content hash, so tracking the same file twice costs one hash.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.face.crop import smooth_crop_boxes
from avatar.face.mesh import LANDMARKER_TASK
from avatar.io.files import sha256_file
from avatar.types import N_BLENDSHAPES, N_LANDMARKS, FaceTrack
from avatar.video.probe import check_input_file
from avatar.video.reader import VideoReader

TRACKER_VERSION = 1
# protobuf deprecation notice raised inside mediapipe on every landmarker call
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
DEFAULT_MAX_SIDE = 1280


def cache_dir() -> Path:
    root = os.environ.get("AVATAR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "avatar-toolkit")
    return Path(root) / "tracks"


@dataclass(frozen=True)
class RawTrack:
    """Per-frame detections before gap filling and smoothing."""
    landmarks: np.ndarray     # [T, 478, 3] (NaN where no face)
    blendshapes: np.ndarray   # [T, 52]
    pose: np.ndarray          # [T, 4, 4]
    found: np.ndarray         # [T] bool
    n_faces: np.ndarray       # [T] faces seen in each frame
    fps: float
    frame_size: tuple[int, int]


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence MediaPipe's C++ start-up chatter (EGL, XNNPACK notices) written to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _landmarker(num_faces: int):
    os.environ.setdefault("GLOG_minloglevel", "2")
    with _quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
        return mp, _create(vision, BaseOptions, num_faces)


def _create(vision, BaseOptions, num_faces: int):
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(LANDMARKER_TASK)),
        running_mode=vision.RunningMode.VIDEO, num_faces=num_faces,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True,
        min_face_detection_confidence=0.5, min_tracking_confidence=0.5)
    landmarker = vision.FaceLandmarker.create_from_options(options)
    import mediapipe as mp
    blank = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
    landmarker.detect_for_video(blank, -1000)  # first call prints delegate notices; keep it quiet
    return landmarker


def _pick_face(faces: list[np.ndarray], previous_centre: np.ndarray | None) -> int:
    """Index of the face to follow: nearest the previous one, else the largest."""
    if previous_centre is not None:
        centres = [f[:, :2].mean(0) for f in faces]
        return int(np.argmin([np.linalg.norm(c - previous_centre) for c in centres]))
    sizes = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces]
    return int(np.argmax(sizes))


def detect_frames(reader: VideoReader, progress: bool = True, num_faces: int = 2) -> RawTrack:
    """Run the landmarker on every frame of `reader`."""
    mp, landmarker = _landmarker(num_faces)
    w, h = reader.info.width, reader.info.height
    scale = np.array([w, h, w], np.float32)
    lms, bss, poses, found, counts = [], [], [], [], []
    centre = None
    bar = tqdm(total=reader.info.n_frames or None, desc=f"tracking {reader.path.name}",
               unit="frame", disable=not progress, file=sys.stderr)
    with landmarker:
        for i, frame in enumerate(reader):
            result = landmarker.detect_for_video(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)),
                int(round(i * 1000.0 / reader.info.fps)))
            faces = [np.array([[p.x, p.y, p.z] for p in f], np.float32) * scale
                     for f in result.face_landmarks]
            counts.append(len(faces))
            if faces and len(faces[0]) == N_LANDMARKS and result.face_blendshapes:
                k = _pick_face(faces, centre)
                centre = faces[k][:, :2].mean(0)
                lms.append(faces[k])
                bss.append([c.score for c in result.face_blendshapes[k]])
                poses.append(np.asarray(result.facial_transformation_matrixes[k], np.float32))
                found.append(True)
            else:
                lms.append(np.full((N_LANDMARKS, 3), np.nan, np.float32))
                bss.append(np.full(N_BLENDSHAPES, np.nan, np.float32))
                poses.append(np.full((4, 4), np.nan, np.float32))
                found.append(False)
            bar.update(1)
    bar.close()
    return RawTrack(np.stack(lms).astype(np.float32), np.asarray(bss, np.float32),
                    np.stack(poses).astype(np.float32), np.asarray(found, bool),
                    np.asarray(counts, np.int32), reader.info.fps, (w, h))


def fill_gaps(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames where found is False (edges hold the nearest value)."""
    flat = values.reshape(len(values), -1).astype(np.float64)
    idx = np.flatnonzero(found)
    t = np.arange(len(values))
    out = np.stack([np.interp(t, idx, flat[idx, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape(values.shape).astype(np.float32)


def finish_track(raw: RawTrack) -> FaceTrack:
    """Fill gaps, and compute smoothed crop boxes. Raises AvatarError if no face at all."""
    if not raw.found.any():
        raise AvatarError("no face was found in any frame; give a video where one face is "
                          "clearly visible, frontal and well lit")
    landmarks = fill_gaps(raw.landmarks, raw.found)
    blendshapes = np.clip(fill_gaps(raw.blendshapes, raw.found), 0.0, 1.0)
    pose = fill_gaps(raw.pose, raw.found)
    boxes = smooth_crop_boxes(landmarks, raw.fps)
    return FaceTrack(landmarks, blendshapes, pose, boxes, raw.found.copy(), raw.fps,
                     raw.frame_size)


def track_video(path: str | Path, *, max_side: int = DEFAULT_MAX_SIDE, cache: bool = True,
                progress: bool = True) -> FaceTrack:
    """Track the face in every frame of a video (cached by content hash + settings)."""
    from avatar.io.person import load_track, save_track

    key = f"{sha256_file(check_input_file(path))}-{max_side}-v{TRACKER_VERSION}"
    cached = cache_dir() / f"{key}.safetensors"
    if cache and cached.is_file():
        try:
            return load_track(cached)[0]
        except AvatarError:
            cached.unlink()  # damaged cache entry: track again
    raw = detect_frames(VideoReader(path, max_side=max_side), progress=progress)
    report_multiple_faces(raw, Path(path).name)
    track = finish_track(raw)
    if cache:
        save_track(cached, track)
    return track


def report_multiple_faces(raw: RawTrack, name: str) -> None:
    several = int((raw.n_faces > 1).sum())
    if several:
        print(f"note: {name}: {several} frames show more than one face; following the largest "
              "face of the first frame", file=sys.stderr)


@dataclass(frozen=True)
class TrackQuality:
    found_fraction: float
    longest_gap_s: float
    gaps: tuple[tuple[int, int], ...]   # (first frame, length) of each run of missing frames


def track_quality(track: FaceTrack) -> TrackQuality:
    gaps, start = [], None
    for i, ok in enumerate(list(track.found) + [True]):
        if not ok and start is None:
            start = i
        elif ok and start is not None:
            gaps.append((start, i - start))
            start = None
    longest = max((n for _, n in gaps), default=0) / track.fps
    return TrackQuality(float(track.found.mean()), longest, tuple(gaps))


def check_track_quality(track: FaceTrack, name: str, min_found: float = 0.9,
                        max_gap_s: float = 1.0) -> TrackQuality:
    """Raise AvatarError when the face is lost too often or for too long."""
    q = track_quality(track)
    if q.found_fraction < min_found or q.longest_gap_s > max_gap_s:
        first, length = max(q.gaps, key=lambda g: g[1])
        raise AvatarError(
            f"{name}: the face is lost too much (found in {q.found_fraction:.0%} of frames; "
            f"longest gap {q.longest_gap_s:.1f} s from {first / track.fps:.1f} s); "
            "trim the video to a part where the face is always visible")
    return q
