"""MBU-Net (seed 001): a U-Net with BatchNorm whose 12 configurable layers are binary or masked.

Backbone (channels ``w, 2w, 4w, 8w, 16w`` with ``w = width``; 64 = the paper's)::

    input   conv3x3 3->w (full precision, zero padding) + BN + act, conv3x3 w->w (``input_c2``)
    Down-C1..C4   2x2 max-pool, double conv3x3 (c -> 2c -> 2c); Down-C4 is the bottleneck
    Up-CT1..CT4   transposed conv 2x2 stride 2 (2c -> c) + BN + act      (Appendix A.1)
    Up-C1..C4     concat [skip, up] (2c channels), double conv3x3 (2c -> c -> c)
    output  conv1x1 w->classes with bias (full precision): the logits

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
- ``activation="binary"`` or ``"relu"``; ``ternary_k=0.7``: masked threshold
  ``delta = k * mean|w|`` per output channel;
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
#: Paper channel counts at width 64.
MBU_CHANNELS = (64, 128, 256, 512, 1024)


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
class ConvBNAct(nn.Sequential):
    """3x3 conv (quantized per ``kind``) + BatchNorm + activation."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, float_input: bool = False,
                 ternary_k: float = 0.7):
        binary = activation == "binary"
        conv = QuantConv2d(
            cin, cout, 3, padding=1, bias=False,
            weight_quantizer=make_weight_quantizer(kind, 0, ternary_k),
            pad_value=1.0 if (binary and not float_input) else 0.0,
            integer_inputs=binary and not float_input,
        )
        act = [BNSign(cout)] if binary else [nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]
        super().__init__(conv, *act)
        self.kind = kind


class DoubleConvQ(nn.Sequential):
    """Two ``ConvBNAct`` of the same kind (cin -> cout -> cout)."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary_k: float = 0.7):
        super().__init__(ConvBNAct(cin, cout, kind, activation, ternary_k=ternary_k),
                         ConvBNAct(cout, cout, kind, activation, ternary_k=ternary_k))
        self.kind = kind


class DownQ(nn.Sequential):
    """2x2 max-pool then double conv."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary_k: float = 0.7):
        super().__init__(nn.MaxPool2d(2), DoubleConvQ(cin, cout, kind, activation, ternary_k))
        self.kind = kind


