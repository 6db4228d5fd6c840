"""Speech (or driving expressions) + a person -> a finished, marked mp4. Shared by say/reenact/batch.

    person = load_person("demo")
    speech = speech_from_text("Hello there")
    expressions = predict_expressions(speech, fps)
    result = make_video(person, speech, expressions, "out.mp4", SaySettings(), input_record)

Frames flow in batches: target frames (ping-pong) -> meshes posed on those frames -> renderer
(render + composite) -> watermark -> ffmpeg. Memory does not grow with the length of the speech.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar.errors import AvatarError
from avatar.io.person import load_face_model, load_track
from avatar.io.provenance import folder_hashes, write_sidecar
from avatar.types import (BLENDSHAPE_NAMES, MOUTH_BLENDSHAPES, Expressions, FaceTrack, HeadPoses,
                          PersonFaceModel, Speech)
from avatar.video.frames import TargetFrames, pingpong_indices
from avatar.video.writer import VideoWriter, frames_for_audio

BLINK_MODES = ("auto", "target", "synthetic", "none")
HEAD_MOTIONS = ("target", "still")
MAX_TEXT_CHARS = 5000           # about 5 minutes of speech per clip
MAX_SPEECH_S = 30 * 60.0        # longest clip one call renders
MAX_SIZE = 4096
MAX_SEED = 2 ** 32 - 1
EYE_BLINKS = tuple(BLENDSHAPE_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight"))


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
        if self.fps is not None and not 1.0 <= float(self.fps) <= 120.0:
            raise AvatarError(f"fps {self.fps} is out of range; use a value between 1 and 120")
        if self.size is not None and not 16 <= int(self.size) <= MAX_SIZE:
            raise AvatarError(f"size {self.size} is out of range; use 16 to {MAX_SIZE} pixels "
                              "(longest side)")
        if int(self.start_frame) < 0:
            raise AvatarError(f"start frame {self.start_frame} is negative; use 0 or more")
        if self.blink not in BLINK_MODES:
            raise AvatarError(f"blink {self.blink!r} is unknown; use one of {', '.join(BLINK_MODES)}")
        if self.head_motion not in HEAD_MOTIONS:
            raise AvatarError(f"head motion {self.head_motion!r} is unknown; use one of "
                              f"{', '.join(HEAD_MOTIONS)}")
        if not (math.isfinite(self.expression_scale) and 0.0 <= self.expression_scale <= 3.0):
            raise AvatarError(f"expression scale {self.expression_scale} is out of range; "
                              "use 0 to 3 (1 = as predicted)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or \
                not 0 <= self.seed <= MAX_SEED:
            raise AvatarError(f"seed {self.seed} is out of range; use a whole number from 0 to "
                              f"{MAX_SEED}")
        if not 1 <= int(self.batch_size) <= 256:
            raise AvatarError(f"batch size {self.batch_size} is out of range; use 1 to 256")
        return self


@dataclass(frozen=True)
class Target:
    """A video of the person the face is rendered into, with its track and head poses."""
    path: Path
    track: FaceTrack
    poses: HeadPoses

    def __len__(self) -> int:
        return len(self.track)


@dataclass(frozen=True)
class Person:
    name: str
    folder: Path
    config: dict
    face_model: PersonFaceModel
    target: Target
    renderer: object = field(repr=False)
    hashes: dict = field(default_factory=dict)


# --- loading ---------------------------------------------------------------------------------

def load_person(name_or_path: str, device: str = "auto") -> Person:
    """Load a person folder once (face model, target track + poses, renderer) and check it:
    person.json against its schema, status complete, every file against its recorded sha256."""
    from avatar.io import person as person_io
    folder, config, hashes = person_io.load_complete(name_or_path)
    face_model = load_face_model(folder / person_io.FACE_MODEL)
    track, poses = load_track(folder / person_io.TRACK)
    if poses is None:
        raise AvatarError(f"person {folder.name}: its track has no head poses; re-run train-person")
    renderer = load_renderer(folder, device)
    return Person(folder.name, folder, config, face_model,
                  Target(folder / person_io.TARGET, track, poses), renderer, hashes)


def load_renderer(folder: Path, device: str):
    from avatar.render.renderer import FaceRenderer
    return FaceRenderer.load(folder, device=device)


def load_target(person: Person, video: str | Path, progress: bool = True) -> Target:
    """Track another clip of the same person and align it to the person's face model."""
    from avatar.face.model import align_track
    from avatar.face.tracker import track_video
    from avatar.video.probe import check_input_file

    path = check_input_file(video, "target video")
    track = track_video(path, progress=progress)
    if track.found.mean() < 0.5:
        raise AvatarError(f"target video {path}: a face was found in only "
                          f"{100 * track.found.mean():.0f} % of frames; give a clip that shows the "
                          "person's face throughout")
    return Target(path, track, align_track(track, person.face_model))


