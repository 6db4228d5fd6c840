"""Session 13: why the demo's held-out detail ratio is 0.67 on the training-sample lips windows but
0.49 from `evaluate` on full frames. Renders the held-out frames the way evaluate does (FaceRenderer,
sources 15 frames away) with each runtime, and scores (a) the full frame with evaluate's box,
(b) the rendered frame cut to the sample windows with the samples' box, (c) the samples' path."""
import sys
from pathlib import Path
import numpy as np, torch
import matched
from avatar.face.mesh import LIPS
from avatar.render.compose import crop_window, mouth_origins
from avatar.render.data import driven_meshes, load_person_geometry
from avatar.render.metrics import MouthScores, mouth_box
from avatar.render.renderer import FaceRenderer
from avatar.render.store import load_weights
from avatar.render.train_mouth import eval_sources
from avatar.video.reader import VideoReader

demo = matched.DEMO
_, track, poses, fm = load_person_geometry(demo)
meshes = driven_meshes(fm, poses, track.expressions())
base = load_weights(demo / "renderer.safetensors").float()
s = matched.samples(base)
n, start = len(s.real), s.holdout_start
frames = np.stack(list(VideoReader(demo / "target.mp4", max_side=max(track.frame_size))))[:n]
idx = np.arange(start, n)
src = eval_sources(idx, n)
p, (h, w) = s.pad, s.shape
origins = mouth_origins(meshes, s.shape, s.scale) - p / s.scale
print("scale", s.scale, "window", s.shape, flush=True)
for runtime in sys.argv[1:] or ["torch", "openvino-fp32"]:
    r = FaceRenderer(load_weights(demo / "renderer.safetensors").float(), torch.device("cpu"), runtime)
    out = np.concatenate([r.render(meshes[idx[k:k + 8]], frames[idx[k:k + 8]], track.crop_boxes[idx[k:k + 8]].astype(np.float32),
                                   frame_meshes=meshes[src[k:k + 8]], source_frames=frames[src[k:k + 8]])
                          for k in range(0, len(idx), 8)])
    full, win, own = MouthScores(), MouthScores(), MouthScores()
    for k, i in enumerate(idx):
        full.add(out[k], frames[i], mouth_box(track.landmarks[i][list(LIPS), :2], frames[i].shape))
        ow = crop_window(out[k], origins[i], s.scale, (h + 2 * p, w + 2 * p))[p:p + h, p:p + w]
        rw = s.real[i, p:p + h, p:p + w]
        box = mouth_box(s.lips[i] - p, rw.shape)
        win.add(ow, rw, box)
        rw2 = crop_window(frames[i], origins[i], s.scale, (h + 2 * p, w + 2 * p))[p:p + h, p:p + w]
        own.add(ow, rw2, box)
    print(runtime, "full frame", full.summary(), flush=True)
    print(runtime, "rendered frame cut to windows", win.summary(), flush=True)
    print(runtime, "same, real cut from the decoded frame", own.summary(), flush=True)
