"""What every study's figures and tables share: saving a figure (atomically, into
``figures_dir()``), showing one as an image (with alt text read off its titles), the colours of
the error map and of every representation (one table each, so every legend matches what is drawn
and a format has the same colour in every figure), a legend placed outside the data, and a
results table as HTML with units in its headers and no pandas index column.

- :data:`ERROR_COLOURS`, :data:`ERROR_COLOUR_NAMES`, :func:`error_image`
- :data:`FORMAT_COLOURS`, :func:`format_colour`, :func:`format_palette`, :func:`format_key`,
  :func:`amp_colour`
- :func:`legend_outside`, :func:`figure_alt`, :func:`figure_image`, :func:`save_figure`
- :func:`column_label` (a column with its unit), :func:`table_html`
- :func:`draw_dice_fps_frontier`: seed 001's Figure 7 from scratch (Dice ± std against frames per second)
"""
from __future__ import annotations

import colorsys
import io
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from IPython.display import Image
from matplotlib.colors import to_hex, to_rgb

from .. import paths
from ..config import StudyConfig
from ..data import SYNTHETIC, dataset_identity
from ..io import atomic_path
from ..metrics import ERROR_CLASSES

#: Colour of each class of :func:`unetq.metrics.error_classes` (0 true negative, 1 true positive,
#: 2 false positive, 3 false negative): every error map and every legend use this table.
ERROR_COLOURS = {"true negative": "#000000", "true positive": "#ffffff",
                 "false positive": "#e4572e", "false negative": "#29a8ff"}
assert tuple(ERROR_COLOURS) == ERROR_CLASSES

#: How the text of a notebook names each colour of :data:`ERROR_COLOURS`.
ERROR_COLOUR_NAMES = {"true negative": "black", "true positive": "white",
                      "false positive": "red", "false negative": "blue"}
assert tuple(ERROR_COLOUR_NAMES) == ERROR_CLASSES


def error_legend_text() -> str:
    """The error map's colours in words (for a notebook's narrative): ``"white: crack found
    (true positive), ..."``."""
    what = {"true positive": "crack found", "false positive": "false alarm", "false negative": "crack missed",
            "true negative": "background"}
    return ", ".join(f"{ERROR_COLOUR_NAMES[k]}: {what[k]} ({k})" for k in ERROR_CLASSES[1:] + ERROR_CLASSES[:1])


#: One colour per representation ``"<backend> <precision>"`` (``unetq.deploy.SUPPORTED``; the
#: labels of ``unetq.studies.report.format_label``): every figure that colours by format or
#: engine takes its colours here, so a format looks the same in every figure. Shades of one hue
#: per engine, lighter for lower precision.
FORMAT_COLOURS = {
    "torch fp32": "#1f4e9c", "torch fp16": "#4f86d9", "torch bf16": "#9dbff0",
    "torch_compile fp32": "#5b2a86", "torch_compile fp16": "#8e5cc0", "torch_compile bf16": "#c6a9e6",
    "onnxruntime fp32": "#1b7837", "onnxruntime fp16": "#5aae61", "onnxruntime int8": "#e08214",
    "onnxruntime_cuda fp32": "#01665e", "onnxruntime_cuda fp16": "#5ab4ac",
    "tensorrt fp32": "#8c2d04", "tensorrt fp16": "#d94801", "tensorrt int8": "#fdae6b",
    "openvino fp32": "#00838f", "openvino bf16": "#4dd0e1", "openvino int8": "#b8860b",
    "openvino_nncf int8": "#6d4c41",
    "bitpack binary": "#c51b7d",
}
#: Colour of a label that names no known representation.
OTHER_COLOUR = "#7f7f7f"

_ENGINE_WORDS = (("onnx runtime cuda", "onnxruntime_cuda"), ("onnxruntime_cuda", "onnxruntime_cuda"),
                 ("onnx runtime", "onnxruntime"), ("onnxruntime", "onnxruntime"), ("ort", "onnxruntime"),
                 ("torch_compile", "torch_compile"), ("torch.compile", "torch_compile"), ("tensorrt", "tensorrt"),
                 ("openvino_nncf", "openvino_nncf"), ("openvino nncf", "openvino_nncf"), ("openvino", "openvino"),
                 ("bitpack", "bitpack"), ("pytorch", "torch"), ("torch", "torch"))