def speech_from_text(text: str, voice: str | None = None) -> Speech:
    """Speech of `text` in the bundled English voice, or in the piper voice file `voice`."""
    from avatar.audio import synthesize
    return synthesize(speakable_text(text, english=voice is None), voice)


def speakable_text(text: str, english: bool = True) -> str:
    """The text the voice will speak: emoji and other pictographs removed (with a warning);
    AvatarError for empty or too long text, or (for the bundled English voice) letters of
    scripts it cannot speak."""
    if not isinstance(text, str) or not text.strip():
        raise AvatarError("the text to speak is empty; give at least one word")
    if len(text) > MAX_TEXT_CHARS:
        raise AvatarError(f"the text is {len(text)} characters long, at most {MAX_TEXT_CHARS} fit "
                          "one clip (about 5 min); split it into several clips, e.g. batch jobs")
    text = unicodedata.normalize("NFKC", text)
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _UNSPOKEN)
    removed = len(text) - len(kept)
    foreign = list(dict.fromkeys(ch for ch in kept if ch.isalpha() and not _latin(ch)))
    if foreign and english:
        raise AvatarError(f"the text holds letters the English voice cannot speak "
                          f"({''.join(foreign[:5])}); give English text, a piper voice of that "
                          "language with --voice, or a recording with --audio")
    if not any(ch.isalnum() for ch in kept):
        raise AvatarError("the text holds no words to speak (only symbols or emoji); "
                          "give at least one word")
    if removed:
        tqdm.write(f"note: left out {removed} emoji/symbol characters the voice cannot speak")
    return kept


_UNSPOKEN = {"So", "Sk", "Cf", "Co", "Cs", "Cn", "Mn", "Me"}


def _latin(ch: str) -> bool:
    return "LATIN" in unicodedata.name(ch, "")


def speech_from_audio(path: str | Path) -> Speech:
    from avatar.audio import load_speech
    path = check_audio_file(path)
    return check_speech(load_speech(path, max_seconds=MAX_SPEECH_S), str(path))


def check_audio_file(path: str | Path) -> Path:
    """Cheap checks before any model is loaded: the file exists, is not empty, not too long."""
    from avatar.video.probe import check_input_file, ffmpeg_header

    path = check_input_file(path, "audio")
    duration = _header_duration(ffmpeg_header(path))
    if duration > MAX_SPEECH_S:
        raise AvatarError(f"audio {path} is {duration / 60:.1f} min long, at most "
                          f"{MAX_SPEECH_S / 60:.0f} min fit one clip; cut it into parts")
    return path


def check_speech(speech: Speech, name: str) -> Speech:
    if speech.duration_s > MAX_SPEECH_S:
        raise AvatarError(f"{name}: speech is {speech.duration_s / 60:.1f} min long, at most "
                          f"{MAX_SPEECH_S / 60:.0f} min fit one clip; cut it into parts")
    if not np.isfinite(speech.samples).all():
        raise AvatarError(f"{name}: the audio holds NaN or inf samples; re-export it")
    if np.abs(speech.samples).max(initial=0.0) < 1e-4:
        tqdm.write(f"warning: {name} is silent; the avatar will keep its mouth closed")
    return speech


def _header_duration(header: str) -> float:
    import re
    m = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", header)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0


@functools.lru_cache(maxsize=2)
def audio2expr_model(checkpoint_dir: str | None = None, device: str = "cpu"):
    from avatar.expression import load_audio2expr
    return load_audio2expr(checkpoint_dir, device=device)


def predict_expressions(speech: Speech, fps: float, device: str = "cpu",
                        checkpoint_dir: str | None = None) -> Expressions:
    """Speech -> Expressions at fps with the shared audio2expr network (loaded once per process)."""
    model = audio2expr_model(str(checkpoint_dir) if checkpoint_dir else None, _torch_device(device))
    return model.predict(speech, fps)


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def stage(name: str, seconds: dict, progress: bool = True):
    """A one-step progress bar for a stage without natural sub-steps; records its wall time."""
    bar = tqdm(total=1, desc=name, disable=not progress, bar_format="{desc}: {percentage:3.0f}% [{elapsed}]")
    t = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - t
    bar.update(1)
    bar.close()


