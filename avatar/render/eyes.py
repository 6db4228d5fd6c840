"""Visible blinks: the eye regions of real blink frames of the target video, moved onto the
output frames.

The neural renderer redraws only the lower face, so the eyes in an output frame are those of the
target frame underneath. To blink where the target does not (a still head, or synthetic blinks)
or to keep the eyes open where it blinks (`--blink none`), each eye of an output frame can be
replaced by the same eye from a frame of a real blink of the target (the "blink bank": up to
three blinks filmed in a similar head pose, used in turn so a long clip does not repeat one):
aligned by a similarity transform on landmarks that do not move with the lids (eye corners,
brow, the ring under the eye, the nose bridge), brightness matched, and blended through a soft
ellipse around the eye. Eye openness is MediaPipe's mean eyeBlinkLeft/Right ("level").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.expression.shaping import EYE_BLINKS
from avatar.types import FaceTrack

# MediaPipe face mesh indices; the subject's right eye first, its mirror second.
EYE_CONTOURS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
)
EYE_CORNERS = ((33, 133), (263, 362))
EYE_ANCHORS = (   # corners, brow, ring under the eye, nose bridge: still while the lids move
    (33, 133, 70, 63, 105, 66, 107, 230, 231, 232, 168),
    (263, 362, 300, 293, 334, 296, 336, 450, 451, 452, 168),
)
BLINK_CHANNELS = EYE_BLINKS                # eyeBlinkLeft, eyeBlinkRight
MIN_BLINK_RISE = 0.2          # a blink: the level rises this far above the person's resting level
KEEP_WITHIN = 0.08            # frames whose level is this close to the wanted one stay as they are
MAX_BANK_BLINKS = 3           # real blinks copied in turn, so a long clip does not repeat one
SIMILAR_POSE = 0.15           # rotation-matrix distance (about 6 degrees) a further blink may differ by
_ELLIPSE = (0.8, 0.5)         # half axes of the blended region, in eye widths (corner to corner)
_FEATHER = 0.15               # blur of its edge, in eye widths


def blink_levels(track: FaceTrack) -> np.ndarray:
    """[T] mean eyeBlink of both eyes (about 0.1-0.3 open, 0.5-0.9 closed for most people)."""
    return track.blendshapes[:, list(BLINK_CHANNELS)].mean(1).astype(np.float32)


def find_blinks(levels: np.ndarray, rotations: np.ndarray | None = None, reference: int = 0,
                margin: int = 3, count: int = MAX_BANK_BLINKS) -> list[np.ndarray]:
    """Frame indices of up to `count` full blinks (open, closing, closed, opening, open; `margin`
    frames either side), closest in head rotation to frame `reference` first; blinks after the
    first only while their pose is within SIMILAR_POSE of it. Empty if the video shows none."""
    rest = float(np.median(levels))
    closed = levels > rest + MIN_BLINK_RISE
    events, start = [], None
    for i, c in enumerate(np.append(closed, False)):
        if c and start is None:
            start = i
        elif not c and start is not None:
            events.append((start, i))
            start = None
    events = [(a, b) for a, b in events if a - margin >= 0 and b + margin <= len(levels)]

    def pose_distance(event):
        if rotations is None:
            return 0.0
        peak = event[0] + int(np.argmax(levels[event[0]:event[1]]))
        return float(np.linalg.norm(rotations[peak] - rotations[reference]))

    events.sort(key=lambda e: (pose_distance(e), -levels[e[0]:e[1]].max()))
    chosen = [e for i, e in enumerate(events[:count])
              if i == 0 or pose_distance(e) <= pose_distance(events[0]) + SIMILAR_POSE]
    return [np.arange(a - margin, b + margin) for a, b in chosen]


def wanted_levels(curve: np.ndarray, rest: float, closed: float) -> np.ndarray:
    """Blink weights in [0, 1] (0 open, 1 shut) -> levels on the person's own scale."""
    return (rest + np.clip(curve, 0.0, 1.0) * (closed - rest)).astype(np.float32)


def eye_sources(wanted: np.ndarray, current: np.ndarray, bank_levels: np.ndarray,
                starts: tuple[int, ...] = (0,)) -> np.ndarray:
    """[n] bank index whose level is nearest the wanted one, or -1 where the frame underneath is
    close enough already. The bank holds one or more blinks beginning at `starts`; each run of
    changed frames takes its frames from the next blink in turn."""
    keep = np.abs(wanted - current) <= KEEP_WITHIN
    bounds = list(starts) + [len(bank_levels)]
    out = np.full(len(wanted), -1, np.int64)
    run_starts = np.flatnonzero(~keep & np.r_[True, keep[:-1]])
    for run, first in enumerate(run_starts):
        last = first + int(np.argmax(np.r_[keep[first:], True]))
        g = run % len(starts)
        lo, hi = bounds[g], bounds[g + 1]
        near = np.argmin(np.abs(wanted[first:last, None] - bank_levels[None, lo:hi]), axis=1)
        out[first:last] = lo + near
    return out


