"""U-Net of seed 000 (Table 1): the baseline, 31,031,745 parameters at ``width=64``.

Encoder channels 64-128-256-512 and a 1024-channel bottleneck; every block a double 3x3 conv
*with bias, no BatchNorm*, ReLU; 2x2 max-pool; decoder: 2x2 stride-2 ConvTranspose (with bias),
concatenation with the skip, double conv; 1x1 output conv to ``classes`` logits.

Blocks (``model.blocks()``, the rows of seed 000 Table 1):

========== ====================== ==============================================
block      paper row              contents
========== ====================== ==============================================
Down1..4   DownConv 1..4          double conv, then 2x2 max-pool. The block returns
                                  ``(skip, pooled)``; its table output shape is the
                                  pooled one, as in the paper.
Bottleneck Bottleneck             double conv 512 -> 1024 -> 1024 at H/16
Up1..4     UpConv 1..4            ConvTranspose 2x2/2 *and* the double conv after the
                                  concatenation (Up1 = 2,097,664 + 7,078,912)
Output     Ouput Layer            1x1 conv to ``classes``
========== ====================== ==============================================

The paper's Table 1 prints Down2 = 221.550 (correct: 221,440) and the total 31.031.855 (correct:
31,031,745, the same +110); its output shapes for DownConv 3/4 ([256,64,64], [512,32,32]) should
read [256,32,32] and [512,16,16].

The skeleton is shared with the Ghost U-Net (``ghost_unet.py``), which only swaps the encoder and
decoder double convs.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .layers import DoubleConv, check_input, he_init, scale_channels
from .registry import register_model

#: Paper channel counts (width 64) of Down1..Down4 and the bottleneck.
UNET_CHANNELS = (64, 128, 256, 512, 1024)

ConvFactory = Callable[[int, int], nn.Module]


class DownBlock(nn.Module):
    """Feature block then 2x2 max-pool; returns ``(skip, pooled)``."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv(x)
        return skip, self.pool(skip)


class UpBlock(nn.Module):
    """2x2 stride-2 ConvTranspose (``in -> out`` channels, with bias), concatenation
    ``[skip, upsampled]``, then the feature block on ``2*out`` channels."""

    def __init__(self, in_channels: int, out_channels: int, conv: nn.Module):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = conv

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


def _plain_double_conv(cin: int, cout: int) -> nn.Module:
    return DoubleConv(cin, cout, bias=True)


class UNet(nn.Module):
    """U-Net skeleton; ``make_conv(cin, cout)`` builds the encoder/decoder feature blocks (the
    bottleneck is always a plain double conv with bias)."""

    BLOCK_NAMES = ("Down1", "Down2", "Down3", "Down4", "Bottleneck", "Up1", "Up2", "Up3", "Up4", "Output")
    _ATTRS = ("down1", "down2", "down3", "down4", "bottleneck", "up1", "up2", "up3", "up4", "output")

    def __init__(self, in_channels: int = 3, classes: int = 1, width: int = 64,
                 make_conv: ConvFactory = _plain_double_conv):
        super().__init__()
        if classes < 1 or in_channels < 1:
            raise ValueError(f"in_channels and classes must be >= 1, got {in_channels}, {classes}")
        self.in_channels = in_channels
        c1, c2, c3, c4, c5 = (scale_channels(c, width) for c in UNET_CHANNELS)
        self.down1 = DownBlock(make_conv(in_channels, c1))
        self.down2 = DownBlock(make_conv(c1, c2))
        self.down3 = DownBlock(make_conv(c2, c3))
        self.down4 = DownBlock(make_conv(c3, c4))
        self.bottleneck = DoubleConv(c4, c5, bias=True)
        self.up1 = UpBlock(c5, c4, make_conv(2 * c4, c4))
        self.up2 = UpBlock(c4, c3, make_conv(2 * c3, c3))
        self.up3 = UpBlock(c3, c2, make_conv(2 * c2, c2))
        self.up4 = UpBlock(c2, c1, make_conv(2 * c1, c1))
        self.output = nn.Conv2d(c1, classes, 1)
        he_init(self)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` in the order of the paper's table."""
        return [(n, getattr(self, a)) for n, a in zip(self.BLOCK_NAMES, self._ATTRS)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, H, W]`` (H, W multiples of 16) -> logits ``[N, classes, H, W]``."""
        check_input(x, self.in_channels, type(self).__name__)
        s1, x = self.down1(x)
        s2, x = self.down2(x)
        s3, x = self.down3(x)
        s4, x = self.down4(x)
        x = self.bottleneck(x)
        x = self.up1(x, s4)
        x = self.up2(x, s3)
        x = self.up3(x, s2)
        x = self.up4(x, s1)
        return self.output(x)


@register_model("unet")
def build_unet(in_channels: int = 3, classes: int = 1, width: int = 64) -> UNet:
    """The U-Net of seed 000 Table 1 (31,031,745 parameters at width 64, classes 1)."""
    return UNet(in_channels, classes, width)
