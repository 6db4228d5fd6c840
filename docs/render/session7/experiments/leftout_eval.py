"""Window metrics of trained second stages on the left-out clip b (target frames A..B-1, all of
them), evaluation sources within the clip: python leftout_eval.py A B NAME ... -> JSON lines"""
import json, sys
import numpy as np, common
from avatar.render.store import load_weights
from avatar.render.train_mouth import evaluate_mouth

a, b, names = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
s = common.samples()
for name in names:
    path = common.DEMO / "renderer.safetensors" if name == "shipped" else common.OUT / name / "renderer.safetensors"
    m = evaluate_mouth(load_weights(path).float().eval(), s, "cpu", np.arange(a, b))
    print(json.dumps({"name": name, "frames": [a, b], **m}))
