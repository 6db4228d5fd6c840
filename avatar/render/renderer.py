"""Run the deferred renderer: meshes + target frames -> frames with a re-rendered lower face.

`render_band` is the differentiable core shared by training and inference: rasterize the mesh
(with the mouth patch) on the crop band, build the lower-face hole and feathered alpha, run the
network, and composite its output over the real band. `FaceRenderer` wraps it for whole frames.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatar.background import torch_threads
from avatar.errors import AvatarError
from avatar.face.mesh import LIPS_OUTER, canonical_mesh
from avatar.render.compose import (band_masks, box_mean, crop_band, crop_window, erode, inside_polygon,
                                   mouth_alpha, mouth_origins, paste_band, paste_window,
                                   to_crop_pixels, to_window_pixels)
from avatar.render.model import DeferredRenderer
from avatar.render.mouth import N_RING, patch_vertices, with_mouth_patch
from avatar.render.kernels import pytorch_only
from avatar.render.raster import interpolate, rasterize
from avatar.render.teeth import UPPER_ROW_FACES, atlas_grid, teeth_vertices, with_teeth


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


SOURCE_PAD = 16       # pixels the source frame's window reaches past the lips window
DETAIL_RADIUS = 3     # a source frame's fine detail: itself minus a (2r+1)^2 box blur applied twice


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


@dataclass(frozen=True)
class MouthResult:
    output: torch.Tensor     # [B, 3, h, w] composited lips window in [0, 1]
    network: torch.Tensor    # [B, 3, h, w] the second stage's output in [0, 1]
    alpha: torch.Tensor      # [B, 1, h, w]
    raster_mask: torch.Tensor  # [B, h, w]


@dataclass(frozen=True)
class WindowRaster:
    """What the second stage sees of the geometry in its window."""
    feats: torch.Tensor      # [B, C, h, w] first-stage texture features
    uv: torch.Tensor         # [B, h, w, 2]
    mask: torch.Tensor       # [B, h, w] bool
    face: torch.Tensor       # [B, h, w] int64 visible triangle (-1: none)
    bary: torch.Tensor       # [B, h, w, 3]


def window_topology(cfg) -> tuple[np.ndarray, int]:
    """(faces of the window's mesh, how many of them are skin and lips: the ones a source
    frame shows too; the mouth patch and the teeth come after them)."""
    faces, _ = mesh_topology(cfg.mouth_patch)
    n_surface = len(faces) - (N_RING if cfg.mouth_patch else 0)
    if cfg.teeth and cfg.mouth_patch:
        from avatar.render.teeth import teeth_template
        n_vertices = 468 + N_RING + 1
        faces = np.concatenate([faces, teeth_template()[1] + n_vertices])
    return faces, n_surface


def mouth_geometry(model: DeferredRenderer, vertices_window: torch.Tensor, h: int, w: int) -> WindowRaster:
    """Rasterize the lips window: mesh, mouth patch and (if configured) the teeth."""
    cfg = model.config
    faces, uvs = mesh_topology(cfg.mouth_patch)
    verts = patch_vertices(vertices_window) if cfg.mouth_patch else vertices_window
    if cfg.teeth and cfg.mouth_patch:
        lips = vertices_window[:, list(LIPS_OUTER), 0]
        push = float((lips.amax(1) - lips.amin(1)).median())     # well behind the teeth
        verts, faces, uvs = with_teeth(verts, faces, uvs, faces[-N_RING:], push)
    frags = rasterize(verts, torch.as_tensor(faces, device=verts.device),
                      torch.as_tensor(uvs, device=verts.device), (h, w))
    return WindowRaster(model.features(frags.uv, frags.mask), frags.uv, frags.mask, frags.face, frags.bary)


def source_detail(model: DeferredRenderer, raster: WindowRaster, source_vertices: torch.Tensor,
                  source: torch.Tensor, reference: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real pixels of a source frame moved onto the window's geometry: every pixel of the
    window takes the source pixel where the same point of the face is (same triangle, same
    barycentrics): skin and lips always; the mouth interior and the (rigid) upper teeth only
    where that point lies inside the source's own mouth opening, so a closed source mouth gives
    no teeth. source_vertices [B, 468, 3] in the source window's pixels, source [B, 3, hs, ws] in
    [0, 1] -> (warped [B, 3, h, w] (bilinear), its fine detail [B, 3, h, w] (nearest pixels,
    high-passed: resampling would blur the grain away), valid [B, 1, h, w]).
    reference [B, 3, h, w]: the new frame's window as the first stage made it; with the
    config's source_flow the mesh warp is refined by optical flow against it (flow.py)."""
    faces, n_surface = window_topology(model.config)
    b, hs, ws = source.shape[0], source.shape[2], source.shape[3]
    attr, ring = source_positions(model, source_vertices, int(faces.max()) + 1)
    pos = interpolate(raster, torch.as_tensor(faces, device=source.device), attr.to(source.dtype))
    if model.config.source_flow and reference is not None:
        from avatar.render.flow import refine_positions
        pos = refine_positions(pos, source, reference)
    grid = torch.stack([pos[..., 0] / ws * 2 - 1, pos[..., 1] / hs * 2 - 1], -1)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    picked = F.grid_sample(source, grid, mode="nearest", padding_mode="border", align_corners=False)
    inside = (grid.abs() < 1).all(-1) & raster.mask & (raster.face >= 0)
    skin = inside & (raster.face < n_surface)
    deep = torch.zeros_like(skin)
    if ring is not None:
        opening = inside_polygon(pos.reshape(b, -1, 2), ring).reshape(raster.face.shape)
        # the lower row follows the chin only roughly: its source detail anti-correlates with
        # the real frame's (-0.3 on the demo's held-out frames), so it takes none
        upper = (raster.face >= n_surface) & (raster.face < n_surface + N_RING + UPPER_ROW_FACES)
        deep = inside & opening & upper
    regions, valid = [(picked, skin), (picked, deep)], skin | deep
    atlas = atlas_teeth(model, raster, n_surface, valid)
    if atlas is not None:                    # upper teeth the source does not show
        warped = torch.where(atlas[1][:, None], atlas[0], warped)
        regions.append(atlas)
        valid = valid | atlas[1]
    fine = sum(_highpass_within(x, m[:, None].to(source.dtype)) for x, m in regions)
    return warped, fine, valid[:, None].to(source.dtype)


