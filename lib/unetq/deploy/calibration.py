"""Activation-range calibration for the INT8 models (ONNX Runtime's calibrators, plus a compiled
entropy search).

ONNX Runtime's entropy calibrator (KL divergence between the float histogram and its 8-bit
quantized version, the method of TensorRT's ``IInt8EntropyCalibrator2``) is exact but written as
Python loops: with TensorRT's 2048-bin histograms it takes tens of seconds per model. Its
histograms are kept here and only the threshold search is replaced by :func:`entropy_threshold_index`,
the same algorithm compiled with numba (including ORT's integer truncation of the expanded
distribution), tested against ORT's own implementation. MinMax and Percentile use ORT unchanged.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numba
import numpy as np


@numba.njit(cache=True)
def _smooth(p, eps):
    """ORT's ``smooth_distribution`` (float32); returns an empty array for an all-zero input."""
    n = p.size
    n_zeros = 0
    for k in range(n):
        if p[k] == 0:
            n_zeros += 1
    n_nonzeros = n - n_zeros
    out = np.empty(n, np.float32)
    if n_nonzeros == 0:
        return out[:0]
    eps1 = np.float32(eps * n_zeros / n_nonzeros)
    for k in range(n):
        if p[k] == 0:
            out[k] = np.float32(eps)
        else:
            out[k] = np.float32(p[k]) - eps1
    return out


@numba.njit(cache=True)
def _kl(p, q):
    sp = 0.0
    sq = 0.0
    for k in range(p.size):
        sp += p[k]
        sq += q[k]
    s = 0.0
    for k in range(p.size):
        pk = p[k] / sp
        qk = q[k] / sq
        if pk > 0:
            if qk > 0:
                s += pk * np.log(pk / qk)
            else:
                return np.inf
    return s


@numba.njit(cache=True)
def entropy_threshold_index(hist, num_quantized_bins):
    """Index ``i`` (bins each side of zero) minimising the KL divergence, exactly as
    ``onnxruntime.quantization.calibrate.HistogramCollector.get_entropy_threshold``; the
    threshold is ``(edges[zero - i], edges[min(zero + i + 1, n)])``."""
    num_bins = hist.size
    zero = num_bins // 2
    half_q = num_quantized_bins // 2
    best_i = half_q
    best_kl = np.inf
    total = 0
    for k in range(num_bins):
        total += hist[k]
    for i in range(half_q, zero + 1):
        start = zero - i
        end = min(zero + i + 1, num_bins)
        length = end - start
        p = np.empty(length, np.int64)
        inside = 0
        for k in range(length):
            p[k] = hist[start + k]
            inside += p[k]
        left = 0
        for k in range(start):
            left += hist[k]
        p[0] += left
        p[length - 1] += total - inside - left
        merged = length // num_quantized_bins
        qb = np.zeros(num_quantized_bins, np.int64)
        for idx in range(num_quantized_bins):
            for k in range(idx * merged, idx * merged + merged):
                qb[idx] += hist[start + k]
        for k in range(num_quantized_bins * merged, length):
            qb[num_quantized_bins - 1] += hist[start + k]
        q = np.zeros(length, np.int64)
        for idx in range(num_quantized_bins):
            s = idx * merged
            norm = 0
            for k in range(s, s + merged):
                if p[k] != 0:
                    norm += 1
            if norm != 0:
                v = np.int64(qb[idx] / norm)  # ORT assigns into an int64 array: truncation
                for k in range(s, s + merged):
                    q[k] = v
        ps = _smooth(p, 0.0001)
        qs = _smooth(q, 0.0001)
        if ps.size == 0 or qs.size == 0:
            kl = np.inf
        else:
            kl = _kl(ps, qs)
        if kl < best_kl:  # first minimum, like np.argmin
            best_kl = kl
            best_i = i
    return best_i


def entropy_thresholds(histogram_dict: dict, num_quantized_bins: int) -> dict:
    """``{tensor: (lowest, highest, hist, edges)}`` from ORT's collected histograms
    ``{tensor: (hist, edges, min, max, threshold)}``, as ORT's ``compute_entropy`` returns."""
    out = {}
    for name, (hist, edges, vmin, vmax, _thr) in histogram_dict.items():
        hist = np.ascontiguousarray(hist, dtype=np.int64)
        i = int(entropy_threshold_index(hist, int(num_quantized_bins)))
        zero = hist.size // 2
        lo, hi = edges[zero - i], edges[min(zero + i + 1, hist.size)]
        lo = vmin if lo < vmin else lo
        hi = vmax if hi > vmax else hi
        out[name] = (np.array(lo, dtype=edges.dtype), np.array(hi, dtype=edges.dtype), hist, edges)
    return out


def calibrate(model_path, reader, method, extra: dict, cache: str, tmpdir: Path) -> None:
    """Activation ranges of ``model_path`` on the reader's images, saved as an ONNX Runtime
    calibration cache (the calibrator and tensors ``quantize_static`` itself would use)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    keys = [("CalibTensorRangeSymmetric", "symmetric"), ("CalibPercentile", "percentile"),
            ("CalibNumBins", "num_bins"), ("CalibNumQuantizedBins", "num_quantized_bins")]
    calib_extra = {k: extra[name] for name, k in keys if name in extra}
    ops = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    with contextlib.redirect_stdout(io.StringIO()):  # ORT's histogram calibrators print progress
        calibrator = create_calibrator(Path(model_path), ops, augmented_model_path=str(tmpdir / "augmented.onnx"),
                                       calibrate_method=method, extra_options=calib_extra)
        calibrator.collect_data(reader)
        if method == CalibrationMethod.Entropy:
            ranges = TensorsData(CalibrationMethod.Entropy,
                                 entropy_thresholds(calibrator.collector.histogram_dict,
                                                    calib_extra.get("num_quantized_bins", 128)))
        else:
            ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)
