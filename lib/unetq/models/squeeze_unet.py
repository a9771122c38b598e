"""Squeeze U-Net of seed 002 (Tables 3-4): 2,613,952 backbone parameters at ``width=64``.

All convolutions are without bias and without BatchNorm (the paper's counts include neither);
each is followed by ReLU. The only bias is the one of the 1x1 head (``classes`` values: a logit
offset that the paper's tables do not list).

* Fire module(in, s, e): squeeze 1x1 ``in -> s``, then parallel expand 3x3 ``s -> e`` and
  expand 1x1 ``s -> e``, concatenated (``2e`` channels, ``[3x3, 1x1]``).
* Down-sampling is by stride 2, not pooling: the first fire module of every DS unit runs both
  expand convolutions with stride 2 (the squeeze 1x1 sees the full-resolution map). This
  mirrors the transposed fire module, whose expand branches do the up-sampling.
* Transposed fire module(in, s, e): 1x1 transposed conv ``in -> s``, then parallel 2x2 stride-2
  and 1x1 stride-2 transposed convs ``s -> e``, concatenated. A 1x1 stride-2 transposed conv of
  an HxW map is (2H-1)x(2W-1); ``output_padding=1`` makes it 2Hx2W like the 2x2 branch. This is
  exactly TensorFlow's ``Conv2DTranspose(kernel 1, strides 2, padding="same")`` of the paper's
  implementation (values on even positions, zeros in between).

Blocks (``model.blocks()``, the rows of Tables 3 and 4; the paper leaves the TF rows unnamed):

=========== ==================================================== ============
block       contents                                             params (w=64)
=========== ==================================================== ============
Initial     double 3x3 conv in -> 64 -> 64 (the skip of FinalConv)      38,592
DS1..DS4    2 fire modules (s32,e64) (s48,e128) (s64,e256) (s80,e512)   47,104 · 141,312 · 376,832 · 942,080
TF1         transposed fire (s80, e256), H/16 -> H/8                   184,320
US1         concat DS3, 2 fires (s64, e256)                            425,984
TF2         transposed fire (s64, e128)                                 73,728
US2         concat DS2, 2 fires (s48, e128)                            159,744
TF3         transposed fire (s48, e64); the paper prints 27,684         27,648
US3         concat DS1, 2 fires (s32, e64)                              53,248
FinalUp     2x2 stride-2 transposed conv 128 -> 64                      32,768
FinalConv   concat Initial, double 3x3 conv 128 -> 64 -> 64            110,592
Head        1x1 conv 64 -> classes, with bias                       65 (classes=1)
=========== ==================================================== ============
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import DoubleConv, check_input, he_init, scale_channels
from .registry import register_model

#: (squeeze, expand) of the paper's DS1..DS4 and TF1/US1, TF2/US2, TF3/US3 at width 64.
DS_FIRES = ((32, 64), (48, 128), (64, 256), (80, 512))
UP_FIRES = (((80, 256), (64, 256)), ((64, 128), (48, 128)), ((48, 64), (32, 64)))
INITIAL_CHANNELS = 64


class Fire(nn.Module):
    """Fire module: squeeze 1x1, then expand 3x3 and expand 1x1 in parallel, concatenated.
    ``stride=2`` down-samples in both expand branches."""

    def __init__(self, in_channels: int, squeeze: int, expand: int, stride: int = 1):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_channels, squeeze, 1, bias=False), nn.ReLU(inplace=False))
        self.expand3x3 = nn.Sequential(
            nn.Conv2d(squeeze, expand, 3, stride=stride, padding=1, bias=False), nn.ReLU(inplace=False)
        )
        self.expand1x1 = nn.Sequential(
            nn.Conv2d(squeeze, expand, 1, stride=stride, bias=False), nn.ReLU(inplace=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand3x3(s), self.expand1x1(s)], dim=1)


class TransposedFire(nn.Module):
    """Transposed fire module: 1x1 transposed conv ``in -> s``, then 2x2 stride-2 and 1x1
    stride-2 (``output_padding=1``) transposed convs ``s -> e`` in parallel, concatenated; doubles
    H and W."""

    def __init__(self, in_channels: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(
            nn.ConvTranspose2d(in_channels, squeeze, 1, bias=False), nn.ReLU(inplace=False)
        )
        self.expand2x2 = nn.Sequential(
            nn.ConvTranspose2d(squeeze, expand, 2, stride=2, bias=False), nn.ReLU(inplace=False)
        )
        self.expand1x1 = nn.Sequential(
            nn.ConvTranspose2d(squeeze, expand, 1, stride=2, output_padding=1, bias=False),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand2x2(s), self.expand1x1(s)], dim=1)


class DownUnit(nn.Sequential):
    """DS unit: fire (stride 2) then fire; ``in -> 2e`` channels, H/2."""

    def __init__(self, in_channels: int, squeeze: int, expand: int):
        super().__init__(Fire(in_channels, squeeze, expand, stride=2), Fire(2 * expand, squeeze, expand))


class UpUnit(nn.Module):
    """US unit after its transposed fire: concatenation ``[skip, x]`` then two fire modules."""

    def __init__(self, in_channels: int, skip_channels: int, squeeze: int, expand: int):
        super().__init__()
        self.fire1 = Fire(in_channels + skip_channels, squeeze, expand)
        self.fire2 = Fire(2 * expand, squeeze, expand)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fire2(self.fire1(torch.cat([skip, x], dim=1)))


class FinalConv(nn.Module):
    """Concatenation ``[skip, x]`` then a double 3x3 conv without bias."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, x], dim=1))