class UpCT(nn.Sequential):
    """Transposed conv 2x2 stride 2 + BatchNorm + activation (Appendix A.1)."""

    def __init__(self, cin: int, cout: int, kind: str, activation: str, ternary_k: float = 0.7):
        binary = activation == "binary"
        ct = QuantConvTranspose2d(cin, cout, 2, stride=2, bias=False,
                                  weight_quantizer=make_weight_quantizer(kind, 1, ternary_k),
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

    def __init__(self, cin: int, cout: int, kind2: str, activation: str, ternary_k: float = 0.7,
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
            super().__init__(first, ConvBNAct(levels * cout, cout, kind2, activation, ternary_k=ternary_k))
        elif stem == "int8" and activation == "binary":
            second = nn.Sequential(IntConv2d(cout, cout, 3, padding=1), BNSign(cout))
            second.kind = "int8"
            super().__init__(ConvBNAct(cin, cout, "fp", "relu", float_input=True), second)
        else:
            super().__init__(ConvBNAct(cin, cout, "fp", activation, float_input=True),
                             ConvBNAct(cout, cout, kind2, activation, ternary_k=ternary_k))


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
def resolve_layer_kinds(base: str = "binary", masked=None, layers: dict | None = None,
                        activation: str = "binary", stem: str = "binary") -> dict[str, str]:
    """``{layer name: kind}`` for the 12 configurable layers and ``input_c2`` (see module doc)."""
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
            masked = cost_aware_order()[: int(masked)]
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
                 ternary_k: float = 0.7, stem: str = "binary"):
        super().__init__()
        if classes < 1 or in_channels < 1:
            raise ValueError(f"in_channels and classes must be >= 1, got {in_channels}, {classes}")
        self.in_channels, self.classes, self.activation, self.stem = in_channels, classes, activation, stem
        self.kinds = resolve_layer_kinds(base, masked, layers, activation, stem)
        k = self.kinds
        c1, c2, c3, c4, c5 = (scale_channels(c, width) for c in MBU_CHANNELS)
        self.channels = (c1, c2, c3, c4, c5)
        a, t = activation, ternary_k
        self.input = InputBlock(in_channels, c1, k[STEM_LAYER], a, t, stem)
        self.down_c1 = DownQ(c1, c2, k["down_c1"], a, t)
        self.down_c2 = DownQ(c2, c3, k["down_c2"], a, t)
        self.down_c3 = DownQ(c3, c4, k["down_c3"], a, t)
        self.down_c4 = DownQ(c4, c5, k["down_c4"], a, t)
        self.up_ct1 = UpCT(c5, c4, k["up_ct1"], a, t)
        self.up_c1 = DoubleConvQ(2 * c4, c4, k["up_c1"], a, t)
        self.up_ct2 = UpCT(c4, c3, k["up_ct2"], a, t)
        self.up_c2 = DoubleConvQ(2 * c3, c3, k["up_c2"], a, t)
        self.up_ct3 = UpCT(c3, c2, k["up_ct3"], a, t)
        self.up_c3 = DoubleConvQ(2 * c2, c2, k["up_c3"], a, t)
        self.up_ct4 = UpCT(c2, c1, k["up_ct4"], a, t)
        self.up_c4 = DoubleConvQ(2 * c1, c1, k["up_c4"], a, t)
        self.output = nn.Conv2d(c1, classes, 1, bias=True)

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
    """MBU-Net; keywords ``base``, ``masked``, ``layers``, ``activation``, ``ternary_k``
    (module doc). ``create_model("mbu_unet", masked=4)`` masks the four transposed convs."""
    return MBUNet(in_channels, classes, width, **kw)


# --------------------------------------------------------------------------------------------
# cost-aware masking (Equation 2)
# --------------------------------------------------------------------------------------------
def layer_costs(width: int = 64, image_size: int = 512) -> pd.DataFrame:
    """Operations (multiplications + additions = 2 x MACs) and weight counts of the 12
    configurable layers at ``image_size`` (BatchNorm excluded; both scale with width**2, so the
    normalised scores do not depend on ``width``)."""
    c = [scale_channels(ch, width) for ch in MBU_CHANNELS]
    s = image_size
    rows = []
    for i in range(1, 5):  # Down-Ci: c[i-1] -> c[i] -> c[i] at s / 2**i
        hw = (s >> i) ** 2
        p = 9 * (c[i - 1] * c[i] + c[i] * c[i])
        rows.append((f"down_c{i}", p, hw * p))
    for i in range(1, 5):  # Up-CTi: c[5-i] -> c[4-i], input s / 2**(5-i)
        hw_in = (s >> (5 - i)) ** 2
        p = 4 * c[5 - i] * c[4 - i]
        rows.append((f"up_ct{i}", p, hw_in * p))
    for i in range(1, 5):  # Up-Ci: 2c -> c -> c at s / 2**(4-i), c = c[4-i]
        ch = c[4 - i]
        hw = (s >> (4 - i)) ** 2
        p = 9 * (2 * ch * ch + ch * ch)
        rows.append((f"up_c{i}", p, hw * p))
    df = pd.DataFrame(rows, columns=["layer", "params", "macs"])
    df["ops"] = 2 * df["macs"]
    df.insert(1, "label", df["layer"].map(LAYER_LABELS))
    return df


#: Seed 001 Table A.4 as printed (w_op = w_param = 0.5): the reference the study's computation of
#: the paper backbone's cost scores is compared with (a fact of the paper, not a measurement).
TABLE_A4_PRINTED = {"up_ct4": 0.011, "up_ct3": 0.016, "up_ct2": 0.037, "up_ct1": 0.120, "up_c3": 0.228,
                    "down_c1": 0.273, "up_c2": 0.286, "down_c2": 0.406, "up_c4": 0.512, "up_c1": 0.521,
                    "down_c4": 0.583, "down_c3": 0.625}


def paper_layer_costs(image_size: int = 512) -> pd.DataFrame:
    """Operations and parameters of the 12 configurable layers of seed 001's U-Net backbone
    (about 16 M parameters; ``../shared/STUDY.md``): a full-precision input double conv 3->64,
    down-C1..4 = max-pool + double conv 64->128, 128->256, 256->512, 512->512 (the bottleneck
    stays at 512); up-CTi a 2x2 transposed conv that keeps its channels (512, 256, 128, 64);
    up-Ci a double conv from the concatenation 2c to c/2 (the last one 128->64->64). A conv's
    MAC counts as 2 operations (multiply + add), a transposed conv's MAC once, as the paper's
    numbers imply."""
    s, down = int(image_size), (64, 128, 256, 512, 512)
    rows = []
    for i in range(1, 5):
        p = 9 * (down[i - 1] * down[i] + down[i] * down[i])
        rows.append((f"down_c{i}", p, 2 * (s >> i) ** 2 * p))
    for i, c in enumerate((512, 256, 128, 64), 1):
        p = 4 * c * c
        rows.append((f"up_ct{i}", p, (s >> (5 - i)) ** 2 * p))
    for i, c in enumerate((512, 256, 128, 64), 1):
        mid = c // 2 if i < 4 else 64
        p = 9 * (2 * c * mid + mid * mid)
        rows.append((f"up_c{i}", p, 2 * (s >> (4 - i)) ** 2 * p))
    df = pd.DataFrame(rows, columns=["layer", "params", "ops"])
    df.insert(1, "label", df["layer"].map(LAYER_LABELS))
    return df


def table_a4(w_op: float = 0.5, image_size: int = 512) -> pd.DataFrame:
    """Seed 001 Table A.4 recomputed: the paper backbone's cost scores (:func:`paper_layer_costs`)
    with operations and parameters **divided by their maximum** over the 12 layers (the
    normalisation that reproduces the table; min-max does not), ranked cheapest first, next to
    the printed score (``printed``) and the difference. Columns: rank, layer, label, ops,
    params, op_norm, param_norm, score, printed, diff, printed_rank."""
    df = paper_layer_costs(image_size)
    df["op_norm"] = df["ops"] / df["ops"].max()
    df["param_norm"] = df["params"] / df["params"].max()
    df["score"] = w_op * df["op_norm"] + (1 - w_op) * df["param_norm"]
    df = df.sort_values(["score", "layer"], kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df["printed"] = df["layer"].map(TABLE_A4_PRINTED)
    df["diff"] = (df["score"] - df["printed"]).round(4)
    order = sorted(TABLE_A4_PRINTED, key=TABLE_A4_PRINTED.get)
    df["printed_rank"] = df["layer"].map({k: i + 1 for i, k in enumerate(order)})
    return df


def _minmax(v: pd.Series) -> pd.Series:
    v = v.astype(float)
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else v * 0.0


def cost_ranking(model: nn.Module | None = None, image_size: int = 512, w_op: float = 0.5) -> pd.DataFrame:
    """Equation 2: ``score = w_op * n_op_hat + (1 - w_op) * n_param_hat`` with ops and params
    min-max normalised over the 12 layers; ranked from cheapest (rank 1 = mask first).

    Columns: rank, layer, label, ops, params, op_norm, param_norm, score (+ kind if ``model``)."""
    if not 0.0 <= w_op <= 1.0:
        raise ValueError(f"w_op must be in [0, 1], got {w_op}")
    width = model.channels[0] if model is not None else 64
    df = layer_costs(width, image_size)
    df["op_norm"] = _minmax(df["ops"])
    df["param_norm"] = _minmax(df["params"])
    df["score"] = w_op * df["op_norm"] + (1 - w_op) * df["param_norm"]
    df = df.sort_values(["score", "layer"], kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    if model is not None and hasattr(model, "kinds"):
        df["kind"] = df["layer"].map(model.kinds)
    return df[[c for c in ("rank", "layer", "label", "ops", "params", "op_norm", "param_norm", "score", "kind")
               if c in df.columns]]


def cost_aware_order(image_size: int = 512, w_op: float = 0.5) -> list[str]:
    """Layer names from cheapest to most expensive (the masking priority list)."""
    return list(cost_ranking(None, image_size, w_op)["layer"])


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
