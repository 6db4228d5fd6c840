"""Continue the fit_compare.py runs (resumed from their checkpoints) to a time budget each:
python docs/render/session7/prior/fit_longer.py PERSON_DIR PRIOR_DIR OUT_DIR PRIOR_MIN SCRATCH_MIN"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from avatar.render.train import train_renderer

person, prior, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
budgets = {"prior": float(sys.argv[4]), "scratch": float(sys.argv[5])}
results = {}
for name, start in (("prior", prior), ("scratch", None)):
    m = train_renderer(person, minutes=budgets[name], steps=None, device="cpu", run_dir=out / f"run-{name}",
                       batch_size=4, progress=False, mouth_stage_steps=0, write_person=False,
                       prior=start, eval_every=50, patience=0, threads=1)
    results[name] = m
    print(name, json.dumps({k: m.get(k) for k in ("step", "psnr", "psnr_mouth", "psnr_band", "train_minutes")}), flush=True)
    json.dump(results, open(out / "fit_longer.json", "w"), indent=1)