class SqueezeUNet(nn.Module):
    BLOCK_NAMES = ("Initial", "DS1", "DS2", "DS3", "DS4", "TF1", "US1", "TF2", "US2", "TF3", "US3",
                   "FinalUp", "FinalConv", "Head")
    _ATTRS = ("initial", "ds1", "ds2", "ds3", "ds4", "tf1", "us1", "tf2", "us2", "tf3", "us3",
              "final_up", "final_conv", "head")

    def __init__(self, in_channels: int = 3, classes: int = 1, width: int = 64):
        super().__init__()
        if classes < 1 or in_channels < 1:
            raise ValueError(f"in_channels and classes must be >= 1, got {in_channels}, {classes}")
        self.in_channels = in_channels

        def sc(c: int) -> int:
            return scale_channels(c, width)

        c0 = sc(INITIAL_CHANNELS)
        self.initial = DoubleConv(in_channels, c0, bias=False)
        chans = [c0]
        for i, (s, e) in enumerate(DS_FIRES, start=1):
            setattr(self, f"ds{i}", DownUnit(chans[-1], sc(s), sc(e)))
            chans.append(2 * sc(e))
        # chans = [initial, DS1, DS2, DS3, DS4] output channels
        x_ch = chans[4]
        for i, ((ts, te), (us, ue)) in enumerate(UP_FIRES, start=1):
            setattr(self, f"tf{i}", TransposedFire(x_ch, sc(ts), sc(te)))
            setattr(self, f"us{i}", UpUnit(2 * sc(te), chans[4 - i], sc(us), sc(ue)))
            x_ch = 2 * sc(ue)
        self.final_up = nn.ConvTranspose2d(x_ch, c0, 2, stride=2, bias=False)
        self.final_conv = FinalConv(c0, c0, c0)
        self.head = nn.Conv2d(c0, classes, 1, bias=True)
        he_init(self)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` in the order of the paper's Tables 3 and 4."""
        return [(n, getattr(self, a)) for n, a in zip(self.BLOCK_NAMES, self._ATTRS)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, H, W]`` (H, W multiples of 16) -> logits ``[N, classes, H, W]``."""
        check_input(x, self.in_channels, type(self).__name__)
        s0 = self.initial(x)
        s1 = self.ds1(s0)
        s2 = self.ds2(s1)
        s3 = self.ds3(s2)
        x = self.ds4(s3)
        x = self.us1(self.tf1(x), s3)
        x = self.us2(self.tf2(x), s2)
        x = self.us3(self.tf3(x), s1)
        x = self.final_conv(self.final_up(x), s0)
        return self.head(x)


@register_model("squeeze_unet")
def build_squeeze_unet(in_channels: int = 3, classes: int = 1, width: int = 64) -> SqueezeUNet:
    """The Squeeze U-Net of seed 002 (2,613,952 parameters before the head at width 64)."""
    return SqueezeUNet(in_channels, classes, width)
