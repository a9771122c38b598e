"""INT8 post-training static quantization through ONNX Runtime (QDQ or QOperator format).

Calibration runs on images the caller picks (the notebooks use a held-out subset of the
*training* split, ``calib_images`` of the preset), with ONNX Runtime's MinMax, Entropy or
Percentile calibrators. Ranges are cached per (model, method, data) so that the per-layer
sensitivity study calibrates once and quantizes many times. Before calibration the
ConvTranspose layers are rewritten into Conv 1x1 + DepthToSpace (``rewrite.py``) so that they are
quantized too.

Two presets of :class:`QuantConfig`:

- ``QuantConfig()`` (ONNX Runtime CPU): uint8 asymmetric activations, int8 symmetric per-channel
  weights, QDQ format, no ``reduce_range`` (the u8 x s8 VNNI path of AVX-512 CPUs);
- ``QuantConfig.for_target("tensorrt")``: int8 symmetric activations and weights (TensorRT's
  only INT8 scheme, seed 003 Eq. 13), QDQ format for explicit quantization.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..io import atomic_path
from .calibration import calibrate
from .data_utils import dataset_len, get_item, pick_indices
from .rewrite import rewrite_conv_transpose

METHODS = ("minmax", "entropy", "percentile")
_SHORT = {"uint8": "u8", "int8": "s8"}
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
META_KEY = "unetq.quant_config"
PREP_KEY = "unetq.prepared"


@dataclass
class QuantConfig:
    """How a float ONNX model is turned into INT8."""

    method: str = "minmax"               # calibration: minmax | entropy | percentile
    per_channel: bool = True             # per-output-channel weight scales (else one per tensor)
    activation_type: str = "uint8"       # uint8 (asymmetric) | int8
    weight_type: str = "int8"            # int8 | uint8
    quant_format: str = "qdq"            # qdq | qoperator
    symmetric_activations: bool = False  # zero-point 0 for activations (TensorRT needs it)
    reduce_range: bool = False           # 7-bit weights: only for CPUs without VNNI
    rewrite_convtranspose: bool = True   # ConvTranspose -> Conv1x1 + DepthToSpace, so it quantizes
    rewrite_mode: str = "transpose"      # transpose | DCR | CRD (see rewrite.py)
    percentile: float = 99.999           # for method="percentile"
    entropy_bins: int = 2048             # histogram bins for method="entropy" (TensorRT's KL search
    entropy_quantized_bins: int = 128    # uses 2048 -> 128; ORT's 128 -> 128 would be plain MinMax)
    nodes_to_exclude: tuple = ()         # node names kept in float (mixed precision)
    nodes_to_quantize: tuple = ()        # if given, only these nodes are quantized
    shared_concat_scale: bool = False    # every Concat input quantized with the output's range
    #                                      (what TensorRT's implicit INT8 does: concat is a copy)
    calib_batch: int = 8                 # images per calibration forward pass
    extra_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in ("uint8", "int8"):
                raise ValueError(f"{name} must be 'uint8' or 'int8', got {getattr(self, name)!r}")
        if self.quant_format not in ("qdq", "qoperator"):
            raise ValueError(f"quant_format must be 'qdq' or 'qoperator', got {self.quant_format!r}")
        self.nodes_to_exclude = tuple(self.nodes_to_exclude or ())
        self.nodes_to_quantize = tuple(self.nodes_to_quantize or ())

    @classmethod
    def for_target(cls, target: str = "onnxruntime", **overrides) -> "QuantConfig":
        if target == "onnxruntime":
            base = {}
        elif target == "tensorrt":
            # Percentile, not TensorRT's usual entropy calibrator: entropy clips the ReLU/Concat
            # ranges hard and costs Ghost U-Net most of its Dice (see the 06 notebook).
            base = dict(activation_type="int8", weight_type="int8", symmetric_activations=True,
                        quant_format="qdq", per_channel=True, method="percentile",
                        # TensorRT's Q/DQ are int8: an int32 DequantizeLinear for the bias does not
                        # parse, so biases stay float (TensorRT folds them into the int8 kernel).
                        extra_options={"QDQKeepRemovableActivations": True, "QuantizeBias": False})
        else:
            raise ValueError(f"unknown quantization target {target!r}: 'onnxruntime' or 'tensorrt'")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def replace(self, **kw) -> "QuantConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        d["nodes_to_quantize"] = list(self.nodes_to_quantize)
        return d

    def label(self) -> str:
        """Short description for tables, e.g. ``minmax/per-channel/u8s8/qdq/rewrite``."""
        parts = [self.method if self.method != "percentile" else f"percentile{self.percentile:g}",
                 "per-channel" if self.per_channel else "per-tensor",
                 f"{_SHORT[self.activation_type]}{_SHORT[self.weight_type]}" + ("-sym" if self.symmetric_activations else ""),
                 self.quant_format, "rewrite" if self.rewrite_convtranspose else "no-rewrite"]
        if self.shared_concat_scale:
            parts.append("shared-concat")
        if self.nodes_to_exclude:
            parts.append(f"{len(self.nodes_to_exclude)}-float")
        if self.nodes_to_quantize:
            parts.append(f"only-{len(self.nodes_to_quantize)}")
        return "/".join(parts)


class ArrayCalibrationReader:
    """An ONNX Runtime ``CalibrationDataReader`` over a float32 array ``[N, C, H, W]``."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 8):
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = max(1, int(batch_size))
        self._start, self._end, self._pos = 0, len(self.images), 0

    def get_next(self):
        if self._pos >= self._end:
            return None
        batch = self.images[self._pos:min(self._pos + self.batch_size, self._end)]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self):
        self._pos = self._start

    def set_range(self, start_index: int, end_index: int):
        self._start, self._end, self._pos = start_index, min(end_index, len(self.images)), start_index

    def __len__(self):
        return len(self.images)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


