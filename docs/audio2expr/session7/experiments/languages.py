"""The audio-only check of train-audio2expr (predicted jawOpen vs loudness, r) for a checkpoint.
PYTHONPATH=. python docs/audio2expr/session7/experiments/languages.py CHECKPOINT_DIR OUT.json"""
import json, sys, tempfile
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from pipelines.train_audio2expr import check_audio_only, DEFAULT_AUDIO_CHECK
from avatar.expression.checkpoint import load_audio2expr
model = load_audio2expr(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    res = check_audio_only(model, Path(DEFAULT_AUDIO_CHECK), Path(tmp) / "plot.png")
r = {k: round(v["jaw_vs_loudness_r"], 3) for k, v in res.items()}
r["mean"] = round(float(np.mean(list(r.values()))), 3)
print(json.dumps(r, indent=0))
json.dump({"checkpoint": sys.argv[1], "jaw_vs_loudness_r": r}, open(sys.argv[2], "w"), indent=1)
