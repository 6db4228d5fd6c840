"""The typed, frozen records that stages hand each other (see ../shared/DESIGN.md section 3).

Arrays are numpy (float32 unless noted); every time series carries its rate. Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

# MediaPipe FaceLandmarker's 52 ARKit blendshapes, in the order the model outputs them.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)
JAW_OPEN = BLENDSHAPE_NAMES.index("jawOpen")
MOUTH_BLENDSHAPES: tuple[int, ...] = tuple(
    i for i, n in enumerate(BLENDSHAPE_NAMES) if n.startswith(("jaw", "mouth")))
N_LANDMARKS = 478      # FaceLandmarker output (468 mesh vertices + 10 iris points)
N_MESH_VERTICES = 468  # canonical face mesh


@dataclass(frozen=True)
class VideoInfo:
    """What the frame reader learned about a video file before decoding it."""
    width: int            # of decoded frames, after rotation and any downscale
    height: int
    fps: float
    n_frames: int         # estimated from duration * fps (exact count only after decoding)
    duration_s: float
    rotation: int = 0     # degrees, from the container's display matrix (already applied)
    has_audio: bool = False
    source_width: int = 0   # size stored in the file, before rotation/downscale
    source_height: int = 0


@dataclass(frozen=True)
class PhonemeTiming:
    phoneme: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Speech:
    """Mono speech in [-1, 1]: `samples` at the internal 16 kHz for features and timing, and
    optionally the same speech at its own rate for the output's sound (`playback`, e.g. piper's
    22.05 kHz or a recording's 44.1 / 48 kHz, with the same loudness gain)."""
    samples: np.ndarray                    # [N] float32
    sample_rate: int
    phonemes: tuple[PhonemeTiming, ...] = ()
    text: str | None = None
    playback: np.ndarray | None = None     # [M] float32 at playback_rate; None: use samples
    playback_rate: int | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    def for_playback(self) -> tuple[np.ndarray, int]:
        """(samples, rate) of the sound to put in the output: playback if given, else samples."""
        if self.playback is None or not self.playback_rate:
            return self.samples, int(self.sample_rate)
        return self.playback, int(self.playback_rate)


@dataclass(frozen=True)
class SpeechFeatures:
    values: np.ndarray                     # [T_feat, D] float32
    rate_hz: float                         # feature frames per second
    kind: str                              # e.g. "logmel80"


@dataclass(frozen=True)
class Expressions:
    """Person-independent expressions: ARKit blendshape weights per video frame."""
    weights: np.ndarray                    # [T, 52] float32 in [0, 1]
    fps: float
    names: tuple[str, ...] = BLENDSHAPE_NAMES

    def __len__(self) -> int:
        return int(self.weights.shape[0])


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame tracking of one face in one video.

    landmarks are in frame pixels: x, y as decoded; z = MediaPipe's relative depth * frame width
    (same scale as x). Frames where no face was found have `found == False` and hold values
    interpolated from their neighbours.
    """
    landmarks: np.ndarray                  # [T, 478, 3] float32
    blendshapes: np.ndarray                # [T, 52] float32
    pose: np.ndarray                       # [T, 4, 4] MediaPipe facial transformation matrix
    crop_boxes: np.ndarray                 # [T, 4] smoothed square crop x0, y0, x1, y1 (pixels)
    found: np.ndarray                      # [T] bool
    fps: float
    frame_size: tuple[int, int]            # (width, height) of the tracked frames

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    def expressions(self) -> Expressions:
        return Expressions(self.blendshapes.astype(np.float32), self.fps)


@dataclass(frozen=True)
class HeadPoses:
    """Similarity transforms that place canonical meshes into frame pixels, one per frame:
    x_frame = scale * rotation @ x_canonical + translation."""
    scale: np.ndarray                      # [T]
    rotation: np.ndarray                   # [T, 3, 3]
    translation: np.ndarray                # [T, 3]
    fps: float

    def __len__(self) -> int:
        return int(self.scale.shape[0])

    def apply(self, meshes: np.ndarray) -> np.ndarray:
        """meshes [T, V, 3] canonical -> [T, V, 3] frame pixels (z grows away from camera)."""
        rotated = np.einsum("tij,tvj->tvi", self.rotation, meshes)
        return self.scale[:, None, None] * rotated + self.translation[:, None, :]


@dataclass(frozen=True)
class PersonFaceModel:
    """A person-specific linear face model on the 468-vertex canonical mesh.

    mesh(c) = mean + sum_k c_k * basis[k]; coefficients come from blendshapes through the
    ridge map c = blendshapes @ map_weight + map_bias.
    """
    mean: np.ndarray                       # [V, 3] canonical space (pixels of a 256-px face box)
    basis: np.ndarray                      # [K, V, 3]
    faces: np.ndarray                      # [F, 3] int64
    uvs: np.ndarray                        # [V, 2] in [0, 1], v pointing down the image
    map_weight: np.ndarray                 # [52, K]
    map_bias: np.ndarray                   # [K]
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def n_components(self) -> int:
        return int(self.basis.shape[0])

    def coefficients(self, expressions: Expressions) -> np.ndarray:
        return (expressions.weights @ self.map_weight + self.map_bias).astype(np.float32)

    def meshes(self, coefficients: np.ndarray) -> np.ndarray:
        """coefficients [T, K] -> canonical meshes [T, V, 3]."""
        offsets = np.tensordot(coefficients, self.basis, axes=(1, 0))
        return (self.mean[None] + offsets).astype(np.float32)


@dataclass(frozen=True)
class Target:
    """A video of the person the face is rendered into, with its track and head poses."""
    path: Path
    track: FaceTrack
    poses: HeadPoses

    def __len__(self) -> int:
        return len(self.track)


class Renderer(Protocol):
    """Re-renders the lower face of full frames and composites it in (avatar.render.FaceRenderer)."""

    def render(self, meshes_frame_px: np.ndarray, frames: np.ndarray, crop_boxes: np.ndarray,
               frame_meshes: np.ndarray | None = None) -> np.ndarray:
        """meshes [B, 468, 3] in frame pixels, frames [B, H, W, 3] uint8, crop boxes [B, 4],
        the frames' own meshes (lips detail) -> composited frames [B, H, W, 3] uint8."""
        ...


class Audio2Expr(Protocol):
    """Speech -> person-independent expressions (avatar.expression.Audio2Expression)."""

    def predict(self, speech: Speech, fps: float) -> Expressions:
        ...


@dataclass(frozen=True)
class Person:
    """A loaded person folder: its face model, its target video and its renderer."""
    name: str
    folder: Path
    config: dict
    face_model: PersonFaceModel
    target: Target
    renderer: Renderer = field(repr=False)
    hashes: dict = field(default_factory=dict)