# --- frames and expressions ------------------------------------------------------------------

def output_geometry(target: Target, settings: SaySettings) -> tuple[int, int, float]:
    """(width, height, scale from track pixels to output pixels), sizes even."""
    w, h = target.track.frame_size
    if settings.size is None:
        out_w, out_h = w - w % 2, h - h % 2
    else:
        s = int(settings.size) / max(w, h)
        out_w, out_h = max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)
    return out_w, out_h, out_w / w


def check_start_frame(target: Target, settings: SaySettings) -> None:
    if settings.start_frame >= len(target):
        raise AvatarError(f"start frame {settings.start_frame} is past the end of the target video "
                          f"({len(target)} frames); use 0 to {len(target) - 1}")


def frame_indices(target: Target, settings: SaySettings, fps: float, n_frames: int) -> np.ndarray:
    """Which target frame each output frame uses: ping-pong from start_frame, or one frame."""
    check_start_frame(target, settings)
    n_target = len(target)
    if settings.head_motion == "still":
        return np.full(n_frames, settings.start_frame, np.int64)
    step = target.track.fps / fps
    if abs(step - 1.0) < 1e-3:
        return pingpong_indices(settings.start_frame, n_frames, n_target)
    positions = np.floor(settings.start_frame + np.arange(n_frames) * step).astype(np.int64)
    period = max(2 * (n_target - 1), 1)
    k = positions % period
    return np.where(k < n_target, k, period - k) if n_target > 1 else np.zeros(n_frames, np.int64)


def shape_expressions(driving: Expressions, target: Target, indices: np.ndarray,
                      settings: SaySettings, drive: str = "mouth") -> Expressions:
    """Final blendshape weights per output frame.

    drive="mouth": mouth/jaw channels come from `driving` (scaled by expression_scale), every other
    channel (brows, eyes, cheeks) from the target frame underneath, so the face agrees with its
    background. drive="all": every channel from `driving`. Blinks follow settings.blink; "auto"
    means the target's blinks, synthetic ones when the head is still, the driver's with "all".
    """
    n = len(indices)
    driving_w = _fit_length(driving.weights, n)
    if drive == "all":
        weights = driving_w.copy()
    else:
        weights = target.track.blendshapes[indices].astype(np.float32).copy()
        mouth = list(MOUTH_BLENDSHAPES)
        weights[:, mouth] = driving_w[:, mouth]
    weights[:, list(MOUTH_BLENDSHAPES)] *= settings.expression_scale
    blink = resolved_blink(settings, drive)
    blinks = list(EYE_BLINKS)
    if blink == "synthetic":
        weights[:, blinks] = synthetic_blinks(n, driving.fps, settings.seed)[:, None]
    elif blink == "none":
        weights[:, blinks] = 0.0
    elif blink == "target":
        weights[:, blinks] = target.track.blendshapes[indices][:, blinks]
    return Expressions(np.clip(weights, 0.0, 1.0).astype(np.float32), driving.fps)


def resolved_blink(settings: SaySettings, drive: str = "mouth") -> str:
    """settings.blink with "auto" decided: the driver's with drive="all", synthetic when the head
    is still, else the target's."""
    if settings.blink != "auto":
        return settings.blink
    return "driving" if drive == "all" else "synthetic" if settings.head_motion == "still" else "target"


def eye_plan(driving: Expressions, target: Target, indices: np.ndarray, settings: SaySettings,
             drive: str, size: tuple[int, int], scale: float):
    """An EyePlan that makes the visible eyes follow the blink setting (None when the target
    frames' own eyes already do: "target", or nothing to change). The bank frames are decoded
    here (a few frames of up to three real blinks of the target video)."""
    from avatar.render.eyes import (BlinkBank, EyePlan, blink_levels, eye_sources, find_blinks,
                                    wanted_levels)
    mode = resolved_blink(settings, drive)
    if mode == "target":
        return None
    levels = blink_levels(target.track)
    rest = float(np.median(levels))
    n = len(indices)
    if mode == "none":
        wanted = np.full(n, rest, np.float32)
    elif mode == "synthetic":
        wanted = synthetic_blinks(n, driving.fps, settings.seed)
    else:                                     # the driver's blinks on its own scale
        d = _fit_length(driving.weights, n)[:, list(EYE_BLINKS)].mean(1)
        wanted = np.clip((d - np.median(d)) / max(float(d.max() - np.median(d)), 0.2), 0, 1)
    blinks = find_blinks(levels, target.poses.rotation, int(indices[0]))
    if not blinks:
        if mode != "none":
            tqdm.write("note: the target video shows no blink to copy; the eyes stay as filmed")
        return None
    bank_idx = np.concatenate(blinks)
    starts = tuple(int(s) for s in np.cumsum([0] + [len(b) for b in blinks[:-1]]))
    bank_levels = levels[bank_idx]
    if mode != "none":
        wanted = wanted_levels(wanted, rest, float(np.median([levels[b].max() for b in blinks])))
    sources = eye_sources(wanted, levels[indices], bank_levels, starts)
    if not (sources >= 0).any():
        return None
    landmarks = (target.track.landmarks[:, :, :2] * scale).astype(np.float32)
    in_order = np.unique(bank_idx)                    # decode forward once, then put blinks in turn
    with TargetFrames(target.path, size, in_order) as frames:
        decoded = frames.get(in_order)
    bank = BlinkBank(decoded[np.searchsorted(in_order, bank_idx)], landmarks[bank_idx], bank_levels, starts)
    return EyePlan(bank, sources, landmarks, np.asarray(indices))


