"""Issue 17, first evidence: a new person's first stage fitted from scratch vs from a prior made of
the demo person's renderer (train-prior --from-person demo), same steps, same held-out frames.
python docs/render/session7/prior/fit_compare.py PERSON_DIR PRIOR_DIR OUT_DIR STEPS [prior|scratch]"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from avatar.render.train import train_renderer

person, prior, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
results = {}
runs = (("prior", prior), ("scratch", None))
for name, start in [r for r in runs if len(sys.argv) < 6 or r[0] == sys.argv[5]]:
    t = time.time()
    m = train_renderer(person, minutes=0, steps=steps, device="cpu", run_dir=out / f"run-{name}",
                       batch_size=4, progress=False, mouth_stage_steps=0, write_person=False,
                       prior=start, eval_every=50, patience=0, threads=1)
    state = json.loads(open(out / f"run-{name}" / "config.json").read())
    results[name] = {"final": m, "wall_s": round(time.time() - t, 1)}
    print(name, json.dumps({k: m.get(k) for k in ("step", "psnr", "psnr_mouth", "psnr_band", "train_minutes")}), flush=True)
    json.dump(results, open(out / "fit_compare.json", "w"), indent=1)
