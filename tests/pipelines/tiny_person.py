"""A tiny synthetic person folder for end-to-end tests (no ../shared data, no training).

Geometry: the MediaPipe canonical mesh as mean shape, a 3-component expression basis that opens
the jaw, an identity-ish blendshape map; head poses drift slowly across a small target video of
plain shaded frames; the renderer is an untrained, very small DeferredRenderer saved through the
renderer's own store (so the checksum and config paths are exercised for real).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.face.crop import smooth_crop_boxes
from avatar.face.mesh import canonical_mesh
from avatar.io.files import sha256_file, write_json
from avatar.io.person import FORMAT_VERSION, save_face_model, save_track
from avatar.types import JAW_OPEN, N_BLENDSHAPES, FaceTrack, HeadPoses, PersonFaceModel
from avatar.video.writer import VideoWriter

WIDTH, HEIGHT, FPS, N_FRAMES = 128, 96, 10.0, 16


def tiny_face_model() -> PersonFaceModel:
    mesh = canonical_mesh()
    mean = mesh.vertices * np.float32([1, -1, -1]) * 6.0      # cm -> px-ish, y down, z away
    mean -= mean.mean(0)
    k = 3
    basis = np.zeros((k, len(mean), 3), np.float32)
    below_mouth = mean[:, 1] > np.percentile(mean[:, 1], 70)
    basis[0, below_mouth, 1] = 1.0                             # jaw drop
    basis[1, :, 0] = mean[:, 0] * 0.02                         # widen
    basis[2, below_mouth, 2] = 0.5
    weight = np.zeros((N_BLENDSHAPES, k), np.float32)
    weight[JAW_OPEN, 0] = 12.0
    return PersonFaceModel(mean.astype(np.float32), basis, mesh.faces.copy(), mesh.uvs.copy(),
                           weight, np.zeros(k, np.float32))


def tiny_poses(n: int = N_FRAMES) -> HeadPoses:
    t = np.arange(n, dtype=np.float32)
    translation = np.stack([WIDTH / 2 + 3 * np.sin(t / 3), HEIGHT / 2 + 0 * t, 0 * t], 1)
    return HeadPoses(np.full(n, 0.45, np.float32), np.repeat(np.eye(3, dtype=np.float32)[None], n, 0),
                     translation.astype(np.float32), FPS)


def tiny_track(model: PersonFaceModel, poses: HeadPoses) -> FaceTrack:
    n = len(poses)
    rng = np.random.default_rng(1)
    blend = rng.uniform(0, 0.2, (n, N_BLENDSHAPES)).astype(np.float32)
    meshes = poses.apply(model.meshes(blend @ model.map_weight + model.map_bias))
    landmarks = np.concatenate([meshes, meshes[:, :10]], 1).astype(np.float32)   # + 10 "iris"
    pose = np.repeat(np.eye(4, dtype=np.float32)[None], n, 0)
    return FaceTrack(landmarks, blend, pose, smooth_crop_boxes(landmarks, FPS),
                     np.ones(n, bool), FPS, (WIDTH, HEIGHT))


def target_frames(n: int = N_FRAMES) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for i in range(n):
        base = np.stack([xx * 2 % 256, yy * 2 % 256, np.full_like(xx, 60 + 8 * i)], -1)
        frames.append(base.astype(np.uint8))
    return np.stack(frames)


def save_tiny_renderer(path: Path) -> None:
    import torch
    from avatar.render.model import DeferredRenderer, RendererConfig
    from avatar.render.store import save_weights
    torch.manual_seed(0)
    config = RendererConfig(crop_size=64, texture_size=32, texture_channels=4, texture_levels=2,
                            channels=(8, 8))
    save_weights(path, DeferredRenderer(config))


def make_tiny_person(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model, poses = tiny_face_model(), tiny_poses()
    track = tiny_track(model, poses)
    save_face_model(folder / "face_model.safetensors", model)
    save_track(folder / "track.safetensors", track, poses)
    with VideoWriter(folder / "target.mp4", WIDTH, HEIGHT, FPS, watermark=False, crf=12) as out:
        out.write(target_frames())
    save_tiny_renderer(folder / "renderer.safetensors")
    files = {f: sha256_file(folder / f)                 # as train-person records them
             for f in ("face_model.safetensors", "track.safetensors", "target.mp4")}
    write_json(folder / "person.json", {"format_version": FORMAT_VERSION, "fps": FPS,
                                        "frame_size": [WIDTH, HEIGHT], "n_frames": N_FRAMES,
                                        "name": folder.name, "files": files})
    return folder


def make_tiny_audio2expr(folder: Path) -> Path:
    """An untrained, very small audio2expr checkpoint on log-mel features (fast on CPU)."""
    import torch
    from avatar.expression import Audio2ExpressionNet, NetConfig, save_audio2expr
    from avatar.types import MOUTH_BLENDSHAPES
    torch.manual_seed(0)
    net = Audio2ExpressionNet(NetConfig(feature_dim=80, window=16, channels=8, latent=8, context=2,
                                        n_out=len(MOUTH_BLENDSHAPES), dropout=0.0))
    mean = np.full(N_BLENDSHAPES, 0.1, np.float32)
    std = np.full(N_BLENDSHAPES, 0.1, np.float32)
    save_audio2expr(folder, net, "logmel80", mean, std)
    return folder
