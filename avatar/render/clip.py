"""The render stage of a clip: expressions on a target video -> composited frames, in batches.

    plan = plan_clip(expressions, target, settings, n_frames)          # which frames, weights, eyes
    with TargetFrames(...) as frames, VideoWriter(...) as writer:
        timing = render_frames(plan, face_model, renderer, target, frames, writer.write, progress)

Frames flow in batches: target frames (ping-pong) -> meshes posed on those frames -> renderer
(render + composite) -> eyes of real blinks -> the writer. Memory does not grow with the length
of the speech.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from avatar.config import SaySettings
from avatar.expression.shaping import (resample_expressions, resolved_blink, shape_expressions,
                                       wanted_blinks)
from avatar.types import Expressions, HeadPoses, PersonFaceModel, Renderer, Target
from avatar.video.frames import TargetFrames
from avatar.video.timeline import frame_indices, output_geometry

Progress = Callable[[str, int, int], None]          # (stage, done, total)


@dataclass(frozen=True)
class ClipPlan:
    """Everything decided before the first frame is rendered."""
    indices: np.ndarray              # [n] target frame under each output frame
    weights: np.ndarray              # [n, 52] final blendshape weights
    eyes: object | None              # avatar.render.eyes.EyePlan, or None: the target's own eyes
    width: int
    height: int
    scale: float                     # track pixels -> output pixels
    fps: float
    batch_size: int

    @property
    def n_frames(self) -> int:
        return len(self.indices)


def plan_clip(expressions: Expressions, target: Target, settings: SaySettings, n_frames: int,
              drive: str = "mouth") -> ClipPlan:
    """Output frame i shows target frame indices[i] with weights[i] (expressions resampled to
    the output fps, shaped by the settings), eyes replaced by `eyes` where it says."""
    fps = float(settings.fps or target.track.fps)
    if abs(expressions.fps - fps) > 1e-6:
        expressions = resample_expressions(expressions, fps, n_frames)
    width, height, scale = output_geometry(target, settings)
    indices = frame_indices(target, settings, fps, n_frames)
    weights = shape_expressions(expressions, target.track.blendshapes, indices, settings, drive)
    eyes = eye_plan(expressions, target, indices, settings, drive, (width, height), scale)
    return ClipPlan(indices, weights.weights, eyes, width, height, scale, fps,
                    int(settings.batch_size))


def eye_plan(driving: Expressions, target: Target, indices: np.ndarray, settings: SaySettings,
             drive: str, size: tuple[int, int], scale: float):
    """An EyePlan that makes the visible eyes follow the blink setting (None when the target
    frames' own eyes already do: "target", or nothing to change). The bank frames are decoded
    here (a few frames of up to three real blinks of the target video)."""
    from avatar.render.eyes import BlinkBank, EyePlan, blink_levels, eye_sources, find_blinks, wanted_levels
    mode = resolved_blink(settings, drive)
    levels = blink_levels(target.track)
    rest = float(np.median(levels))
    wanted = wanted_blinks(driving, settings, drive, len(indices), rest)
    if wanted is None:
        return None
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


def posed_meshes(model: PersonFaceModel, target: Target, weights: np.ndarray, idx: np.ndarray,
                 scale: float, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Meshes [B, V, 3] in output-frame pixels and crop boxes [B, 4] for target frames `idx`."""
    canonical = model.meshes(model.coefficients(Expressions(weights, fps)))
    p = target.poses
    poses = HeadPoses(p.scale[idx] * scale, p.rotation[idx], p.translation[idx] * scale, fps)
    meshes = poses.apply(canonical).astype(np.float32)
    boxes = (target.track.crop_boxes[idx] * scale).astype(np.float32)
    return meshes, boxes


def render_batch(plan: ClipPlan, face_model: PersonFaceModel, renderer: Renderer, target: Target,
                 batch: np.ndarray, start: int) -> np.ndarray:
    """Output frames start..start+len(batch) from their target frames `batch`."""
    idx = plan.indices[start:start + len(batch)]
    if plan.eyes is not None:
        batch = plan.eyes.apply(batch, start)
    meshes, boxes = posed_meshes(face_model, target, plan.weights[start:start + len(idx)], idx,
                                 plan.scale, plan.fps)
    own, _ = posed_meshes(face_model, target, target.track.blendshapes[idx], idx,
                          plan.scale, plan.fps)          # the target frames' own faces: lips detail
    return renderer.render(meshes, batch, boxes, frame_meshes=own)


FIRST_BATCH = 2     # frames in the first batch: one per core, so the first frame is out sooner


def first_batch(n: int, size: int, first: int | None = None) -> int:
    """Frames in the first batch of n frames rendered in batches of `size` (`first`: default
    FIRST_BATCH, read at the call)."""
    return min(n, max(1, min(FIRST_BATCH if first is None else first, size)))


def batch_starts(n: int, size: int, first: int | None = None) -> list[int]:
    """Where each batch of n frames starts: a short first batch, then batches of `size`."""
    return ([0] + list(range(first_batch(n, size, first), n, size))) if n > 0 else []


def render_frames(plan: ClipPlan, face_model: PersonFaceModel, renderer: Renderer, target: Target,
                  frames: TargetFrames, write: Callable[[np.ndarray], None],
                  progress: Progress | None = None) -> dict:
    """Render batch after batch while two helper threads decode the next target frames and
    encode the previous batch (ffmpeg pipes and numpy copies release the GIL). Reports
    ("render", frames done, total) after each batch. Returns the time the loop spent rendering
    and waiting for frames / for the encoder."""
    timing = {"render": 0.0, "frames": 0.0, "encode": 0.0}
    n = plan.n_frames
    starts = batch_starts(n, plan.batch_size)
    ends = starts[1:] + [n]
    with ThreadPoolExecutor(2, thread_name_prefix="avatar-io") as pool:
        next_frames = pool.submit(frames.get, plan.indices[0:ends[0]])
        pending_write = None
        for i, start in enumerate(starts):
            t = time.perf_counter()
            batch = next_frames.result()
            timing["frames"] += time.perf_counter() - t
            if i + 1 < len(starts):
                next_frames = pool.submit(frames.get, plan.indices[starts[i + 1]:ends[i + 1]])
            t = time.perf_counter()
            rendered = render_batch(plan, face_model, renderer, target, batch, start)
            timing["render"] += time.perf_counter() - t
            t = time.perf_counter()
            if pending_write is not None:
                pending_write.result()
            pending_write = pool.submit(write, rendered)
            timing["encode"] += time.perf_counter() - t
            if progress is not None:
                progress("render", ends[i], n)
        t = time.perf_counter()
        if pending_write is not None:
            pending_write.result()
        timing["encode"] += time.perf_counter() - t
    return timing


def seed_everything(seed: int) -> None:
    seed = int(seed) % (2 ** 32)
    np.random.seed(seed)
    import torch
    torch.manual_seed(seed)
