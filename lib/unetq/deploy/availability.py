"""Which (backend, precision) pairs exist, which apply to which architecture
(:func:`format_applies`), which can run on this machine, and why the others cannot."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path

import pandas as pd

from ..machine import cuda_available
from .openvino_engine import openvino_reason

# Every representation the study knows, in table order.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "fp16", "bf16"),
    "torch_compile": ("fp32", "fp16", "bf16"),
    "onnxruntime": ("fp32", "fp16", "int8"),
    "onnxruntime_cuda": ("fp32", "fp16"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "openvino_nncf": ("int8",),
    "bitpack": ("binary",),
}


@functools.lru_cache(maxsize=None)
def _torch_cpu_dtype_reason(precision: str) -> str | None:
    """Run a tiny conv / transposed conv / pool in that dtype on the CPU; None if it works."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    try:
        m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.ConvTranspose2d(4, 2, 2, 2)).eval().to(dtype)
        with torch.no_grad():
            y = m(torch.zeros(1, 3, 8, 8, dtype=dtype))
        if y.dtype != dtype:
            return f"torch CPU {precision} convolution returned {y.dtype}"
    except Exception as e:  # e.g. "slow_conv2d_cpu" not implemented for 'Half' in old torch
        return f"torch CPU {precision} convolution not supported ({type(e).__name__}: {str(e)[:80]})"
    return None


@functools.lru_cache(maxsize=None)
def _c_compiler_reason() -> str | None:
    cc = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if cc is None or not shutil.which(cc):
        return "no C++ compiler for torch.compile's inductor backend"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").exists():
        return "Python development headers (Python.h) missing for torch.compile's inductor backend"
    return None


@functools.lru_cache(maxsize=None)
def _ort_providers() -> tuple[str, ...] | str:
    try:
        import onnxruntime as ort
    except Exception as e:
        return f"onnxruntime not installed ({type(e).__name__})"
    return tuple(ort.get_available_providers())


@functools.lru_cache(maxsize=None)
def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed"
    try:
        importlib.import_module("tensorrt")
    except Exception as e:
        return f"tensorrt fails to import ({type(e).__name__}: {str(e)[:80]})"
    if not cuda_available():
        return "no CUDA device"
    return None


@functools.lru_cache(maxsize=None)
def _bitpack_reason() -> str | None:
    try:
        importlib.import_module("numba")
    except Exception as e:
        return f"numba not importable ({type(e).__name__})"
    return None


def format_applies(arch: str, backend: str, precision: str) -> bool:
    """Whether a backend/precision is meaningful for an architecture: the bit-packed engine runs
    only the MBU-Net (its own binary/ternary mix), and ``binary`` exists only there. The MBU-Net
    is deployed by the packed engine; PyTorch runs it as the float model it was trained as (fake
    quantization), and the ONNX-based backends are left out: its straight-through sign is not an
    ONNX operator, and a float or INT8 graph of a binary network measures nothing the study
    asks."""
    packed = backend == "bitpack" or precision == "binary"
    if arch == "mbu_unet":
        return packed or backend in ("torch", "torch_compile")
    return not packed


def runner_unavailable_reason(backend: str, precision: str) -> str | None:
    """None when ``(backend, precision)`` can run here, else a short reason."""
    if backend not in SUPPORTED:
        raise ValueError(f"unknown backend {backend!r}; choose one of {list(SUPPORTED)}")
    if precision not in SUPPORTED[backend]:
        raise ValueError(f"backend {backend!r} has no precision {precision!r}; it supports {SUPPORTED[backend]}")
    if backend in ("torch", "torch_compile"):
        if backend == "torch_compile":
            why = _c_compiler_reason()
            if why and not cuda_available():
                return why
        if cuda_available():
            import torch

            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return "CUDA device without bf16 support"
            return None
        return _torch_cpu_dtype_reason(precision)
    if backend in ("onnxruntime", "onnxruntime_cuda"):
        prov = _ort_providers()
        if isinstance(prov, str):
            return prov
        if backend == "onnxruntime":
            return None if "CPUExecutionProvider" in prov else "CPUExecutionProvider missing"
        if "CUDAExecutionProvider" not in prov:
            return "onnxruntime-gpu not installed (no CUDAExecutionProvider)"
        if not cuda_available():
            return "no CUDA device"
        return None
    if backend == "tensorrt":
        return _tensorrt_reason()
    if backend in ("openvino", "openvino_nncf"):
        return openvino_reason(precision, nncf=backend == "openvino_nncf")
    return _bitpack_reason()


def available_runners() -> pd.DataFrame:
    """Table ``[backend, precision, available, reason]`` over every supported pair."""
    rows = []
    for backend, precisions in SUPPORTED.items():
        for precision in precisions:
            why = runner_unavailable_reason(backend, precision)
            rows.append(dict(backend=backend, precision=precision, available=why is None,
                             reason="" if why is None else why))
    return pd.DataFrame(rows)
