"""Why an INT8 model loses accuracy, layer by layer, and which configuration keeps it.

- :func:`weight_stats`: per weight layer of the float model (BatchNorm already folded by the
  export), the spread of per-output-channel weight ranges and the relative RMS error of
  symmetric INT8 weights per tensor vs per channel. Folding BatchNorm into a depthwise (or any)
  convolution multiplies each output channel by ``gamma / sqrt(var + eps)``, which can differ by
  orders of magnitude between channels: one scale per tensor then rounds the small channels to 0.
- :func:`layer_sensitivity`: quantize one layer at a time (``mode="only"``) or all but one
  (``mode="all_but"``), evaluate, report the Dice change per layer.
- :func:`evaluate_configs`: accuracy of a list of :class:`QuantConfig` (calibration method,
  per-tensor vs per-channel, ...).
- :func:`mixed_precision_search`: keep the most sensitive layers in float (``nodes_to_exclude``)
  until INT8 is within a Dice tolerance of FP32.

Calibration ranges are computed once per method and reused (``cache_dir``). Run the searches on
the validation split and report the chosen configuration on the test split.

A configuration whose INT8 model collapses (constant output, ``unetq.deploy.evaluate.output_collapse``)
gets ``collapsed=True``, its reason and no metrics (NaN) in every table here; the searches count
it as the worst possible result (a layer that collapses the model alone is the most sensitive).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnx import helper, numpy_helper
from tqdm.auto import tqdm

from .evaluate import evaluate_runner
from .calibration import calibrate
from .quantize import (ArrayCalibrationReader, QuantConfig, _cache_path, calibration_images, prepare_model,
                       quantizable_nodes, quantize_int8)
from .quantmath import weight_quant_error
from .runners import OrtRunner

METRICS = ("loss", "iou", "dice", "iou_img", "dice_img")


def weight_stats(onnx_path: str | os.PathLike) -> pd.DataFrame:
    """One row per weight layer: ``node, op_type, depthwise, out_channels, in_per_group, kernel,
    params, ch_range_spread`` (max/min of the per-output-channel max |w|), ``err_per_tensor``,
    ``err_per_channel`` (median over channels of the relative RMS INT8 weight error) and
    ``err_per_tensor_max`` (worst channel)."""
    proto = onnx.load(str(onnx_path))
    init = {t.name: t for t in proto.graph.initializer}
    rows = []
    for n in proto.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 2 or n.input[1] not in init:
            continue
        w = numpy_helper.to_array(init[n.input[1]]).astype(np.float32)
        if n.op_type == "ConvTranspose":
            w = np.swapaxes(w, 0, 1)  # [C_out, C_in, k, k]
        group = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "group"), 1)
        ch_max = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        nz = ch_max[ch_max > 0]
        e_t = weight_quant_error(w, per_channel=False)
        e_c = weight_quant_error(w, per_channel=True)
        rows.append(dict(node=n.name, op_type=n.op_type, depthwise=bool(group > 1 and w.shape[1] == 1),
                         out_channels=int(w.shape[0]), in_per_group=int(w.shape[1]),
                         kernel="x".join(map(str, w.shape[2:])), params=int(w.size),
                         ch_range_spread=float(nz.max() / nz.min()) if len(nz) else float("nan"),
                         err_per_tensor=float(np.median(e_t)), err_per_tensor_max=float(e_t.max()),
                         err_per_channel=float(np.median(e_c))))
    return pd.DataFrame(rows)


class _Evaluator:
    """Prepared float model + calibration images + evaluation data, shared by the searches."""

    def __init__(self, fp32_onnx, calib_data, eval_data, config: QuantConfig | None, calib_images, calib_seed,
                 batch_size, workdir, threads, cache_dir=None):
        self.config = config or QuantConfig()
        self.eval_data, self.batch_size, self.threads = eval_data, batch_size, threads
        self._tmp = tempfile.TemporaryDirectory(prefix="unetq-sens-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepared = self.workdir / "prepared.onnx"
        prepare_model(fp32_onnx, self.prepared, rewrite=self.config.rewrite_convtranspose,
                      mode=self.config.rewrite_mode)
        self.images = calibration_images(calib_data, calib_images, calib_seed)
        self.cache = Path(cache_dir) if cache_dir else self.workdir / "calib"
        self.fp32 = self.evaluate_path(self.prepared)
        self._n = 0

    def evaluate_path(self, path) -> dict:
        runner = OrtRunner(path, "fp32", threads=self.threads)
        return evaluate_runner(runner, self.eval_data, self.batch_size)

    def evaluate_config(self, cfg: QuantConfig) -> dict:
        self._n += 1
        out = self.workdir / f"q{self._n}.onnx"
        quantize_int8(self.prepared, out, self.images, cfg, cache_dir=self.cache)
        try:
            return self.evaluate_path(out)
        finally:
            out.unlink(missing_ok=True)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()


def _row(metrics: dict, base: dict) -> dict:
    """Metrics and their change vs ``base``; NaN metrics for a collapsed model (not scored)."""
    collapsed = bool(metrics.get("collapsed", False))
    r = {k: float("nan") if collapsed else float(metrics[k]) for k in METRICS}
    r.update({f"delta_{k}": r[k] - float(base[k]) for k in ("dice", "iou", "loss")})
    r.update(collapsed=collapsed, collapse_reason=metrics.get("collapse_reason", ""))
    return r


def _dice_gap(fp32: dict, m: dict) -> float:
    """FP32 Dice minus INT8 Dice; infinite for a collapsed INT8 model."""
    return float("inf") if m.get("collapsed") else float(fp32["dice"]) - float(m["dice"])


def layer_sensitivity(fp32_onnx, calib_data, eval_data, config: QuantConfig | None = None, mode: str = "only",
                      nodes=None, batch_size: int = 8, calib_images: int | None = None, calib_seed: int = 0,
                      workdir=None, threads: int | None = None, progress: bool = True,
                      cache_dir=None) -> pd.DataFrame:
    """Per-layer INT8 sensitivity. ``mode="only"``: quantize just that layer (its input
    activation and weights); ``mode="all_but"``: quantize everything except that layer. Rows:
    ``node, op_type, mode, loss, iou, dice, ..., delta_dice`` (vs FP32) plus :func:`weight_stats`
    columns; the frame's ``attrs`` hold the FP32 and full-INT8 metrics."""
    if mode not in ("only", "all_but"):
        raise ValueError(f"mode must be 'only' or 'all_but', got {mode!r}")
    ev = _Evaluator(fp32_onnx, calib_data, eval_data, config, calib_images, calib_seed, batch_size, workdir, threads,
                    cache_dir)
    try:
        names = list(nodes) if nodes is not None else quantizable_nodes(ev.prepared)
        base_cfg = ev.config.replace(nodes_to_quantize=(), nodes_to_exclude=())
        full = ev.evaluate_config(base_cfg)
        ops = {n.name: n.op_type for n in onnx.load(str(ev.prepared)).graph.node}
        rows = []
        for name in tqdm(names, desc=f"sensitivity ({mode})", disable=not progress, leave=False):
            if name not in ops:
                raise ValueError(f"node {name!r} is not in the prepared model {ev.prepared}")
            cfg = base_cfg.replace(nodes_to_quantize=(name,)) if mode == "only" else \
                base_cfg.replace(nodes_to_exclude=(name,))
            rows.append(dict(node=name, op_type=ops[name], mode=mode, **_row(ev.evaluate_config(cfg), ev.fp32)))
        df = pd.DataFrame(rows)
        stats = weight_stats(ev.prepared)
        if len(df):
            df = df.merge(stats.drop(columns=["op_type"]), on="node", how="left")
        df.attrs.update(fp32={k: float(ev.fp32[k]) for k in METRICS},
                        int8={k: v for k, v in _row(full, ev.fp32).items() if k in METRICS},
                        int8_collapsed=bool(full.get("collapsed", False)), config=base_cfg.label())
        return df
    finally:
        ev.close()


