"""Session 12: cv11.py with the network on Whisper's third block (--layer 3) and the phonetic prior's
articulation net from art3.py: --art last (the shipped recipe retrained: last layer) or --art third
(third block). Same folds, seed, screening, 800 steps.
PYTHONPATH=. python docs/audio2expr/session12/experiments/cv12.py --art third --out runs/s12/art_third"""
import sys
from pathlib import Path
import numpy as np
here = Path(__file__).resolve()
sys.path.insert(0, str(here.parents[2] / "session11" / "experiments"))
art = sys.argv[sys.argv.index("--art") + 1]
del sys.argv[sys.argv.index("--art"):sys.argv.index("--art") + 2]
sys.argv += ["--layer", "3"]
import cv11
cv7 = cv11.cv7
from avatar.expression.articulation import ArticulationConfig, ArticulationNet
from avatar.expression.checkpoint import load_module
from avatar.expression.prior import combined_curves
from avatar.types import SpeechFeatures

net = ArticulationNet(ArticulationConfig(feature_dim=385))
load_module(Path("runs/s12/art") / f"art_{art}.safetensors", net, "articulation")
net.eval()
setup = cv7.setup


def setup_with_art(args):
    clips, perm, folds = setup(args)
    for c in clips:
        stack = np.load(Path("runs/feats_layers") / f"{c.name}.npy").astype(np.float32)
        n = len(c.raw["whisper"])
        cols = stack[4 if art == "last" else 3, :n]
        wf = SpeechFeatures(np.concatenate([cols, c.raw["loud"]], 1), 50.0, "whisper_tiny")
        c.curves = combined_curves(c.phones, wf, net, c.fps, len(c.targets), 0.1, 0.06)
    return clips, perm, folds


cv7.setup = setup_with_art
if __name__ == "__main__":
    print("articulation", art, flush=True)
    cv7.main()
