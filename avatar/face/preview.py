"""Pictures of a tracking result for a person to look at: mesh overlays and a contact sheet."""
from __future__ import annotations

import cv2
import numpy as np

from avatar.face.mesh import LIPS_INNER, LIPS_OUTER, canonical_mesh
from avatar.types import FaceTrack

MESH_COLOUR = (80, 220, 255)
LIP_COLOUR = (255, 80, 80)
BOX_COLOUR = (80, 255, 80)


def mesh_edges() -> np.ndarray:
    faces = canonical_mesh().faces
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0)


def draw_overlay(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None,
                 found: bool = True, edges: np.ndarray | None = None) -> np.ndarray:
    """Frame with the tracked mesh (thin), lips (thick) and crop box drawn on it."""
    out = frame.copy()
    edges = mesh_edges() if edges is None else edges
    pts = np.round(landmarks[:, :2] * 16).astype(np.int32)
    lines = [np.stack([pts[a], pts[b]]) for a, b in edges]
    colour = MESH_COLOUR if found else (128, 128, 128)
    cv2.polylines(out, lines, False, colour, 1, cv2.LINE_AA, shift=4)
    for ring in (LIPS_OUTER, LIPS_INNER):
        cv2.polylines(out, [pts[list(ring)]], True, LIP_COLOUR, 2, cv2.LINE_AA, shift=4)
    if box is not None:
        x0, y0, x1, y1 = np.round(box).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, 2)
    return out


def contact_sheet(frames: list[np.ndarray], labels: list[str], columns: int = 4,
                  tile_width: int = 320) -> np.ndarray:
    """Tiles of frames (RGB) with a label under each."""
    tiles = []
    for frame, label in zip(frames, labels):
        h = int(round(frame.shape[0] * tile_width / frame.shape[1]))
        tile = cv2.resize(frame, (tile_width, h), interpolation=cv2.INTER_AREA)
        tile = cv2.copyMakeBorder(tile, 0, 24, 0, 0, cv2.BORDER_CONSTANT, value=(20, 20, 20))
        cv2.putText(tile, label, (6, h + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def sheet_frame_indices(n_frames: int, count: int = 12) -> list[int]:
    return sorted(set(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int).tolist()))


def track_labels(track: FaceTrack, indices: list[int]) -> list[str]:
    from avatar.types import JAW_OPEN
    return [f"#{i} t={i / track.fps:.2f}s jaw={track.blendshapes[i, JAW_OPEN]:.2f}"
            + ("" if track.found[i] else " (no face)") for i in indices]
