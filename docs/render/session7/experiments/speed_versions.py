"""Session 6's shipped renderer code + settings vs this tree's shipped ones, in alternating
subprocesses (the cores are shared: each round runs both, in swapped order every other round):
python speed_versions.py OLD_ROOT ROUNDS REPEATS OUT.json [SETTINGS_JSON]
(SETTINGS_JSON: this tree's lips-window settings, default the demo person's)"""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
here = Path(__file__).resolve().parent
old_root, rounds, repeats, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
sys.path.insert(0, str(here.parents[3]))
from avatar.render.store import load_weights
demo = load_weights(here.parents[3] / "checkpoints/persons/demo/renderer.safetensors").config.to_dict()
window = demo["mouth_window"]
versions = {"session6": (old_root, {"mouth_window": window}),
            "shipped": (str(here.parents[3]), {"mouth_window": window, "source_flow": demo.get("source_flow", False),
                                                "teeth_atlas": demo.get("teeth_atlas", [0, 0]),
                                                **(json.loads(sys.argv[5]) if len(sys.argv) > 5 else {})})}
times = {k: [] for k in versions}
for r in range(rounds):
    order = list(versions) if r % 2 == 0 else list(versions)[::-1]
    for name in order:
        root, cfg = versions[name]
        res = subprocess.run([sys.executable, str(here / "speed_one.py"), root, json.dumps(cfg), str(repeats)],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        line = [l for l in res.stdout.splitlines() if l.startswith("{")]
        if not line:
            sys.exit(res.stderr[-2000:])
        times[name] += json.loads(line[-1])["times"]
        print(name, r, f"best {8 / min(times[name]):.1f} fps", file=sys.stderr)
best = {k: 8 / min(v) for k, v in times.items()}
med = {k: 8 / float(np.median(v)) for k, v in times.items()}
res = {"fps_best": best, "fps_median": med, "ratio_best": best["shipped"] / best["session6"],
       "ratio_median": med["shipped"] / med["session6"], "calls_each": len(times["shipped"]),
       "settings": {k: v[1] for k, v in versions.items()}, "load_average_end": os.getloadavg()}
out.write_text(json.dumps(res, indent=1))
print(json.dumps(res, indent=1))
