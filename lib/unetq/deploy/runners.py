"""One interface for every (backend, precision): a Runner is called on a float32 NCHW numpy
array and returns float32 logits NCHW (numpy).

``make_runner(backend, precision, model=None, onnx_path=None, **kw)``:

- ``torch`` / ``torch_compile`` (fp32, fp16, bf16; CUDA if present, else CPU) need ``model``;
- ``onnxruntime`` (CPU: fp32, fp16, int8) and ``onnxruntime_cuda`` (fp32, fp16) take
  ``onnx_path`` or a ``model`` plus ``image_size`` (exported to a temporary folder); int8 takes
  an already quantized model, or quantizes the float one with ``calib_data`` (+ ``quant_config``,
  ``calib_images``); fp16 converts the float model (``fp16.py``);
- ``tensorrt`` (fp32, fp16, int8) builds an engine (``tensorrt_engine.py``);
- ``openvino`` (fp32, bf16, int8 from the study's QDQ file) and ``openvino_nncf`` (int8 by NNCF
  from the same calibration images) run on the CPU (``openvino_engine.py``);
- ``bitpack`` / ``binary`` wraps ``unetq.bitpack.pack_mbu(model)`` (the MBU-Net engine).

Every runner has ``.backend``, ``.precision``, ``.device``, ``.model_size_bytes`` (bytes of the
representation on disk: state dict, ONNX file, engine plan or packed weights; None when there is
no such file; PyTorch: ``unetq.models.weight_bytes``) and ``.details`` (a dict for tables). ONNX
Runtime sessions come from ``unetq.machine.ort_session_options``: intra-op threads = the
machine's cores, graph optimisation level ALL and, on the CPU, no spinning of idle intra-op
threads (``unetq.machine.CPU_SPINNING``).
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..bitpack import pack_mbu
from ..machine import CPU_SPINNING, cuda_available, ort_session_options
from ..models import weight_bytes
from .availability import runner_unavailable_reason
from .fp16 import convert_float16_file
from .onnx_export import export_onnx, onnx_file_bytes
from .openvino_engine import OpenVinoRunner, nncf_quantize
from .quantize import QuantConfig, calibration_images, quantize_int8
from .runner import Runner, RunnerUnavailable
from .tensorrt_engine import TensorRTRunner


# --------------------------------------------------------------------------------------- torch
_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchRunner(Runner):
    """PyTorch eager (or ``torch.compile``d) inference with the whole model cast to the dtype
    (bf16 / fp16 *weights*, not autocast). ``channels_last`` (default: for bf16 on the CPU, where
    oneDNN's bf16 convolutions want NHWC) stores weights and inputs in channels-last memory
    format; the maths is the same."""

    def __init__(self, model, precision: str = "fp32", device: str | None = None, compile: bool = False,
                 compile_mode: str | None = None, channels_last: bool | None = None):
        super().__init__()
        self.backend = "torch_compile" if compile else "torch"
        self.precision = precision
        self.device = device or ("cuda" if cuda_available() else "cpu")
        self.dtype = getattr(torch, _TORCH_DTYPES[precision])
        m = copy.deepcopy(model).eval().to(self.device, self.dtype)
        if channels_last is None:
            channels_last = precision == "bf16" and self.device == "cpu"
        self.channels_last = bool(channels_last)
        if self.channels_last:
            m = m.to(memory_format=torch.channels_last)
        for p in m.parameters():
            p.requires_grad_(False)
        self.model_size_bytes = weight_bytes(m)
        self.compiled = bool(compile)
        self.compiled_batch: int | None = None  # torch.compile: the one batch size compiled for
        self.module = torch.compile(m, mode=compile_mode, dynamic=False) if compile else m
        self.details = {"compile_mode": compile_mode or "default"} if compile else {}
        self.details["memory_format"] = "channels_last" if self.channels_last else "contiguous"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device, self.dtype)
            if self.channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            return self.module(t).float().contiguous().cpu().numpy()

    def _run(self, x: np.ndarray) -> np.ndarray:
        if not self.compiled:
            return self._forward(x)
        # One compilation: the first batch size is kept; larger batches are split, smaller ones
        # padded with zeros (a recompile per batch size costs tens of seconds on a CPU).
        if self.compiled_batch is None:
            self.compiled_batch = x.shape[0]
        b = self.compiled_batch
        outs = []
        for start in range(0, x.shape[0], b):
            chunk = x[start:start + b]
            n = chunk.shape[0]
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self._forward(chunk)[:n])
        return np.concatenate(outs)


# --------------------------------------------------------------------------------- onnxruntime
class OrtRunner(Runner):
    """ONNX Runtime inference of an ONNX file (CPU or CUDA execution provider)."""

    def __init__(self, onnx_path, precision: str, cuda: bool = False, threads: int | None = None,
                 spinning: bool | None = None, execution_mode: str = "sequential"):
        super().__init__()
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.exists():
            raise FileNotFoundError(f"{self.onnx_path}: no such ONNX file")
        self.backend = "onnxruntime_cuda" if cuda else "onnxruntime"
        self.precision = precision
        self.device = "cuda" if cuda else "cpu"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        if spinning is None and not cuda:
            spinning = CPU_SPINNING
        so = ort_session_options(threads, spinning, execution_mode)
        self.session = ort.InferenceSession(str(self.onnx_path), so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.model_size_bytes = onnx_file_bytes(self.onnx_path)
        self.details = {"onnx": self.onnx_path.name, "threads": so.intra_op_num_threads,
                        "spinning": "ort default" if spinning is None else ("on" if spinning else "off")}

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


# ------------------------------------------------------------------------------------- bitpack
class BitpackRunner(Runner):
    """The bit-packed MBU-Net engine (``unetq.bitpack.pack_mbu``)."""

    def __init__(self, model):
        super().__init__()
        self.backend, self.precision, self.device = "bitpack", "binary", "cpu"
        self.packed = pack_mbu(model)
        self.model_size_bytes = int(self.packed.nbytes)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.packed(x), dtype=np.float32)


# ----------------------------------------------------------------------------------- factory
def make_runner(backend: str, precision: str, model=None, onnx_path=None, *, image_size: int | None = None,
                workdir=None, calib_data=None, quant_config=None, calib_images: int | None = None,
                calib_seed: int = 0, cache_dir=None, threads: int | None = None, spinning: bool | None = None,
                device: str | None = None, compile_mode: str | None = None, **kw) -> Runner:
    """Build the runner for ``(backend, precision)``; raises :class:`RunnerUnavailable` (with the
    reason) when it cannot run here, ``ValueError`` when the arguments do not fit."""
    why = runner_unavailable_reason(backend, precision)  # also validates the names
    if why is not None:
        raise RunnerUnavailable(f"{backend}/{precision} unavailable: {why}")

    if backend in ("torch", "torch_compile"):
        if model is None:
            raise ValueError(f"{backend} runner needs model=")
        return TorchRunner(model, precision, device=device, compile=backend == "torch_compile",
                           compile_mode=compile_mode)
    if backend == "bitpack":
        if model is None:
            raise ValueError("bitpack runner needs model= (an MBU-Net)")
        return BitpackRunner(model)

    if backend in ("openvino", "openvino_nncf") and onnx_path is not None and Path(onnx_path).suffix == ".xml":
        return OpenVinoRunner(onnx_path, precision, threads=threads, nncf=backend == "openvino_nncf")

    # ONNX-based backends: find or make the float model, then the precision's file.
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"unetq-{backend}-")
        workdir = Path(tmp.name)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    nncf = backend == "openvino_nncf"
    path = _onnx_for("fp32" if nncf or precision == "bf16" else precision, backend, model, onnx_path, image_size,
                     workdir, calib_data, quant_config, calib_images, calib_seed, cache_dir)
    if nncf:
        if calib_data is None:
            raise ValueError("openvino_nncf/int8 needs calib_data= (calibration images)")
        images = calib_data if isinstance(calib_data, np.ndarray) and calib_images is None else \
            calibration_images(calib_data, calib_images, calib_seed)
        path = nncf_quantize(path, workdir / "model_int8_nncf.xml", images)
    if backend in ("openvino", "openvino_nncf"):
        runner = OpenVinoRunner(path, precision, threads=threads, nncf=nncf)
    elif backend == "tensorrt":
        runner = TensorRTRunner(path, precision, engine_dir=workdir, **kw)
    else:
        runner = OrtRunner(path, precision, cuda=backend == "onnxruntime_cuda", threads=threads,
                           spinning=spinning, **kw)
    runner._tmpdir = tmp
    return runner


def _is_quantized(path: Path) -> bool:
    proto = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
               for n in proto.graph.node)


def _onnx_for(precision, backend, model, onnx_path, image_size, workdir: Path, calib_data, quant_config,
              calib_images, calib_seed, cache_dir) -> Path:
    if onnx_path is not None:
        src = Path(onnx_path)
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such ONNX file")
    elif model is not None:
        if image_size is None:
            raise ValueError(f"{backend} runner from a model needs image_size= (the ONNX input size)")
        src = export_onnx(model, workdir / "model_fp32.onnx", image_size)
    else:
        raise ValueError(f"{backend} runner needs onnx_path= or model=")

    quantized = _is_quantized(src)
    if precision == "int8":
        if quantized:
            return src
        if calib_data is None:
            raise ValueError(f"{backend}/int8 from a float model needs calib_data= (calibration images)")
        if quant_config is None:
            quant_config = QuantConfig.for_target("tensorrt" if backend == "tensorrt" else "onnxruntime")
        return quantize_int8(src, workdir / "model_int8.onnx", calib_data, quant_config,
                             calib_images=calib_images, calib_seed=calib_seed, cache_dir=cache_dir)
    if quantized:
        raise ValueError(f"{src} is an INT8 (QDQ) model; {backend}/{precision} needs the float model")
    if precision == "fp16":
        return src if _is_float16(src) else convert_float16_file(src, workdir / "model_fp16.onnx")
    if _is_float16(src):
        raise ValueError(f"{src} is a float16 model; {backend}/{precision} needs the float32 model")
    return src


def _is_float16(path: Path) -> bool:
    proto = onnx.load(str(path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
