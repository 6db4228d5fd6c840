"""Rasterizer against analytic references: a triangle, two overlapping quads, a rotated cube."""
import numpy as np
import torch
import torch.nn.functional as F

from avatar.render.raster import rasterize


def _pixel_centres(h, w):
    ys, xs = np.mgrid[0:h, 0:w]
    return xs + 0.5, ys + 0.5


def _bary(tri, x, y):
    (x0, y0), (x1, y1), (x2, y2) = tri[:, :2]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    w1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / area
    w2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / area
    return np.stack([1 - w1 - w2, w1, w2], -1)


def test_single_triangle_coverage_uv_and_depth():
    tri = np.array([[10.2, 9.7, 1.0], [50.3, 12.1, 3.0], [20.6, 45.4, 5.0]], np.float32)
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    frags = rasterize(torch.from_numpy(tri)[None], torch.tensor([[0, 1, 2]]), uvs, 64)
    x, y = _pixel_centres(64, 64)
    w = _bary(tri.astype(np.float64), x, y)
    inside = (w >= 0).all(-1)
    clear = np.abs(w).min(-1) > 1e-4            # pixels not on an edge
    assert inside.sum() > 500
    assert (frags.mask[0].numpy() == inside)[clear].all()
    m = inside & clear
    np.testing.assert_allclose(frags.uv[0].numpy()[m], w[m][:, 1:], atol=1e-4)
    np.testing.assert_allclose(frags.depth[0].numpy()[m], (w[m] * tri[:, 2]).sum(-1), atol=1e-4)
    assert torch.isinf(frags.depth[0][~frags.mask[0]]).all()
    assert (frags.face[0][~frags.mask[0]] == -1).all() and (frags.face[0][frags.mask[0]] == 0).all()
    assert (frags.uv[0][~frags.mask[0]] == 0).all()


def _quad(x0, y0, x1, y1, z):
    return [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]


def test_two_overlapping_quads_nearest_wins_in_any_order_and_batch():
    quad_faces = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    a_near = _quad(8, 8, 40, 40, 2.0) + _quad(24, 24, 56, 56, 5.0)
    b_near = _quad(8, 8, 40, 40, 5.0) + _quad(24, 24, 56, 56, 2.0)
    verts = torch.tensor([a_near, b_near], dtype=torch.float32)          # batch of 2 scenes
    uvs = torch.tensor([[0.1, 0.1]] * 4 + [[0.9, 0.9]] * 4)
    for faces in (quad_faces, quad_faces[2:] + quad_faces[:2]):         # draw order must not matter
        frags = rasterize(verts, torch.tensor(faces), uvs, 64)
        overlap = (slice(25, 39), slice(25, 39))
        assert torch.allclose(frags.uv[0][overlap], torch.tensor([0.1, 0.1]))
        assert torch.allclose(frags.uv[1][overlap], torch.tensor([0.9, 0.9]))
        assert torch.allclose(frags.depth[0][overlap], torch.tensor(2.0))
        assert torch.allclose(frags.depth[1][overlap], torch.tensor(2.0))
        assert torch.allclose(frags.uv[0][45, 45], torch.tensor([0.9, 0.9]))   # only B there
        assert torch.allclose(frags.uv[1][10, 10], torch.tensor([0.1, 0.1]))   # only A there
        # union of two 32x32 squares overlapping by 16x16: no gaps on the shared diagonals
        assert int(frags.mask[0].sum()) == 32 * 32 * 2 - 16 * 16
        assert not frags.mask[0][0:8].any() and not frags.mask[0][57:].any()


def _cube(size, centre, yaw, pitch):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rot = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    verts = corners @ rot.T * size / 2 + np.array(centre)
    faces = [[q[0], q[1], q[2]] for q in quads] + [[q[0], q[2], q[3]] for q in quads]
    return verts, np.array(faces), rot


def _ray_cast(verts, faces, h, w):
    """Orthographic ray cast along +z: nearest depth and face per pixel (numpy reference)."""
    x, y = _pixel_centres(h, w)
    depth, face = np.full((h, w), np.inf), np.full((h, w), -1)
    for i, f in enumerate(faces):
        bary = _bary(verts[f], x, y)
        inside = (bary >= -1e-9).all(-1)
        z = (bary * verts[f][:, 2]).sum(-1)
        better = inside & (z < depth)
        depth[better], face[better] = z[better], i
    return depth, face


