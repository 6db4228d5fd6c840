"""Neural texture (Laplacian pyramid, 16 channels) and the deferred-rendering U-Net.

The U-Net re-renders only the lower band of the face crop (rows from 3/8 of the crop down), as
Neural Voice Puppetry does; it sees the sampled texture features, the rasterizer mask and the
target frame's band with the lower face blanked out, and outputs RGB for the band. For CPU speed it
works at half resolution inside (pixel-unshuffle in, pixel-shuffle out) with additive skips.
No file I/O here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avatar.config import CROP_SIZE

BAND_TOP = 3 / 8          # the rendered band starts at this fraction of the crop height


@dataclass(frozen=True)
class RendererConfig:
    crop_size: int = CROP_SIZE
    texture_size: int = 256
    texture_channels: int = 16
    texture_levels: int = 4
    channels: tuple[int, ...] = (32, 48, 64, 96)
    uv_only: bool = False          # ablation: the U-Net sees raw UVs instead of texture features
    mouth_patch: bool = True       # close the lip hole with its own texture region
    # second stage: the lips re-rendered at the frame's own resolution (0 x 0: no such stage)
    mouth_window: tuple[int, int] = (0, 0)       # (height, width) of the window, window pixels
    mouth_scale: float = 1.0                     # window pixels per frame pixel (1: no resampling)
    mouth_channels: tuple[int, ...] = (24, 32, 48, 64)
    mouth_texture_size: int = 512                # the second stage's own texture (0: none)
    mouth_texture_channels: int = 8
    teeth: bool = True                           # rigid teeth arches in the second stage
    source_detail: bool = True                   # second stage sees a real frame's pixels moved onto the mesh
    detail_transfer: float = 1.0                 # and adds their fine detail (grain, pores) at this strength
    source_flow: bool = False                    # the source's mesh warp refined by optical flow (flow.py)
    teeth_atlas: tuple[int, int] = (0, 0)        # a real frame's upper teeth kept in the file (rows, cols)

    @property
    def band_top(self) -> int:
        return int(round(self.crop_size * BAND_TOP))

    @property
    def band_height(self) -> int:
        return self.crop_size - self.band_top

    @property
    def feature_channels(self) -> int:
        return 2 if self.uv_only else self.texture_channels

    @property
    def has_mouth_stage(self) -> bool:
        return min(self.mouth_window) > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in _TUPLES:
            d[key] = list(d[key])
        return d

    @staticmethod
    def from_dict(d: dict) -> "RendererConfig":
        fields = RendererConfig.__dataclass_fields__
        d = {k: v for k, v in dict(d).items() if k in fields}
        for key in _TUPLES:
            if key in d:
                d[key] = tuple(int(c) for c in d[key])
        return RendererConfig(**d)


_TUPLES = ("channels", "mouth_window", "mouth_channels", "teeth_atlas")


class NeuralTexture(nn.Module):
    """Learned feature texture as a Laplacian pyramid: the texture is the sum of all levels,
    each upsampled to full size, so coarse levels learn smooth colour and fine levels detail."""

    def __init__(self, size: int, channels: int, levels: int):
        super().__init__()
        self.size = size
        self.levels = nn.ParameterList(
            nn.Parameter(torch.zeros(1, channels, size >> i, size >> i)) for i in range(levels))
        self._frozen: torch.Tensor | None = None
        self._frozen_hwc = None          # the same as [S, S, C] numpy, for kernels.sample_texture

    def freeze(self) -> None:
        """Collapse the pyramid once for inference (undone by train())."""
        with torch.no_grad():
            self._frozen = self.full().detach()
            self._frozen_hwc = self._frozen[0].permute(1, 2, 0).contiguous().cpu().numpy()

    def train(self, mode: bool = True):
        self._frozen = self._frozen_hwc = None
        return super().train(mode)

    def full(self) -> torch.Tensor:
        """[1, C, size, size]: the collapsed pyramid."""
        out = self.levels[0]
        for level in self.levels[1:]:
            out = out + F.interpolate(level, size=(self.size, self.size), mode="bilinear",
                                      align_corners=False)
        return out

    def forward(self, uv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """uv [B, H, W, 2] in [0, 1] -> features [B, C, H, W] (zero where mask is False)."""
        tex = self._frozen if self._frozen is not None else self.full()
        b, h, w, _ = uv.shape
        if mask is not None and self._frozen is not None and _compiled_lookup(uv, tex):
            from avatar.render.kernels import sample_texture
            out = sample_texture(self._frozen_hwc, uv.detach().numpy(), mask.detach().numpy())
            return torch.from_numpy(out)
        if mask is None:
            grid = (uv * 2 - 1).to(tex.dtype)
            return F.grid_sample(tex.expand(b, -1, -1, -1), grid, mode="bilinear",
                                 padding_mode="border", align_corners=False)
        flat = mask.reshape(-1)
        grid = (uv.reshape(1, 1, -1, 2)[:, :, flat] * 2 - 1).to(tex.dtype)
        picked = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border",
                               align_corners=False)[0, :, 0]               # [C, N]
        out = tex.new_zeros(tex.shape[1], b * h * w)
        out = out.index_copy(1, torch.nonzero(flat).squeeze(1), picked)
        return out.view(tex.shape[1], b, h, w).transpose(0, 1)


def _compiled_lookup(uv: torch.Tensor, tex: torch.Tensor) -> bool:
    """Inference on a CPU with numba: the texture lookup runs in avatar/render/kernels.py
    (the same bilinear values as grid_sample, to 1e-6; 2.5x faster)."""
    from avatar.render import kernels
    return (not torch.is_grad_enabled() and uv.device.type == "cpu" and tex.device.type == "cpu"
            and uv.dtype == torch.float32 and kernels.use())


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.2, inplace=True))


class UNet(nn.Module):
    """Half-resolution U-Net with pixel-unshuffle in and pixel-shuffle out."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], out_channels: int = 3):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(_conv(in_channels * 4, c[0], 1), _conv(c[0], c[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(c[i], c[i + 1], 3, 2), _conv(c[i + 1], c[i + 1]))
            for i in range(len(c) - 1))
        self.proj = nn.ModuleList(_conv(c[i + 1], c[i], 1) for i in range(len(c) - 1))
        self.up = nn.ModuleList(_conv(c[i], c[i]) for i in range(len(c) - 1))
        self.head = nn.Conv2d(c[0], out_channels * 4, 3, 1, 1)
        self.accelerated = None    # a compiled copy for inference (avatar/render/runtime.py)

    def train(self, mode: bool = True):
        if mode:
            self.accelerated = None    # it holds a copy of the weights, which training changes
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.accelerated is not None and not torch.is_grad_enabled():
            return self.accelerated(x)
        x = self.stem(F.pixel_unshuffle(x, 2))
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for i in reversed(range(len(self.down))):
            x = F.interpolate(self.proj[i](x), size=skips[i].shape[-2:], mode="nearest")
            x = self.up[i](x + skips[i])
        return F.pixel_shuffle(self.head(x), 2)


