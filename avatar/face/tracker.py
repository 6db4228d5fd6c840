"""Face tracking of a video with MediaPipe FaceLandmarker (VIDEO mode).

Per frame: 478 landmarks, 52 ARKit blendshapes and the facial transformation matrix. Results are
cached by the video's content hash, so tracking the same file twice costs one hash. Tracking runs
in chunks of CHUNK_FRAMES frames, each saved to the cache as it finishes (a fresh landmarker per
chunk, so a resumed run gives the same result as one that ran through): a killed run resumes at
its last finished chunk, losing at most one chunk of work.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.face.crop import smooth_crop_boxes
from avatar.face.mesh import LANDMARKER_TASK
from avatar.io.files import load_arrays, remove_stale_temps, save_arrays, sha256_file
from avatar.types import N_BLENDSHAPES, N_LANDMARKS, FaceTrack
from avatar.video.probe import check_input_file
from avatar.video.reader import VideoReader

TRACKER_VERSION = 1
# protobuf deprecation notice raised inside mediapipe on every landmarker call
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
DEFAULT_MAX_SIDE = 1280
CHUNK_FRAMES = 150          # frames per cached chunk (~5 s of 30 fps video, ~5 s of tracking)


def cache_dir() -> Path:
    from avatar.config import cache_dir as root
    return root() / "tracks"


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


def detect_frames(reader: VideoReader, progress: bool = True, num_faces: int = 2,
                  parts: Path | None = None, chunk: int | None = None) -> RawTrack:
    """Run the landmarker on every frame of `reader`, CHUNK_FRAMES at a time (a new landmarker
    per chunk). With `parts`, finished chunks found there are reused and every new chunk is
    saved there as soon as it is done."""
    chunk = int(chunk or CHUNK_FRAMES)
    w, h, fps = reader.info.width, reader.info.height, reader.info.fps
    done, complete = _load_parts(parts, chunk, (w, h)) if parts is not None else ([], False)
    start = sum(len(p["found"]) for p in done)
    if not complete:
        if start:
            reader = VideoReader(reader.path, max_side=_max_side(reader), start_frame=start)
        done = done + list(_detect_chunks(reader, start, chunk, progress, num_faces, parts, done))
    if not done or not sum(len(p["found"]) for p in done):
        raise AvatarError(f"{reader.path}: no frame could be decoded; the file is damaged or "
                          "not a video")
    cat = {k: np.concatenate([p[k] for p in done]) for k in done[0]}
    return RawTrack(cat["landmarks"].astype(np.float32), cat["blendshapes"].astype(np.float32),
                    cat["pose"].astype(np.float32), cat["found"].astype(bool),
                    cat["n_faces"].astype(np.int32), fps, (w, h))


def _max_side(reader: VideoReader) -> int | None:
    return getattr(reader, "max_side", None) or max(reader.info.width, reader.info.height)


def _detect_chunks(reader: VideoReader, start: int, chunk: int, progress: bool, num_faces: int,
                   parts: Path | None, done: list[dict]):
    """Yield one dict of arrays per chunk of frames from `start` on (saved to `parts` first)."""
    w, h, fps = reader.info.width, reader.info.height, reader.info.fps
    scale = np.array([w, h, w], np.float32)
    centre = _last_centre(done)
    bar = tqdm(total=reader.info.n_frames or None, initial=start,
               desc=f"tracking {reader.path.name}", unit="frame", disable=not progress,
               file=sys.stderr)
    frames = _frames(reader, start)
    index, k = start, start // chunk
    finished = False
    while not finished:
        mp, landmarker = _landmarker(num_faces)
        lms, bss, poses, found, counts = [], [], [], [], []
        with landmarker:
            for frame in frames:
                result = landmarker.detect_for_video(
                    mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)),
                    int(round(index * 1000.0 / fps)))
                faces = [np.array([[p.x, p.y, p.z] for p in f], np.float32) * scale
                         for f in result.face_landmarks]
                counts.append(len(faces))
                if faces and len(faces[0]) == N_LANDMARKS and result.face_blendshapes:
                    j = _pick_face(faces, centre)
                    centre = faces[j][:, :2].mean(0)
                    lms.append(faces[j])
                    bss.append([c.score for c in result.face_blendshapes[j]])
                    poses.append(np.asarray(result.facial_transformation_matrixes[j], np.float32))
                    found.append(True)
                else:
                    lms.append(np.full((N_LANDMARKS, 3), np.nan, np.float32))
                    bss.append(np.full(N_BLENDSHAPES, np.nan, np.float32))
                    poses.append(np.full((4, 4), np.nan, np.float32))
                    found.append(False)
                index += 1
                bar.update(1)
                if len(found) == chunk:
                    break
            else:
                finished = True
        part = {"landmarks": np.asarray(lms, np.float32).reshape(-1, N_LANDMARKS, 3),
                "blendshapes": np.asarray(bss, np.float32).reshape(-1, N_BLENDSHAPES),
                "pose": np.asarray(poses, np.float32).reshape(-1, 4, 4),
                "found": np.asarray(found, np.uint8), "n_faces": np.asarray(counts, np.int32)}
        if parts is not None:
            save_arrays(parts / f"chunk-{k:06d}.safetensors", part,
                        {"start": str(k * chunk), "chunk": str(chunk), "last": str(int(finished)),
                         "width": str(w), "height": str(h)})
        k += 1
        yield part
    bar.close()


def _frames(reader: VideoReader, start: int):
    """The reader's frames; resuming exactly at the end of the video yields none (no error)."""
    try:
        yield from reader
    except AvatarError:
        if not start:
            raise


def _last_centre(done: list[dict]) -> np.ndarray | None:
    for part in reversed(done):
        idx = np.flatnonzero(part["found"])
        if len(idx):
            return part["landmarks"][idx[-1], :, :2].mean(0)
    return None


def _load_parts(parts: Path, chunk: int, size: tuple[int, int]) -> tuple[list[dict], bool]:
    """The consecutive finished chunks in `parts` (a damaged or foreign one ends the list) and
    whether the last of them ends the video."""
    from safetensors import safe_open
    done, complete = [], False
    shapes = {"landmarks": (None, N_LANDMARKS, 3), "blendshapes": (None, N_BLENDSHAPES),
              "pose": (None, 4, 4), "found": (None,), "n_faces": (None,)}
    for k in range(100_000):
        path = parts / f"chunk-{k:06d}.safetensors"
        if not path.is_file():
            break
        try:
            arrays = load_arrays(path, None, "tracking chunk")
            for name, shape in shapes.items():
                if name not in arrays or arrays[name].ndim != len(shape) or \
                        arrays[name].shape[1:] != shape[1:]:
                    raise AvatarError("bad chunk")
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
            n = len(arrays["found"])
            ok = meta.get("start") == str(k * chunk) and meta.get("chunk") == str(chunk) and \
                (meta.get("width"), meta.get("height")) == (str(size[0]), str(size[1])) and \
                all(len(a) == n for a in arrays.values()) and (n == chunk or meta.get("last") == "1")
        except AvatarError:
            ok = False
        if not ok:
            break
        done.append(arrays)
        if meta.get("last") == "1":
            complete = True
            break
    return done, complete


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
    parts = None
    if cache:
        parts = cache_dir() / f"{key}.parts"
        parts.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(parts)
        remove_stale_temps(cache_dir())
    reader = VideoReader(path, max_side=max_side)
    raw = detect_frames(reader, progress=progress, parts=parts)
    report_multiple_faces(raw, Path(path).name)
    track = finish_track(raw)
    if cache:
        save_track(cached, track)
        shutil.rmtree(parts, ignore_errors=True)
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