def test_cube_depth_and_visible_faces_match_ray_casting():
    verts, faces, rot = _cube(30.0, (40.0, 36.0, 100.0), yaw=0.6, pitch=0.45)
    frags = rasterize(torch.tensor(verts, dtype=torch.float32)[None], torch.tensor(faces),
                      torch.zeros(8, 2), (72, 80))
    depth, face = _ray_cast(verts, faces, 72, 80)
    mask = frags.mask[0].numpy()
    assert (mask == np.isfinite(depth)).mean() > 0.995
    both = mask & np.isfinite(depth)
    np.testing.assert_allclose(frags.depth[0].numpy()[both], depth[both], atol=1e-3)
    plane = frags.face[0].numpy() % 6
    assert (plane[both] == (face[both] % 6)).mean() > 0.99
    # projected area of a cube = side^2 * sum over its 3 visible faces of |normal_z|
    area = 30.0 ** 2 * np.abs(rot[2]).sum()
    assert abs(mask.sum() - area) / area < 0.02
    assert len(np.unique(plane[mask])) == 3


def test_large_and_offscreen_triangles():
    big = torch.tensor([[[-50.0, -50.0, 1.0], [400.0, -40.0, 1.0], [-40.0, 400.0, 1.0]],
                        [[500.0, 500.0, 1.0], [600.0, 500.0, 1.0], [500.0, 600.0, 1.0]]])
    frags = rasterize(big, torch.tensor([[0, 1, 2]]), torch.zeros(3, 2), 128)
    assert frags.mask[0].all() and not frags.mask[1].any()


def test_texture_gradient_reaches_only_the_texture():
    tri = torch.tensor([[[4.0, 4.0, 1.0], [28.0, 6.0, 1.0], [8.0, 26.0, 1.0]]], requires_grad=True)
    uvs = torch.tensor([[0.05, 0.05], [0.45, 0.05], [0.05, 0.45]])
    texture = torch.zeros(1, 4, 16, 16, requires_grad=True)
    frags = rasterize(tri, torch.tensor([[0, 1, 2]]), uvs, 32)
    sampled = F.grid_sample(texture, frags.uv * 2 - 1, align_corners=False) * frags.mask[:, None]
    sampled.square().add(sampled).sum().backward()
    assert tri.grad is None                       # no gradient into the geometry
    grad = texture.grad[0].abs().sum(0)
    assert grad[:8, :8].sum() > 0                 # texels under the triangle's UVs
    assert grad[9:, :].sum() == 0 and grad[:, 9:].sum() == 0


def _random_scene(seed, batch=2, n_verts=300, n_faces=500, size=(80, 100)):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(batch, n_verts, 3, generator=g) * torch.tensor([size[1] * 1.2, size[0] * 1.2, 40.0])
    v -= torch.tensor([size[1] * 0.1, size[0] * 0.1, 20.0])      # some off-screen, depths of both signs
    v[0, :3] = float("nan")                                      # a broken vertex: its faces drop out
    faces = torch.randint(0, n_verts, (n_faces, 3), generator=g)
    faces[:4] = torch.tensor([[0, 0, 1], [5, 5, 5], [7, 8, 7], [9, 10, 11]])   # degenerate ones
    return v, faces, torch.rand(n_verts, 2, generator=g)


def test_compiled_kernels_give_the_pytorch_fragments_bit_for_bit():
    import pytest
    from avatar.render import kernels
    from avatar.render.kernels import pytorch_only
    if not kernels.available():
        pytest.skip("numba is not installed: only the PyTorch path exists")
    for seed in range(4):
        v, faces, uvs = _random_scene(seed)
        fast = rasterize(v, faces, uvs, (80, 100))
        with pytorch_only():
            slow = rasterize(v, faces, uvs, (80, 100))
        assert fast.mask.float().mean() > 0.5
        for field in ("uv", "mask", "depth", "face", "bary"):
            assert torch.equal(getattr(fast, field), getattr(slow, field)), (seed, field)