#: Pixels of a synthetic-size INT8 calibration batch (8 images at 256 px). ONNX Runtime's
#: calibrator keeps every intermediate tensor of every calibration image until it computes the
#: ranges, so the batch shrinks with the image's area: 2 images at 512 px, where 8 took the 24 GB
#: machine out of memory (width 64). The ranges only set scales; run time does not depend on them.
CALIB_PIXELS = 8 * 256 * 256


def calibration_count(image_size: int) -> int:
    """How many calibration images of ``image_size`` px fit ``CALIB_PIXELS`` (at least one)."""
    return max(1, CALIB_PIXELS // (int(image_size) * int(image_size)))


def calibration_batch(image_size: int, seed: int = 0) -> np.ndarray:
    """Random images (seeded) for an INT8 model whose accuracy is not measured, only its speed:
    :func:`calibration_count` of them, so every case of one image size calibrates on the same."""
    n = calibration_count(image_size)
    return np.random.default_rng(seed).random((n, 3, image_size, image_size), dtype=np.float32)


def calibration_images(data, n: int | None = None, seed: int = 0) -> np.ndarray:
    """``n`` images (reproducible random subset) of a dataset or array, stacked ``[n, C, H, W]``."""
    idx = pick_indices(dataset_len(data), n, seed)
    if not idx:
        raise ValueError("calibration data is empty")
    return np.stack([get_item(data, i)[0] for i in idx]).astype(np.float32)


def prepare_model(onnx_path: str | os.PathLike, out_path: str | os.PathLike, rewrite: bool = True,
                  mode: str = "transpose") -> dict:
    """Float model ready for calibration: ConvTranspose rewrite (optional), then ONNX Runtime's
    ``quant_pre_process`` (shape inference + basic graph optimisation). Returns the rewrite report."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path = Path(onnx_path)
    proto = _load(onnx_path)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in proto.graph.node):
        raise ValueError(f"{onnx_path}: already quantized; pass the float32 model")
    report = {"rewritten": [], "kept": {}}
    if rewrite:
        proto, report = rewrite_conv_transpose(proto, mode)
    with tempfile.TemporaryDirectory(prefix="unetq-prep-") as d, atomic_path(out_path) as tmp:
        src = Path(d) / "float.onnx"  # a file, not a ModelProto: ORT would spill it to external data
        onnx.save(proto, str(src))
        quant_pre_process(str(src), str(tmp), skip_symbolic_shape=True)
        prepared = onnx.load(str(tmp))
        _set_meta(prepared, PREP_KEY, json.dumps({**report, "rewrite": bool(rewrite), "mode": mode}))
        onnx.save(prepared, str(tmp))
    return report


def is_prepared(onnx_path: str | os.PathLike) -> bool:
    """True for a model written by :func:`prepare_model`."""
    proto = _load(Path(onnx_path), external=False)
    return _get_meta(proto, PREP_KEY) is not None


def quantizable_nodes(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the nodes that carry weights (Conv, ConvTranspose, MatMul, Gemm) in graph order:
    the units of the per-layer sensitivity study and of ``nodes_to_exclude``."""
    proto = _load(Path(onnx_path))
    return [n.name for n in proto.graph.node if n.op_type in QUANTIZABLE_OPS]


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calib_data,
                  config: QuantConfig | None = None, calib_images: int | None = None, calib_seed: int = 0,
                  cache_dir: str | os.PathLike | None = None, **overrides) -> Path:
    """Quantize the float32 ONNX model at ``onnx_path`` to INT8 and write it to ``out_path``.

    ``calib_data``: a dataset whose items are ``(image, mask)`` or images, or an array
    ``[N, C, H, W]``; ``calib_images`` of them (random, seeded) calibrate the activation ranges.
    ``config`` (default :class:`QuantConfig`) may be adjusted by keyword ``overrides``
    (e.g. ``method="entropy", per_channel=False``). The configuration and the rewrite report are
    stored in the output model's metadata (``read_quant_metadata``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise FileNotFoundError(f"{onnx_path}: no such ONNX file to quantize")
    cfg = (config or QuantConfig()).replace(**overrides) if overrides else (config or QuantConfig())
    images = calib_data if isinstance(calib_data, np.ndarray) and calib_images is None else \
        calibration_images(calib_data, calib_images, calib_seed)
    if images.ndim != 4:
        raise ValueError(f"calibration images must be [N, C, H, W], got shape {images.shape}")
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    extra = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True,
             "CalibPercentile": cfg.percentile, **cfg.extra_options}
    if cfg.method == "percentile":
        extra.setdefault("CalibTensorRangeSymmetric", cfg.symmetric_activations)
    if cfg.method == "entropy":
        extra.setdefault("CalibNumBins", cfg.entropy_bins)
        extra.setdefault("CalibNumQuantizedBins", cfg.entropy_quantized_bins)

    with tempfile.TemporaryDirectory(prefix="unetq-quant-") as tmpdir:
        if is_prepared(onnx_path):  # already through prepare_model (e.g. the sensitivity loop)
            prepped, report = onnx_path, json.loads(_get_meta(_load(onnx_path), PREP_KEY) or "{}")
            if bool(report.get("rewrite")) != cfg.rewrite_convtranspose:
                raise ValueError(f"{onnx_path} was prepared with rewrite={report.get('rewrite')}, but the config "
                                 f"asks for rewrite_convtranspose={cfg.rewrite_convtranspose}")
        else:
            prepped = Path(tmpdir) / "prepared.onnx"
            report = prepare_model(onnx_path, prepped, rewrite=cfg.rewrite_convtranspose, mode=cfg.rewrite_mode)
        prepped_proto = _load(Path(prepped))
        input_name = prepped_proto.graph.input[0].name
        cache = _cache_path(prepped, images, cfg, cache_dir) or str(Path(tmpdir) / "calib.json")
        reader = ArrayCalibrationReader(images, input_name, cfg.calib_batch)
        if not Path(cache).exists():
            calibrate(prepped, reader, method, extra, cache, Path(tmpdir))
            reader.rewind()
        if cfg.shared_concat_scale:
            overrides = dict(extra.get("TensorQuantOverrides", {}))
            overrides.update(shared_concat_overrides(prepped_proto, cache))
            extra["TensorQuantOverrides"] = overrides
            # A Relu whose output range is widened below 0 is no longer implied by its
            # quantization: keep it as an op (ORT would otherwise drop it and pass negatives).
            extra["QDQKeepRemovableActivations"] = True
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ORT's quantizer logs advice at WARNING on the root logger
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print
                quantize_static(
                    str(prepped), str(Path(tmpdir) / "q.onnx"), reader,
                    quant_format=QuantFormat.QDQ if cfg.quant_format == "qdq" else QuantFormat.QOperator,
                    per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                    activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
                    nodes_to_exclude=list(cfg.nodes_to_exclude), nodes_to_quantize=list(cfg.nodes_to_quantize),
                    calibrate_method=method, extra_options=extra, calibration_cache_path=cache,
                )
        finally:
            root.setLevel(level)
        q = onnx.load(str(Path(tmpdir) / "q.onnx"))
        meta = {**cfg.to_dict(), "calib_images": int(len(images)), "source": onnx_path.name,
                "rewritten": report.get("rewritten", []), "kept_float_convtranspose": report.get("kept", {})}
        _set_meta(q, META_KEY, json.dumps(meta))
        with atomic_path(out_path) as tmp:
            onnx.save(q, str(tmp))
    return Path(out_path)


def shared_concat_overrides(proto: onnx.ModelProto, cache: str) -> dict:
    """``TensorQuantOverrides`` giving every input of each Concat the Concat output's calibrated
    range, so all inputs share one scale and zero-point (TensorRT implicit-INT8 behaviour; it
    also turns ONNX Runtime's QLinearConcat into a copy). Inputs feeding several Concats get
    the union of their ranges."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    ranges = load_tensors_data(cache)
    overrides: dict[str, tuple[float, float]] = {}
    for n in proto.graph.node:
        if n.op_type != "Concat" or n.output[0] not in ranges.data:
            continue
        lo = float(np.min(ranges.data[n.output[0]].range_value[0]))
        hi = float(np.max(ranges.data[n.output[0]].range_value[1]))
        for name in n.input:
            if name in overrides:
                lo, hi = min(lo, overrides[name][0]), max(hi, overrides[name][1])
            overrides[name] = (lo, hi)
    return {k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in overrides.items()}


def read_quant_metadata(onnx_path: str | os.PathLike) -> dict | None:
    """The :class:`QuantConfig` (as a dict, plus calibration and rewrite details) stored in a
    model written by :func:`quantize_int8`, or None for a float model."""
    proto = onnx.load(str(onnx_path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return json.loads(p.value)
    return None


def quantized_op_summary(onnx_path: str | os.PathLike) -> dict:
    """How many weight layers are quantized (their weight goes through DequantizeLinear, or the
    op is a QLinear op) and which stay float."""
    proto = _load(Path(onnx_path))
    produced_by = {o: n for n in proto.graph.node for o in n.output}
    quant, floating = [], []
    for n in proto.graph.node:
        if n.op_type.startswith("QLinear") and n.op_type[7:] in QUANTIZABLE_OPS:
            quant.append(n.name)
        elif n.op_type in QUANTIZABLE_OPS:
            src = produced_by.get(n.input[1]) if len(n.input) > 1 else None
            (quant if src is not None and src.op_type == "DequantizeLinear" else floating).append(n.name)
    return {"quantized": quant, "float": floating}


def _cache_path(prepped: Path, images: np.ndarray, cfg: QuantConfig, cache_dir) -> str | None:
    if cache_dir is None:
        return None
    h = hashlib.sha1()
    h.update(prepped.read_bytes())
    h.update(np.ascontiguousarray(images).tobytes())
    if cfg.method == "minmax":  # MinMax ranges do not depend on the scheme: one cache for all
        h.update(b"minmax")
    else:
        h.update(f"{cfg.method}|{cfg.percentile}|{cfg.symmetric_activations}|{cfg.entropy_bins}|"
                 f"{cfg.entropy_quantized_bins}".encode())
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    return str(d / f"calib-{cfg.method}-{h.hexdigest()[:16]}.json")


def _load(path: Path, external: bool = True) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=external)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such ONNX file") from None
    except Exception as e:  # protobuf decode errors
        raise ValueError(f"{path}: not a readable ONNX model ({e})") from e


def _get_meta(proto: onnx.ModelProto, key: str) -> str | None:
    for p in proto.metadata_props:
        if p.key == key:
            return p.value
    return None


def _set_meta(proto: onnx.ModelProto, key: str, value: str) -> None:
    for p in proto.metadata_props:
        if p.key == key:
            p.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
