"""MBU-Net (seed 001): a U-Net with BatchNorm whose 12 configurable layers are binary or masked.

Two backbones (``backbone=``; ``w = width``, 64 = the papers' channel counts)::

    "classic" (seed 000's U-Net channel plan, channels w, 2w, 4w, 8w, 16w):
    input   conv3x3 3->w (full precision, zero padding) + BN + act, conv3x3 w->w (``input_c2``)
    Down-C1..C4   2x2 max-pool, double conv3x3 (c -> 2c -> 2c); Down-C4 is the bottleneck (16w)
    Up-CT1..CT4   transposed conv 2x2 stride 2 (2c -> c) + BN + act      (Appendix A.1)
    Up-C1..C4     concat [skip, up] (2c channels), double conv3x3 (2c -> c -> c)
    output  conv1x1 w->classes with bias (full precision): the logits

    "paper" (the default: seed 001's backbone, about 15 M parameters at width 64, the one
    that reproduces its Table A.4; ``../shared/STUDY.md``): the same input block; Down-C1..C4 double convs
    w->2w, 2w->4w, 4w->8w, 8w->8w (the bottleneck stays at 8w); Up-CTi a 2x2 transposed conv
    that keeps its channels (8w, 4w, 2w, w); Up-Ci a double conv from the concatenation 2c to
    c/2 (2c -> c/2 -> c/2), the last one 2w -> w -> w.

Every conv is followed by BatchNorm and the activation. With ``activation="binary"`` (the
default) the activation is the sign (``BNSign``: BatchNorm + sign, exact threshold in eval) and
every conv whose input is a binary activation pads with +1 (see ``binary_layers``), exactly as
the bit-packed engine (:mod:`unetq.bitpack`) does. ``activation="relu"`` gives the
full-precision baseline (BatchNorm + ReLU, zero padding).

Layer kinds (one per configurable layer; both convs of a double conv share it):
``"binary"`` (weights and activations in {-1,+1}), ``"masked"`` (weights {-1,0,+1}),
``"fp"``, ``"int8"``, ``"int4"`` (fake-quantized weights, Table 1's comparison).

Keywords of ``create_model("mbu_unet", width=..., ...)``:

- ``base="binary"``: kind of every configurable layer not named otherwise;
- ``masked=None``: an ``int`` k (cost-aware masking: the k cheapest layers of
  :func:`cost_ranking` at 512x512, w_op = 0.5, are masked) or a list of layer names;
- ``layers=None``: ``{name: kind}`` overrides (highest precedence); names are
  ``LAYER_NAMES`` plus ``"input_c2"`` (the second input conv: ``"masked"`` by default with
  binary activations, as in the paper's main text, ``"fp"`` with ReLU);
- ``activation="binary"`` or ``"relu"``;
- ``zeros="ratio"``: how a masked layer's latent weights become {-1, 0, +1}. ``"ratio"``: zero
  where ``|w| <= ternary_k * mean|w|`` per output channel (TWN's rule; it pins the zero
  fraction near 40 % by construction); ``"emergent"``: zero where ``|w| <= dead_zone``
  (``dead_zone=0.5``: rounding the latent weight clipped to [-1, 1]), a fixed dead zone on the
  latent weights, so which and how many weights are zero is decided by STE training alone
  (seed 001: the zeros are "automatically applied"); ``latent_init="uniform"`` (or ``"torch"``,
  :data:`LATENT_INITS`) is where those latent weights start;
- ``backbone="paper"`` (default) or ``"classic"`` (above);
- ``stem="binary"`` (the paper's main text: binary activations from the first conv on),
  ``"float"`` (both input convs full precision with a ReLU between them, Appendix A.2; the
  packed engine then runs both in float) or ``"int8"`` (as ``"float"`` with the second input
  conv on 7-bit activations and int8 weights: an exact integer conv in the packed engine) or
  ``"thermo"`` (the first conv's output binarised at 4 learned thresholds per channel, a
  thermometer code, before the binary/masked ``input_c2``).

Inputs must have H and W divisible by 16. Single layers (and the packed engine's single
layers) accept any size: 3x3 convs keep the size, 2x2 max-pool floors odd sizes (drops the
last row/column, as ``nn.MaxPool2d(2)``), transposed convs double it.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .binary_layers import (
    WEIGHT_KINDS,
    BNSign,
    IntConv2d,
    QuantConv2d,
    QuantConvTranspose2d,
    TernaryWeight,
    make_weight_quantizer,
)
from .layers import check_input, scale_channels
from .registry import register_model

#: The 12 configurable layers in the paper's grouping (Figure 4).
LAYER_NAMES = (
    "down_c1", "down_c2", "down_c3", "down_c4",
    "up_ct1", "up_ct2", "up_ct3", "up_ct4",
    "up_c1", "up_c2", "up_c3", "up_c4",
)
#: Extra (non-ranked) layer name: the second conv of the input block.
STEM_LAYER = "input_c2"
#: Paper labels.
LAYER_LABELS = {n: n.replace("down_c", "Down-C").replace("up_ct", "Up-CT").replace("up_c", "Up-C")
                for n in LAYER_NAMES}
LAYER_LABELS[STEM_LAYER] = "Input-C2"
ACTIVATIONS = ("binary", "relu")
STEMS = ("binary", "float", "int8", "thermo")
#: Thresholds per channel of the first conv's output under ``stem="thermo"``.
THERMO_LEVELS = 4
#: Channel counts at width 64 of the input block and Down-C1..C4 outputs, per backbone.
BACKBONES = {"classic": (64, 128, 256, 512, 1024), "paper": (64, 128, 256, 512, 512)}
#: The study's MBU-Net: seed 001's own backbone.
DEFAULT_BACKBONE = "paper"
MBU_CHANNELS = BACKBONES[DEFAULT_BACKBONE]
ZEROS = ("ratio", "emergent")
#: How the latent weights of masked layers start under ``zeros="emergent"``: ``"uniform"`` on
#: [-1, 1] (half inside a 0.5 dead zone), or ``"torch"``, PyTorch's own layer initialisation
#: (Kaiming-uniform, bound 1/sqrt(fan_in)), what a model built from standard layers gets: every
#: latent weight then starts inside the dead zone, so the masked layers start all zero and a
#: weight becomes +-1 only when training pushes it out.
LATENT_INITS = ("uniform", "torch")


class TernaryRule(NamedTuple):
    """How masked layers ternarise: ``k`` (ratio rule) or, when set, ``dead_zone`` (absolute)."""
    k: float = 0.7
    dead_zone: float | None = None


def backbone_channels(width: int = 64, backbone: str = DEFAULT_BACKBONE) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(down, up)``: the channels of the input block and Down-C1..C4 outputs (5), and of the
    Up-C1..C4 outputs (4), of ``backbone`` at ``width``. Up-CTi always maps the previous output
    to the skip's channels ``down[4 - i]`` (classic: halving; paper: keeping them)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    c = tuple(scale_channels(ch, width) for ch in BACKBONES[backbone])
    up = (c[3], c[2], c[1], c[0]) if backbone == "classic" else (c[2], c[1], c[0], c[0])
    return c, up


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
class ConvBNAct(nn.Sequential):
    """3x3 conv (quantized per ``kind``) + BatchNorm + activation."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, float_input: bool = False,
                 ternary: TernaryRule = TernaryRule()):
        binary = activation == "binary"
        conv = QuantConv2d(
            cin, cout, 3, padding=1, bias=False,
            weight_quantizer=make_weight_quantizer(kind, 0, *ternary),
            pad_value=1.0 if (binary and not float_input) else 0.0,
            integer_inputs=binary and not float_input,
        )
        act = [BNSign(cout)] if binary else [nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]
        super().__init__(conv, *act)
        self.kind = kind


