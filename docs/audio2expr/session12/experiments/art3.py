"""Session 12 idea: the phonetic prior's TTS-trained articulation net on Whisper's third block
instead of its last layer. The same piper sentences (train-audio2expr's: 350 from the standard
library's docstrings, seed 0) with whisper3_hama features, then two nets of 1500 steps: one on
[last layer | loudness] (the shipped recipe, a control for the TTS randomness) and one on
[third block | loudness].
PYTHONPATH=. python docs/audio2expr/session12/experiments/art3.py runs/s12/art"""
import sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from avatar.expression.articulation import ArticulationConfig, stdlib_sentences, train_articulation, tts_example
from avatar.expression.checkpoint import save_module

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
sentences = stdlib_sentences()
chosen = rng.choice(sentences, min(350, len(sentences)), replace=False)
t0 = time.time()
examples = [tts_example(str(s), "whisper3_hama", rng) for s in chosen]
print(f"{len(examples)} TTS examples, {sum(len(f) for f, _ in examples) / 50:.0f} s, {time.time() - t0:.0f} s", flush=True)
for name, cols in (("last", slice(0, 384)), ("third", slice(384, 768))):
    data = [(np.concatenate([f[:, cols], f[:, -1:]], 1), a) for f, a in examples]
    t0 = time.time()
    net, losses = train_articulation(data, ArticulationConfig(feature_dim=385), steps=1500, seed=0)
    save_module(out / f"art_{name}.safetensors", net, "audio2expr-articulation")
    print(f"{name}: final loss {np.mean(losses[-50:]):.4f}, {time.time() - t0:.0f} s", flush=True)
