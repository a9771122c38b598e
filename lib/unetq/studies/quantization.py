"""The quantization notebook (``06_quantization``): every representation of a trained model, its
accuracy and size, the INT8 configuration study, the result tables and the figures.

Files go to ``paths.models_dir() / f"{arch}_{preset}"``; tables, through :mod:`unetq.results`:
``accuracy_by_format.csv``, ``model_sizes.csv``, ``int8_sensitivity_<arch>.csv``,
``int8_configs.csv`` and ``int8_speed.csv``. Representations that cannot run here get a row with
``status = "not measured on this machine: <reason>"`` and no numbers; a representation whose
output has collapsed (constant whatever the image, e.g. an INT8 calibration that rounds every
logit to one level: ``unetq.deploy.evaluate.output_collapse``) gets ``status = "collapsed:
<reason>"``, ``collapsed = True`` and no metrics, so it is never scored as a quantized model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import json

import matplotlib.pyplot as plt
import seaborn as sns
import torch

from .. import paths, results
from ..bench import NOT_MEASURED, interleaved_timings, variant_summary
from ..config import StudyConfig
from ..data import run_columns, run_tag
from ..deploy import (OrtRunner, QuantConfig, calibration_images, convert_float16_file, evaluate_runner,
                      export_onnx, make_runner, onnx_file_bytes, quantize_int8, runner_unavailable_reason)
from ..deploy.quantmath import quantize, scale_zero_point
from ..deploy.sensitivity import evaluate_configs, mixed_precision_search
from ..machine import cuda_available, machine_info
from ..models import weight_bytes
from ..train import load_or_train
from .tuning import tuned


REPRESENTATIONS = (
    ("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"),
    ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
    ("onnxruntime_cuda", "fp32"), ("onnxruntime_cuda", "fp16"),
    ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"),
    ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("openvino_nncf", "int8"),
)
METRIC_COLS = ("loss", "iou", "dice", "iou_img", "dice_img")


# ------------------------------------------------------------------------------------ files
@dataclass
class ModelFiles:
    """The exported representations of one trained model."""

    arch: str
    preset: str
    image_size: int
    folder: Path
    fp32: Path
    fp16: Path
    int8: dict = field(default_factory=dict)       # label -> (QuantConfig, path), ONNX Runtime target
    int8_trt: Path | None = None                  # TensorRT-target QDQ model (symmetric int8)
    calib: np.ndarray | None = None

    def add_int8(self, name: str, config: QuantConfig) -> Path:
        """Quantize the FP32 model with ``config`` (calibration images of this set) as ``name``."""
        path = self.folder / f"int8_{_safe(name)}.onnx"
        quantize_int8(self.fp32, path, self.calib, config, cache_dir=self.folder / "calib")
        self.int8[name] = (config, path)
        return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def load_model(arch: str, cfg: StudyConfig, splits=None):
    """``(model, ckpt)``: training seed 0 of ``arch`` at its chosen learning rate, the model the
    architecture notebooks trained (trained here if its checkpoint is missing), on the CPU."""
    model, ckpt = load_or_train(arch, tuned(arch, cfg), splits=splits)
    return model.cpu().eval(), ckpt


def export_representations(arch: str, model, splits: dict, cfg: StudyConfig, quant_config: QuantConfig | None = None,
                           folder=None, seed: int = 0) -> ModelFiles:
    """FP32 ONNX, FP16 ONNX and the default INT8 model (calibrated on ``cfg.calib_images``
    images of the *training* split; ``quant_config`` default :class:`QuantConfig`), plus the
    TensorRT-target INT8 model when TensorRT can run here."""
    preset = cfg.preset
    size = int(cfg.image_size)
    folder = Path(folder) if folder else paths.models_dir() / f"{arch}_{run_tag(cfg)}"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model.cpu().eval(), folder / "fp32.onnx", size)
    fp16 = convert_float16_file(fp32, folder / "fp16.onnx")
    calib = calibration_images(splits["train"], cfg.calib_images, seed)
    files = ModelFiles(arch, preset, size, folder, fp32, fp16, calib=calib)
    files.add_int8("default", quant_config or QuantConfig())
    if runner_unavailable_reason("tensorrt", "int8") is None:
        files.int8_trt = quantize_int8(fp32, folder / "int8_tensorrt.onnx", calib, QuantConfig.for_target("tensorrt"),
                                       cache_dir=folder / "calib")
    return files


def _onnx_source(backend: str, precision: str, files: ModelFiles, int8_name: str) -> Path:
    if precision in ("fp32", "bf16") or backend == "openvino_nncf":  # NNCF quantizes the float model
        return files.fp32
    if precision == "fp16":
        return files.fp16
    if backend == "tensorrt":
        if files.int8_trt is None:
            raise ValueError("no TensorRT-target INT8 model was exported")
        return files.int8_trt
    return files.int8[int8_name][1]


# --------------------------------------------------------------------------------- accuracy
def _base_row(arch: str, cfg: StudyConfig) -> dict:
    return dict(arch=arch, **run_columns(cfg), width=cfg.width, image_size=cfg.image_size)


COLLAPSED = "collapsed"


def _scored(m: dict) -> dict:
    """The metric columns and status of an ``evaluate_runner`` result: the metrics and
    ``status="ok"``, or NaN metrics and ``status="collapsed: <reason>"`` for a collapsed model."""
    if m.get("collapsed"):
        return dict({k: float("nan") for k in METRIC_COLS}, collapsed=True,
                    status=f"{COLLAPSED}: {m.get('collapse_reason') or 'constant output'}")
    return dict({k: float(m[k]) for k in METRIC_COLS}, collapsed=False, status="ok")


def slow_representations() -> dict:
    """Representations that run here but far too slowly for the notebook's budget, with the
    reason: PyTorch float16 on a CPU (no native float16 convolution; a reference fallback tens of
    times slower than float32). FP16 accuracy is then measured through ONNX Runtime."""
    if cuda_available():
        return {}
    return {("torch", "fp16"): "PyTorch float16 convolution on this CPU is a slow reference fallback "
                               "(tens of times slower than float32); FP16 is measured with onnxruntime/fp16"}


def accuracy_by_format(arch: str, model, files: ModelFiles, dataset, cfg: StudyConfig, representations=REPRESENTATIONS,
                       int8_name: str = "default", split: str = "test", batch_size: int = 8,
                       progress: bool = True, skip: dict | None = None) -> pd.DataFrame:
    """Loss / IoU / Dice of every (backend, precision) on ``dataset`` (the ``split``), one row
    each, with the representation's size on disk; unavailable ones (and those in ``skip``,
    ``{(backend, precision): reason}``) get a "not measured on this machine" row with the reason,
    collapsed ones a "collapsed: <reason>" row without metrics."""
    rows = []
    machine = machine_info()
    for backend, precision in tqdm(list(representations), desc=f"{arch}: representations", disable=not progress,
                                   leave=False):
        config = "fp32" if precision == "fp32" else precision
        if precision == "int8":
            config = (QuantConfig.for_target("tensorrt").label() if backend == "tensorrt"
                      else "nncf post-training (default preset)" if backend == "openvino_nncf"
                      else files.int8[int8_name][0].label())
        row = dict(_base_row(arch, cfg), split=split, backend=backend, precision=precision, config=config,
                   int8_name=int8_name if precision == "int8" else "")
        why = runner_unavailable_reason(backend, precision) or (skip or {}).get((backend, precision))
        if why is not None:
            rows.append(dict(row, status=f"{NOT_MEASURED}: {why}", device="", **machine))
            continue
        if backend in ("torch", "torch_compile"):
            runner = make_runner(backend, precision, model=model)
        else:
            runner = make_runner(backend, precision, onnx_path=_onnx_source(backend, precision, files, int8_name),
                                 workdir=files.folder, calib_data=files.calib if backend == "openvino_nncf" else None)
        try:
            m = evaluate_runner(runner, dataset, batch_size)
        finally:
            runner.close()
        row.update(_scored(m), n=int(m["n"]), nonfinite=int(m["nonfinite"]),
                   size_bytes=runner.model_size_bytes, device=runner.device,
                   **{k: v for k, v in runner.details.items() if k.startswith("engine_")})
        rows.append(dict(row, **machine))
    df = pd.DataFrame(rows)
    ref = df[(df.backend == "torch") & (df.precision == "fp32") & (df.status == "ok")]
    if len(ref):
        df["delta_dice_vs_fp32"] = df["dice"] - float(ref["dice"].iloc[0])
    return df


def int8_accuracy(arch: str, files: ModelFiles, dataset, cfg: StudyConfig, names=None, split: str = "test",
                  batch_size: int = 8) -> pd.DataFrame:
    """ONNX Runtime INT8 rows (same columns as :func:`accuracy_by_format`) for the INT8 models
    ``names`` of ``files`` (default: all); a collapsed INT8 model gets a "collapsed: <reason>"
    row without metrics (and a NaN Dice change)."""
    machine = machine_info()
    rows = []
    fp32 = evaluate_runner(OrtRunner(files.fp32, "fp32"), dataset, batch_size)
    for name in names or list(files.int8):
        qcfg, path = files.int8[name]
        m = evaluate_runner(OrtRunner(path, "int8"), dataset, batch_size)
        scored = _scored(m)
        rows.append(dict(_base_row(arch, cfg), split=split, backend="onnxruntime", precision="int8",
                         config=qcfg.label(), int8_name=name, n_float_layers=len(qcfg.nodes_to_exclude),
                         float_layers=";".join(qcfg.nodes_to_exclude), **scored,
                         n=int(m["n"]), nonfinite=int(m["nonfinite"]), size_bytes=onnx_file_bytes(path), device="cpu",
                         delta_dice_vs_fp32=scored["dice"] - float(fp32["dice"]), **machine))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- sizes
def model_sizes(arch: str, model, files: ModelFiles, cfg: StudyConfig) -> pd.DataFrame:
    """Bytes on disk of every representation: PyTorch state dicts (fp32/fp16/bf16), ONNX files
    (fp32, fp16, each INT8 model) and TensorRT plans when built here."""
    params = int(sum(p.numel() for p in model.parameters()))
    rows = [dict(representation=f"torch/{p}", format="torch state_dict", precision=p,
                 size_bytes=weight_bytes(model, getattr(torch, d)))
            for p, d in (("fp32", "float32"), ("fp16", "float16"), ("bf16", "bfloat16"))]
    rows += [dict(representation="onnx/fp32", format="onnx", precision="fp32", size_bytes=onnx_file_bytes(files.fp32)),
             dict(representation="onnx/fp16", format="onnx", precision="fp16", size_bytes=onnx_file_bytes(files.fp16))]
    for name, (qcfg, path) in files.int8.items():
        rows.append(dict(representation=f"onnx/int8/{name}", format="onnx (QDQ)", precision="int8",
                         size_bytes=onnx_file_bytes(path), config=qcfg.label()))
    plans = sorted(files.folder.glob("*.plan"))
    if plans:
        for plan in plans:
            prec = plan.name.split(".")[-3] if plan.name.count(".") >= 3 else "?"
            meta = plan.with_suffix(".json")
            info = json.loads(meta.read_text()) if meta.exists() else {}
            rows.append(dict(representation=f"tensorrt/{prec}", format="tensorrt plan", precision=prec,
                             size_bytes=plan.stat().st_size,
                             engine_device_memory_bytes=info.get("device_memory_bytes")))
    else:
        why = runner_unavailable_reason("tensorrt", "fp32")
        rows.append(dict(representation="tensorrt/*", format="tensorrt plan", precision="",
                         size_bytes=None, status=f"{NOT_MEASURED}: {why or 'no engine built'}"))
    df = pd.DataFrame(rows)
    fp32 = df.loc[df.representation == "onnx/fp32", "size_bytes"].iloc[0]
    df["ratio_to_onnx_fp32"] = df["size_bytes"] / fp32
    df.insert(0, "params", params)
    for k, v in reversed(list(_base_row(arch, cfg).items())):
        df.insert(0, k, v)
    if "status" not in df:
        df["status"] = "ok"
    df["status"] = df["status"].fillna("ok")
    return df


# ---------------------------------------------------------------------------- INT8 configs
def config_grid() -> dict[str, QuantConfig]:
    """The INT8 configurations of the Ghost U-Net investigation: weight granularity x
    calibration method for ONNX Runtime's u8/s8 scheme, and TensorRT's scheme (symmetric int8
    activations, per-channel weights) with its default entropy calibrator
    (``IInt8EntropyCalibrator2``: KL divergence, 2048 -> 128 bins) and with MinMax / Percentile."""
    T = QuantConfig.for_target
    return {
        "per-tensor/minmax": QuantConfig(per_channel=False, method="minmax"),
        "per-channel/minmax": QuantConfig(per_channel=True, method="minmax"),
        "per-channel/percentile": QuantConfig(per_channel=True, method="percentile"),
        "tensorrt-like/entropy": T("tensorrt", method="entropy"),
        "tensorrt-like/per-tensor/entropy": T("tensorrt", method="entropy", per_channel=False),
        "tensorrt-like/minmax": T("tensorrt", method="minmax"),
        "tensorrt-like/percentile": T("tensorrt", method="percentile"),
    }


def choose_int8_config(fp32_onnx, calib, val_data, tolerance: float = 0.01, candidates=None, max_float: int = 8,
                       batch_size: int = 8, progress: bool = True, cache_dir=None) -> tuple[str, QuantConfig, pd.DataFrame]:
    """First configuration of ``candidates`` (default: per-channel MinMax, then Percentile, in
    ONNX Runtime's scheme, then TensorRT's scheme with Percentile) whose validation Dice is within
    ``tolerance`` of FP32; if none is, the best one plus a mixed-precision search (layers kept
    float). Returns ``(name, config, table of what was tried)``."""
    grid = config_grid()
    candidates = candidates or {k: grid[k] for k in ("per-channel/minmax", "per-channel/percentile",
                                                     "tensorrt-like/percentile")}
    tried = evaluate_configs(fp32_onnx, calib, val_data, candidates, batch_size=batch_size, progress=progress,
                             cache_dir=cache_dir)
    fp32_dice = float(tried.loc[tried.config == "fp32", "dice"].iloc[0])
    q = tried[tried.config != "fp32"]
    ok = q[fp32_dice - q["dice"] <= tolerance]
    if len(ok):
        name = str(ok.iloc[0]["config"])
        return name, candidates[name], tried.assign(chosen=tried.config == name)
    best = str(q.sort_values("dice", ascending=False).iloc[0]["config"])
    cfg, steps = mixed_precision_search(fp32_onnx, calib, val_data, candidates[best], tolerance=tolerance,
                                        max_float=max_float, batch_size=batch_size, progress=progress,
                                        cache_dir=cache_dir)
    name = f"{best}+{len(cfg.nodes_to_exclude)}float"
    steps = steps.assign(config=[f"{best}+{k}float" for k in steps["n_float"]])
    tried = pd.concat([tried, steps], ignore_index=True)
    return name, cfg, tried.assign(chosen=tried.config == name)


def summarize_int8(grid: pd.DataFrame, chosen: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per architecture: validation Dice of FP32, the worst and the best INT8
    configuration of the grid with their Dice change, and the chosen configuration's Dice change
    on the test split (``chosen``: rows with ``int8_name == "chosen"``). A collapsed
    configuration (no Dice) counts as the worst; ``collapsed_configs`` lists them."""
    rows = []
    for arch, g in grid.groupby("arch", sort=False):
        q = g[g.config != "fp32"].sort_values("delta_dice", na_position="first")  # collapsed = worst
        c = chosen[(chosen.arch == arch) & (chosen.int8_name == "chosen")]
        rows.append(dict(arch=arch, val_dice_fp32=float(g.loc[g.config == "fp32", "dice"].iloc[0]),
                         worst_config=q.iloc[0]["config"], worst_delta_dice=float(q.iloc[0]["delta_dice"]),
                         best_config=q.iloc[-1]["config"], best_delta_dice=float(q.iloc[-1]["delta_dice"]),
                         chosen=c["chosen_as"].iloc[0] if len(c) else "",
                         chosen_float_layers=int(c["n_float_layers"].iloc[0]) if len(c) else 0,
                         chosen_test_delta_dice=float(c["delta_dice_vs_fp32"].iloc[0]) if len(c) else float("nan"),
                         collapsed_configs=";".join(map(str, q.loc[q["collapsed"].astype(str).str.lower() == "true", "config"]))
                         if "collapsed" in q else ""))
    out = pd.DataFrame(rows)
    out["within_tolerance"] = out["chosen_test_delta_dice"].abs() <= tolerance
    return out


