"""Sharper registration of a detail source: dense optical flow after the mesh warp.

The lips window moves a real frame's pixels onto the new mouth through the tracked meshes
(renderer.source_detail), but the tracked mesh jitters by 1-2 pixels at 720p, so the moved teeth
and lip edges land beside the new frame's. `refine_positions` measures what is left with
OpenCV's DIS optical flow between a reference of the new frame (the first stage's output: soft,
but placed by the same mesh the network is conditioned on) and the mesh-warped source, both
blurred alike, and moves each window pixel's source position by that flow (smoothed, capped).
On the demo's held-out windows it raised the correlation of the moved fine detail with the
real frame's from +0.22 to +0.37 on the upper teeth and from +0.36 to +0.38 on skin and lips
(docs/render/session7/experiments/flow_corr*.py). CPU only, a few ms a window; no gradient.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F

FLOW_BLUR = 1.0        # sigma (pixels) both images are blurred by before the flow
FLOW_SMOOTH = 3.0      # sigma (pixels) of the flow field's smoothing
FLOW_LIMIT = 3.0       # pixels: the flow never moves a position further

_local = threading.local()


def _dis() -> "cv2.DISOpticalFlow":
    """One DIS instance per thread (the renderer splits a batch over threads): the FAST preset
    down to full resolution (finest scale 1), half the time of MEDIUM on a lips window, about
    the same correlation gain on skin, lips and teeth (flow_corr2.py)."""
    if getattr(_local, "dis", None) is None:
        _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        _local.dis.setFinestScale(1)
    return _local.dis


def _grey(rgb: np.ndarray) -> np.ndarray:
    """[h, w, 3] float in [0, 1] -> blurred grey uint8."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY) * 255
    return np.clip(cv2.GaussianBlur(g, (0, 0), FLOW_BLUR), 0, 255).astype(np.uint8)


def residual_flow(reference: np.ndarray, warped: np.ndarray) -> np.ndarray:
    """[h, w, 2] flow f with reference(x) ~ warped(x + f(x)), smoothed and capped at FLOW_LIMIT.
    reference, warped: [h, w, 3] float RGB in [0, 1]."""
    flow = _dis().calc(_grey(reference), _grey(warped), None)
    flow = cv2.GaussianBlur(flow, (0, 0), FLOW_SMOOTH)
    mag = np.sqrt((flow ** 2).sum(-1, keepdims=True))
    return flow * np.minimum(1.0, FLOW_LIMIT / np.maximum(mag, 1e-6))


def refine_positions(pos: torch.Tensor, source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """pos [B, h, w, 2]: where each window pixel is in the source [B, 3, hs, ws] (pixels, as
    source_detail computes them from the meshes) -> the same, moved by the residual flow
    between reference [B, 3, h, w] (in [0, 1]) and the source warped by pos."""
    hs, ws = source.shape[2], source.shape[3]
    grid = torch.stack([pos[..., 0] / ws * 2 - 1, pos[..., 1] / hs * 2 - 1], -1)
    warped = F.grid_sample(source.float(), grid.float(), mode="bilinear", padding_mode="border",
                           align_corners=False)
    h, w = pos.shape[1], pos.shape[2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    ref_np = reference.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    warped_np = warped.detach().permute(0, 2, 3, 1).cpu().numpy()
    pos_np = pos.detach().float().cpu().numpy()
    out = np.empty_like(pos_np)
    for b in range(len(pos_np)):
        f = residual_flow(ref_np[b], warped_np[b])
        out[b] = cv2.remap(pos_np[b], gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out).to(pos.device, pos.dtype)