_PRECISION_WORDS = ("fp32", "fp16", "bf16", "int8", "binary")


def format_key(label: str) -> str | None:
    """The :data:`FORMAT_COLOURS` key a label names (``"onnxruntime int8 (percentile)"``,
    ``"U-Net ONNX Runtime INT8"``, ``"MBU-Net bitpack (k=4)"``, ``"torch/fp32"``), or None."""
    text = " " + re.sub(r"[/_\-]+(?=fp|bf|int|binary)", " ", str(label).lower()) + " "
    engine = next((e for w, e in _ENGINE_WORDS if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", text)), None)
    if engine is None:
        return None
    if engine == "bitpack":
        return "bitpack binary"
    precision = next((p for p in _PRECISION_WORDS if re.search(rf"(?<![a-z]){p}(?![0-9a-z])", text)), "fp32")
    key = f"{engine} {precision}"
    return key if key in FORMAT_COLOURS else None


def format_colour(label: str) -> str:
    """The colour of the representation ``label`` names (:func:`format_key`), grey if none."""
    key = format_key(label)
    return FORMAT_COLOURS[key] if key else OTHER_COLOUR


def amp_colour(amp: str) -> str:
    """The colour of a training precision mode (``off``: float32, ``bf16``, ``fp16``): that of
    PyTorch in the same precision, so a precision looks the same in training and deployment figures."""
    return format_colour(f"torch {'fp32' if str(amp) in ('off', 'fp32', 'float32') else amp}")


def _shade(colour: str, k: int) -> str:
    """The ``k``-th variant of a colour: lighter and slightly rotated in hue, never equal to it."""
    h, l, s = colorsys.rgb_to_hls(*to_rgb(colour))
    l = min(0.85, l + 0.12 * k) if l < 0.7 else max(0.25, l - 0.15 * k)
    return to_hex(colorsys.hls_to_rgb((h + 0.02 * k) % 1.0, l, s))


def format_palette(labels: Iterable[str]) -> dict[str, str]:
    """``{label: colour}`` for the labels of a figure: the :data:`FORMAT_COLOURS` colour of the
    representation each names; a variant (``"onnxruntime int8 (percentile)"``) a shade of it, so
    two labels never share a colour."""
    out: dict[str, str] = {}
    used: dict[str, int] = {}
    labels = list(dict.fromkeys(labels))
    # the plain label of a format keeps the pure colour, whatever the order
    for lab in sorted(labels, key=lambda x: "(" in str(x)):
        base = format_colour(lab)
        k = used.get(base, 0)
        used[base] = k + 1
        out[lab] = base if k == 0 else _shade(base, k)
    return {lab: out[lab] for lab in labels}


def legend_outside(fig, axes=None, title: str | None = None, fontsize: float = 8):
    """One legend for ``fig`` to the right of its axes, outside the data: the entries of every
    axes' legend (de-duplicated by label) are gathered and the axes' own legends removed. Returns
    the legend (None when no axes has labelled artists)."""
    axes = list(axes if axes is not None else fig.axes)
    handles, labels = {}, []
    for ax in axes:
        old = ax.get_legend()
        if old is not None and title is None and old.get_title().get_text():
            title = old.get_title().get_text()
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab.startswith("_") or lab in handles:
                continue
            handles[lab] = h
            labels.append(lab)
        if old is not None:
            old.remove()
    if not labels:
        return None
    kw = dict(title=title, fontsize=fontsize, title_fontsize=fontsize, frameon=False)
    if fig.get_layout_engine() is not None and type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine":
        return fig.legend([handles[lab] for lab in labels], labels, loc="outside right center", **kw)
    leg = axes[-1].legend([handles[lab] for lab in labels], labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                          borderaxespad=0.0, **kw)
    fig.tight_layout()
    return leg


def error_image(classes) -> np.ndarray:
    """An error-class map (``unetq.metrics.error_classes``) as ``uint8 [H, W, 3]`` RGB in
    :data:`ERROR_COLOURS`."""
    classes = np.asarray(classes)
    lut = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in ERROR_COLOURS.values()], np.uint8)
    return lut[classes]


