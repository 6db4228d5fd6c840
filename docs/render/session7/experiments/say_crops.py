"""Mouth crops of say outputs, to look at: python say_crops.py OUT.png TARGET.mp4 CLIP.mp4 [CLIP2.mp4 ...]
For each clip, the 5 frames with the widest lip gap (MediaPipe on the output) and their target
frames (say's ping-pong mapping): rows of (target | clip | clip2 ...) at 2x, each crop the lips box
grown to twice its size."""
import sys
import numpy as np, cv2
sys.path.insert(0, "/work/main")
from avatar.render.metrics import LipLandmarks
from avatar.video.frames import pingpong_indices
from avatar.video.reader import VideoReader

out, target, clips = sys.argv[1], sys.argv[2], sys.argv[3:]
videos = [list(VideoReader(c)) for c in clips]
tgt = list(VideoReader(target, max_side=max(videos[0][0].shape[:2])))
mapping = pingpong_indices(0, len(videos[0]), len(tgt))
lips = LipLandmarks()
gaps = []
for t in range(0, len(videos[0]), 2):
    p = lips(videos[0][t])
    gaps.append((-1 if p is None else float(p[:, 1].max() - p[:, 1].min()), t, p))
lips.close()
gaps.sort(key=lambda g: -g[0])
rows = []
for _, t, p in gaps[:5]:
    c = p.mean(0); half = (p.max(0) - p.min(0)) * 1.0 + 10
    x0, y0 = (c - half).astype(int); x1, y1 = (c + half).astype(int)
    crop = lambda f: cv2.resize(f[y0:y1, x0:x1], (240, int(240 * (y1 - y0) / (x1 - x0))), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    row = [crop(tgt[int(mapping[t])])] + [crop(v[t]) for v in videos]
    h = min(r.shape[0] for r in row)
    rows.append(np.concatenate([r[:h] for r in row], 1))
w = min(r.shape[1] for r in rows)
cv2.imwrite(out, cv2.cvtColor(np.concatenate([r[:, :w] for r in rows], 0), cv2.COLOR_RGB2BGR))
print(out, [t for _, t, _ in gaps[:5]])