def atlas_teeth(model: DeferredRenderer, raster: WindowRaster, n_surface: int,
                taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The renderer file's picture of the upper teeth (config teeth_atlas) at the window's
    visible upper-teeth pixels that `taken` [B, h, w] does not already cover: (RGB [B, 3, h, w],
    where [B, h, w] bool), or None without an atlas."""
    atlas = getattr(model.mouth, "teeth_atlas", None) if model.mouth is not None else None
    if atlas is None:
        return None
    first = n_surface + N_RING
    upper = raster.mask & (raster.face >= first) & (raster.face < first + UPPER_ROW_FACES) & ~taken
    pic = atlas.float()[None].expand(len(upper), -1, -1, -1)
    s = F.grid_sample(pic, atlas_grid(raster.uv.float()), mode="bilinear", padding_mode="zeros",
                      align_corners=False)
    return s[:, :3], upper & (s[:, 3] > 0.999)


def _highpass_within(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x's fine detail inside mask [B, 1, h, w] only: x minus its blur over the mask's pixels
    alone (no edge is made where the mask ends), and none within 2 pixels of the mask's edge
    (so a mouth opening thinner than 5 pixels takes none)."""
    both = _blur_twice(torch.cat([x * mask, mask], 1), DETAIL_RADIUS)
    smooth = both[:, :-1] / both[:, -1:].clamp(min=1e-3)
    return (x - smooth) * erode(mask, 2)


def _blur_twice(x: torch.Tensor, r: int) -> torch.Tensor:
    """box_mean(box_mean(x, r), r) (edges replicated); on a CPU without a gradient by OpenCV's
    box filter (the same to float rounding, several times faster)."""
    if x.device.type != "cpu" or x.requires_grad or x.dtype != torch.float32 or x.shape[1] > 4:
        return box_mean(box_mean(x, r), r)
    import cv2
    k = (2 * r + 1, 2 * r + 1)
    planes = x.detach().permute(0, 2, 3, 1).contiguous().numpy()
    out = np.stack([cv2.boxFilter(cv2.boxFilter(p, -1, k, borderType=cv2.BORDER_REPLICATE), -1, k,
                                  borderType=cv2.BORDER_REPLICATE).reshape(p.shape) for p in planes])
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def source_positions(model: DeferredRenderer, source_vertices: torch.Tensor,
                     n_attr: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(where each vertex of the window's mesh is in the source [B, n_attr, 2]: the mesh, its
    mouth patch and teeth placed from the source's mesh; the source's inner-lip ring [B, 20, 2],
    or None without a mouth patch)."""
    cfg = model.config
    attr = source_vertices.new_zeros(source_vertices.shape[0], n_attr, 2)
    attr[:, :468] = source_vertices[:, :, :2]
    if not cfg.mouth_patch:
        return attr, None
    patched = patch_vertices(source_vertices)
    attr[:, 468:patched.shape[1]] = patched[:, 468:, :2]
    if cfg.teeth:
        teeth = teeth_vertices(source_vertices.detach().cpu().numpy())
        attr[:, patched.shape[1]:] = torch.as_tensor(teeth[..., :2], device=attr.device)
    return attr, patched[:, 468:468 + N_RING, :2]


def render_mouth(model: DeferredRenderer, vertices_window: torch.Tensor, window: torch.Tensor,
                 raster: WindowRaster | None = None,
                 source: tuple[torch.Tensor, torch.Tensor] | None = None) -> MouthResult:
    """Second stage: vertices_window [B, 468, 3] window pixels, window [B, 3, h, w] in [0, 1]
    (the frame after the first stage, at frame resolution) -> refined lips window.
    `raster`: mouth_geometry's result when it is already at hand (training caches it);
    `source`: (vertices [B, 468, 3] in its pixels, frame window [B, 3, hs, ws]) of a real frame
    whose detail the second stage may move onto this geometry (say: the target frame itself)."""
    h, w = window.shape[2], window.shape[3]
    raster = raster if raster is not None else mouth_geometry(model, vertices_window, h, w)
    detail, fine = None, None
    if model.config.source_detail:
        detail = (torch.zeros_like(window), torch.zeros_like(window[:, :1]))
        if source is not None:
            warped, fine, valid = source_detail(model, raster, source[0], source[1], window)
            detail = (warped, valid)
            fine = fine * erode(valid, 2)         # not near the mouth opening
    net = (model.mouth(window * 2 - 1, raster.feats.to(window.dtype), raster.uv.to(window.dtype),
                       raster.mask, detail) + 1) / 2
    if fine is not None and model.config.detail_transfer:
        net = net + model.config.detail_transfer * fine
    alpha = mouth_alpha(vertices_window, h, w)
    return MouthResult(window * (1 - alpha) + net * alpha, net, alpha, raster.mask)


class FaceRenderer:
    """A trained person renderer. `render` re-renders the lower face of full frames."""

    def __init__(self, model: DeferredRenderer, device: torch.device, runtime: str = "torch",
                 workers: int | None = None):
        """runtime: how inference runs on a CPU (avatar/render/runtime.py RUNTIMES): "torch" is
        PyTorch throughout (U-Nets and rasterizer, the code before OpenVINO and numba); the
        runtime in use is in `self.runtime`. workers: with a compiled runtime, a batch is split
        into this many parts rendered at once, one core each (default: torch's thread count);
        the frames are the same as from one call."""
        from avatar.render.runtime import accelerate
        self.model = model.to(device).eval()
        textures = [self.model.texture, self.model.mouth.texture if self.model.mouth is not None else None]
        for texture in textures:
            if texture is not None:
                texture.freeze()
        self.device = device
        self.config = model.config
        workers = max(1, int(workers or torch.get_num_threads())) if device.type == "cpu" else 1
        self.runtime = accelerate(self.model, runtime, device, streams=workers)
        self.workers = 1 if self.runtime == "torch" else workers
        self._pool = ThreadPoolExecutor(self.workers, "avatar-render") if self.workers > 1 else None

    @staticmethod
    def load(person_dir: str | Path, device: str = "auto", runtime: str = "auto") -> "FaceRenderer":
        from avatar.io.person import RENDERER
        return FaceRenderer.from_file(Path(person_dir) / RENDERER, device, runtime)

    @staticmethod
    def from_file(path: str | Path, device: str = "auto", runtime: str = "auto") -> "FaceRenderer":
        from avatar.render.store import load_weights
        dev = pick_device(device)
        return FaceRenderer(load_weights(Path(path), "cpu").float(), dev, runtime)

    def render(self, meshes_frame_px: np.ndarray, frames: np.ndarray, crop_boxes: np.ndarray,
               frame_meshes: np.ndarray | None = None, source_frames: np.ndarray | None = None) -> np.ndarray:
        """meshes [B, 468, 3] frame pixels, frames [B, H, W, 3] uint8, boxes [B, 4] -> frames.

        frame_meshes [B, 468, 3]: the meshes of the frames' own faces (their tracked
        expressions); with them the lips window moves the frames' real skin and lip detail onto
        the new mouth. source_frames: other frames to take that detail from (evaluation
        takes it from other times of the clip, never from the frame it compares with)."""
        parts = [meshes_frame_px, frames, crop_boxes, frame_meshes, source_frames]
        if self._pool is None or len(frames) < 2:
            return self._render(*parts)
        cuts = np.array_split(np.arange(len(frames)), min(self.workers, len(frames)))
        chunks = [[None if a is None else a[c[0]:c[-1] + 1] for a in parts] for c in cuts]
        with torch_threads(1):                  # one core per part
            done = [self._pool.submit(contextvars.copy_context().run, self._render, *chunk)
                    for chunk in chunks]
            return np.concatenate([d.result() for d in done])

    def _render(self, meshes_frame_px, frames, crop_boxes, frame_meshes, source_frames) -> np.ndarray:
        with contextlib.nullcontext() if self.runtime != "torch" else pytorch_only():
            out = self.first_stage(meshes_frame_px, frames, crop_boxes)
            if self.model.mouth is None:
                return out
            source = None if frame_meshes is None else (
                np.asarray(frame_meshes, np.float32), frames if source_frames is None else source_frames)
            return self.refine_mouth(meshes_frame_px, out, source, in_place=True)

    def first_stage(self, meshes_frame_px: np.ndarray, frames: np.ndarray,
                    crop_boxes: np.ndarray) -> np.ndarray:
        """The lower face re-rendered on the crop band and pasted (no lips window stage)."""
        meshes_frame_px, frames, crop_boxes = _check_inputs(meshes_frame_px, frames, crop_boxes)
        size, top = self.config.crop_size, self.config.band_top
        bands = np.stack([crop_band(f, b, size, top) for f, b in zip(frames, crop_boxes)])
        verts = to_crop_pixels(meshes_frame_px, crop_boxes, size)
        with torch.inference_mode():
            band_t = torch.from_numpy(bands).to(self.device).permute(0, 3, 1, 2).float() / 255
            res = render_band(self.model, torch.from_numpy(verts).to(self.device), band_t)
            net = (res.network.clamp(0, 1) * 255).permute(0, 2, 3, 1).cpu().numpy()
            alpha = res.alpha[:, 0].cpu().numpy()
        out = np.empty_like(frames)
        for f, n, a, b, o in zip(frames, net, alpha, crop_boxes, out):
            paste_band(f, n, a, b, size, top, out=o)
        return out

    def refine_mouth(self, meshes_frame_px: np.ndarray, frames: np.ndarray, source=None,
                     in_place: bool = False) -> np.ndarray:
        """The second stage: lips windows cut at frame resolution, refined, pasted back (into
        `frames` itself with in_place). source: (meshes, frames) of real frames whose detail it
        may use (see render)."""
        meshes_frame_px = np.asarray(meshes_frame_px, np.float32)
        shape, scale = self.config.mouth_window, self.config.mouth_scale
        origins = mouth_origins(meshes_frame_px, shape, scale)
        windows = np.stack([crop_window(f, o, scale, shape) for f, o in zip(frames, origins)])
        verts = to_window_pixels(meshes_frame_px, origins, scale)
        to_t = lambda a: torch.from_numpy(a).to(self.device).permute(0, 3, 1, 2).float() / 255  # noqa: E731
        src = None
        if source is not None and self.config.source_detail:
            pad = np.float32(SOURCE_PAD / scale)
            src_full = (shape[0] + 2 * SOURCE_PAD, shape[1] + 2 * SOURCE_PAD)
            src_meshes = np.asarray(source[0], np.float32)
            src_origins = mouth_origins(src_meshes, shape, scale) - pad   # around the source's own lips
            src_windows = np.stack([crop_window(f, o, scale, src_full)
                                    for f, o in zip(source[1], src_origins)])
            src_verts = to_window_pixels(src_meshes, src_origins, scale)
            src = (torch.from_numpy(src_verts).to(self.device), to_t(src_windows))
        with torch.inference_mode():
            win_t = to_t(windows)
            res = render_mouth(self.model, torch.from_numpy(verts).to(self.device), win_t, source=src)
            net = (res.network.clamp(0, 1) * 255).permute(0, 2, 3, 1).cpu().numpy()
            alpha = res.alpha[:, 0].cpu().numpy()
        out = frames if in_place else np.empty_like(frames)
        for f, n, a, o, dst in zip(frames, net, alpha, origins, out):
            paste_window(f, n, a, o, scale, out=dst)
        return out


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