def figure_name(name: str, cfg: StudyConfig | None = None) -> str:
    """``name`` on the built-in data; ``<stem>_<dataset identity>.png`` for a run on a real
    dataset, so figures of different data never overwrite each other."""
    ds = dataset_identity(cfg.source) if cfg is not None else SYNTHETIC
    if ds == SYNTHETIC:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}_{ds}.{ext}" if dot else f"{name}_{ds}"


def save_figure(fig, name: str, cfg: StudyConfig | None = None, folder: str | os.PathLike | None = None) -> Path:
    """Save ``fig`` atomically as ``folder/figure_name(name, cfg)`` (PNG; default folder
    ``paths.figures_dir()``)."""
    path = Path(folder or paths.figures_dir()) / figure_name(name, cfg)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def figure_alt(fig) -> str:
    """Alt text of a figure, read off its titles: the figure's title, then each panel's title
    and axis labels (``"Latency per image by representation. Panel 'unet': y latency (ms)..."``)."""
    parts = []
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text().strip():
        parts.append(sup.get_text().strip().rstrip(".") + ".")
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        bits = []
        if ax.get_title():
            bits.append(f"panel '{ax.get_title()}'")
        if ax.get_xlabel():
            bits.append(f"x: {ax.get_xlabel()}")
        if ax.get_ylabel():
            bits.append(f"y: {ax.get_ylabel()}")
        if bits:
            parts.append(", ".join(bits) + ".")
    text = " ".join(parts).strip()
    return text[:1].upper() + text[1:] if text else "Figure"


def figure_image(fig, dpi: int = 85, alt: str | None = None) -> Image:
    """A matplotlib figure as an IPython PNG image (displays the same with or without pyplot's
    inline backend, and in nbconvert's HTML) carrying its alt text (:func:`figure_alt`) in the
    output's metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buf.getvalue(), format="png", metadata={"alt": alt or figure_alt(fig)})


#: Units by column name or suffix (the first match wins): ``latency_ms`` -> ``latency_ms (ms)``.
UNITS = {"_ms_per_image": "ms per image", "_j_per_image": "J per image", "_ms": "ms", "_s": "s",
         "_mb": "MiB", "_MB": "MiB", "_bytes": "bytes", "_ips": "images/s", "_j": "J", "_px": "px",
         "image_size": "px", "source_size": "px", "batch_size": "images", "batch": "images", "n_images": "images",
         "images": "images", "test_n": "images", "fps": "frames/s", "threads": "threads", "torch_threads": "threads",
         "threads_pinned": "threads", "cores": "cores", "masked_layers": "layers", "params": "parameters",
         "macs": "multiply-adds", "ops": "operations", "bitops": "bit operations", "epochs": "epochs",
         "best_epoch": "epoch", "width": "channels", "_percent": "%", "share_percent": "%"}
_RATIO_COLUMNS = ("speedup", "throughput_if", "memory_reduction", "size_reduction", "speedup_vs_off",
                  "mem_reduction_vs_off", "speedup_vs_fp32", "size_vs_fp32")
_SCORE_COLUMNS = ("iou", "dice", "test_iou", "test_dice", "val_dice", "val_iou", "packed_dice", "packed_iou",
                  "test_iou_img", "test_dice_img", "delta_dice", "delta_iou", "zero_fraction", "score")
_LOSS_COLUMNS = ("loss", "test_loss", "val_loss", "train_loss", "delta_loss")


def column_label(col) -> str:
    """A column name with its unit, read off the name (``latency_ms`` -> ``latency_ms (ms)``,
    ``dice`` -> ``dice (0-1)``, ``speedup`` -> ``speedup (x, ratio)``); unchanged when the name
    says nothing of a unit or already carries one."""
    col = str(col)
    if col.endswith(")"):
        return col
    if col in _SCORE_COLUMNS:
        return f"{col} (0-1)"
    if col in _LOSS_COLUMNS:
        return f"{col} (BCE + Dice)"
    if col in _RATIO_COLUMNS:
        return f"{col} (x, ratio)"
    for suffix, unit in UNITS.items():
        if col == suffix or (suffix.startswith("_") and col.endswith(suffix)):
            return f"{col} ({unit})"
    return col


def _number(v: float) -> str:
    """Four significant digits (whole numbers from 1000 on): a table for reading, not for copying."""
    if not np.isfinite(v):
        return "–"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def table_html(df: pd.DataFrame, unit: str | None = None, max_rows: int = 200) -> str:
    """A results table as HTML for a report: the index turned into ordinary columns (a bare
    row-number index dropped: no pandas index column), multi-level headers joined with " · ",
    every header with its unit (:func:`column_label`; value columns a pivot named after their
    categories get ``unit``), missing values as "–", inside a horizontally scrolling container so a
    wide table never spills over the page."""
    d = df.head(max_rows).copy()
    value_cols = [str(c) if not isinstance(c, tuple) else c for c in d.columns]
    names = [n for n in d.index.names if n is not None]
    if not names and pd.api.types.is_integer_dtype(d.index.dtype):
        d = d.reset_index(drop=True)
        index_cols: list = []
    else:
        index_cols = [n if n is not None else "index" for n in d.index.names]
        d = d.reset_index()
    col_name = df.columns.name if not isinstance(df.columns, pd.MultiIndex) else None

    def label(c) -> str:
        parts = list(c) if isinstance(c, tuple) else [c]
        parts = [p for p in parts if str(p) != ""]
        if c in index_cols or (isinstance(c, tuple) and parts and parts[0] in index_cols):
            return column_label(parts[0]) if parts else ""
        texts = [column_label(p) for p in parts]
        text = " · ".join(texts)
        has_unit = any(t != str(p) for t, p in zip(texts, parts))
        if not has_unit and col_name is not None and column_label(col_name) != str(col_name):
            unit_of_name = column_label(col_name)[len(str(col_name)) + 2:-1]
            text = f"{text} {unit_of_name}"
        if not has_unit and unit and (c in value_cols or str(c) in value_cols) \
                and pd.api.types.is_numeric_dtype(d[c]):
            text = f"{text} ({unit})"
        return text

    d.columns = [label(c) for c in d.columns]
    body = d.to_html(index=False, border=0, classes="unetq-table", na_rep="–", escape=True, float_format=_number)
    more = (f"<p class='unetq-table-note'>First {max_rows} of {len(df)} rows.</p>" if len(df) > max_rows else "")
    return f'<div class="unetq-table-wrap" style="overflow-x:auto;max-width:100%">{body}</div>{more}'


def to_hw(a: np.ndarray) -> np.ndarray:
    """[C, H, W] or [H, W] -> [H, W] (first channel) or [H, W, 3] for an RGB image."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.clip(np.transpose(a, (1, 2, 0)), 0, 1)
    if a.ndim == 3:
        return a[0]
    if a.ndim == 2:
        return a
    raise ValueError(f"expected an image [C, H, W] or [H, W], got shape {a.shape}")


