"""Issue 17 learning curves: the held-out PSNR the fits measured as they went (every 100 steps,
from their checkpoints) and the evaluate metrics of their snapshots (eval_snapshots.py) ->
curves.png + curves.json + a markdown table on stdout.
python docs/render/session8/prior/report.py OUT_DIR PERSON_LABEL RUN_ROOT [RUN_ROOT ...]"""
import json, sys
from pathlib import Path
from safetensors import safe_open

out, label, roots = Path(sys.argv[1]), sys.argv[2], [Path(p) for p in sys.argv[3:]]
curves, table = {}, []
for root in roots:
    evals = json.loads((root / "eval.json").read_text()) if (root / "eval.json").is_file() else {}
    for run in sorted(root.glob("run-*")):
        with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:
            state = json.loads(f.metadata()["state"])
        config = json.loads((run / "config.json").read_text())
        name = run.name[4:]
        curves[name] = {"heldout": state["heldout"], "steps": state["step"],
                        "minutes": round(state["elapsed_s"] / 60, 2), "prior": bool(config.get("prior"))}
        for w, m in sorted(evals.items()):
            if Path(w).parent.name != run.name:
                continue
            mark = Path(w).stem
            table.append({"run": name, "weights": mark, **{k: m.get(k) for k in (
                "psnr", "ssim", "lmd_px", "mouth_psnr", "mouth_detail_ratio", "mouth_hf_ratio",
                "mouth_flicker_ratio")}})
(out / "curves.json").write_text(json.dumps({"person": label, "curves": curves, "evaluate": table}, indent=1))

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for name, c in curves.items():
    h = c["heldout"]
    style = "-" if c["prior"] else "--"
    axes[0].plot([x[1] for x in h], [x[2] for x in h], style, label=name)
    axes[1].plot([x[1] for x in h], [x[3] for x in h], style, label=name)
for ax, what in zip(axes, ("held-out crop PSNR (dB)", "held-out mouth PSNR (dB)")):
    ax.set_xlabel("minutes of training (one CPU thread)"); ax.set_ylabel(what); ax.grid(alpha=0.3)
    ax.set_xscale("log"); ax.set_xticks([1, 2, 5, 10, 15, 30, 60]); ax.set_xticklabels(["1", "2", "5", "10", "15", "30", "60"])
axes[0].legend()
fig.suptitle(f"{label}: first stage from the renderer prior (solid) vs from scratch (dashed)")
fig.tight_layout(); fig.savefig(out / "curves.png", dpi=90)
print("| run | weights | PSNR | SSIM | LMD px | mouth PSNR | detail | hf | flicker |")
print("|---|---|---|---|---|---|---|---|---|")
for r in table:
    f = lambda v, d=2: "" if v is None else f"{v:.{d}f}"
    print(f"| {r['run']} | {r['weights']} | {f(r['psnr'])} | {f(r['ssim'], 4)} | {f(r['lmd_px'])} | "
          f"{f(r['mouth_psnr'])} | {f(r['mouth_detail_ratio'])} | {f(r['mouth_hf_ratio'])} | {f(r['mouth_flicker_ratio'])} |")