# ------------------------------------------------------------------------------------ speed
def int8_speed(arch: str, files: ModelFiles, cfg: StudyConfig, names=None, include_norewrite: bool = True,
               repeats: int | None = None, warmup: int | None = None, progress: bool = True) -> pd.DataFrame:
    """ONNX Runtime CPU latency at batch 1 of FP32 and the INT8 models ``names`` (interleaved
    blocks of ``cfg.bench_block`` calls; median, p25, p75, speed-up over FP32), plus (``include_norewrite``) the first of them
    quantized without the ConvTranspose rewrite, registered as ``files.int8["no-rewrite"]``. A
    development measurement: the machine's load is not controlled here."""
    repeats = int(repeats or cfg.bench_repeats)
    warmup = int(warmup or cfg.bench_warmup)
    x = files.calib[:1]
    names = list(names or files.int8)
    if include_norewrite and "no-rewrite" not in files.int8:
        files.add_int8("no-rewrite", files.int8[names[0]][0].replace(rewrite_convtranspose=False))
    if include_norewrite and "no-rewrite" not in names:
        names.append("no-rewrite")
    paths_ = {"fp32": files.fp32}
    for name in names:
        paths_[f"int8/{name}"] = files.int8[name][1]
    runners = {k: OrtRunner(p, "fp32" if k == "fp32" else "int8") for k, p in paths_.items()}
    times = interleaved_timings({k: (lambda r=r: r(x)) for k, r in runners.items()}, repeats, warmup, progress,
                                block=int(cfg.bench_block), settle_s=0.05)
    s = variant_summary(times).reset_index()
    s["size_bytes"] = [onnx_file_bytes(paths_[v]) for v in s["variant"]]
    s["batch"] = 1
    out = pd.concat([pd.DataFrame([_base_row(arch, cfg)] * len(s)), s], axis=1)
    return out.assign(threads=runners["fp32"].details["threads"], **machine_info())


