"""Quantizers with straight-through estimators and the quantized conv layers built from them.

One place defines each quantizer; the layers take them as arguments
(``QuantConv2d(..., weight_quantizer=TernaryWeight(), act_quantizer=SignActivation())``), so a
layer's precision is a constructor argument, not a subclass.

Quantizers (``make_weight_quantizer(kind)`` builds one from a layer kind):

============ ============================================================ ==================
kind         forward                                                      backward (STE)
============ ============================================================ ==================
``fp``       identity                                                     identity
``binary``   ``sign(w)`` in {-1,+1}, sign(0)=+1                           identity where |w|<=1
``masked``   ternary {-1,0,+1}: 0 where |w| <= delta_c,                   identity
             delta_c = k * mean|w| per output channel (k=0.7, TWN);
             with ``dead_zone`` d: 0 where |w| <= d (fixed)                identity where |w|<=1
``int8``     symmetric per-channel fake quant, S = max|w|/127             identity
``int4``     symmetric per-channel fake quant, S = max|w|/7               identity
============ ============================================================ ==================

Activation: ``SignActivation`` (sign, sign(0)=+1, gradient passed where |x| <= 1).

No scaling factor is applied to binary/ternary weights: every binary layer is followed by
BatchNorm, which absorbs any positive per-channel scale (BN(a*x) == BN(x) in training), and the
packed engine folds BatchNorm into an integer threshold.

``BNSign`` (BatchNorm + sign) is the output stage of every binary layer. In training it is
BatchNorm (batch statistics) followed by the sign STE. In eval it evaluates
``sign(BN(x)) >= 0`` *exactly* as a threshold on the accumulator: with
``theta = mean - beta * sqrt(var + eps) / gamma`` (float64) the output is +1 where
``x >= theta`` (gamma > 0), ``x <= theta`` (gamma < 0), or ``beta >= 0`` (gamma == 0). This is
the same function as float BatchNorm followed by sign, except that it is free of float rounding
at the tie ``BN(x) == 0`` -- which is what lets the bit-packed engine
(:mod:`unetq.bitpack`) reproduce it bit for bit.

Padding semantics: a binary activation cannot be 0, so convolutions whose input is a binary
activation pad with **+1** (``pad_value=1.0``), both here and in the packed engine (padding bits
are 1). The dot products of such a layer then always have ``9 * C_in`` terms, and for masked
layers ``popc(mask)`` is a per-filter constant. Layers with a float input (the first conv)
pad with zeros as usual.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHT_KINDS = ("fp", "int8", "int4", "masked", "binary")


# --------------------------------------------------------------------------------------------
# straight-through estimators
# --------------------------------------------------------------------------------------------
class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1; gradient ``g * (|x| <= clip)`` (clip = inf: plain identity)."""

    @staticmethod
    def forward(ctx, x, clip):
        ctx.save_for_backward(x)
        ctx.clip = clip
        # copysign(1, x + 0.0): +1 for x >= 0 (also -0.0, which x + 0.0 turns into +0.0), -1
        # otherwise; one pass, several times faster than torch.where on the CPU
        return torch.copysign(torch.ones((), dtype=x.dtype, device=x.device), x + 0.0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if math.isinf(ctx.clip):
            return g, None
        return g * (x.abs() <= ctx.clip).to(g.dtype), None


def sign_ste(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """sign(x) in {-1, +1} (sign(0) = +1) with the clipped straight-through gradient."""
    return _SignSTE.apply(x, float(clip))


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity to ``x`` (straight-through)."""
    return x + (q - x).detach()


# --------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------
class SignActivation(nn.Module):
    """Binary activation: sign(x) in {-1,+1}, sign(0)=+1, gradient passed where |x| <= clip."""

    def __init__(self, clip: float = 1.0):
        super().__init__()
        self.clip = clip

    def forward(self, x):
        return sign_ste(x, self.clip)

    def extra_repr(self):
        return f"clip={self.clip}"


class WeightQuantizer(nn.Module):
    """Base class: ``forward(w) -> quantized w`` (fake quant, float tensor)."""

    kind = "fp"
    #: True when quantized weights are integers (-1/0/+1): the accumulator of a conv on +-1
    #: inputs is then an exact integer.
    integer = False

    def forward(self, w):
        return w


class BinaryWeight(WeightQuantizer):
    """sign(w) in {-1,+1} (sign(0)=+1), clipped STE (gradient where |w| <= clip)."""

    kind = "binary"
    integer = True

    def __init__(self, clip: float = 1.0):
        super().__init__()
        self.clip = clip

    def forward(self, w):
        return sign_ste(w, self.clip)


class TernaryWeight(WeightQuantizer):
    """Masked weights {-1, 0, +1}, by one of two rules.

    - ``dead_zone=None`` (ratio rule, TWN): 0 where ``|w| <= delta``, ``delta = k * mean|w|`` per
      output channel (dim 0 of a conv weight, dim 1 of a transposed-conv weight); identity STE.
      The threshold follows the weights, so the zero fraction stays near the value ``k`` implies
      (about 40 % for bell-shaped weights) whatever training does.
    - ``dead_zone=d`` (emergent): 0 where ``|w| <= d``, a fixed threshold on the latent weights
      (``d = 0.5``: the latent weight clipped to [-1, 1], rounded); clipped STE (gradient where
      ``|w| <= 1``, as for binary weights). Which weights are zero, and how many, is then decided
      by training alone."""

    kind = "masked"
    integer = True

    def __init__(self, k: float = 0.7, channel_dim: int = 0, dead_zone: float | None = None):
        super().__init__()
        if dead_zone is not None and not 0 < dead_zone < 1:
            raise ValueError(f"dead_zone must be in (0, 1), got {dead_zone!r}")
        self.k = k
        self.channel_dim = channel_dim
        self.dead_zone = None if dead_zone is None else float(dead_zone)

    def delta(self, w):
        if self.dead_zone is not None:
            return torch.full((1,) * w.dim(), self.dead_zone, dtype=w.dtype, device=w.device)
        dims = [d for d in range(w.dim()) if d != self.channel_dim]
        return self.k * w.detach().abs().mean(dim=dims, keepdim=True)

    def forward(self, w):
        q = torch.where(w.abs() > self.delta(w), torch.sign(w), torch.zeros_like(w))
        if self.dead_zone is not None:
            return ste(w.clamp(-1.0, 1.0), q)  # no gradient where |w| > 1
        return ste(w, q)

    def extra_repr(self):
        rule = f"dead_zone={self.dead_zone}" if self.dead_zone is not None else f"k={self.k}"
        return f"{rule}, channel_dim={self.channel_dim}"


class IntWeight(WeightQuantizer):
    """Symmetric per-output-channel fake quantization to ``bits`` bits (restricted range):
    ``S = max|w| / (2**(bits-1) - 1)``, ``q = clamp(round(w/S)) * S`` (seed 003); identity STE."""

    integer = False

    def __init__(self, bits: int = 8, channel_dim: int = 0):
        super().__init__()
        if bits < 2:
            raise ValueError(f"IntWeight needs bits >= 2, got {bits}")
        self.bits = bits
        self.channel_dim = channel_dim
        self.kind = f"int{bits}"

    def scale(self, w):
        qmax = 2 ** (self.bits - 1) - 1
        dims = [d for d in range(w.dim()) if d != self.channel_dim]
        return (w.detach().abs().amax(dim=dims, keepdim=True) / qmax).clamp_min(1e-12)

    def integer_weights(self, w) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, s)``: the integer weights (integer-valued, same dtype as ``w``) and the
        per-channel scale (shape broadcastable to ``w``); the fake-quantized weight is ``q * s``."""
        qmax = 2 ** (self.bits - 1) - 1
        s = self.scale(w)
        return torch.clamp(torch.round(w.detach() / s), -qmax, qmax), s

    def forward(self, w):
        qmax = 2 ** (self.bits - 1) - 1
        s = self.scale(w)
        return ste(w, torch.clamp(torch.round(w / s), -qmax, qmax) * s)

    def extra_repr(self):
        return f"bits={self.bits}, channel_dim={self.channel_dim}"


class UIntActivation(nn.Module):
    """Unsigned fake quantization of an activation to the integers ``0..qmax``
    (``qmax = 2**bits - 1``) with a learnable clip ``alpha`` (PACT): ``y = clamp(x, 0, alpha)``,
    ``q = round(y / s)``, ``s = alpha / qmax``; forward ``q * s`` with a straight-through round
    (the gradient reaches ``alpha`` where ``x > alpha``). The default 7 bits keep every product
    of an activation with an int8 weight pair-summable in int16 (127 * 127 * 2 < 2**15), so
    integer kernels without 32-bit products (AVX2 ``vpmaddubsw``) cannot saturate."""

    def __init__(self, bits: int = 7, alpha: float = 4.0):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"UIntActivation needs 2 <= bits <= 8, got {bits}")
        self.bits, self.qmax = bits, 2 ** bits - 1
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def scale(self) -> torch.Tensor:
        """The step ``s = |alpha| / qmax`` (float32, detached)."""
        return self.alpha.detach().abs().clamp_min(1e-6) / self.qmax

    def integer(self, x) -> torch.Tensor:
        """Eval quantization: the integers ``q`` (integer-valued tensor of ``x``'s dtype)."""
        return torch.clamp(torch.round(x.detach() / self.scale()), 0, self.qmax)

    def forward(self, x):
        if not self.training:
            return self.integer(x) * self.scale()
        a = self.alpha.abs().clamp_min(1e-6)
        y = torch.minimum(torch.relu(x), a)
        s = a / self.qmax
        return ste(y, torch.round(y / s) * s)

    def extra_repr(self):
        return f"bits={self.bits}"


def make_weight_quantizer(kind: str, channel_dim: int = 0, ternary_k: float = 0.7,
                          dead_zone: float | None = None) -> WeightQuantizer:
    """The weight quantizer of a layer kind (see the module table); ``ternary_k`` and
    ``dead_zone`` choose the masked kind's rule (:class:`TernaryWeight`)."""
    if kind == "fp":
        return WeightQuantizer()
    if kind == "binary":
        return BinaryWeight()
    if kind == "masked":
        return TernaryWeight(ternary_k, channel_dim, dead_zone)
    if kind in ("int8", "int4"):
        return IntWeight(int(kind[3:]), channel_dim)
    raise ValueError(f"unknown layer kind {kind!r}; choose one of {WEIGHT_KINDS}")


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
class _QuantizedLayer:
    """What a quantized conv and a quantized transposed conv share (larq's pattern: the
    quantizers are layer arguments): ``weight_quantizer`` on the weights, ``act_quantizer`` on
    the input (``None`` = full precision), and, in eval, rounding of the accumulator to the
    integer it represents when the inputs are +-1 and the weights integer (no bias)."""

    def _set_quantizers(self, weight_quantizer, act_quantizer, integer_inputs: bool) -> None:
        self.weight_quantizer = weight_quantizer if weight_quantizer is not None else WeightQuantizer()
        self.act_quantizer = act_quantizer
        self.integer_inputs = integer_inputs

    @property
    def kind(self) -> str:
        return self.weight_quantizer.kind

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quantizer(self.weight)

    def _quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_quantizer(x) if self.act_quantizer is not None else x

    def _exact(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training and self.integer_inputs and self.weight_quantizer.integer and self.bias is None:
            y = torch.round(y)
        return y


class QuantConv2d(_QuantizedLayer, nn.Conv2d):
    """``nn.Conv2d`` whose weights pass through ``weight_quantizer`` and whose input passes
    through ``act_quantizer`` (either may be ``None`` = full precision).

    ``pad_value`` is the value used for spatial padding (+1 for binary-activation inputs, see
    the module doc). ``integer_inputs=True`` declares that the input is always +-1 (a binary
    activation): with integer weights (binary/ternary) the eval accumulator is then rounded to
    the integer it represents, so backends that use Winograd/FFT convolutions cannot perturb it.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False,
                 weight_quantizer: WeightQuantizer | None = None, act_quantizer: nn.Module | None = None,
                 pad_value: float = 0.0, integer_inputs: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)
        self.pad = padding
        self.pad_value = float(pad_value)
        self._set_quantizers(weight_quantizer, act_quantizer, integer_inputs)

    def forward(self, x):
        x = self._quantized_input(x)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=self.pad_value)
        return self._exact(F.conv2d(x, self.quantized_weight(), self.bias, self.stride))

    def extra_repr(self):
        return super().extra_repr() + f", pad={self.pad}, pad_value={self.pad_value}"


class IntConv2d(QuantConv2d):
    """A conv on unsigned-integer activations (``UIntActivation``) with int8 weights
    (``IntWeight(8)``), zero padding. Training: fake quantization of both (float). Eval: the
    integer accumulator ``acc = conv(q_a, q_w)``, computed exactly (float64), times the
    per-channel scale ``s_a * s_w`` (float64), rounded once to float32 -- a function that an
    integer kernel (ONNX Runtime ``ConvInteger``, :mod:`unetq.bitpack`) reproduces bit for bit."""

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, act_bits: int = 7,
                 weight_bits: int = 8):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=False,
                         weight_quantizer=IntWeight(weight_bits), act_quantizer=UIntActivation(act_bits),
                         pad_value=0.0)

    def integer_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q_w, scale)``: integer weights ``[Cout, Cin, k, k]`` and the float64 per-channel
        output scale ``s_a * s_w`` ``[Cout]``."""
        qw, sw = self.weight_quantizer.integer_weights(self.weight)
        return qw, self.act_quantizer.scale().double() * sw.detach().double().flatten()

    def forward(self, x):
        if self.training:
            return super().forward(x)
        qa = self.act_quantizer.integer(x).double()
        if self.pad:
            qa = F.pad(qa, (self.pad,) * 4, value=0.0)
        qw, scale = self.integer_parts()
        acc = F.conv2d(qa, qw.double(), None, self.stride)
        return (acc * scale.view(1, -1, 1, 1)).to(x.dtype)


class QuantConvTranspose2d(_QuantizedLayer, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (kernel 2, stride 2 in the U-Nets) with a weight quantizer (per
    output channel = dim 1 of the weight) and an optional input quantizer."""

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=2, bias=False,
                 weight_quantizer: WeightQuantizer | None = None, act_quantizer: nn.Module | None = None,
                 integer_inputs: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self._set_quantizers(weight_quantizer, act_quantizer, integer_inputs)

    def forward(self, x):
        x = self._quantized_input(x)
        return self._exact(F.conv_transpose2d(x, self.quantized_weight(), self.bias, self.stride))


class BNSign(nn.BatchNorm2d):
    """BatchNorm2d followed by the binary activation; exact threshold form in eval (module
    doc). ``thresholds()`` gives the float64 threshold and direction per channel."""

    def __init__(self, num_features: int, clip: float = 1.0, **kw):
        super().__init__(num_features, **kw)
        self.clip = clip

    def thresholds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(theta, direction)`` per channel, float64 / int8: output +1 where
        ``x >= theta`` (direction +1), ``x <= theta`` (direction -1), or always/never
        (direction 0: +1 iff theta == -inf, i.e. beta >= 0)."""
        mean = self.running_mean.detach().double()
        var = self.running_var.detach().double()
        gamma = self.weight.detach().double() if self.affine else torch.ones_like(mean)
        beta = self.bias.detach().double() if self.affine else torch.zeros_like(mean)
        std = torch.sqrt(var + self.eps)
        direction = torch.sign(gamma).to(torch.int8)
        safe_gamma = torch.where(gamma == 0, torch.ones_like(gamma), gamma)
        theta = mean - beta * std / safe_gamma
        const = torch.where(beta >= 0, torch.full_like(theta, -math.inf), torch.full_like(theta, math.inf))
        theta = torch.where(gamma == 0, const, theta)
        return theta, direction

    def forward(self, x):
        if self.training or not self.track_running_stats:
            return sign_ste(super().forward(x), self.clip)
        theta, direction = self.thresholds()
        shape = (1, -1, 1, 1)
        xd = x.double()
        th = theta.view(shape)
        d = direction.view(shape)
        pos = torch.where(d > 0, xd >= th, torch.where(d < 0, xd <= th, torch.isinf(th) & (th < 0)))
        return torch.where(pos, 1.0, -1.0).to(x.dtype)
