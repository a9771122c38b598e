"""TensorRT engines from the ONNX models, for TensorRT 10 and 11.

TensorRT 10.1 deprecated implicit INT8 calibration and TensorRT 11 removed the precision builder
flags (FP16, INT8): the precision of an engine is the precision of its ONNX model. So

- FP32: the float32 ONNX model (TF32 disabled where the flag still exists, for a true FP32);
- FP16: the float16 ONNX model of ``fp16.py`` (float32 IO through Cast layers);
- INT8: explicit quantization, the QDQ model of ``quantize.py`` made with
  ``QuantConfig.for_target("tensorrt")`` (int8 symmetric activations and per-channel weights:
  TensorRT's only INT8 scheme).

The network is created ``STRONGLY_TYPED`` where that flag exists (TensorRT 10; in 11 it is the
only mode and the flag is ignored or gone). Only where strong typing does not exist (TensorRT
< 9) are the FP16 / INT8 builder flags set instead. Everything is feature-detected with
``hasattr``, never by parsing version strings.

The runner executes with ``execute_async_v3`` on torch's current CUDA stream, with torch CUDA
tensors as input/output buffers (``set_tensor_address``). Engines are cached as ``.plan`` files
keyed by the ONNX bytes, precision, batch profile, TensorRT version and GPU name.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from .runner import Runner


@dataclass
class EngineInfo:
    path: str
    precision: str
    serialized_bytes: int
    device_memory_bytes: int
    build_seconds: float
    strongly_typed: bool
    tensorrt_version: str
    profile: tuple

    def to_dict(self) -> dict:
        return asdict(self)


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise RuntimeError("tensorrt not installed (pip install tensorrt on a CUDA machine)") from e
    return trt


def _logger(trt, verbose: bool = False):
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def _network_flags(trt) -> tuple[int, bool]:
    """(flags for create_network, strongly typed?)."""
    flags = 0
    F = trt.NetworkDefinitionCreationFlag
    if hasattr(F, "EXPLICIT_BATCH"):  # required before TensorRT 10, ignored in 10, gone in 11
        flags |= 1 << int(F.EXPLICIT_BATCH)
    strongly = hasattr(F, "STRONGLY_TYPED")
    if strongly:
        flags |= 1 << int(F.STRONGLY_TYPED)
    elif not hasattr(trt.BuilderFlag, "FP16"):
        strongly = True  # a TensorRT where strong typing is the only mode
    return flags, strongly


def device_memory_bytes(engine) -> int:
    """Device memory an execution context needs (``device_memory_size_v2``, falling back to the
    older ``device_memory_size``)."""
    v = getattr(engine, "device_memory_size_v2", None)
    if v is None:
        v = getattr(engine, "device_memory_size")
    return int(v)


def build_engine(onnx_path, precision: str, engine_path=None, min_batch: int = 1, opt_batch: int = 1,
                 max_batch: int = 8, workspace_bytes: int = 2 << 30, verbose: bool = False) -> EngineInfo:
    """Parse ``onnx_path`` and build a serialized engine at ``engine_path`` (default: next to the
    ONNX file, ``<stem>.<precision>.plan``). ``precision`` must match the ONNX model (fp32 model,
    float16 model, or QDQ model for int8); it is used to set the builder flags only on TensorRTs
    without strong typing."""
    trt = _trt()
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise FileNotFoundError(f"{onnx_path}: no such ONNX file")
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(f".{precision}.plan")
    logger = _logger(trt, verbose)
    t0 = time.perf_counter()
    builder = trt.Builder(logger)
    flags, strongly = _network_flags(trt)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not strongly:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the QDQ scales are used
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if shape[0] == -1:
        profile = builder.create_optimization_profile()
        dims = shape[1:]
        if any(d < 0 for d in dims):
            raise ValueError(f"{onnx_path}: only the batch dimension may be dynamic, input shape is {shape}")
        pmin, popt, pmax = (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims)
        profile.set_shape(inp.name, pmin, popt, pmax)
        config.add_optimization_profile(profile)
    else:
        pmin = popt = pmax = shape
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed ({precision})")
    data = bytes(plan)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(data)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    info = EngineInfo(path=str(engine_path), precision=precision, serialized_bytes=len(data),
                      device_memory_bytes=device_memory_bytes(engine),
                      build_seconds=time.perf_counter() - t0, strongly_typed=strongly,
                      tensorrt_version=str(getattr(trt, "__version__", "?")), profile=(pmin, popt, pmax))
    with atomic_path(engine_path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info.to_dict(), default=str))
    return info


def _torch_dtype(trt, dt):
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT8: torch.int8, trt.DataType.INT32: torch.int32}
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dt not in table:
        raise TypeError(f"TensorRT IO tensor of type {dt} is not supported by the runner")
    return table[dt]


class TensorRTRunner(Runner):
    """Runs a TensorRT engine built (or loaded from cache) from ``onnx_path``."""

    def __init__(self, onnx_path, precision: str, engine_dir=None, max_batch: int = 8, opt_batch: int = 1,
                 workspace_bytes: int = 2 << 30, rebuild: bool = False, verbose: bool = False):
        super().__init__()
        trt = _trt()
        if not torch.cuda.is_available():
            raise RuntimeError("TensorRT runner needs a CUDA device (none found)")
        self.backend, self.precision, self.device = "tensorrt", precision, "cuda"
        onnx_path = Path(onnx_path)
        engine_dir = Path(engine_dir) if engine_dir else onnx_path.parent
        key = hashlib.sha1(onnx_path.read_bytes() + json.dumps(
            [precision, max_batch, opt_batch, str(getattr(trt, "__version__", "")),
             torch.cuda.get_device_name(0)]).encode()).hexdigest()[:12]
        plan_path = engine_dir / f"{onnx_path.stem}.{precision}.{key}.plan"
        meta_path = plan_path.with_suffix(".json")
        if rebuild or not plan_path.exists() or not meta_path.exists():
            self.info = build_engine(onnx_path, precision, plan_path, opt_batch=opt_batch, max_batch=max_batch,
                                     workspace_bytes=workspace_bytes, verbose=verbose)
        else:
            self.info = EngineInfo(**json.loads(meta_path.read_text()))
        self.max_batch = max_batch
        self._logger = _logger(trt, verbose)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{plan_path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"{onnx_path}: expected one input and one output, got {ins} / {outs}")
        self.input_name, self.output_name = ins[0], outs[0]
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output_name))
        self.model_size_bytes = int(self.info.serialized_bytes)
        self.details = {"engine_device_memory_bytes": int(self.info.device_memory_bytes),
                        "engine_build_seconds": float(self.info.build_seconds),
                        "strongly_typed": bool(self.info.strongly_typed),
                        "tensorrt": self.info.tensorrt_version, "onnx": onnx_path.name}

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        stream = torch.cuda.current_stream()
        for start in range(0, x.shape[0], self.max_batch):
            xt = torch.from_numpy(x[start:start + self.max_batch]).to("cuda", self.input_dtype).contiguous()
            if not self.context.set_input_shape(self.input_name, tuple(xt.shape)):
                raise ValueError(f"TensorRT rejected input shape {tuple(xt.shape)}")
            out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype,
                              device="cuda")
            self.context.set_tensor_address(self.input_name, xt.data_ptr())
            self.context.set_tensor_address(self.output_name, out.data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            stream.synchronize()
            outs.append(out.float().cpu().numpy())
        return np.concatenate(outs, axis=0)
