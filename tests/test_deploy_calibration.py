"""The compiled entropy (KL) threshold search equals ONNX Runtime's Python implementation."""
import contextlib
import io

import numpy as np
import pytest

from unetq.deploy.calibration import entropy_threshold_index, entropy_thresholds


def _ort_threshold(hist, edges, vmin, vmax, nq):
    from onnxruntime.quantization.calibrate import HistogramCollector

    c = HistogramCollector("entropy", symmetric=False, num_bins=hist.size, num_quantized_bins=nq, percentile=99.9,
                           scenario="same")
    with contextlib.redirect_stdout(io.StringIO()):
        return c.get_entropy_threshold((hist, edges, vmin, vmax, edges[-1]), nq)


@pytest.mark.parametrize("seed,kind", [(0, "relu"), (1, "gauss"), (2, "heavy"), (3, "sparse")])
def test_entropy_threshold_matches_onnxruntime(seed, kind):
    rng = np.random.default_rng(seed)
    x = {"relu": np.maximum(rng.standard_normal(20000), 0) * 3,
         "gauss": rng.standard_normal(20000),
         "heavy": rng.standard_t(2, 20000),
         "sparse": np.concatenate([np.zeros(5000), rng.exponential(1.0, 300)])}[kind].astype(np.float32)
    t = np.float32(np.abs(x).max())
    hist, edges = np.histogram(x, 512, range=(-t, t))
    nq = 32
    lo_ref, hi_ref = _ort_threshold(hist, edges.astype(np.float32), x.min(), x.max(), nq)
    out = entropy_thresholds({"x": (hist, edges.astype(np.float32), x.min(), x.max(), t)}, nq)["x"]
    assert float(out[0]) == pytest.approx(float(lo_ref)) and float(out[1]) == pytest.approx(float(hi_ref))
    i = entropy_threshold_index(hist.astype(np.int64), nq)
    assert nq // 2 <= i <= hist.size // 2
    if kind in ("heavy", "sparse"):
        assert float(out[1]) < float(x.max())  # outliers are clipped
