"""Shared helpers for the session-7 lips-window experiments (cached samples of the demo person,
runs/exp/samples_demo.pkl, built by session 6's runs/exp/common.py the same way)."""
import os, pickle, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
ROOT = Path("/work/main")
sys.path.insert(0, str(ROOT))
from avatar.render.store import load_weights
from avatar.render.train_mouth import person_mouth_samples

DEMO = ROOT / "checkpoints/persons/demo"
OUT = ROOT / "runs/s7r"
CACHE = ROOT / "runs/exp/samples_demo.pkl"
OUT.mkdir(parents=True, exist_ok=True)


def shipped():
    return load_weights(DEMO / "renderer.safetensors").float()


def samples():
    if CACHE.is_file():
        with open(CACHE, "rb") as f:
            return pickle.load(f)
    t = time.time()
    s = person_mouth_samples(DEMO, shipped(), progress=False)
    with open(CACHE, "wb") as f:
        pickle.dump(s, f, protocol=4)
    print(f"samples built in {time.time()-t:.0f}s", file=sys.stderr)
    return s
