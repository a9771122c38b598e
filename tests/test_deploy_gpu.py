"""CUDA / TensorRT representations. They need a CUDA device (and onnxruntime-gpu, tensorrt);
on a machine without them every test here skips with the reason."""
import numpy as np
import pytest
import torch

from unetq.deploy import make_runner, runner_unavailable_reason
from unetq.models import create_model


def _skip_unless(backend, precision):
    why = runner_unavailable_reason(backend, precision)
    if why:
        pytest.skip(f"{backend}/{precision}: {why}")


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    m = create_model("unet", width=4).eval()
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    return m, x, ref


TOL = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 6e-2, "int8": 0.25}


@pytest.mark.parametrize("backend,precision", [("torch", "fp16"), ("torch", "bf16"), ("onnxruntime_cuda", "fp32"),
                                               ("onnxruntime_cuda", "fp16"), ("tensorrt", "fp32"),
                                               ("tensorrt", "fp16"), ("tensorrt", "int8")])
def test_cuda_runner_matches_torch(model_and_data, backend, precision, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _skip_unless(backend, precision)
    m, x, ref = model_and_data
    calib = np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)
    r = make_runner(backend, precision, model=m, image_size=32, calib_data=calib, workdir=tmp_path, max_batch=4) \
        if backend == "tensorrt" else make_runner(backend, precision, model=m, image_size=32, workdir=tmp_path)
    assert r.device == "cuda"
    y = r(x)  # 5 images: more than the TensorRT profile's max batch of 4, so it is split
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.abs(y - ref).max() / max(1.0, np.abs(ref).max()) <= TOL[precision]
    if backend == "tensorrt":
        assert r.details["engine_device_memory_bytes"] > 0 and r.model_size_bytes > 0
        assert r.details["strongly_typed"] in (True, False)


def test_tensorrt_engine_build_reports_memory(model_and_data, tmp_path):
    _skip_unless("tensorrt", "fp32")
    from unetq.deploy import export_onnx
    from unetq.deploy.tensorrt_engine import build_engine

    m, _, _ = model_and_data
    p = export_onnx(m, tmp_path / "m.onnx", 32)
    info = build_engine(p, "fp32", max_batch=2)
    assert info.serialized_bytes > 0 and info.device_memory_bytes > 0
    assert (tmp_path / "m.fp32.plan").exists()