class MouthNet(nn.Module):
    """Second stage at the frame's own resolution: refines the lips window of the composited
    frame. Sees that window (RGB in [-1, 1]), the first stage's texture features and its own
    finer texture, both sampled with UVs rasterized at window resolution, the raw UVs and the
    raster mask; returns the window's RGB (input + a residual)."""

    def __init__(self, config: RendererConfig):
        super().__init__()
        own = config.mouth_texture_channels if config.mouth_texture_size else 0
        self.texture = NeuralTexture(config.mouth_texture_size, own, 3) if own else None
        detail = 4 if config.source_detail else 0
        self.unet = UNet(3 + config.feature_channels + own + 2 + 1 + detail, config.mouth_channels)
        if min(config.teeth_atlas) > 0:
            # RGB in [0, 1] + where it is valid: a sharp real frame's upper teeth (train_mouth.bake_teeth_atlas)
            self.register_buffer("teeth_atlas", torch.zeros(4, *config.teeth_atlas))
        else:
            self.teeth_atlas = None
        nn.init.zeros_(self.unet.head.weight)     # starts as the identity: output = input
        nn.init.zeros_(self.unet.head.bias)

    def forward(self, rgb: torch.Tensor, feats: torch.Tensor, uv: torch.Tensor,
                raster_mask: torch.Tensor, detail: tuple | None = None) -> torch.Tensor:
        """detail: (a real frame's pixels moved onto this geometry [B,3,h,w] in [0,1], where
        they are valid [B,1,h,w]) when the config has source_detail."""
        m = raster_mask[:, None].to(rgb.dtype)
        parts = [rgb, feats, uv.permute(0, 3, 1, 2) * m, m]
        if self.texture is not None:
            parts.insert(2, self.texture(uv, raster_mask))
        if detail is not None:
            parts += [(detail[0] * 2 - 1) * detail[1], detail[1]]
        return rgb + self.unet(torch.cat(parts, 1))


class DeferredRenderer(nn.Module):
    """texture features + raster mask + masked target band -> RGB band in [-1, 1]-ish."""

    def __init__(self, config: RendererConfig):
        super().__init__()
        self.config = config
        self.texture = None if config.uv_only else NeuralTexture(
            config.texture_size, config.texture_channels, config.texture_levels)
        self.unet = UNet(config.feature_channels + 1 + 3 + 1, config.channels)
        self.mouth = MouthNet(config) if config.has_mouth_stage else None

    def features(self, uv: torch.Tensor, raster_mask: torch.Tensor) -> torch.Tensor:
        m = raster_mask[:, None].to(uv.dtype)
        if self.texture is None:
            return uv.permute(0, 3, 1, 2) * m
        return self.texture(uv, raster_mask)

    def forward(self, uv: torch.Tensor, raster_mask: torch.Tensor, masked_rgb: torch.Tensor,
                hole: torch.Tensor) -> torch.Tensor:
        """uv [B,H,W,2], raster_mask [B,H,W] bool, masked_rgb [B,3,H,W] in [-1,1] (0 in the hole),
        hole [B,1,H,W] -> RGB [B,3,H,W]."""
        feats = self.features(uv, raster_mask)
        x = torch.cat([feats, raster_mask[:, None].to(feats.dtype), masked_rgb, hole], 1)
        return self.unet(x)