def synthetic_blinks(n: int, fps: float, seed: int) -> np.ndarray:
    """Natural-looking blink weights [n]: a blink every 2.5-6 s, each ~0.25 s, seeded."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float32)
    t = rng.uniform(0.8, 3.0)
    duration = n / fps
    while t < duration:
        length = rng.uniform(0.2, 0.3)
        times = np.arange(n) / fps
        phase = (times - t) / length
        inside = (phase >= 0) & (phase <= 1)
        shape = np.sin(np.pi * np.clip(phase, 0, 1)) ** 2 * rng.uniform(0.8, 1.0)
        out = np.maximum(out, np.where(inside, shape, 0.0).astype(np.float32))
        t += length + rng.uniform(2.5, 6.0)
    return out


def _fit_length(weights: np.ndarray, n: int) -> np.ndarray:
    """Trim or extend (repeat the last row) a [T, 52] array to n rows."""
    weights = np.asarray(weights, np.float32)
    if len(weights) == 0:
        return np.zeros((n, weights.shape[1] if weights.ndim == 2 else 52), np.float32)
    if len(weights) >= n:
        return weights[:n]
    return np.concatenate([weights, np.repeat(weights[-1:], n - len(weights), axis=0)])


def resample_expressions(expressions: Expressions, fps: float, n: int) -> Expressions:
    """Linear interpolation of an expression track to `n` frames at `fps`."""
    if abs(expressions.fps - fps) < 1e-6 and len(expressions) >= n:
        return Expressions(expressions.weights[:n], fps)
    src_t = np.arange(len(expressions)) / expressions.fps
    dst_t = np.arange(n) / fps
    w = np.stack([np.interp(dst_t, src_t, expressions.weights[:, c])
                  for c in range(expressions.weights.shape[1])], axis=1)
    return Expressions(w.astype(np.float32), fps)


# --- rendering -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoResult:
    path: Path
    sidecar: Path
    n_frames: int
    fps: float
    width: int
    height: int
    seconds: dict                     # wall time per stage


def make_video(person: Person, speech: Speech | None, expressions: Expressions, out: str | Path,
               settings: SaySettings, input_record: dict, *, command: str = "say",
               target: Target | None = None, drive: str = "mouth", n_frames: int | None = None,
               progress: bool = True, extra_seconds: dict | None = None,
               models: dict | None = None) -> VideoResult:
    """Render `expressions` on the target's frames and write out.mp4 + out.json (side-car)."""
    settings = settings.checked()
    target = target or person.target
    fps = float(settings.fps or target.track.fps)
    if speech is not None:
        n_frames = frames_for_audio(speech.duration_s, fps)
    if not n_frames:
        raise ValueError("n_frames is required without speech")
    expressions = resample_expressions(expressions, fps, n_frames) \
        if abs(expressions.fps - fps) > 1e-6 else expressions
    width, height, scale = output_geometry(target, settings)
    indices = frame_indices(target, settings, fps, n_frames)
    weights = shape_expressions(expressions, target, indices, settings, drive)
    eyes = eye_plan(expressions, target, indices, settings, drive, (width, height), scale)
    seconds = dict(extra_seconds or {})
    _seed(settings.seed)
    metadata = {"synthetic": "true", "person": person.name,
                "description": f"synthetic talking-head video of '{person.name}' "
                               f"(avatar-toolkit {command})"}
    t0 = time.perf_counter()
    with TargetFrames(target.path, (width, height), indices) as frames, \
            VideoWriter(out, width, height, fps, audio=speech, metadata=metadata,
                        watermark=settings.watermark, n_frames=n_frames) as writer:
        timing = _render_loop(person, target, frames, writer, indices, weights.weights, scale, fps,
                              settings.batch_size, progress, eyes)
        t = time.perf_counter()
    timing["encode"] += time.perf_counter() - t       # ffmpeg finishing after the last frame
    seconds.update(timing)
    seconds["video_total"] = time.perf_counter() - t0
    result = VideoResult(Path(out), Path(out).with_suffix(".json"), n_frames, fps, width, height,
                         {k: round(v, 3) for k, v in seconds.items()})
    write_sidecar(out, command=command, input_record=input_record,
                  person={"name": person.name, "files_sha256": person.hashes,
                          "config_version": person.config.get("format_version"),
                          "consent": person.config.get("consent")},
                  models=models or {},
                  settings={**asdict(settings), "target_video": str(target.path.name)},
                  output={"frames": n_frames, "fps": fps, "width": width, "height": height,
                          "duration_s": round(n_frames / fps, 4), "watermark": settings.watermark,
                          "audio": speech is not None})
    return result