def draw_dice_fps_frontier(ax, front: pd.DataFrame) -> None:
    """Test Dice (mean ± std over training seeds, error bars) against the packed engine's frames
    per second on ``ax``, one point per masked-layer count ``k`` (``mbu_ablation_frontier.csv``
    rows: ``fps``, ``test_dice_mean``, ``test_dice_std``, ``masked_layers``, ``on_frontier``),
    the frontier joined."""
    xerr, label = None, "k masked layers (Dice mean ± std over seeds)"
    if {"median_ms", "iqr_ms"} <= set(front.columns):  # the timing's own spread, as frame rates
        med, half = front["median_ms"].astype(float), front["iqr_ms"].astype(float) / 2
        xerr = np.vstack([front["fps"] - 1e3 / (med + half), 1e3 / (med - half).clip(lower=1e-9) - front["fps"]])
        xerr = np.nan_to_num(xerr.clip(min=0))
        label += "; horizontal bars: interquartile range of the timing"
    ax.errorbar(front["fps"], front["test_dice_mean"], yerr=front["test_dice_std"].fillna(0), xerr=xerr, fmt="o",
                capsize=3, color="C0", zorder=3, label=label)
    f = front[front["on_frontier"].astype(bool)].sort_values("fps")
    ax.plot(f["fps"], f["test_dice_mean"], color="C1", lw=1.2, label="Pareto frontier")
    for r in front.itertuples():
        ax.annotate(f"k={int(r.masked_layers)}", (r.fps, r.test_dice_mean), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set(xlabel="frames per second, packed engine (batch 1, this CPU)", ylabel="test Dice (0-1), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
