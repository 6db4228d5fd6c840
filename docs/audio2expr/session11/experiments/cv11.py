"""Session 11: session 7's CV (cv7.py: same folds, seed, screening, 800 steps) with the Whisper
features taken from another encoder layer (runs/feats_layers, prep_layers.py).
--layer K (0 = after the convolutions, 1-3 = blocks 1-3, 4 = the shipped last layer) or
--layer K1+K2 (concatenated). hama and loudness as shipped (--feats both).
PYTHONPATH=. python docs/audio2expr/session11/experiments/cv11.py --layer 2 --out runs/s11/L2"""
import sys
from pathlib import Path
import numpy as np
here = Path(__file__).resolve()
sys.path.insert(0, str(here.parents[2] / "session7" / "experiments"))
sys.path.insert(0, str(here.parents[2] / "session5" / "experiments"))
import cv7
from avatar.types import SpeechFeatures

layer = sys.argv[sys.argv.index("--layer") + 1]
del sys.argv[sys.argv.index("--layer"):sys.argv.index("--layer") + 2]
layers = [int(k) for k in layer.split("+")]


def feats(c, kind):
    stack = np.load(Path("runs/feats_layers") / f"{c.name}.npy").astype(np.float32)
    n = len(c.raw["whisper"])
    cols = [stack[k, :n] for k in layers] + [c.raw["hama"], c.raw["loud"]]
    return SpeechFeatures(np.concatenate(cols, 1).astype(np.float32), 50.0, "hama")


cv7.feats = feats
if __name__ == "__main__":
    print("whisper layers", layers, flush=True)
    cv7.main()