def evaluate_configs(fp32_onnx, calib_data, eval_data, configs, batch_size: int = 8, calib_images: int | None = None,
                     calib_seed: int = 0, workdir=None, threads: int | None = None, progress: bool = True,
                     cache_dir=None) -> pd.DataFrame:
    """Accuracy of each :class:`QuantConfig` in ``configs`` (a list, or a dict name -> config),
    plus the FP32 baseline row. All configs must share ``rewrite_convtranspose``/``rewrite_mode``."""
    items = list(configs.items()) if isinstance(configs, dict) else [(c.label(), c) for c in configs]
    if not items:
        raise ValueError("evaluate_configs: no configurations given")
    first = items[0][1]
    if any((c.rewrite_convtranspose, c.rewrite_mode) != (first.rewrite_convtranspose, first.rewrite_mode)
           for _, c in items):
        raise ValueError("evaluate_configs: all configurations must use the same ConvTranspose rewrite")
    ev = _Evaluator(fp32_onnx, calib_data, eval_data, first, calib_images, calib_seed, batch_size, workdir, threads,
                    cache_dir)
    try:
        rows = [dict(config="fp32", label="fp32", **_row(ev.fp32, ev.fp32))]
        for name, cfg in tqdm(items, desc="INT8 configs", disable=not progress, leave=False):
            rows.append(dict(config=name, label=cfg.label(), method=cfg.method, per_channel=cfg.per_channel,
                             activation_type=cfg.activation_type, symmetric_activations=cfg.symmetric_activations,
                             n_float=len(cfg.nodes_to_exclude), **_row(ev.evaluate_config(cfg), ev.fp32)))
        return pd.DataFrame(rows)
    finally:
        ev.close()


