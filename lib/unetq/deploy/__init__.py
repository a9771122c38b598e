"""Deployment of the trained U-Nets in every representation: PyTorch eager / torch.compile at
FP32 / FP16 / BF16, ONNX Runtime CPU FP32 / FP16 / INT8, ONNX Runtime CUDA FP32 / FP16, TensorRT
FP32 / FP16 / INT8 and the MBU-Net bit-packed engine, behind one runner interface.

- ``onnx_export``      ``export_onnx``, ``check_parity``, ``onnx_file_bytes``, ``op_counts``
- ``rewrite``          exact ConvTranspose -> Conv 1x1 + DepthToSpace rewrite (so INT8 covers it)
- ``fp16``             ONNX float16 conversion (float32 IO)
- ``quantize``         ``quantize_int8`` (ONNX Runtime static PTQ, QDQ), ``QuantConfig``
- ``quantmath``        seed 003's scale / zero-point arithmetic
- ``availability``     ``available_runners`` (what runs here, and why not), ``format_applies``
- ``runner``           the ``Runner`` interface (every runner rejects NaN / Inf input)
- ``runners``          ``make_runner``, the Runner classes
- ``tensorrt_engine``  TensorRT 10/11 engine build (strongly typed, explicit quantization) + runner
- ``evaluate``         ``evaluate_runner``, ``output_collapse`` (a constant-output, collapsed model)
- ``sensitivity``      per-layer INT8 sensitivity, INT8 configuration search

The package owns turning a trained model into runnable representations; it trains nothing and
writes no result table (notebook 06 is ``unetq.studies.quantization``; ``python -m
unetq.cli.deploy_benchmark`` times ORT INT8 against FP32).
"""
from .availability import SUPPORTED, available_runners, format_applies, runner_unavailable_reason
from .evaluate import evaluate_runner, output_collapse
from .fp16 import convert_float16, convert_float16_file
from .onnx_export import check_parity, export_onnx, onnx_file_bytes, op_counts
from .quantize import (QuantConfig, calibration_images, prepare_model, quantizable_nodes, quantize_int8,
                       quantized_op_summary, read_quant_metadata)
from .quantmath import dequantize, quantize, scale_zero_point
from .rewrite import rewrite_conv_transpose, rewrite_conv_transpose_file
from .runner import Runner, RunnerUnavailable
from .openvino_engine import OpenVinoRunner
from .runners import BitpackRunner, OrtRunner, TorchRunner, make_runner

__all__ = [
    "SUPPORTED", "available_runners", "format_applies", "runner_unavailable_reason", "evaluate_runner", "output_collapse", "convert_float16",
    "convert_float16_file", "check_parity", "export_onnx", "onnx_file_bytes", "op_counts", "QuantConfig",
    "calibration_images", "prepare_model", "quantizable_nodes", "quantize_int8", "quantized_op_summary",
    "read_quant_metadata", "dequantize", "quantize", "scale_zero_point", "rewrite_conv_transpose",
    "rewrite_conv_transpose_file", "Runner", "RunnerUnavailable", "make_runner", "TorchRunner", "OrtRunner", "OpenVinoRunner", "BitpackRunner",
]