# ----------------------------------------------------------------------------------- tables
def record_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    return results.write(results.ACCURACY_BY_FORMAT, df)


def record_sizes(df: pd.DataFrame) -> pd.DataFrame:
    return results.write(results.MODEL_SIZES, df)


def record_configs(df: pd.DataFrame) -> pd.DataFrame:
    return results.write(results.INT8_CONFIGS, df)


def record_speed(df: pd.DataFrame) -> pd.DataFrame:
    return results.write(results.INT8_SPEED, df)


def record_sensitivity(arch: str, cfg: StudyConfig, df: pd.DataFrame) -> pd.DataFrame:
    out = results.lead_columns(df, dict(_base_row(arch, cfg), config=df.attrs.get("config", "")))
    return results.write(results.INT8_SENSITIVITY, out, arch=arch)


def result_tables() -> list[str]:
    """The quantization tables present in ``results_dir()``."""
    names = ("accuracy", "model_sizes", "int8")
    return sorted(p.name for p in paths.results_dir().glob("*.csv") if p.name.startswith(names))


def quantmath_examples() -> pd.DataFrame:
    """Seed 003's two worked examples recomputed with :mod:`quantmath` (rounded as printed)."""
    s1, z1 = scale_zero_point(-2.5, 5.0)
    s2, z2 = scale_zero_point(-8.0, 8.0, symmetric=True)
    return pd.DataFrame([
        dict(scheme="asymmetric [-2.5, 5]", S=f"{s1:.5f}", Z=z1, x=4.1, x_q=int(quantize(4.1, s1, z1)),
             paper="S 0.0294, Z -43, 4.1 -> 96"),
        dict(scheme="symmetric restricted, max|f| = 8", S=f"{s2:.5f}", Z=z2, x=3.86,
             x_q=int(quantize(3.86, s2, z2, symmetric=True)), paper="S 0.0629 (8/127 = 0.06299, truncated), 3.86 -> 61"),
    ])