def mixed_precision_search(fp32_onnx, calib_data, eval_data, config: QuantConfig | None = None,
                           tolerance: float = 0.01, order=None, max_float: int = 8, batch_size: int = 8,
                           calib_images: int | None = None, calib_seed: int = 0, workdir=None,
                           threads: int | None = None, progress: bool = True,
                           cache_dir=None) -> tuple[QuantConfig, pd.DataFrame]:
    """Greedy: starting from full INT8 with ``config``, keep layers in float one at a time (in
    ``order``, default: most harmful first by a ``layer_sensitivity(mode="only")`` run) until
    ``fp32 dice - int8 dice <= tolerance`` or ``max_float`` layers are float. Returns the final
    config and the table of steps (``n_float, added, dice, delta_dice, ...``)."""
    config = config or QuantConfig()
    if order is None:
        sens = layer_sensitivity(fp32_onnx, calib_data, eval_data, config, "only", batch_size=batch_size,
                                 calib_images=calib_images, calib_seed=calib_seed, threads=threads,
                                 progress=progress, cache_dir=cache_dir)
        order = list(sens.sort_values("delta_dice", na_position="first")["node"]) if len(sens) else []
    ev = _Evaluator(fp32_onnx, calib_data, eval_data, config, calib_images, calib_seed, batch_size, workdir, threads,
                    cache_dir)
    try:
        excluded: list[str] = list(config.nodes_to_exclude)
        cfg = config.replace(nodes_to_exclude=tuple(excluded))
        m = ev.evaluate_config(cfg)
        steps = [dict(n_float=len(excluded), added="", **_row(m, ev.fp32))]
        candidates = [n for n in order if n not in excluded]
        bar = tqdm(total=max_float, desc="mixed precision", disable=not progress, leave=False)
        while _dice_gap(ev.fp32, m) > tolerance and candidates and len(excluded) < max_float:
            excluded.append(candidates.pop(0))
            cfg = config.replace(nodes_to_exclude=tuple(excluded))
            m = ev.evaluate_config(cfg)
            steps.append(dict(n_float=len(excluded), added=excluded[-1], **_row(m, ev.fp32)))
            bar.update(1)
        bar.close()
        df = pd.DataFrame(steps)
        df.attrs.update(fp32={k: float(ev.fp32[k]) for k in METRICS}, within=bool(_dice_gap(ev.fp32, m) <= tolerance))
        return cfg, df
    finally:
        ev.close()


def activation_ranges(fp32_onnx, calib_data, methods=("minmax", "entropy"), config: QuantConfig | None = None,
                      calib_images: int | None = None, calib_seed: int = 0, cache_dir=None) -> pd.DataFrame:
    """Calibrated range of every activation tensor under each calibration ``method`` (one row per
    tensor: producer node and op, ``lo_<method>``, ``hi_<method>``) plus, for each method other
    than minmax, ``kept_<method>`` = its range width / the MinMax width: how much of the observed
    range the method keeps (entropy/percentile clip outliers; what is clipped saturates)."""
    from onnxruntime.quantization import CalibrationMethod

    config = config or QuantConfig()
    images = calibration_images(calib_data, calib_images, calib_seed)
    enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="unetq-ranges-") as d:
        d = Path(d)
        prepared = d / "prepared.onnx"
        prepare_model(fp32_onnx, prepared, rewrite=config.rewrite_convtranspose, mode=config.rewrite_mode)
        proto = onnx.load(str(prepared))
        producer = {o: n for n in proto.graph.node for o in n.output}

        cols: dict[str, dict] = {}
        for m in methods:
            cfg = config.replace(method=m)
            extra = {"CalibPercentile": cfg.percentile, "CalibTensorRangeSymmetric": cfg.symmetric_activations}
            if m == "entropy":
                extra.update(CalibNumBins=cfg.entropy_bins, CalibNumQuantizedBins=cfg.entropy_quantized_bins)
            cache = Path(_cache_path(prepared, images, cfg, cache_dir) if cache_dir else d / f"{m}.json")
            if not cache.exists():
                calibrate(prepared, ArrayCalibrationReader(images, proto.graph.input[0].name, cfg.calib_batch),
                           enum[m], extra, str(cache), d)
            from onnxruntime.quantization.calibrate import load_tensors_data

            for name, td in load_tensors_data(cache).data.items():
                lo, hi = (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
                cols.setdefault(name, {})[f"lo_{m}"] = lo
                cols[name][f"hi_{m}"] = hi
    rows = []
    for name, v in cols.items():
        p = producer.get(name)
        rows.append(dict(tensor=name, node=p.name if p is not None else "", op_type=p.op_type if p is not None else "input",
                         **v))
    df = pd.DataFrame(rows)
    if "minmax" in methods:
        width = df["hi_minmax"] - df["lo_minmax"]
        for m in methods:
            if m != "minmax":
                df[f"kept_{m}"] = (df[f"hi_{m}"] - df[f"lo_{m}"]) / width.where(width > 0)
    return df
