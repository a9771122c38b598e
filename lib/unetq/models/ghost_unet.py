"""Ghost U-Net of seed 000 (Table 2): 17,751,521 parameters at ``width=64``.

The U-Net skeleton (``unet.UNet``) with every encoder/decoder double conv replaced by two Ghost
modules. Ghost module(in, out), ratio 2: primary 1x1 conv ``in -> out/2`` (no bias) + BN + ReLU,
cheap depthwise 3x3 conv on those ``out/2`` channels (no bias) + BN + ReLU, the two outputs
concatenated. The bottleneck stays a plain double conv with bias; the transposed convs and the
output conv are those of the U-Net.

Blocks (``model.blocks()``) carry the U-Net names: Down1..Down4 = "Ghost DownConv 1..4",
Bottleneck, Up1..Up4 = "Ghost UpConv 1..4" (ConvTranspose + two Ghost modules), Output. The
per-block counts match Table 2 exactly: 2,976 · 13,952 · 52,480 · 203,264 · 14,157,824 ·
2,497,536 · 626,176 · 157,440 · 39,808 · 65.

Ghost modules split their output in two halves, so ``width`` must be even.
"""
from __future__ import annotations

from numbers import Integral

import torch
import torch.nn as nn

from .registry import register_model
from .unet import UNet


class GhostModule(nn.Module):
    """Ghost module with ratio 2: ``out/2`` intrinsic maps from a 1x1 conv, ``out/2`` ghost maps
    from a depthwise 3x3 conv on them, concatenated ``[intrinsic, ghost]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"a Ghost module needs an even number of output channels, got {out_channels}")
        half = out_channels // 2
        self.primary = nn.Sequential(
            nn.Conv2d(in_channels, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=False),
        )
        self.cheap = nn.Sequential(
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)


class GhostDoubleConv(nn.Sequential):
    """Two Ghost modules ``in -> out -> out`` (replaces U-Net's double 3x3 conv)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(GhostModule(in_channels, out_channels), GhostModule(out_channels, out_channels))


class GhostUNet(UNet):
    def __init__(self, in_channels: int = 3, classes: int = 1, width: int = 64):
        if isinstance(width, Integral) and width % 2:
            raise ValueError(f"ghost_unet needs an even width (Ghost modules split channels in halves), got width={width}")
        super().__init__(in_channels, classes, width, make_conv=GhostDoubleConv)
        # He init of the U-Net skeleton has run; BatchNorm keeps its default (weight 1, bias 0).


@register_model("ghost_unet")
def build_ghost_unet(in_channels: int = 3, classes: int = 1, width: int = 64) -> GhostUNet:
    """The Ghost U-Net of seed 000 Table 2 (17,751,521 parameters at width 64, classes 1)."""
    return GhostUNet(in_channels, classes, width)
