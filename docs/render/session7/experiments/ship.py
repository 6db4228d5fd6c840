"""Put a trained second stage into the shipped demo person: python ship.py RUN_NAME HOW
(renderer file, its hash in person.json, the held-out window metrics of metrics.json, and how
it was made)."""
import hashlib, json, shutil, sys
import common
name, how = sys.argv[1], sys.argv[2]
run = common.OUT / name
shutil.copy(run / "renderer.safetensors", common.DEMO / "renderer.safetensors")
cfg = json.loads((common.DEMO / "person.json").read_text())
cfg["files"]["renderer.safetensors"] = hashlib.sha256((common.DEMO / "renderer.safetensors").read_bytes()).hexdigest()
m = json.loads((common.OUT / f"{name}.json").read_text())
held = cfg["metrics"]["renderer_holdout"]["mouth_stage"]
held.update({k: m[k] for k in ("frames", "losses", "step", "train_minutes", "with_mouth_stage", "first_stage_only")})
cfg["renderer"]["mouth_stage"]["how"] += "; " + how
(common.DEMO / "person.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
print(cfg["files"]["renderer.safetensors"])
