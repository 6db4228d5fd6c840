"""Issue 17: the evaluate job's metrics (PSNR, SSIM, LMD, mouth PSNR / detail / high-frequency /
flicker ratios at frame resolution) of many renderer weights on one person's held-out frames,
tracking the target video once.
python docs/render/session8/prior/eval_snapshots.py PERSON_DIR OUT_JSON WEIGHTS..."""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from avatar.face.tracker import DEFAULT_MAX_SIDE, track_video
from avatar.io import person as person_io
from avatar.io.person import load_face_model
from avatar.render.data import driven_meshes
from avatar.render.renderer import FaceRenderer
from pipelines.evaluate import _render_and_measure, first_frame, load_drive

person, out = Path(sys.argv[1]), Path(sys.argv[2])
video = person / person_io.TARGET
model = load_face_model(person / person_io.FACE_MODEL)
track = track_video(video, max_side=DEFAULT_MAX_SIDE, progress=False)
poses, expressions = load_drive(video, "tracked", track, model)
start, role = first_frame(person, video, len(track), False)
meshes = driven_meshes(model, poses, expressions)
results = json.loads(out.read_text()) if out.is_file() else {}
for weights in sys.argv[3:]:
    if weights in results:
        continue
    t = time.time()
    renderer = FaceRenderer.from_file(weights, "cpu", runtime="torch")
    m = _render_and_measure(renderer, video, track, meshes, start, None, 8, False, meshes)
    m.pop("psnr_per_frame", None)
    results[weights] = {**m, "frames": [start, len(track)], "role": role, "seconds": round(time.time() - t, 1)}
    print(Path(weights).parent.name, Path(weights).name,
          json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()}), flush=True)
    out.write_text(json.dumps(results, indent=1))
