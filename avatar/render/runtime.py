"""Fast CPU inference for the renderer's U-Nets with OpenVINO.

PyTorch stays the path for training and for CUDA. On a CPU, `accelerate(model, ...)` builds an
OpenVINO graph of each U-Net straight from its weights (no tracing, so it takes milliseconds),
compiles it for the frame size the renderer uses, and hands it to the U-Net, which runs it
whenever no gradient is wanted. On CPUs with native bf16 (AVX512-BF16 or AMX) the graph runs in
bf16: about 2-3x faster than PyTorch fp32 on the 2-core dev CPU, within 0.1 dB on the demo
person's held-out frames (docs/BENCHMARKS.md, "Renderer speed"); elsewhere in fp32.

Runtimes: "torch" (never accelerate), "openvino" (fp32 or bf16 as the CPU allows), "openvino-fp32",
"auto" (openvino on a CPU when it is installed, else torch).
"""
from __future__ import annotations

import functools
import threading

import numpy as np
import torch

from avatar.errors import AvatarError
from avatar.render.model import DeferredRenderer, UNet

RUNTIMES = ("auto", "torch", "openvino", "openvino-fp32")


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """The runtime that will actually run: 'torch', 'openvino' or 'openvino-fp32'."""
    if runtime not in RUNTIMES:
        raise AvatarError(f"unknown renderer runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch" or device.type != "cpu":
        if runtime.startswith("openvino") and device.type != "cpu":
            raise AvatarError(f"runtime {runtime!r} runs on the CPU only; use --device cpu or runtime auto")
        return "torch"
    if runtime == "auto":
        return "openvino" if _openvino() is not None else "torch"
    if _openvino() is None:
        raise AvatarError("runtime 'openvino' asked for but the openvino package is not installed; "
                          "pip install openvino, or use runtime torch")
    return runtime


@functools.lru_cache(maxsize=1)
def _openvino():
    try:
        import openvino
    except ImportError:
        return None
    return openvino


@functools.lru_cache(maxsize=1)
def _core():
    return _openvino().Core()


def native_bf16() -> bool:
    """True when the CPU runs bf16 natively (OpenVINO's capability list says so)."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def accelerate(model: DeferredRenderer, runtime: str, device: torch.device, threads: int | None = None,
               streams: int = 1) -> str:
    """Give the model's U-Nets compiled OpenVINO graphs for the shapes inference uses, able to
    run `streams` calls at once (one per renderer worker thread), `threads` in all.
    Returns the runtime in use ('torch': nothing changed)."""
    used = resolve_runtime(runtime, device)
    if used == "torch":
        return used
    cfg = model.config
    precision = "bf16" if used == "openvino" and native_bf16() else "f32"
    threads = max(threads or torch.get_num_threads(), streams)
    model.unet.accelerated = compile_unet(model.unet, (cfg.band_height, cfg.crop_size), precision,
                                          threads, streams)
    if model.mouth is not None:
        model.mouth.unet.accelerated = compile_unet(model.mouth.unet, tuple(cfg.mouth_window),
                                                    precision, threads, streams)
    return used if precision == "bf16" else "openvino-fp32"


def compile_unet(unet: UNet, size: tuple[int, int], precision: str, threads: int, streams: int = 1):
    """An OpenVINO-compiled copy of `unet` for inputs [any batch, C, *size]; called with a
    float32 tensor, it returns a float32 tensor like unet(x) does. Each calling thread gets its
    own infer request, so `streams` threads can run it at once."""
    settings = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": int(threads)}
    settings.update({"NUM_STREAMS": int(streams)} if streams > 1 else {"PERFORMANCE_HINT": "LATENCY"})
    compiled = _core().compile_model(unet_graph(unet, size), "CPU", settings)
    local = threading.local()

    def run(x: torch.Tensor) -> torch.Tensor:
        if not hasattr(local, "request"):
            local.request = compiled.create_infer_request()
        # the input is read in place (no copy into OpenVINO's tensor), the output copied out of it
        out = local.request.infer({0: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)},
                                  share_inputs=True, share_outputs=True)
        return torch.from_numpy(np.array(out[0], np.float32, copy=True))

    run.precision = precision
    return run


def unet_graph(unet: UNet, size: tuple[int, int]):
    """The same computation as UNet.forward as an OpenVINO model (static height and width,
    any batch)."""
    ov = _openvino()
    ops = _opset()
    in_channels = unet.stem[0][0].in_channels // 4
    x_in = ops.parameter(ov.PartialShape([-1, in_channels, *size]), np.float32, name="x")
    x = _conv_block(ops, ops.space_to_depth(x_in, "depth_first", 2), unet.stem[0])
    x = _conv_block(ops, x, unet.stem[1])
    skips, sizes = [], []
    h, w = size[0] // 2, size[1] // 2
    for down in unet.down:
        skips.append(x)
        sizes.append((h, w))
        x = _conv_block(ops, _conv_block(ops, x, down[0]), down[1])
        h, w = (h + 1) // 2, (w + 1) // 2
    for i in reversed(range(len(unet.down))):
        up = ops.interpolate(_conv_block(ops, x, unet.proj[i]), np.array(sizes[i], np.int64),
                             mode="nearest", shape_calculation_mode="sizes",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                             axes=np.array([2, 3], np.int64))
        x = _conv_block(ops, ops.add(up, skips[i]), unet.up[i])
    y = ops.depth_to_space(_conv(ops, x, unet.head), "depth_first", 2)
    return ov.Model([y], [x_in], "unet")


def _opset():
    import openvino.opset13 as ops
    return ops


def _conv(ops, x, conv: torch.nn.Conv2d):
    s, p = conv.stride[0], conv.padding[0]
    weight = conv.weight.detach().float().cpu().numpy()
    y = ops.convolution(x, ops.constant(weight), [s, s], [p, p], [p, p], [1, 1])
    bias = conv.bias.detach().float().cpu().numpy().reshape(1, -1, 1, 1)
    return ops.add(y, ops.constant(bias))


def _conv_block(ops, x, block):
    """model._conv's Sequential(Conv2d, LeakyReLU(0.2))."""
    slope = np.array([block[1].negative_slope], np.float32)
    return ops.prelu(_conv(ops, x, block[0]), ops.constant(slope))