def _render_loop(person: Person, target: Target, frames: TargetFrames, writer: VideoWriter,
                 indices: np.ndarray, weights: np.ndarray, scale: float, fps: float,
                 batch_size: int, progress: bool, eyes=None) -> dict:
    """Render batch after batch while two helper threads decode the next target frames and
    encode the previous batch (ffmpeg pipes and numpy copies release the GIL). Returns the time
    the loop spent rendering and waiting for frames / for the encoder."""
    timing = {"render": 0.0, "frames": 0.0, "encode": 0.0}
    n = len(indices)
    starts = list(range(0, n, batch_size))
    bar = tqdm(total=n, desc="render", unit="frame", disable=not progress)
    with ThreadPoolExecutor(2, thread_name_prefix="avatar-io") as pool:
        next_frames = pool.submit(frames.get, indices[0:batch_size])
        pending_write = None
        for i, start in enumerate(starts):
            idx = indices[start:start + batch_size]
            t = time.perf_counter()
            batch = next_frames.result()
            timing["frames"] += time.perf_counter() - t
            if i + 1 < len(starts):
                nxt = starts[i + 1]
                next_frames = pool.submit(frames.get, indices[nxt:nxt + batch_size])
            t = time.perf_counter()
            if eyes is not None:
                batch = eyes.apply(batch, start)
            meshes, boxes = posed_meshes(person.face_model, target,
                                         weights[start:start + len(idx)], idx, scale, fps)
            own, _ = posed_meshes(person.face_model, target, target.track.blendshapes[idx], idx,
                                  scale, fps)          # the target frames' own faces: lips detail
            rendered = person.renderer.render(meshes, batch, boxes, frame_meshes=own)
            timing["render"] += time.perf_counter() - t
            t = time.perf_counter()
            if pending_write is not None:
                pending_write.result()
            pending_write = pool.submit(writer.write, rendered)
            timing["encode"] += time.perf_counter() - t
            bar.update(len(idx))
        t = time.perf_counter()
        if pending_write is not None:
            pending_write.result()
        timing["encode"] += time.perf_counter() - t
    bar.close()
    return timing


def posed_meshes(model: PersonFaceModel, target: Target, weights: np.ndarray, idx: np.ndarray,
                 scale: float, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Meshes [B, V, 3] in output-frame pixels and crop boxes [B, 4] for target frames `idx`."""
    canonical = model.meshes(model.coefficients(Expressions(weights, fps)))
    p = target.poses
    poses = HeadPoses(p.scale[idx] * scale, p.rotation[idx], p.translation[idx] * scale, fps)
    meshes = poses.apply(canonical).astype(np.float32)
    boxes = (target.track.crop_boxes[idx] * scale).astype(np.float32)
    return meshes, boxes


def model_hashes(audio2expr_dir: str | Path | None = None) -> dict:
    """sha256 of the audio2expr checkpoint files used (for the side-car)."""
    from avatar.expression import DEFAULT_DIR
    folder = Path(audio2expr_dir) if audio2expr_dir else DEFAULT_DIR
    return {"audio2expr": {"folder": folder.name, "files_sha256": folder_hashes(folder)}}


def _seed(seed: int) -> None:
    seed = int(seed) % (2 ** 32)
    np.random.seed(seed)
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def settings_from(options: dict) -> SaySettings:
    """SaySettings from a dict of option names (unknown names are a user error)."""
    known = {f for f in SaySettings.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AvatarError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(SaySettings(), **options).checked()
