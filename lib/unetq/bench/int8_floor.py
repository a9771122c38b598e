"""The INT8 floor of a model on this CPU: its multiply-accumulates at the speed of a large INT8 GEMM.

A convolution network cannot run faster in INT8 than its MACs at the rate the CPU's INT8 units
reach on the friendliest INT8 workload there is, a large square matrix product. :func:`gemm_peak`
measures that rate with ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32, the kernels the
study's INT8 path uses: VNNI / AMX where the CPU has them) on as many threads as the benchmark;
:func:`floor_seconds` turns a model's MACs (``unetq.models.param_table``) into the time they
take at that rate. ``python -m unetq.cli.deploy_benchmark`` prints the floor next to the INT8
paths and the goal "within 2x of the floor".
"""
from __future__ import annotations

import time

import numpy as np

from ..machine import available_cores, ort_session_options
from ..models import param_table


def _matmul_integer_session(m: int, k: int, n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(128, np.uint8), "az"),
         numpy_helper.from_array(np.array(0, np.int8), "wz")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(proto.SerializeToString(), ort_session_options(threads, spinning=False),
                                providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    return sess, a, w


def gemm_peak(size: int = 1024, threads: int | None = None, seconds: float = 2.0) -> dict:
    """INT8 multiply-accumulates per second of a ``size`` x ``size`` x ``size`` ``MatMulInteger``
    (the best of repeated calls over about ``seconds``): ``macs_per_s``, ``size``, ``threads``,
    ``calls``, ``best_s``. A corner of the product is checked against numpy's int64 product first
    (a GEMM that computes something else would give a meaningless rate)."""
    threads = int(threads or available_cores())
    sess, a, w = _matmul_integer_session(size, size, size, threads)
    y = sess.run(None, {"a": a})[0]
    want = (a[:8].astype(np.int64) - 128) @ w[:, :8].astype(np.int64)
    if not np.array_equal(y[:8, :8], want):
        raise RuntimeError("MatMulInteger disagrees with numpy: the INT8 GEMM rate would be meaningless")
    best, calls, t_end = float("inf"), 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end or calls < 3:
        t0 = time.perf_counter()
        sess.run(None, {"a": a})
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return dict(macs_per_s=size ** 3 / best, size=size, threads=threads, calls=calls, best_s=best)


def model_macs(model, image_size: int, batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass (``unetq.models.param_table``'s total)."""
    t = param_table(model, image_size, batch_size=batch_size)
    return int(t.loc[t["block"] == "Total", "macs"].iloc[0])


def floor_seconds(macs: int, peak: dict) -> float:
    """Seconds ``macs`` multiply-accumulates take at the measured INT8 GEMM rate."""
    return float(macs) / float(peak["macs_per_s"])
