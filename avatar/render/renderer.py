"""Run the deferred renderer: meshes + target frames -> frames with a re-rendered lower face.

`render_band` is the differentiable core shared by training and inference: rasterize the mesh
(with the mouth patch) on the crop band, build the lower-face hole and feathered alpha, run the
network, and composite its output over the real band. `FaceRenderer` wraps it for whole frames.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatar.errors import AvatarError
from avatar.face.mesh import canonical_mesh
from avatar.render.compose import band_masks, crop_band, paste_band, to_crop_pixels
from avatar.render.model import DeferredRenderer
from avatar.render.mouth import with_mouth_patch, patch_vertices
from avatar.render.raster import rasterize


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AvatarError(f"device {device!r} was asked for but no CUDA GPU is available; "
                          "use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise AvatarError(f"unknown device {device!r}; use auto, cpu or cuda") from None


@functools.lru_cache(maxsize=4)
def mesh_topology(mouth_patch: bool) -> tuple[np.ndarray, np.ndarray]:
    mesh = canonical_mesh()
    if not mouth_patch:
        return mesh.faces, mesh.uvs
    faces, uvs, _ = with_mouth_patch(mesh.faces, mesh.uvs)
    return faces, uvs


@dataclass(frozen=True)
class BandResult:
    output: torch.Tensor     # [B, 3, h, S] composited band in [0, 1]
    network: torch.Tensor    # [B, 3, h, S] raw network output mapped to [0, 1]
    alpha: torch.Tensor      # [B, 1, h, S] feathered compositing weight
    mouth: torch.Tensor      # [B, 1, h, S] lips box (loss weight)
    raster_mask: torch.Tensor  # [B, h, S]


def render_band(model: DeferredRenderer, vertices_crop: torch.Tensor, band: torch.Tensor) -> BandResult:
    """vertices_crop [B, 468, 3] crop pixels, band [B, 3, h, S] real band in [0, 1]."""
    cfg = model.config
    size, top = cfg.crop_size, cfg.band_top
    shift = torch.tensor([0.0, float(top), 0.0], device=vertices_crop.device)
    verts = vertices_crop - shift
    faces, uvs = mesh_topology(cfg.mouth_patch)
    faces_t = torch.as_tensor(faces, device=verts.device)
    uvs_t = torch.as_tensor(uvs, device=verts.device)
    raster_verts = patch_vertices(verts) if cfg.mouth_patch else verts
    frags = rasterize(raster_verts, faces_t, uvs_t, (band.shape[2], band.shape[3]))
    hole, alpha, mouth = band_masks(frags.mask, verts, size)
    masked = (band * 2 - 1) * (1 - hole)
    net = (model(frags.uv, frags.mask, masked, hole) + 1) / 2
    output = band * (1 - alpha) + net * alpha
    return BandResult(output, net, alpha, mouth, frags.mask)


class FaceRenderer:
    """A trained person renderer. `render` re-renders the lower face of full frames."""

    def __init__(self, model: DeferredRenderer, device: torch.device):
        self.model = model.to(device).eval()
        if self.model.texture is not None:
            self.model.texture.freeze()
        self.device = device
        self.config = model.config

    @staticmethod
    def load(person_dir: str | Path, device: str = "auto") -> "FaceRenderer":
        return FaceRenderer.from_file(Path(person_dir) / "renderer.safetensors", device)

    @staticmethod
    def from_file(path: str | Path, device: str = "auto") -> "FaceRenderer":
        from avatar.render.store import load_weights
        dev = pick_device(device)
        return FaceRenderer(load_weights(Path(path), "cpu").float(), dev)

    def render(self, meshes_frame_px: np.ndarray, frames: np.ndarray,
               crop_boxes: np.ndarray) -> np.ndarray:
        """meshes [B, 468, 3] frame pixels, frames [B, H, W, 3] uint8, boxes [B, 4] -> frames."""
        meshes_frame_px, frames, crop_boxes = _check_inputs(meshes_frame_px, frames, crop_boxes)
        size, top = self.config.crop_size, self.config.band_top
        bands = np.stack([crop_band(f, b, size, top) for f, b in zip(frames, crop_boxes)])
        verts = to_crop_pixels(meshes_frame_px, crop_boxes, size)
        with torch.inference_mode():
            band_t = torch.from_numpy(bands).to(self.device).permute(0, 3, 1, 2).float() / 255
            res = render_band(self.model, torch.from_numpy(verts).to(self.device), band_t)
            net = (res.network.clamp(0, 1) * 255).permute(0, 2, 3, 1).cpu().numpy()
            alpha = res.alpha[:, 0].cpu().numpy()
        return np.stack([paste_band(f, n, a, b, size, top)
                         for f, n, a, b in zip(frames, net, alpha, crop_boxes)])


def _check_inputs(meshes, frames, boxes):
    meshes, frames, boxes = np.asarray(meshes, np.float32), np.asarray(frames), np.asarray(boxes, np.float32)
    if meshes.ndim != 3 or meshes.shape[1:] != (468, 3):
        raise ValueError(f"meshes must be [B, 468, 3], got {meshes.shape}")
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [B, H, W, 3], got {frames.dtype} {frames.shape}")
    if boxes.shape != (len(meshes), 4) or len(frames) != len(meshes):
        raise ValueError(f"batch sizes differ: meshes {meshes.shape}, frames {frames.shape}, "
                         f"boxes {boxes.shape}")
    if not (np.isfinite(meshes).all() and np.isfinite(boxes).all()) or (boxes[:, 2] <= boxes[:, 0]).any():
        raise ValueError("meshes and crop boxes must be finite and boxes non-empty")
    return meshes, frames, boxes
