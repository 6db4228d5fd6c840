"""A copy of the demo person folder holding another renderer (person.json's hash updated):
python candidate.py NAME WEIGHTS  -> runs/s7r/cand_NAME"""
import json, shutil, sys, hashlib
from pathlib import Path
name, weights = sys.argv[1], Path(sys.argv[2])
src = Path("/work/main/checkpoints/persons/demo")
dst = Path("/work/main/runs/s7r") / f"cand_{name}"
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree(src, dst)
shutil.copy(weights, dst / "renderer.safetensors")
cfg = json.loads((dst / "person.json").read_text())
cfg["files"]["renderer.safetensors"] = hashlib.sha256((dst / "renderer.safetensors").read_bytes()).hexdigest()
(dst / "person.json").write_text(json.dumps(cfg, indent=2))
print(dst)