# ---------------------------------------------------------------------------------- figures
_METRIC_LABEL = {"dice": "Dice (0-1, unitless)", "iou": "IoU (0-1, unitless)",
                 "loss": "BCE + Dice loss (unitless)", "delta_dice": "Dice change vs FP32 (unitless)"}


def plot_accuracy_by_format(df: pd.DataFrame, metrics=("loss", "iou", "dice")):
    """Loss / IoU / Dice per representation (``backend/precision``), one bar per architecture;
    representations not measured here are left out (the table says why)."""
    d = df[df["status"] == "ok"].copy()
    d["representation"] = d["backend"] + "/" + d["precision"] + np.where(
        d.get("int8_name", "").fillna("").astype(str).isin(["", "default"]), "",
        " (" + d.get("int8_name", "").fillna("").astype(str) + ")")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.barplot(data=d, x="representation", y=m, hue="arch", ax=ax)
        ax.set_xlabel("representation (backend/precision)")
        ax.set_ylabel(_METRIC_LABEL[m])
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_horizontalalignment("right")
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
    fig.tight_layout()
    return fig


def plot_model_sizes(df: pd.DataFrame):
    d = df[df["size_bytes"].notna()].copy()
    d["size_MB"] = d["size_bytes"] / 1e6
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(data=d, x="representation", y="size_MB", hue="arch", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("representation")
    ax.set_ylabel("size on disk (MB, log scale)")
    ax.tick_params(axis="x", rotation=45)
    for lbl in ax.get_xticklabels():
        lbl.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def plot_int8_configs(df: pd.DataFrame, metric: str = "dice"):
    """Dice of each INT8 configuration per architecture, with the FP32 level as a line."""
    d = df[df["config"] != "fp32"]
    fig, ax = plt.subplots(figsize=(10, 4))
    sns.barplot(data=d, x="config", y=metric, hue="arch", ax=ax)
    for i, (arch, g) in enumerate(df[df["config"] == "fp32"].groupby("arch", sort=False)):
        ax.axhline(float(g[metric].iloc[0]), ls="--", lw=1, color=sns.color_palette()[i % 10],
                   label=f"{arch} FP32")
    ax.set_xlabel("INT8 configuration (weights / calibration)")
    ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
    ax.tick_params(axis="x", rotation=30)
    for lbl in ax.get_xticklabels():
        lbl.set_horizontalalignment("right")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def plot_sensitivity(df: pd.DataFrame, title: str = ""):
    """Per-layer Dice change when only that layer is INT8 (bars; depthwise layers highlighted)
    and the relative INT8 weight error per tensor vs per channel (lines, right axis)."""
    d = df.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(d)), 4.2))
    colors = ["tab:red" if dw else "tab:blue" for dw in d.get("depthwise", [False] * len(d))]
    ax.bar(np.arange(len(d)), d["delta_dice"], color=colors)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(d)))
    ax.set_xticklabels([n.strip("/").replace("/Conv", "").replace("_as_conv", " (as conv)") for n in d["node"]],
                       rotation=90, fontsize=7)
    ax.set_xlabel("layer quantized alone (ONNX node; red = depthwise)")
    ax.set_ylabel(_METRIC_LABEL["delta_dice"])
    if "err_per_tensor" in d:
        ax2 = ax.twinx()
        ax2.plot(np.arange(len(d)), d["err_per_tensor"], "o-", ms=3, color="tab:orange", label="per-tensor")
        ax2.plot(np.arange(len(d)), d["err_per_channel"], "s-", ms=3, color="tab:green", label="per-channel")
        ax2.set_yscale("log")
        ax2.set_ylabel("relative RMS weight error (unitless, log)")
        ax2.legend(loc="lower right", fontsize=8, title="INT8 weights", title_fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_range_kept(ranges: pd.DataFrame, methods=("entropy", "percentile")):
    """Distribution over activation tensors of the fraction of the observed (MinMax) range each
    calibration method keeps, per architecture."""
    cols = [f"kept_{m}" for m in methods if f"kept_{m}" in ranges]
    d = ranges.melt(id_vars=["arch", "op_type"], value_vars=cols, var_name="method", value_name="kept")
    d["method"] = d["method"].str.replace("kept_", "", regex=False)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.boxplot(data=d, x="method", y="kept", hue="arch", ax=ax)
    ax.set_xlabel("calibration method")
    ax.set_ylabel("calibrated / observed activation range (fraction)")
    ax.set_ylim(0, 1.05)
    fig.tight_layout()
    return fig
