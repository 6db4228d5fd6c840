"""Correlation of the source's transferred fine detail with the real frame's (held-out lips
windows, evaluation sources as in train_mouth.evaluate_mouth), before and after refining the
mesh warp with dense optical flow (OpenCV DIS) against a reference image of the new frame:
the first stage's output (a method) or the real frame (an oracle).
python flow_corr.py"""
import itertools, sys
import numpy as np, torch, cv2, common
import torch.nn.functional as F
from avatar.render.train_mouth import batch_windows, eval_sources
from avatar.render import renderer as R
from avatar.render.compose import box_mean


def gray(x, sigma):
    g = (x.permute(1, 2, 0).numpy() @ np.array([0.299, 0.587, 0.114], np.float32)) * 255
    return cv2.GaussianBlur(g, (0, 0), sigma) if sigma > 0 else g


def refine(pos, source, ref, sigma, preset, smooth, limit):
    """pos [B,h,w,2] source pixel positions of each window pixel -> refined positions."""
    hs, ws = source.shape[2:]
    grid = torch.stack([pos[..., 0] / ws * 2 - 1, pos[..., 1] / hs * 2 - 1], -1)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    dis = cv2.DISOpticalFlow_create(preset)
    out = []
    for b in range(len(pos)):
        a = np.clip(gray(ref[b], sigma), 0, 255).astype(np.uint8)
        c = np.clip(gray(warped[b], sigma), 0, 255).astype(np.uint8)
        flow = dis.calc(a, c, None)
        if smooth > 0:
            flow = cv2.GaussianBlur(flow, (0, 0), smooth)
        mag = np.linalg.norm(flow, axis=-1, keepdims=True)
        flow = flow * np.minimum(1, limit / np.maximum(mag, 1e-6))
        h, w = flow.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        p = pos[b].numpy()
        out.append(cv2.remap(p, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE))
    return torch.from_numpy(np.stack(out))


def detail_from(model, raster, sv, src, pos_override):
    orig = R.interpolate
    if pos_override is not None:
        R.interpolate = lambda *a, **k: pos_override
    try:
        return R.source_detail(model, raster, sv, src)
    finally:
        R.interpolate = orig


def main(variants):
    s = common.samples(); model = common.shipped().eval()
    idx = np.arange(s.holdout_start, len(s)); srcs = eval_sources(idx, len(s))
    faces, ns = R.window_topology(model.config)
    acc = {}
    with torch.inference_mode():
        for a in range(0, len(idx), 8):
            part, sp = idx[a:a+8], srcs[a:a+8]
            verts, first, real, raster, source, _ = batch_windows(s, part, "cpu", None, sp)
            attr, _ = R.source_positions(model, source[0], int(faces.max()) + 1)
            pos = R.interpolate(raster, torch.as_tensor(faces), attr)
            rf = real - box_mean(box_mean(real, 3), 3)
            face = raster.face
            cls = {"surface": face < ns, "patch": (face >= ns) & (face < ns + 20),
                   "upper teeth": (face >= ns + 20) & (face < ns + 40)}
            for name, ref, sig, preset, sm, lim in variants:
                p2 = None if ref is None else refine(pos, source[1], first if ref == "first" else real, sig, preset, sm, lim)
                _, fine, valid = detail_from(model, raster, source[0], source[1], p2)
                v = (valid * -F.max_pool2d(-valid, 5, 1, 2))[:, 0] > 0
                for c, m in cls.items():
                    m = (m & v & (face >= 0))[:, None].expand_as(fine)
                    x, y = fine[m], rf[m]
                    e = acc.setdefault((name, c), [0.0, 0.0, 0.0, 0.0])
                    e[0] += float((x * y).sum()); e[1] += float((x * x).sum()); e[2] += float((y * y).sum())
                    e[3] += float(((x - y) ** 2).sum())
    for (name, c), (xy, xx, yy, d) in acc.items():
        print(f"{name:28s} {c:12s} corr {xy / np.sqrt(xx * yy + 1e-12):+.3f}  energy src/real {xx / max(yy, 1e-12):.2f}  "
              f"residual/real {d / max(yy, 1e-12):.3f}")


U, FA, M = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, cv2.DISOPTICAL_FLOW_PRESET_FAST, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
if __name__ == "__main__":
    V = [("mesh only", None, 0, 0, 0, 0),
         ("oracle real s1 medium", "real", 1.0, M, 2, 4),
         ("first s1.5 ultrafast sm3", "first", 1.5, U, 3, 3),
         ("first s1.5 medium sm3", "first", 1.5, M, 3, 3),
         ("first s2.5 medium sm3", "first", 2.5, M, 3, 3),
         ("first s1.5 medium sm0", "first", 1.5, M, 0, 3)]
    main(V)
