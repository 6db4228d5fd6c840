"""Contact sheet from the cached demo samples: python sheet.py OUT.png LABEL=WEIGHTS ...
Rows: the frames bench/mouth_sheet.py picks (closed, half open, open, teeth); columns: real,
then each renderer's both-stages window."""
import sys
import numpy as np, cv2, common
sys.path.insert(0, str(common.ROOT / "bench"))
from mouth_sheet import pick_frames
from avatar.render.store import load_weights
from avatar.render.data import load_person_geometry
from avatar.render.train_mouth import render_windows
from avatar.types import BLENDSHAPE_NAMES

s = common.samples()
_, track, _, _ = load_person_geometry(common.DEMO)
picks = pick_frames(s, np.arange(s.holdout_start, len(s)), track.blendshapes[:, BLENDSHAPE_NAMES.index("jawOpen")])
idx = np.array([i for _, i in picks]); p = s.pad
cols = [("real", s.real[idx, p:-p, p:-p])]
for arg in sys.argv[2:]:
    label, path = arg.split("=")
    cols.append((label, render_windows(load_weights(path).float(), s, idx, "cpu")))
rows = [np.concatenate([c[1][k] for c in cols], 1) for k in range(len(idx))]
w = s.shape[1]
head = np.zeros((16, w * len(cols), 3), np.uint8)
for c, (label, _) in enumerate(cols):
    cv2.putText(head, label, (c * w + 4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1)
sheet = cv2.resize(np.concatenate([head, *rows]), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
cv2.imwrite(sys.argv[1], cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
print(sys.argv[1], picks)
