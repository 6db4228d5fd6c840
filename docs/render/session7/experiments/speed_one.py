"""Time one renderer version: python speed_one.py ROOT CONFIG_JSON REPEATS -> one JSON line.
ROOT: a source tree (this repository, or session 6's avatar/ from `git archive a64877c`);
1280x720 frames, 256^2 batch 8, 2 threads, lips window given the frames' own meshes (as say)."""
import json, sys, time
root, config, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, root)
import numpy as np, torch
torch.set_num_threads(2)
from avatar.face.crop import raw_crop_boxes
from avatar.render.model import DeferredRenderer, RendererConfig
from avatar.render.renderer import FaceRenderer
from avatar.types import Expressions
from tests.synthetic import synthetic_model, synthetic_motion


def scene(n, width=1280, height=720):
    model = synthetic_model(face_px=250)
    blend, poses = synthetic_motion(n, 30.0, height)
    poses = type(poses)(poses.scale, poses.rotation, poses.translation + np.array([width / 2 - height / 2, 0, 0], np.float32), poses.fps)
    meshes = poses.apply(model.meshes(model.coefficients(Expressions(blend, 30.0)))).astype(np.float32)
    frames = np.random.default_rng(0).integers(0, 255, (n, height, width, 3), dtype=np.uint8)
    return meshes, frames, raw_crop_boxes(meshes)


torch.manual_seed(0)
cfg = RendererConfig.from_dict(config)
r = FaceRenderer(DeferredRenderer(cfg), torch.device("cpu"), "auto")
meshes, frames, boxes = scene(8)
for _ in range(2):
    r.render(meshes, frames, boxes, frame_meshes=meshes)
times = []
for _ in range(repeats):
    t = time.perf_counter()
    r.render(meshes, frames, boxes, frame_meshes=meshes)
    times.append(time.perf_counter() - t)
print(json.dumps({"root": root, "config": cfg.to_dict(), "runtime": r.runtime, "times": times}))
