"""numba kernels (avatar/render/kernels.py) against their PyTorch versions: the same answers."""
import pytest
import torch

from avatar.render import compose, kernels


def test_inside_polygon_kernel_matches_pytorch(monkeypatch):
    if not kernels.available():
        pytest.skip("numba is not installed: only the PyTorch path exists")
    g = torch.Generator().manual_seed(0)
    ang = torch.linspace(0, 6.28, 21)[:-1]
    ring = torch.stack([torch.cos(ang) * 40 + 80, torch.sin(ang) * 12 + 60], -1)[None].repeat(4, 1, 1)
    ring += torch.randn(ring.shape, generator=g) * 3
    ring[0, 5:9, 1] = ring[0, 5, 1]                    # flat edges
    pts = torch.rand(4, 5000, 2, generator=g) * torch.tensor([176.0, 128.0])
    pts[1, :20] = ring[1]                              # points exactly on corners
    fast = compose.inside_polygon(pts, ring)
    monkeypatch.setattr(kernels, "use", lambda: False)
    slow = compose.inside_polygon(pts, ring)
    assert 0.02 < fast.float().mean() < 0.5
    assert torch.equal(fast, slow)


def test_texture_lookup_kernel_matches_grid_sample():
    from avatar.render.kernels import pytorch_only
    from avatar.render.model import NeuralTexture
    if not kernels.available():
        pytest.skip("numba is not installed: only the PyTorch path exists")
    torch.manual_seed(0)
    tex = NeuralTexture(32, 5, 3)
    with torch.no_grad():
        for level in tex.levels:
            level.normal_()
    tex.eval().freeze()
    uv = torch.rand(2, 20, 30, 2) * 1.2 - 0.1               # some outside [0, 1]: border padding
    mask = torch.rand(2, 20, 30) < 0.7
    with torch.no_grad():
        fast = tex(uv, mask)
        with pytorch_only():
            slow = tex(uv, mask)
    assert slow.abs().max() > 0.5 and (fast[~mask[:, None].expand_as(fast)] == 0).all()
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_interpolate_kernel_matches_pytorch():
    from types import SimpleNamespace
    from avatar.render.kernels import pytorch_only
    from avatar.render.raster import interpolate
    if not kernels.available():
        pytest.skip("numba is not installed: only the PyTorch path exists")
    g = torch.Generator().manual_seed(0)
    face = torch.randint(-1, 30, (3, 12, 17), generator=g)
    frags = SimpleNamespace(face=face, mask=face >= 0, bary=torch.rand(3, 12, 17, 3, generator=g))
    faces = torch.randint(0, 20, (30, 3), generator=g)
    attr = torch.randn(3, 20, 2, generator=g) * 100
    fast = interpolate(frags, faces, attr)
    with pytorch_only():
        slow = interpolate(frags, faces, attr)
    assert fast.shape == (3, 12, 17, 2) and (fast[face < 0] == 0).all()
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("name, arg", [("_dilate", 4), ("_extend_down", 7), ("_blur", 3)])
def test_mask_filters_by_opencv_match_pytorch(name, arg):
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(3, 1, 40, 60, generator=g) > 0.97).float()
    mask[:, :, 10:30, 15:45] = 1
    op = getattr(compose, name)
    fast = op(mask, arg)                                          # CPU, no gradient: OpenCV
    slow = op(mask.clone().requires_grad_(True), arg).detach()    # PyTorch
    assert fast.shape == slow.shape and 0 < fast.mean() < 1
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)


def test_paste_into_the_frame_itself_equals_pasting_into_a_copy():
    import numpy as np
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    rgb = rng.random((20, 30, 3), dtype=np.float32) * 255
    alpha = rng.random((20, 30), dtype=np.float32)
    copy = compose.paste_window(frame, rgb, alpha, (10.3, 7.6), 0.8)
    same = frame.copy()
    assert compose.paste_window(same, rgb, alpha, (10.3, 7.6), 0.8, out=same) is same
    assert np.array_equal(copy, same) and not np.array_equal(copy, frame)
