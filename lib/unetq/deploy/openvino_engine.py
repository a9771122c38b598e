"""OpenVINO on the CPU: FP32, BF16 and INT8 (the study's own QDQ ONNX file, or NNCF post-training
quantization from the same calibration images).

OpenVINO picks its own inference precision: on a CPU with native BF16 (AMX, AVX512-BF16) it runs
float models in bf16 unless told otherwise. Every runner here therefore sets
``INFERENCE_PRECISION_HINT`` explicitly (``f32`` for ``fp32`` and for the float parts of INT8
models, ``bf16`` for ``bf16``) and records the precision OpenVINO would have chosen by itself in
``details["openvino_default_precision"]``, so a row never claims FP32 while running bf16.

- ``openvino/fp32``, ``openvino/bf16``: the float ONNX model;
- ``openvino/int8``: the study's INT8 QDQ ONNX model (``unetq.deploy.quantize``), as ONNX
  Runtime runs it, so the two engines are compared on the same file;
- ``openvino_nncf/int8``: ``nncf.quantize`` of the float model on the same calibration images
  (NNCF's default, performance preset), saved as OpenVINO IR.

The model is compiled for the input shape it is called with (cached per shape).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
from pathlib import Path

import numpy as np

from .onnx_export import onnx_file_bytes
from .runner import Runner

#: OpenVINO's inference-precision hint for each study precision.
PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


@functools.lru_cache(maxsize=None)
def openvino_reason(precision: str, nncf: bool = False) -> str | None:
    """None when OpenVINO (and NNCF) can run ``precision`` on this machine's CPU, else why not."""
    if importlib.util.find_spec("openvino") is None:
        return "openvino not installed (pip install openvino)"
    if nncf and importlib.util.find_spec("nncf") is None:
        return "nncf not installed (pip install nncf)"
    try:
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception as e:  # a broken install must not stop the study
        return f"openvino CPU plugin unusable ({type(e).__name__}: {str(e)[:80]})"
    if precision == "bf16" and "BF16" not in caps:
        return "this CPU has no BF16 support OpenVINO uses (no AVX512-BF16/AMX)"
    if precision == "int8" and "INT8" not in caps:
        return "OpenVINO reports no INT8 support on this CPU"
    return None


def nncf_quantize(onnx_path: str | Path, out_xml: str | Path, images: np.ndarray) -> Path:
    """NNCF post-training INT8 quantization of a float ONNX model on ``images`` (N, C, H, W),
    each used as one batch-1 sample; saved as OpenVINO IR ``out_xml`` (+ ``.bin``)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    data = nncf.Dataset([images[i:i + 1].astype(np.float32) for i in range(len(images))])
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars, not results
        q = nncf.quantize(model, data, subset_size=len(images))
    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out_xml), compress_to_fp16=False)
    return out_xml


def ir_bytes(model_path: str | Path) -> int:
    """Bytes on disk of an ONNX file, or of an OpenVINO IR (``.xml`` + ``.bin``)."""
    p = Path(model_path)
    if p.suffix == ".xml":
        return p.stat().st_size + p.with_suffix(".bin").stat().st_size
    return onnx_file_bytes(p)


def binary_conv3x3(weight_sign: np.ndarray, height: int, width: int, threads: int | None = None,
                   pad_value: float = -1.0):
    """OpenVINO's own binary convolution (``BinaryConvolution``, xnor-popcount) of a 3x3,
    stride-1 layer with the signs of ``weight_sign`` (C_out, C_in, 3, 3; > 0 is +1), compiled for
    a (1, C_in, height, width) float input of +-1 values, padded by ``pad_value`` (+1 or -1), so
    it equals ``conv2d(pad(x, 1, value=pad_value), sign(w))``: the study's packed layer's honest
    peer in the bit-packed benchmark. Returns a callable ``f(x) -> y``."""
    import openvino as ov
    import openvino.opset1 as op

    c_out, c_in = int(weight_sign.shape[0]), int(weight_sign.shape[1])
    x = op.parameter([1, c_in, int(height), int(width)], ov.Type.f32, name="x")
    bits = ov.Tensor(ov.Type.u1, ov.Shape([c_out, c_in, 3, 3]))
    bits.data[:] = np.packbits((np.asarray(weight_sign) > 0).astype(np.uint8).reshape(-1), bitorder="little")
    y = op.binary_convolution(x, ov.op.Constant(bits), [1, 1], [1, 1], [1, 1], [1, 1], "xnor-popcount", float(pad_value))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    req = ov.Core().compile_model(ov.Model([y], [x]), "CPU", config).create_infer_request()

    def run(a: np.ndarray) -> np.ndarray:
        req.infer({0: a})
        return req.get_output_tensor(0).data

    return run


class OpenVinoRunner(Runner):
    """OpenVINO CPU inference of an ONNX file or OpenVINO IR with an explicit inference precision."""

    def __init__(self, model_path, precision: str, threads: int | None = None, nncf: bool = False):
        super().__init__()
        import openvino as ov

        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise FileNotFoundError(f"{self.model_path}: no such model file")
        self.backend = "openvino_nncf" if nncf else "openvino"
        self.precision, self.device = precision, "cpu"
        self._core = ov.Core()
        self._model = self._core.read_model(str(self.model_path))
        self._config = {"INFERENCE_PRECISION_HINT": PRECISION_HINT[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: dict[tuple, object] = {}
        self.model_size_bytes = ir_bytes(self.model_path)
        default = self._core.get_property("CPU", "INFERENCE_PRECISION_HINT")
        self.details = {"model": self.model_path.name, "threads": threads or "openvino default",
                        "inference_precision": PRECISION_HINT[precision],
                        "openvino_default_precision": getattr(default, "to_string", lambda: str(default))()}

    def _request(self, shape: tuple):
        if shape not in self._compiled:
            m = self._model.clone()
            m.reshape({m.inputs[0].get_any_name(): list(shape)})
            self._compiled[shape] = self._core.compile_model(m, "CPU", self._config).create_infer_request()
        return self._compiled[shape]

    def _run(self, x: np.ndarray) -> np.ndarray:
        req = self._request(tuple(x.shape))
        req.infer({0: x})
        return np.asarray(req.get_output_tensor(0).data, dtype=np.float32).copy()
