"""Every Whisper encoder layer of each cached clip (runs/feats/*.npz from session 5's prep.py)
-> runs/feats_layers/NAME.npy, float16 [5, n, 384] (whisper_layers.encoder_layers)."""
import sys, time
from pathlib import Path
import numpy as np
import torch; torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_layers import encoder_layers

out = Path("runs/feats_layers"); out.mkdir(parents=True, exist_ok=True)
for f in sorted(Path("runs/feats").glob("*.npz")):
    dst = out / (f.stem + ".npy")
    if dst.exists():
        continue
    t = time.time()
    d = np.load(f)
    layers = encoder_layers(d["samples"])
    n = len(d["whisper"])
    layers = layers[:, :n]
    last = np.corrcoef(layers[-1].ravel(), d["whisper"].astype(np.float32).ravel())[0, 1]
    np.save(dst.with_suffix(".tmp.npy"), layers.astype(np.float16))
    dst.with_suffix(".tmp.npy").rename(dst)
    print(f.stem, layers.shape, f"last layer r vs ctranslate2 {last:.4f}", f"{time.time() - t:.1f}s", flush=True)