class DoubleConvQ(nn.Sequential):
    """Two ``ConvBNAct`` of the same kind (cin -> cout -> cout)."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary: TernaryRule = TernaryRule()):
        super().__init__(ConvBNAct(cin, cout, kind, activation, ternary=ternary),
                         ConvBNAct(cout, cout, kind, activation, ternary=ternary))
        self.kind = kind


class DownQ(nn.Sequential):
    """2x2 max-pool then double conv."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary: TernaryRule = TernaryRule()):
        super().__init__(nn.MaxPool2d(2), DoubleConvQ(cin, cout, kind, activation, ternary))
        self.kind = kind


class UpCT(nn.Sequential):
    """Transposed conv 2x2 stride 2 + BatchNorm + activation (Appendix A.1)."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary: TernaryRule = TernaryRule()):
        binary = activation == "binary"
        ct = QuantConvTranspose2d(cin, cout, 2, stride=2, bias=False,
                                  weight_quantizer=make_weight_quantizer(kind, 1, *ternary),
                                  integer_inputs=binary)
        act = [BNSign(cout)] if binary else [nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]
        super().__init__(ct, *act)
        self.kind = kind


class RepeatChannels(nn.Module):
    """``[N, C, H, W] -> [N, C * k, H, W]``, each channel repeated ``k`` times in a row
    (``repeat_interleave``): the copies get their own BatchNorm + sign thresholds."""

    def __init__(self, k: int):
        super().__init__()
        self.k = int(k)

    def forward(self, x):
        return torch.repeat_interleave(x, self.k, dim=1)

    def extra_repr(self):
        return f"k={self.k}"


class InputBlock(nn.Sequential):
    """The input block. ``stem="binary"``: first conv (full precision, float image, zero padding)
    + BN + sign, then the second conv (``input_c2``, +1 padding) + BN + sign. ``stem="float"``:
    both input convs in full precision with float activations between them (conv + BN + ReLU,
    conv + BN + sign; the A.2 setting of seed 001). ``stem="int8"``: as ``"float"``, but the
    second conv sees 7-bit unsigned activations (learnable clip) and int8 weights (``IntConv2d``),
    so the packed engine runs it as an exact integer convolution. ``stem="thermo"``: the first
    conv's output is binarised at ``THERMO_LEVELS`` learned thresholds per channel (a thermometer
    code: BatchNorm + sign on ``THERMO_LEVELS`` copies of each channel), so ``input_c2`` sees
    ``THERMO_LEVELS * cout`` binary channels -- with width 16, 64 channels: the one 64-bit word
    per pixel that 16 channels already occupy in the packed engine."""

    def __init__(self, cin: int, cout: int, kind2: str, activation: str, ternary: TernaryRule = TernaryRule(),
                 stem: str = "binary"):
        if stem == "float" and activation == "binary":
            super().__init__(ConvBNAct(cin, cout, "fp", "relu", float_input=True),
                             ConvBNAct(cout, cout, "fp", activation, float_input=True))
        elif stem == "thermo" and activation == "binary":
            levels = THERMO_LEVELS
            bn = BNSign(levels * cout)
            with torch.no_grad():  # distinct initial thresholds for the copies of each channel
                bn.bias.copy_(torch.linspace(1.0, -1.0, levels).repeat(cout))
            first = nn.Sequential(
                QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quantizer=make_weight_quantizer("fp"),
                            pad_value=0.0),
                RepeatChannels(levels), bn)
            first.kind = "fp"
            super().__init__(first, ConvBNAct(levels * cout, cout, kind2, activation, ternary=ternary))
        elif stem == "int8" and activation == "binary":
            second = nn.Sequential(IntConv2d(cout, cout, 3, padding=1), BNSign(cout))
            second.kind = "int8"
            super().__init__(ConvBNAct(cin, cout, "fp", "relu", float_input=True), second)
        else:
            super().__init__(ConvBNAct(cin, cout, "fp", activation, float_input=True),
                             ConvBNAct(cout, cout, kind2, activation, ternary=ternary))


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
def resolve_layer_kinds(base: str = "binary", masked=None, layers: dict | None = None,
                        activation: str = "binary", stem: str = "binary",
                        backbone: str = DEFAULT_BACKBONE) -> dict[str, str]:
    """``{layer name: kind}`` for the 12 configurable layers and ``input_c2`` (see module doc);
    ``masked=k`` masks the k cheapest layers of ``backbone`` (:func:`cost_aware_order`)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if base not in WEIGHT_KINDS:
        raise ValueError(f"base kind must be one of {WEIGHT_KINDS}, got {base!r}")
    kinds = {n: base for n in LAYER_NAMES}
    kinds[STEM_LAYER] = "masked" if activation == "binary" and base != "fp" else "fp"
    if masked is not None:
        if isinstance(masked, numbers.Integral) and not isinstance(masked, bool):
            if not 0 <= masked <= len(LAYER_NAMES):
                raise ValueError(f"masked=k needs 0 <= k <= 12, got {masked}")
            masked = cost_aware_order(backbone=backbone)[: int(masked)]
        elif isinstance(masked, str):
            raise ValueError(f"masked must be an int k (cost-aware top-k) or a list of layer names, got {masked!r}")
        for n in masked:
            if n not in LAYER_NAMES:
                raise ValueError(f"unknown MBU-Net layer {n!r} in masked; layers: {LAYER_NAMES}")
            kinds[n] = "masked"
    for n, k in (layers or {}).items():
        if n not in kinds:
            raise ValueError(f"unknown MBU-Net layer {n!r}; layers: {LAYER_NAMES + (STEM_LAYER,)}")
        if k not in WEIGHT_KINDS:
            raise ValueError(f"layer {n!r}: kind must be one of {WEIGHT_KINDS}, got {k!r}")
        kinds[n] = k
    fixed = {"float": "fp", "int8": "int8"}.get(stem) if activation == "binary" or stem == "float" else None
    if fixed is not None and kinds[STEM_LAYER] != fixed:
        if layers and STEM_LAYER in layers:
            raise ValueError(f"stem={stem!r} fixes {STEM_LAYER!r} to {fixed!r}, got {kinds[STEM_LAYER]!r}")
        kinds[STEM_LAYER] = fixed
    return kinds


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class MBUNet(nn.Module):
    """Masked binary U-Net (module doc)."""

    def __init__(self, in_channels: int = 3, classes: int = 1, width: int = 64, base: str = "binary",
                 masked=None, layers: dict | None = None, activation: str = "binary",
                 ternary_k: float = 0.7, stem: str = "binary", backbone: str = DEFAULT_BACKBONE,
                 zeros: str = "ratio", dead_zone: float = 0.5, latent_init: str = "uniform"):
        super().__init__()
        if classes < 1 or in_channels < 1:
            raise ValueError(f"in_channels and classes must be >= 1, got {in_channels}, {classes}")
        if zeros not in ZEROS:
            raise ValueError(f"zeros must be one of {ZEROS}, got {zeros!r}")
        if zeros == "emergent" and not (isinstance(dead_zone, numbers.Real) and 0 < dead_zone < 1):
            raise ValueError(f"dead_zone must be in (0, 1) (latent weights are clipped to [-1, 1]), got {dead_zone!r}")
        if latent_init not in LATENT_INITS:
            raise ValueError(f"latent_init must be one of {LATENT_INITS}, got {latent_init!r}")
        if latent_init != "uniform" and zeros != "emergent":
            raise ValueError("latent_init applies to zeros='emergent' only (the ratio rule is scale-free)")
        self.in_channels, self.classes, self.activation, self.stem = in_channels, classes, activation, stem
        self.backbone, self.zeros = backbone, zeros
        self.kinds = resolve_layer_kinds(base, masked, layers, activation, stem, backbone)
        k = self.kinds
        (c1, c2, c3, c4, c5), up = backbone_channels(width, backbone)
        self.channels, self.up_channels = (c1, c2, c3, c4, c5), up
        a = activation
        t = TernaryRule(ternary_k, float(dead_zone) if zeros == "emergent" else None)
        self.input = InputBlock(in_channels, c1, k[STEM_LAYER], a, t, stem)
        self.down_c1 = DownQ(c1, c2, k["down_c1"], a, t)
        self.down_c2 = DownQ(c2, c3, k["down_c2"], a, t)
        self.down_c3 = DownQ(c3, c4, k["down_c3"], a, t)
        self.down_c4 = DownQ(c4, c5, k["down_c4"], a, t)
        # Up-CTi: previous output -> the skip's channels; Up-Ci: [skip, up] -> up[i - 1]
        self.up_ct1 = UpCT(c5, c4, k["up_ct1"], a, t)
        self.up_c1 = DoubleConvQ(2 * c4, up[0], k["up_c1"], a, t)
        self.up_ct2 = UpCT(up[0], c3, k["up_ct2"], a, t)
        self.up_c2 = DoubleConvQ(2 * c3, up[1], k["up_c2"], a, t)
        self.up_ct3 = UpCT(up[1], c2, k["up_ct3"], a, t)
        self.up_c3 = DoubleConvQ(2 * c2, up[2], k["up_c3"], a, t)
        self.up_ct4 = UpCT(up[2], c1, k["up_ct4"], a, t)
        self.up_c4 = DoubleConvQ(2 * c1, up[3], k["up_c4"], a, t)
        self.output = nn.Conv2d(up[3], classes, 1, bias=True)
        if zeros == "emergent" and latent_init == "uniform":  # U(-1, 1): a dead zone of 0.5 starts half zero
            for m in self.modules():
                if isinstance(getattr(m, "weight_quantizer", None), TernaryWeight):
                    nn.init.uniform_(m.weight, -1.0, 1.0)

    BLOCK_ORDER = ("input", "down_c1", "down_c2", "down_c3", "down_c4", "up_ct1", "up_c1", "up_ct2",
                   "up_c2", "up_ct3", "up_c3", "up_ct4", "up_c4", "output")

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """``(label, module)`` in network order: Input, Down-C1..C4, then Up-CTi, Up-Ci per
        level, Output (every parameter belongs to exactly one block)."""
        label = {**LAYER_LABELS, "input": "Input", "output": "Output"}
        return [(label[n], getattr(self, n)) for n in self.BLOCK_ORDER]

    def configurable_layers(self) -> list[tuple[str, nn.Module]]:
        """The 12 configurable layers, ``LAYER_NAMES`` order."""
        return [(n, getattr(self, n)) for n in LAYER_NAMES]

    def zero_fractions(self) -> dict[str, float]:
        """``{layer: zero fraction}`` of every masked layer's ternary weights (the training loop
        records it per epoch, so the sparsity of seed 001's Figure 3a can be watched emerging)."""
        z = zero_fraction(self)
        return dict(zip(z["layer"], z["zero_fraction"].astype(float)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, H, W]`` (H, W multiples of 16) -> logits ``[N, classes, H, W]``."""
        check_input(x, self.in_channels, type(self).__name__)
        s1 = self.input(x)
        s2 = self.down_c1(s1)
        s3 = self.down_c2(s2)
        s4 = self.down_c3(s3)
        x = self.down_c4(s4)
        x = self.up_c1(torch.cat([s4, self.up_ct1(x)], 1))
        x = self.up_c2(torch.cat([s3, self.up_ct2(x)], 1))
        x = self.up_c3(torch.cat([s2, self.up_ct3(x)], 1))
        x = self.up_c4(torch.cat([s1, self.up_ct4(x)], 1))
        return self.output(x)


@register_model("mbu_unet")
def build_mbu_unet(in_channels: int = 3, classes: int = 1, width: int = 64, **kw) -> MBUNet:
    """MBU-Net; keywords ``base``, ``masked``, ``layers``, ``activation``, ``ternary_k``,
    ``zeros``, ``dead_zone``, ``stem``, ``backbone``
    (module doc). ``create_model("mbu_unet", masked=4)`` masks the four transposed convs."""
    return MBUNet(in_channels, classes, width, **kw)


# --------------------------------------------------------------------------------------------
# cost-aware masking (Equation 2)
# --------------------------------------------------------------------------------------------
def layer_costs(width: int = 64, image_size: int = 512, backbone: str = DEFAULT_BACKBONE) -> pd.DataFrame:
    """Operations and weight counts of the 12 configurable layers of ``backbone`` at
    ``image_size`` (BatchNorm excluded), counted as seed 001 counts them for its Table A.4: a
    conv's MAC is 2 operations (multiply + add), a transposed conv's MAC 1 (each output pixel of
    a stride-2 2x2 transposed conv receives exactly one product per input channel: no
    additions across the kernel). Columns: layer, label, params, macs, ops. Both counts scale
    with ``width**2``, so the normalised scores do not depend on ``width``."""
    (c0, c1, c2, c3, c4), up = backbone_channels(width, backbone)
    c, s = (c0, c1, c2, c3, c4), int(image_size)
    rows = []
    for i in range(1, 5):  # Down-Ci: c[i-1] -> c[i] -> c[i] at s / 2**i
        p = 9 * (c[i - 1] * c[i] + c[i] * c[i])
        rows.append((f"down_c{i}", p, (s >> i) ** 2 * p, 2))
    prev = c[4]
    for i in range(1, 5):  # Up-CTi: previous output -> c[4-i], input at s / 2**(5-i)
        p = 4 * prev * c[4 - i]
        rows.append((f"up_ct{i}", p, (s >> (5 - i)) ** 2 * p, 1))
        prev = up[i - 1]
    for i in range(1, 5):  # Up-Ci: 2c -> out -> out at s / 2**(4-i), c = c[4-i]
        ch, out = c[4 - i], up[i - 1]
        p = 9 * (2 * ch * out + out * out)
        rows.append((f"up_c{i}", p, (s >> (4 - i)) ** 2 * p, 2))
    df = pd.DataFrame(rows, columns=["layer", "params", "macs", "ops_per_mac"])
    df["ops"] = df["ops_per_mac"] * df["macs"]
    df.insert(1, "label", df["layer"].map(LAYER_LABELS))
    return df.drop(columns="ops_per_mac")


#: Seed 001 Table A.4 as printed (w_op = w_param = 0.5): the reference the study's computation of
#: the paper backbone's cost scores is compared with (a fact of the paper, not a measurement).
TABLE_A4_PRINTED = {"up_ct4": 0.011, "up_ct3": 0.016, "up_ct2": 0.037, "up_ct1": 0.120, "up_c3": 0.228,
                    "down_c1": 0.273, "up_c2": 0.286, "down_c2": 0.406, "up_c4": 0.512, "up_c1": 0.521,
                    "down_c4": 0.583, "down_c3": 0.625}


def table_a4(w_op: float = 0.5, image_size: int = 512) -> pd.DataFrame:
    """Seed 001 Table A.4 recomputed: the paper backbone's cost scores (:func:`cost_ranking` of ``backbone="paper"``)
    with operations and parameters **divided by their maximum** over the 12 layers (the
    normalisation that reproduces the table; min-max does not), ranked cheapest first, next to
    the printed score (``printed``) and the difference. Columns: rank, layer, label, ops,
    params, op_norm, param_norm, score, printed, diff, printed_rank."""
    df = cost_ranking(None, image_size, w_op, backbone="paper")
    df["printed"] = df["layer"].map(TABLE_A4_PRINTED)
    df["diff"] = (df["score"] - df["printed"]).round(4)
    order = sorted(TABLE_A4_PRINTED, key=TABLE_A4_PRINTED.get)
    df["printed_rank"] = df["layer"].map({k: i + 1 for i, k in enumerate(order)})
    return df


def cost_ranking(model: nn.Module | None = None, image_size: int = 512, w_op: float = 0.5,
                 backbone: str | None = None) -> pd.DataFrame:
    """Equation 2: ``score = w_op * n_op_hat + (1 - w_op) * n_param_hat`` with ops and params
    (:func:`layer_costs`) each divided by its maximum over the 12 layers (the normalisation that
    reproduces seed 001's Table A.4; min-max does not), ranked from cheapest (rank 1 = mask
    first). The backbone is ``model``'s, else ``backbone`` (default :data:`DEFAULT_BACKBONE`).

    Columns: rank, layer, label, ops, params, op_norm, param_norm, score (+ kind if ``model``)."""
    if not 0.0 <= w_op <= 1.0:
        raise ValueError(f"w_op must be in [0, 1], got {w_op}")
    width = model.channels[0] if model is not None else 64
    backbone = getattr(model, "backbone", None) or backbone or DEFAULT_BACKBONE
    df = layer_costs(width, image_size, backbone)
    df["op_norm"] = df["ops"] / df["ops"].max()
    df["param_norm"] = df["params"] / df["params"].max()
    df["score"] = w_op * df["op_norm"] + (1 - w_op) * df["param_norm"]
    df = df.sort_values(["score", "layer"], kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    if model is not None and hasattr(model, "kinds"):
        df["kind"] = df["layer"].map(model.kinds)
    return df[[c for c in ("rank", "layer", "label", "ops", "params", "op_norm", "param_norm", "score", "kind")
               if c in df.columns]]


def cost_aware_order(image_size: int = 512, w_op: float = 0.5, backbone: str = DEFAULT_BACKBONE) -> list[str]:
    """Layer names of ``backbone`` from cheapest to most expensive (the masking priority list)."""
    return list(cost_ranking(None, image_size, w_op, backbone)["layer"])


# --------------------------------------------------------------------------------------------
# sparsity of masked layers (Figure 3a)
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def zero_fraction(model: MBUNet) -> pd.DataFrame:
    """Per masked layer: zero, +1 and -1 weight fractions of the ternary weights (Figure 3a).

    Columns: layer, label, kind, weights, zeros, zero_fraction, plus_fraction, minus_fraction."""
    rows = []
    for name in (STEM_LAYER,) + LAYER_NAMES:
        mod = model.input[1] if name == STEM_LAYER else getattr(model, name)
        qs = [m for m in mod.modules() if isinstance(m, (QuantConv2d, QuantConvTranspose2d))
              and isinstance(m.weight_quantizer, TernaryWeight)]
        if not qs:
            continue
        q = torch.cat([m.quantized_weight().flatten() for m in qs])
        n = q.numel()
        rows.append(dict(layer=name, label=LAYER_LABELS[name], kind="masked", weights=n,
                         zeros=int((q == 0).sum()), zero_fraction=float((q == 0).sum()) / n,
                         plus_fraction=float((q > 0).sum()) / n, minus_fraction=float((q < 0).sum()) / n))
    return pd.DataFrame(rows, columns=["layer", "label", "kind", "weights", "zeros", "zero_fraction",
                                       "plus_fraction", "minus_fraction"])