@dataclass(frozen=True)
class BlinkBank:
    """Frames of one or more real blinks (output size, one after the other, blink i beginning at
    starts[i] with an open frame) with their landmarks (output pixels) and levels."""
    frames: np.ndarray          # [K, H, W, 3] uint8
    landmarks: np.ndarray       # [K, 478, 2] float32
    levels: np.ndarray          # [K]
    starts: tuple[int, ...] = (0,)

    def __post_init__(self):
        if not (len(self.frames) == len(self.landmarks) == len(self.levels) > 0):
            raise ValueError("a blink bank needs as many frames, landmark sets and levels (>= 1)")
        if not self.starts or self.starts[0] != 0 or list(self.starts) != sorted(set(self.starts)) \
                or self.starts[-1] >= len(self.levels):
            raise ValueError("blink starts must begin at 0 and increase within the bank")

    def open_frame(self, k: int) -> int:
        """The first (open) frame of the blink that bank frame k belongs to."""
        return max(s for s in self.starts if s <= k)


def transfer_eyes(frame: np.ndarray, landmarks: np.ndarray, bank: BlinkBank, k: int) -> np.ndarray:
    """`frame` ([H, W, 3] uint8, landmarks [478, 2]) with both eyes taken from bank frame k."""
    out = frame.copy()
    ref = bank.open_frame(k)
    for eye in range(2):
        _transfer_eye(out, landmarks, bank.frames[k], bank.landmarks[k], bank.frames[ref],
                      bank.landmarks[ref], eye)
    return out


def _transfer_eye(out, dst_lm, src, src_lm, open_src, open_lm, eye: int) -> None:
    """Blend one eye of `src` into `out` in place (brightness matched on the open frame
    before that blink, so the lids' own darkening is kept)."""
    box, alpha = _eye_region(dst_lm, eye, out.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    patch = _warp_eye(src, src_lm, dst_lm, eye, box)
    reference = _warp_eye(open_src, open_lm, dst_lm, eye, box)
    if patch is None or reference is None:
        return
    region = out[y0:y1, x0:x1].astype(np.float32)
    weight = alpha[..., None]
    offset = ((region - reference) * weight).sum((0, 1)) / max(float(weight.sum()), 1e-6)
    blended = region * (1 - weight) + np.clip(patch + offset, 0, 255) * weight
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _eye_region(lm: np.ndarray, eye: int, shape) -> tuple[tuple | None, np.ndarray | None]:
    """Bounding box (x0, y0, x1, y1) and soft ellipse mask [y1-y0, x1-x0] of one eye."""
    import cv2
    a, b = (lm[i] for i in EYE_CORNERS[eye])
    width = float(np.linalg.norm(a - b))
    if not np.isfinite(width) or width < 2.0:
        return None, None
    centre = lm[list(EYE_CONTOURS[eye])].mean(0)
    reach = width * (max(_ELLIPSE) + 2 * _FEATHER)
    h, w = shape[:2]
    x0, y0 = int(max(np.floor(centre[0] - reach), 0)), int(max(np.floor(centre[1] - reach), 0))
    x1, y1 = int(min(np.ceil(centre[0] + reach), w)), int(min(np.ceil(centre[1] + reach), h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None, None
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
    axes = (max(int(round(_ELLIPSE[0] * width)), 1), max(int(round(_ELLIPSE[1] * width)), 1))
    cv2.ellipse(mask, (int(round(centre[0] - x0)), int(round(centre[1] - y0))), axes, angle, 0, 360,
                1.0, -1, cv2.LINE_AA)
    sigma = max(_FEATHER * width, 0.5)
    return (x0, y0, x1, y1), cv2.GaussianBlur(mask, (0, 0), sigma)


def _warp_eye(src: np.ndarray, src_lm: np.ndarray, dst_lm: np.ndarray, eye: int, box) -> np.ndarray | None:
    """The eye region of `src` moved onto the destination landmarks, cut to `box` ([h, w, 3])."""
    import cv2
    anchors = list(EYE_ANCHORS[eye])
    matrix, _ = cv2.estimateAffinePartial2D(src_lm[anchors].astype(np.float32),
                                            dst_lm[anchors].astype(np.float32))
    if matrix is None:
        return None
    x0, y0, x1, y1 = box
    matrix[:, 2] -= (x0, y0)
    return cv2.warpAffine(src, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT).astype(np.float32)


@dataclass(frozen=True)
class EyePlan:
    """Which bank frame, if any, gives the eyes of each output frame."""
    bank: BlinkBank
    sources: np.ndarray          # [n] bank index or -1
    landmarks: np.ndarray        # [T, 478, 2] target landmarks in output pixels
    indices: np.ndarray          # [n] target frame under each output frame

    def apply(self, batch: np.ndarray, start: int) -> np.ndarray:
        """Batch of output frames [B, H, W, 3] starting at output frame `start`, eyes replaced
        where planned (in place)."""
        for j in range(len(batch)):
            k = int(self.sources[start + j])
            if k >= 0:
                batch[j] = transfer_eyes(batch[j], self.landmarks[self.indices[start + j]], self.bank, k)
        return batch
