"""Issue 12/17: the second stage (lips window at frame resolution) trained on top of a given
first stage, the way `train-person` does it, for a fixed step count; one CPU thread.
python docs/render/session11/prior/ship.py FIRST_STAGE.safetensors PERSON_DIR OUT_DIR [STEPS=600]
Writes OUT_DIR/renderer.safetensors (both stages, fp32) and OUT_DIR/metrics.json."""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from avatar.render.store import load_weights, save_weights
from avatar.render.train import _second_stage

first, person, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 600
out.mkdir(parents=True, exist_ok=True)
t, c = time.time(), time.process_time()
model = load_weights(first, "cpu")
model, metrics = _second_stage(person, model, out / "mouth", steps, torch.device("cpu"), False)
metrics = {"mouth_stage": metrics, "first_stage": str(first), "steps": steps,
           "wall_s": round(time.time() - t, 1), "cpu_s": round(time.process_time() - c, 1)}
save_weights(out / "renderer.safetensors", model, {"metrics": metrics})
(out / "metrics.json").write_text(json.dumps(metrics, indent=1))
print(json.dumps(metrics), flush=True)
