"""The INT8 quantization arithmetic of seed 003 (Section 3.2), as plain numpy functions.

- asymmetric: ``S = (f_max - f_min) / (2^n - 1)``, ``Z = -round(f_min / S) - 2^(n-1)``,
  ``x_q = clip(round(x / S) + Z, -2^(n-1), 2^(n-1) - 1)``;
- symmetric, restricted range: ``S = max(|f_min|, |f_max|) / (2^(n-1) - 1)``, ``Z = 0``,
  ``x_q = clip(round(x / S), -(2^(n-1) - 1), 2^(n-1) - 1)`` (TensorRT's INT8 scheme);
- symmetric, full range: ``S = 2 max(|f_min|, |f_max|) / (2^n - 1)``, range ``[-2^(n-1), 2^(n-1) - 1]``.

``dequantize(x_q, S, Z) = (x_q - Z) * S``. Rounding is numpy's round-half-to-even, as in ONNX
QuantizeLinear.
"""
from __future__ import annotations

import numpy as np


def int_range(n_bits: int = 8, symmetric: bool = False, restricted: bool = True) -> tuple[int, int]:
    """The signed integer range ``(q_min, q_max)``: ``[-2^(n-1)+1, 2^(n-1)-1]`` for the restricted
    symmetric scheme, ``[-2^(n-1), 2^(n-1)-1]`` otherwise."""
    if n_bits < 2:
        raise ValueError(f"n_bits must be >= 2, got {n_bits}")
    q_max = 2 ** (n_bits - 1) - 1
    q_min = -q_max if (symmetric and restricted) else -(2 ** (n_bits - 1))
    return q_min, q_max


def scale_zero_point(fmin: float, fmax: float, n_bits: int = 8, symmetric: bool = False,
                     restricted: bool = True) -> tuple[float, int]:
    """Scale ``S`` and zero-point ``Z`` mapping the real range ``[fmin, fmax]`` onto signed
    ``n_bits`` integers (seed 003, Equations 2, 3, 8 and 9)."""
    fmin, fmax = float(fmin), float(fmax)
    if not np.isfinite([fmin, fmax]).all() or fmax < fmin:
        raise ValueError(f"need finite fmin <= fmax, got [{fmin}, {fmax}]")
    if symmetric:
        amax = max(abs(fmin), abs(fmax))
        if restricted:
            s = amax / (2 ** (n_bits - 1) - 1)
        else:
            s = 2 * amax / (2 ** n_bits - 1)
        return (s if s > 0 else 1.0), 0
    s = (fmax - fmin) / (2 ** n_bits - 1)
    if s == 0:
        s = 1.0
    z = -int(np.round(fmin / s)) - 2 ** (n_bits - 1)
    return s, z


def quantize(x, scale: float, zero_point: int = 0, n_bits: int = 8, symmetric: bool = False,
             restricted: bool = True) -> np.ndarray:
    """``clip(round(x / S) + Z, q_min, q_max)`` as int32 (int8 range for ``n_bits=8``)."""
    q_min, q_max = int_range(n_bits, symmetric, restricted)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point
    return np.clip(q, q_min, q_max).astype(np.int32)


def dequantize(q, scale: float, zero_point: int = 0) -> np.ndarray:
    """``(x_q - Z) * S`` as float32."""
    return ((np.asarray(q, dtype=np.float64) - zero_point) * scale).astype(np.float32)


def fake_quantize(x, fmin: float | None = None, fmax: float | None = None, n_bits: int = 8,
                  symmetric: bool = False, restricted: bool = True) -> np.ndarray:
    """Quantize then dequantize ``x`` with the range ``[fmin, fmax]`` (default: x's own min/max)."""
    x = np.asarray(x, dtype=np.float32)
    fmin = float(x.min()) if fmin is None else fmin
    fmax = float(x.max()) if fmax is None else fmax
    s, z = scale_zero_point(fmin, fmax, n_bits, symmetric, restricted)
    return dequantize(quantize(x, s, z, n_bits, symmetric, restricted), s, z)


def per_channel_scales(w, axis: int = 0, n_bits: int = 8) -> np.ndarray:
    """Symmetric restricted-range scales, one per slice of ``w`` along ``axis`` (per-channel
    weight quantization, as ONNX Runtime and TensorRT do for convolution weights)."""
    w = np.moveaxis(np.asarray(w, dtype=np.float32), axis, 0).reshape(np.shape(w)[axis], -1)
    amax = np.abs(w).max(axis=1)
    s = amax / (2 ** (n_bits - 1) - 1)
    return np.where(s > 0, s, 1.0).astype(np.float32)


def weight_quant_error(w, per_channel: bool, axis: int = 0, n_bits: int = 8) -> np.ndarray:
    """Relative RMS error per output channel of symmetric INT8 weight quantization, per-tensor
    or per-channel: the number that explains why folded depthwise weights fail per-tensor."""
    w = np.moveaxis(np.asarray(w, dtype=np.float32), axis, 0)
    flat = w.reshape(w.shape[0], -1)
    if per_channel:
        s = per_channel_scales(flat, axis=0, n_bits=n_bits)[:, None]
    else:
        s = np.full((flat.shape[0], 1), max(float(np.abs(flat).max()), 1e-30) / (2 ** (n_bits - 1) - 1))
    q = np.clip(np.round(flat / s), -(2 ** (n_bits - 1) - 1), 2 ** (n_bits - 1) - 1) * s
    rms = np.sqrt((flat ** 2).mean(axis=1))
    err = np.sqrt(((q - flat) ** 2).mean(axis=1))
    return np.where(rms > 0, err / np.where(rms > 0, rms, 1), 0.0)
