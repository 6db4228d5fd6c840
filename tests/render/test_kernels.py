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
