"""Train the demo's lips window (cached samples) with config changes:
python train.py NAME STEPS [key=value ...]   e.g. python train.py flow600 600 source_flow=1
python train.py NAME 0 [key=value ...]       evaluates the shipped weights with the changes
leave=A:B (not a config key): frames A..B-1 are left out of training and evaluated as well
(demo: clip b is frames 126-199 of the target video)."""
import json, sys, time
from dataclasses import replace
import numpy as np
import common
from avatar.render.model import DeferredRenderer
from avatar.render.train_mouth import bake_teeth_atlas, with_mouth_stage, train_mouth_stage, evaluate_mouth
from avatar.render.store import save_weights


def parse(args):
    out = {}
    for a in args:
        if a.startswith("leave="):
            continue
        k, v = a.split("=")
        if "x" in v:
            out[k] = tuple(int(c) for c in v.split("x"))
            continue
        out[k] = float(v) if "." in v else int(v)
        if k in ("source_flow", "teeth", "source_detail"):
            out[k] = bool(out[k])
    return out


def model_with(base, changes, shape, scale):
    """The second stage with session 6's settings (no flow, no atlas) and `changes` on top."""
    model = with_mouth_stage(base, shape, scale)
    cfg = replace(model.config, **{"source_flow": False, "teeth_atlas": (0, 0), **changes})
    new = DeferredRenderer(cfg)
    new.load_state_dict(model.state_dict(), strict=False)   # the atlas: baked in training
    for name, p in new.named_parameters():
        p.requires_grad_(name.startswith("mouth."))
    return new


def main():
    name, steps, changes = sys.argv[1], int(sys.argv[2]), parse(sys.argv[3:])
    s = common.samples()
    leave = next((tuple(map(int, a[6:].split(":"))) for a in sys.argv[3:] if a.startswith("leave=")), None)
    if leave:
        s = replace(s, trainable=np.array([not (leave[0] <= i < leave[1]) for i in range(len(s))]))
    base = common.shipped()
    t = time.time()
    if steps == 0:
        model = DeferredRenderer(replace(base.config, **changes))
        model.load_state_dict(base.state_dict(), strict=False)
        if getattr(model.mouth, "teeth_atlas", None) is not None:
            print("atlas from frame", bake_teeth_atlas(model, s))
        m = evaluate_mouth(model.eval(), s, "cpu")
    else:
        model = model_with(base, changes, s.shape, s.scale)
        m = train_mouth_stage(model, s, common.OUT / name, steps=steps, progress=False)
        save_weights(common.OUT / name / "renderer.safetensors", model.cpu().eval(), {"mouth_stage": m})
    if leave:
        m["left_out"] = evaluate_mouth(model.eval(), s, "cpu", np.arange(*leave))
        m["left_out"]["frames_range"] = list(leave)
    m["changes"] = {k: v for k, v in changes.items()}
    (common.OUT / f"{name}.json").write_text(json.dumps(m, indent=1))
    print(json.dumps(m, indent=1)); print("minutes", (time.time() - t) / 60)


if __name__ == "__main__":
    main()
