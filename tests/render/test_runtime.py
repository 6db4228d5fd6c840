"""The OpenVINO runtime of the renderer's U-Nets against PyTorch."""
import numpy as np
import pytest
import torch

from avatar.errors import AvatarError
from avatar.render.model import DeferredRenderer, RendererConfig, UNet
from avatar.render.runtime import accelerate, compile_unet, resolve_runtime

openvino = pytest.importorskip("openvino")


def _unet(seed=0, channels=(8, 12, 16, 24), in_channels=5):
    torch.manual_seed(seed)
    net = UNet(in_channels, channels).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)             # zero-initialised heads would hide a wrong graph
    return net


@pytest.mark.parametrize("size", [(24, 40), (20, 44)])    # 20x44: odd sizes after three halvings
def test_openvino_graph_matches_pytorch_in_fp32(size):
    net = _unet()
    x = torch.randn(3, 5, *size)
    with torch.no_grad():
        ref = net(x)
    run = compile_unet(net, size, "f32", 1)
    assert run.precision == "f32"
    out = run(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert ref.abs().mean() > 0.01
    tol = 1e-5 * float(ref.abs().max())
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=tol)
    out1 = run(x[:1])                                     # any batch size
    np.testing.assert_allclose(out1.numpy(), ref[:1].numpy(), atol=tol)


def test_accelerated_unet_only_without_gradients_and_dropped_by_train():
    net = _unet()
    calls = []
    net.accelerated = lambda x: calls.append(1) or torch.zeros(x.shape[0], 3, *x.shape[2:])
    x = torch.randn(1, 5, 16, 16)
    with torch.no_grad():
        assert net(x).abs().sum() == 0 and calls == [1]
    assert net(x).requires_grad and calls == [1]           # training keeps PyTorch
    net.train()
    assert net.accelerated is None                         # stale weights can never run


def test_accelerate_renderer_and_runtime_names():
    cfg = RendererConfig(crop_size=64, texture_size=32, channels=(8, 12, 16, 24),
                         mouth_window=(24, 40), mouth_channels=(8, 8, 12, 12), mouth_texture_size=32)
    model = DeferredRenderer(cfg).eval()
    used = accelerate(model, "openvino-fp32", torch.device("cpu"), threads=1)
    assert used == "openvino-fp32"
    assert model.unet.accelerated is not None and model.mouth.unet.accelerated is not None
    assert accelerate(DeferredRenderer(cfg), "torch", torch.device("cpu")) == "torch"
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino"
    with pytest.raises(AvatarError, match="unknown renderer runtime"):
        resolve_runtime("tensorrt", torch.device("cpu"))
