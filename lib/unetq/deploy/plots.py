"""Figures of the quantization notebook (seed 000 Figures 7-8 and the INT8 investigation)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

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
