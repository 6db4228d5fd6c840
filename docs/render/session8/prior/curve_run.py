"""Issue 17 learning curves: one fit of a person's first stage (from the shipped prior or from
scratch) with a fixed time budget, on one CPU thread, saving the weights as they are when the
fit's clock passes each mark (2, 5, 10, 15, 30, 60 min). The marks before the end are snapshots
of a longer fit (its learning rate has not decayed yet), the last one is the fit's own result.
python docs/render/session8/prior/curve_run.py PERSON_DIR OUT_DIR NAME MINUTES [PRIOR_DIR]
TEXTURE_LR=... / NET_LR=... in the environment replace train.py's learning rates (schedule trials).
DECAY_START=F: the learning rate's cosine decay starts at this fraction of the budget instead of
train.py's 0.6 (session 16's schedule trials).
WATCH_ALL=1: the held-out watch measures every held-out frame (before 2e7411f it did; now 48).
CLOCK=cpu: the budget and the marks count this process's CPU time instead of wall-clock time (fits
that share the cores with other jobs then get the same amount of computation; session 9)."""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import avatar.render.train as train
from avatar.render.store import save_weights

import os
import types
now = time.process_time if os.environ.get("CLOCK") == "cpu" else time.time
train.time = types.SimpleNamespace(time=now)       # train.py's budget clock (it uses time.time only)
for key in ("TEXTURE_LR", "NET_LR"):
    if os.environ.get(key):
        setattr(train, key, float(os.environ[key]))
if os.environ.get("DECAY_START"):
    import math
    start = float(os.environ["DECAY_START"])

    def lr_scale(progress: float) -> float:
        t = min(1.0, max(0.0, progress - start) / (1.0 - start))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))
    train.lr_scale = lr_scale
if os.environ.get("WATCH_ALL"):
    train.HeldOutWatch.__init__.__defaults__ = (0.05, 10 ** 9)    # (min_gain, max_frames)
person, out, name, minutes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
prior = Path(sys.argv[5]) if len(sys.argv) > 5 else None
run_dir = out / f"run-{name}"
marks = [m for m in (2, 5, 10, 15, 30, 60) if m < minutes]
clock = {}


step_once = train.train_step


def train_step_and_snapshot(model, *args):
    """train.py's step, then a weights snapshot when the fit's clock passes a mark."""
    clock.setdefault("t0", now())
    loss = step_once(model, *args)
    clock["steps"] = clock.get("steps", 0) + 1
    elapsed = now() - clock["t0"]
    while marks and elapsed >= marks[0] * 60:
        save_weights(run_dir / f"snap_{marks[0]:02d}min.safetensors", model,
                     {"step": clock["steps"], "minutes": round(elapsed / 60, 2)})
        print(name, "snapshot", marks.pop(0), "min at step", clock["steps"], flush=True)
        model.train()
    return loss


train.train_step = train_step_and_snapshot
t, c = time.time(), time.process_time()
m = train.train_renderer(person, minutes=minutes, steps=None, device="cpu", run_dir=run_dir,
                         batch_size=4, progress=False, mouth_stage_steps=0, write_person=False,
                         prior=prior, eval_every=100, patience=0, threads=1)
state = json.loads((run_dir / "metrics.json").read_text())
print(name, json.dumps({k: m.get(k) for k in ("step", "psnr", "psnr_mouth", "train_minutes")}), flush=True)
(out / f"final-{name}.json").write_text(json.dumps({"final": m, "wall_s": round(time.time() - t, 1), "cpu_s": round(time.process_time() - c, 1), "clock": os.environ.get("CLOCK", "wall")}, indent=1))
