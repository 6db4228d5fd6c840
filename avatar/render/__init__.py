"""Deferred neural rendering: rasterizer, mouth patch, neural texture + U-Net, training, runtime."""
from avatar.render.model import DeferredRenderer, NeuralTexture, RendererConfig, UNet
from avatar.render.mouth import with_mouth_patch
from avatar.render.raster import Fragments, rasterize
from avatar.render.renderer import FaceRenderer
from avatar.render.train import train_renderer

__all__ = ["DeferredRenderer", "FaceRenderer", "Fragments", "NeuralTexture", "RendererConfig",
           "UNet", "rasterize", "train_renderer", "with_mouth_patch"]
