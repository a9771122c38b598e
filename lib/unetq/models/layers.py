"""Building blocks shared by the full-precision U-Nets: channel scaling, the plain double 3x3
convolution, He initialisation and the input-size check.

Everything here is a plain ``nn.Module`` made of Conv/ConvTranspose/BatchNorm/ReLU/MaxPool
layers (no functional tricks), so ONNX export, ``torch.profiler`` and quantization see clean
nodes."""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn

#: Every architecture halves the resolution four times, so H and W must be multiples of this.
SIZE_MULTIPLE = 16


def scale_channels(c: int, width: int) -> int:
    """Channel count ``c`` of the paper (written for ``width=64``) scaled to ``width``:
    ``round(c * width / 64)``, at least 1."""
    if not isinstance(width, numbers.Integral) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive integer (64 = the papers' channel counts), got {width!r}")
    return max(1, int(round(c * width / 64)))


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1), each followed by ReLU; the U-Net block."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            nn.ReLU(inplace=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            nn.ReLU(inplace=False),
        )


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation of every conv / transposed conv, biases zero.

    The U-Net and Squeeze U-Net have no BatchNorm, so variance-preserving initialisation keeps
    their 20-40 ReLU layers trainable. For a transposed conv the fan-in of one output pixel is
    ``in_channels * k*k / stride**2`` (a 2x2 stride-2 kernel gives each output pixel exactly one
    tap per input channel)."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            sh, sw = m.stride
            fan_in = m.in_channels // m.groups * max(1.0, kh * kw / (sh * sw))
        elif isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            fan_in = m.in_channels // m.groups * kh * kw
        else:
            continue
        with torch.no_grad():
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.zero_()


def check_input(x: torch.Tensor, in_channels: int, model_name: str) -> None:
    """Raise a clear ``ValueError`` unless ``x`` is ``[N, in_channels, H, W]`` with H, W
    multiples of 16."""
    if x.dim() != 4:
        raise ValueError(f"{model_name} expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if c != in_channels:
        raise ValueError(f"{model_name} was built for {in_channels} input channels, got {c} (shape {tuple(x.shape)})")
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(
            f"{model_name} needs H and W divisible by {SIZE_MULTIPLE} (four 2x down-samplings), "
            f"got {h}x{w}"
        )
