"""The study's report (notebook ``08_report``): every section is computed from the result tables,
read through :mod:`unetq.results`; a section that cannot be computed says why instead of
failing: ``"not measured on this machine"`` only when the hardware it needs is absent here (a
CUDA GPU for TensorRT and ONNX Runtime CUDA), ``"not run yet"`` with the command that fills it
(``make all PRESET=<preset>``) for work that could run here.

- :func:`load_table`        a results table (or ``None`` and the reason): ``unetq.results.read``
- :class:`Section`          title, text, table and figure; displays itself in a notebook
- section builders          :func:`latency_by_format` (seed 000 Fig. 5), :func:`memory_by_format`
  (Fig. 6), :func:`accuracy_by_format` (Figs. 7-8), :func:`throughput_vs_batch`,
  :func:`speedup_table` (seed 003 Tables 6-9), :func:`image_size_sweep`, :func:`amp_training`
  (seed 003), :func:`mbu_pareto`, :func:`lr_sweep`, :func:`recommendations`
- :func:`build_report`      all sections in report order; :func:`section_status` which were shown
- :func:`choose_preset`     the preset whose rows the report shows (the committed study's when the
  notebook's own preset has none) and why; :func:`show_preset`
"""
from __future__ import annotations

import html as _html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import HTML, Markdown, display
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import machine, paths, results
from ..config import PRESETS
from ..results import NOT_RUN, Loaded  # noqa: F401 (NOT_RUN: re-exported, the report's vocabulary)
from ..results import read as load_table
from .figures import amp_colour, figure_image, format_palette, legend_outside, save_figure, table_html
from .notice import NOT_MEASURED, NOT_RUN_YET, missing_reason, not_measured_here, not_run_yet, run_command, \
    show_preset_notice
from .tuning import chosen_lrs
METRICS = ("loss", "iou", "dice")


def _load(table, preset: str | None, dataset: str | None = None, command: str | None = None) -> Loaded:
    """:func:`load_table`, a missing table reported as not run yet, with the command that fills
    it (default: the preset's main job)."""
    t = load_table(table, preset, dataset=dataset)
    return t if t.df is not None else Loaded(None, not_run_yet(missing_reason(t.message), preset, command))


def _absent_hardware(df: pd.DataFrame) -> str:
    """The reasons of rows not measured because this machine lacks the hardware ("" if none)."""
    if "status" not in df.columns:
        return ""
    st = df["status"].astype(str)
    rows = df[st.str.startswith(NOT_MEASURED)]
    if rows.empty or len(rows) < len(df):
        return ""
    why = rows["reason"].dropna().astype(str).unique() if "reason" in rows else []
    return "; ".join(sorted(why)) or "; ".join(sorted(st.unique()))


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def format_label(backend: str, precision: str) -> str:
    """``"onnxruntime int8"``-style label of a representation."""
    return f"{backend} {precision}"


_BACKEND_ORDER = ("torch", "torch_compile", "onnxruntime", "onnxruntime_cuda", "tensorrt", "openvino", "openvino_nncf",
                  "bitpack")
_PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "binary")


def format_order(df: pd.DataFrame) -> list[str]:
    """The formats of ``df`` in a fixed reading order: backend, then precision (FP32 first)."""
    def rank(f: str):
        parts = f.split(" ")
        b = _BACKEND_ORDER.index(parts[0]) if parts[0] in _BACKEND_ORDER else len(_BACKEND_ORDER)
        p = _PRECISION_ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in _PRECISION_ORDER else 99
        return (b, p, f)

    return sorted(df["format"].dropna().unique(), key=rank)


def _with_format(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["format"] = [format_label(b, p) for b, p in zip(df["backend"], df["precision"])]
    return df


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"] == "measured"]
    return df


def _num(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    df = df.copy()
    for c in cols:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------
@dataclass
class Section:
    """One part of the report; in a notebook it displays its title, text, figure and table."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: Any = None
    message: str = ""  # set when the section could not be computed (missing table...)
    notes: list[str] = field(default_factory=list)
    unit: str | None = None  # unit of the table's value columns (a pivot's category columns)

    @property
    def ok(self) -> bool:
        return not self.message

    @property
    def status(self) -> str:
        """``"shown"``, :data:`NOT_RUN_YET` or :data:`NOT_MEASURED` (or the message's own kind)."""
        return "shown" if self.ok else self.message.split(":")[0]

    def table_html(self) -> str:
        """The table as the report shows it (:func:`unetq.studies.figures.table_html`): units in
        the headers, no pandas index column, a scrolling container."""
        return "" if self.table is None else table_html(self.table, self.unit)

    def _ipython_display_(self):
        display(Markdown(f"### {self.title}"))
        if self.message:
            display(HTML(f"<p style='color:#8a6d3b'><b>{_html.escape(self.message)}</b></p>"))
            return
        if self.text:
            display(Markdown(self.text))
        if self.figure is not None:
            display(figure_image(self.figure))
        if self.table is not None:
            display(HTML(self.table_html()))
        for n in self.notes:
            display(Markdown(f"*{n}*"))

    def __repr__(self) -> str:
        state = self.message or f"{0 if self.table is None else len(self.table)} rows"
        return f"<Section {self.title!r}: {state}>"

    def save_figure(self, folder: str | os.PathLike | None = None, cfg=None) -> Path | None:
        """Write the figure as PNG (atomically) into ``folder`` (default ``figures_dir()``), named
        for ``cfg``'s dataset (:func:`unetq.studies.figures.figure_name`)."""
        if self.figure is None:
            return None
        slug = "".join(ch if ch.isalnum() else "_" for ch in self.title.lower()).strip("_")
        return save_figure(self.figure, f"report_{slug}.png", cfg, folder)


def _missing(title: str, msg: str) -> Section:
    return Section(title, message=msg)


def _fig(ncols: int = 1, width: float = 6.0, height: float = 3.6):
    """A figure outside pyplot's global state (shown only when a Section displays it)."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)
    return fig, list(axes[0])


def _grid(n: int, width: float = 4.5, height: float = 3.4, max_cols: int = 2):
    """``n`` panels, at most ``max_cols`` a row (a wide row shrinks unreadably on a page)."""
    cols = min(n, max_cols) if n > 3 else n
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _auto_log(ax, values, axis: str = "y", ratio: float = 30.0) -> None:
    """Log scale when the values span more than ``ratio`` (one bar would flatten the others)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    v = v[v > 0]
    if len(v) and v.max() / v.min() > ratio:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _log2_ticks(ax, values) -> None:
    """A base-2 log x axis with a plain tick at each value measured (batch sizes, image sides)."""
    ax.set_xscale("log", base=2)
    v = sorted(values)
    ax.set_xticks(v, [str(int(x)) for x in v])
    ax.minorticks_off()


def _bars_by_format(ax, df: pd.DataFrame, y: str) -> None:
    """Bars of ``y`` per architecture, one bar per representation in its
    :data:`~unetq.studies.figures.FORMAT_COLOURS` colour (short labels on x: no overlap)."""
    order = format_order(df)
    sns.barplot(df, x="arch", y=y, hue="format", hue_order=order, order=sorted(df["arch"].unique()),
                palette=format_palette(order), saturation=1, ax=ax)


def _finish(fig, title: str, legend_title: str | None = "representation") -> None:
    """A sentence as the figure's title and one legend outside the data, to the right."""
    fig.suptitle(title, fontsize=11)
    legend_outside(fig, title=legend_title)


def _pick_size(df: pd.DataFrame, image_size: int | None) -> int:
    if image_size is not None:
        return int(image_size)
    # the size measured at the most batch sizes is the study's main size
    counts = df.groupby("image_size")["batch_size"].nunique()
    return int(counts.idxmax())


def _bench(preset, image_size=None, dataset=None) -> tuple[pd.DataFrame | None, str, int | None]:
    t = _load(results.BENCHMARK, preset, dataset)
    if t.df is None:
        return None, t.message, None
    df = _measured(_num(t.df, "latency_ms", "latency_ms_per_image", "throughput_ips", "peak_mem_mb",
                        "model_size_mb", "speedup", "throughput_if", "energy_j_per_image"))
    if df.empty:
        absent = _absent_hardware(t.df)
        return None, (not_measured_here(absent) if absent
                      else not_run_yet("benchmark.csv has no measured rows", preset)), None
    size = _pick_size(df, image_size)
    return _with_format(df), "", size


def _machine_note(df: pd.DataFrame) -> str:
    cols = [c for c in ("cpu", "cores", "threads_pinned", "gpu") if c in df.columns]
    if not cols:
        return ""
    r = df.iloc[0]

    def show(v):
        return int(v) if isinstance(v, float) and v.is_integer() else v

    return "Measured on " + ", ".join(f"{c}={show(r[c])}" for c in cols) + "."


def latency_by_format(preset: str | None = None, batch_size: int = 1, image_size: int | None = None, *, dataset: str | None = None) -> Section:
    """Latency per image of every architecture in every representation (seed 000 Figure 5), and
    the seconds for the whole test split (JPEG reading included) when it was timed."""
    title = "Latency by format"
    df, msg, size = _bench(preset, image_size, dataset)
    if df is None:
        return _missing(title, msg)
    sub = df[(df["image_size"] == size) & (df["batch_size"] == batch_size)]
    if sub.empty:
        return _missing(title, not_run_yet(f"no measured rows at batch {batch_size}, {size}x{size} px", preset))
    data = load_table(results.BENCHMARK_DATASET, preset, dataset=dataset)
    dset = None
    if data.df is not None:
        dset = _with_format(_measured(_num(data.df, "seconds_total")))
        dset = dset[dset["image_size"] == size] if not dset.empty else dset
    fig, axes = _fig(2 if dset is not None and len(dset) else 1, 5.5, 3.8)
    _bars_by_format(axes[0], sub, "latency_ms_per_image")
    axes[0].set(xlabel="architecture", ylabel="latency per image (ms), median",
                title=f"batch {batch_size}, {size}x{size} px")
    _auto_log(axes[0], sub["latency_ms_per_image"])
    table = sub.pivot_table(index="format", columns="arch", values="latency_ms_per_image").round(3)
    notes = []
    if len(axes) > 1:
        _bars_by_format(axes[1], dset, "seconds_total")
        n = int(dset["n_images"].iloc[0])
        axes[1].set(xlabel="architecture", ylabel="whole test split (s)",
                    title=f"{n} test images, JPEG reading included")
        _auto_log(axes[1], dset["seconds_total"])
        notes.append("Right: seconds for the whole test split as seed 000 times it (image reading and "
                     "preprocessing included, one pass).")
    notes.append(_machine_note(sub))
    if "n_repeats" in sub.columns:
        single = sub[pd.to_numeric(sub["n_repeats"], errors="coerce") == 1]
        if len(single):
            notes.append("Timed with a single warm call (slower than the preset's max_call_s): "
                         + ", ".join(sorted(f"{a} {f}" for a, f in zip(single["arch"], single["format"]))) + ".")
    if "busy_cores_at_start" in sub.columns:
        # CPU used by *other* processes, sampled before the suite started; the load average
        # also counts the benchmark's own threads, so on a small machine it is no sign of load.
        busy = pd.to_numeric(sub["busy_cores_at_start"], errors="coerce") >= 0.5
        if busy.any():
            notes.append(f"Other processes kept at least half a core busy when {int(busy.sum())} of these "
                         "measurements started: absolute timings are unreliable.")
    _finish(fig, f"Latency per image of each architecture in each representation (batch {batch_size}, "
                 f"{size}x{size} px)")
    return Section(title, f"Median latency per image, batch {batch_size}; lower is better.", table, fig,
                   notes=[n for n in notes if n], unit="ms per image")


def memory_by_format(preset: str | None = None, batch_size: int | None = None, image_size: int | None = None, *, dataset: str | None = None) -> Section:
    """Peak inference memory (seed 000 Figure 6) and model size on disk by representation."""
    title = "Memory by format"
    df, msg, size = _bench(preset, image_size, dataset)
    if df is None:
        return _missing(title, msg)
    sub = df[df["image_size"] == size]
    b = int(batch_size or sub["batch_size"].max())
    sub = sub[sub["batch_size"] == b]
    if sub.empty:
        return _missing(title, not_run_yet(f"no measured rows at batch {b}", preset))
    fig, axes = _fig(2, 5.5, 3.8)
    _bars_by_format(axes[0], sub, "peak_mem_mb")
    axes[0].set(xlabel="architecture", ylabel="peak inference memory (MiB)", title=f"batch {b}, {size}x{size} px")
    _bars_by_format(axes[1], sub, "model_size_mb")
    axes[1].set(xlabel="architecture", ylabel="model size on disk (MiB)", title="size of the representation")
    for ax, col in zip(axes, ("peak_mem_mb", "model_size_mb")):
        _auto_log(ax, sub[col])
    _finish(fig, f"Peak inference memory and model size of each representation (batch {b}, {size}x{size} px)")
    methods = sorted(sub["mem_method"].dropna().unique()) if "mem_method" in sub else []
    table = sub.pivot_table(index="format", columns="arch", values=["peak_mem_mb", "model_size_mb"]).round(3)
    return Section(title, "Peak memory while running inference, and the size of the representation on disk.",
                   table, fig, notes=[f"Memory measured as: {'; '.join(methods)}."] if methods else [])


def _accuracy(preset, dataset=None) -> Loaded:
    t = _load(results.ACCURACY_BY_FORMAT, preset, dataset)
    if t.df is None:
        return t
    df = t.df.copy()
    if "arch" not in df.columns and "model" in df.columns:
        df = df.rename(columns={"model": "arch"})
    need = {"arch", "backend", "precision"}
    if not need <= set(df.columns):
        return Loaded(None, not_run_yet(f"accuracy_by_format.csv lacks columns {sorted(need - set(df.columns))}",
                                        preset))
    ren = {c: c.replace("test_", "") for c in df.columns if c.replace("test_", "") in METRICS and c not in METRICS}
    df = _num(df.rename(columns=ren), *METRICS)
    if "split" in df.columns and (df["split"] == "test").any():
        df = df[df["split"] == "test"]
    df = _with_format(df)
    df = df.reset_index(drop=True)
    df["is_default"] = True
    if "int8_name" in df.columns:  # several INT8 configurations: one represents the format
        name = df["int8_name"].fillna("").astype(str)
        rank = _int8_rank(name)
        keys = ["arch", "backend", "precision"]
        first = rank.groupby([df[k] for k in keys]).transform("min")
        df["is_default"] = rank == first
        df["is_default"] &= ~df.assign(_r=rank).duplicated(keys + ["_r"])
        several = df.groupby(keys)["format"].transform("size") > 1
        label = several & ~df["is_default"] & (name != "")
        df.loc[label, "format"] = df.loc[label, "format"] + " (" + name[label] + ")"
    return Loaded(df, t.message)


#: which INT8 configuration of the quantization notebook stands for "INT8" in the report
_INT8_PRIORITY = ("chosen", "default", "")


def _int8_rank(names: pd.Series) -> pd.Series:
    """Position of each INT8 configuration name in :data:`_INT8_PRIORITY` (others last)."""
    return names.map(lambda n: _INT8_PRIORITY.index(n) if n in _INT8_PRIORITY else len(_INT8_PRIORITY))


def accuracy_by_format(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Loss, IoU and Dice of every representation, one panel per architecture (seed 000
    Figures 7-8)."""
    title = "Accuracy by format"
    t = _accuracy(preset, dataset)
    mbu, mbu_note = _mbu_accuracy_rows(preset, dataset)
    if t.df is None and mbu is None:
        return _missing(title, t.message)
    df = t.df if t.df is not None else pd.DataFrame(columns=["arch", "format", *METRICS])
    metrics = [m for m in METRICS if m in df.columns]
    if not metrics:
        return _missing(title, not_run_yet(f"accuracy_by_format.csv has none of {METRICS}", preset))
    if "status" in df.columns:
        df = df[df["status"].isin(["measured", "ok", "evaluated"]) | df[metrics].notna().any(axis=1)]
    df = df.dropna(subset=metrics, how="all")
    notes = []
    if mbu is not None and "mbu_unet" not in set(df["arch"]):
        df = pd.concat([df, mbu], ignore_index=True)
        notes.append(mbu_note)
    if df.empty:
        return _missing(title, not_run_yet("no evaluated representation in accuracy_by_format.csv", preset))
    archs = sorted(df["arch"].unique())
    fig, axes = _grid(len(archs), 4.5, 3.4)
    long = df.melt(id_vars=["arch", "format"], value_vars=metrics, var_name="metric", value_name="value")
    palette = format_palette(format_order(long))
    for ax, a in zip(axes, archs):
        sub = long[long["arch"] == a]
        sns.barplot(sub, x="metric", y="value", hue="format", ax=ax, hue_order=format_order(sub), palette=palette,
                    saturation=1)
        ax.set(title=a, xlabel="metric (test split)", ylabel="value (loss: BCE+Dice; IoU, Dice: 0-1)")
    _finish(fig, "Test-split loss, IoU and Dice of each architecture in each representation")
    table = df.pivot_table(index=["arch", "format"], values=metrics).round(4)
    return Section(title, "Test-split loss, IoU and Dice of each representation (seed 000 Figures 7-8).",
                   table, fig, notes=notes)


def _mbu_accuracy_rows(preset, dataset=None) -> tuple[pd.DataFrame | None, str]:
    """The MBU-Net's accuracy as rows of the accuracy-by-format figure, from notebook 05's
    ``mbu_accuracy.csv`` (its main configuration ``mbu``, mean over training seeds): in PyTorch
    (``torch fp32``, binary weights and activations simulated) and in the bit-packed engine."""
    t = load_table(results.MBU_ACCURACY, preset, dataset=dataset)
    if t.df is None or "config" not in t.df.columns:
        return None, ""
    m = _num(t.df[t.df["config"].astype(str) == "mbu"], "test_loss", "test_iou", "test_dice", "packed_dice",
             "packed_iou")
    if m.empty or m["test_dice"].notna().sum() == 0:
        return None, ""
    mean = m.mean(numeric_only=True)
    rows = [dict(arch="mbu_unet", backend="torch", precision="fp32", loss=mean.get("test_loss", np.nan),
                 iou=mean.get("test_iou", np.nan), dice=mean["test_dice"])]
    if pd.notna(mean.get("packed_dice", np.nan)):
        rows.append(dict(arch="mbu_unet", backend="bitpack", precision="binary", loss=np.nan,
                         iou=mean.get("packed_iou", np.nan), dice=mean["packed_dice"]))
    n = len(m)
    return _with_format(pd.DataFrame(rows)), (f"MBU-Net from mbu_accuracy.csv (notebook 05, configuration mbu, "
                                              f"mean over {n} training run{'s' if n != 1 else ''}).")


def throughput_vs_batch(preset: str | None = None, image_size: int | None = None, *, dataset: str | None = None) -> Section:
    """Throughput (images/s) against batch size, one line per representation, per architecture."""
    title = "Throughput vs batch size"
    df, msg, size = _bench(preset, image_size, dataset)
    if df is None:
        return _missing(title, msg)
    sub = df[df["image_size"] == size]
    if sub["batch_size"].nunique() < 2:
        return _missing(title, not_run_yet(f"only one batch size measured at {size}x{size} px", preset))
    archs = sorted(sub["arch"].unique())
    fig, axes = _grid(len(archs), 4.5, 3.4)
    palette = format_palette(format_order(sub))
    for ax, a in zip(axes, archs):
        d = sub[sub["arch"] == a]
        sns.lineplot(d, x="batch_size", y="throughput_ips", hue="format", hue_order=format_order(d), palette=palette,
                     marker="o", ax=ax)
        ax.set(title=a, xlabel="batch size (images)", ylabel="throughput (images/s)")
        _log2_ticks(ax, sub["batch_size"].unique())
        _auto_log(ax, sub.loc[sub["arch"] == a, "throughput_ips"])
    _finish(fig, f"Throughput against batch size for each representation ({size}x{size} px)")
    table = sub.pivot_table(index=["arch", "batch_size"], columns="format", values="throughput_ips").round(1)
    return Section(title, f"Images per second at {size}x{size} px (seed 003 Tables 8-9).", table, fig,
                   unit="images/s")


def speedup_table(preset: str | None = None, value: str = "speedup", image_size: int | None = None, *, dataset: str | None = None) -> Section:
    """Seed 003 Tables 6-9 for this study: ``speedup`` (latency) or ``throughput_if`` over the FP32
    PyTorch baseline, rows batch size, columns representation, per architecture."""
    title = {"speedup": "Latency speed-up over FP32 PyTorch",
             "throughput_if": "Throughput improvement factor over FP32 PyTorch"}.get(value, value)
    df, msg, size = _bench(preset, image_size, dataset)
    if df is None:
        return _missing(title, msg)
    sub = df[df["image_size"] == size]
    if value not in sub.columns or sub[value].notna().sum() == 0:
        return _missing(title, not_run_yet(f"no {value} values (the FP32 PyTorch baseline was not measured)", preset))
    table = sub.pivot_table(index=["arch", "batch_size"], columns="format", values=value).round(2)
    return Section(title, f"Ratios measured side by side (interleaved) in one run, {size}x{size} px; "
                          "1.0 = FP32 PyTorch of the same architecture and batch size.", table,
                   unit="x vs FP32 PyTorch")


def image_size_sweep(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Latency per image against image size for the representations swept over size."""
    title = "Latency vs image size"
    t = _load(results.BENCHMARK, preset, dataset)
    if t.df is None:
        return _missing(title, t.message)
    df = _with_format(_measured(_num(t.df, "latency_ms_per_image")))
    if df.empty or df["image_size"].nunique() < 2:
        return _missing(title, not_run_yet("one image size only", preset))
    # per (arch, format), the batch size that was measured at every size it appears at
    b = int(df.groupby("batch_size")["image_size"].nunique().idxmax())
    sub = df[df["batch_size"] == b]
    sub = sub[sub.groupby(["arch", "format"])["image_size"].transform("nunique") > 1]
    if sub.empty:
        return _missing(title, not_run_yet("no representation measured at two image sizes", preset))
    fig, axes = _fig(1, 6.5, 3.8)
    sns.lineplot(sub, x="image_size", y="latency_ms_per_image", hue="format", hue_order=format_order(sub),
                 palette=format_palette(format_order(sub)), style="arch", marker="o", ax=axes[0])
    axes[0].set(xlabel="image size (px per side)", ylabel="latency per image (ms)", yscale="log", title=f"batch {b}")
    _log2_ticks(axes[0], sub["image_size"].unique())
    _finish(fig, f"Latency per image against image size (batch {b})", legend_title=None)
    table = sub.pivot_table(index=["arch", "format"], columns="image_size", values="latency_ms_per_image").round(3)
    return Section(title, "How latency grows with the image side (seed 003 compares 48 px and 128 px inputs).",
                   table, fig, unit="ms per image")


def characterise_command(preset: str | None) -> str:
    return f"make characterise PRESET={preset or 'quick'}"


def batch_image_grid(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Seed 003's characterisation: throughput of every representation against batch size, one
    panel per architecture and image size, from ``benchmark_grid.csv``."""
    title = "Throughput over batch size and image size"
    cmd = characterise_command(preset)
    t = _load(results.BENCHMARK_GRID, preset, dataset, cmd)
    if t.df is None:
        return _missing(title, t.message)
    df = _with_format(_measured(_num(t.df, "throughput_ips", "latency_ms_per_image", "speedup")))
    if df.empty:
        absent = _absent_hardware(t.df)
        return _missing(title, not_measured_here(absent) if absent
                        else not_run_yet("benchmark_grid.csv has no measured rows", preset, cmd))
    archs, sizes = sorted(df["arch"].unique()), sorted(df["image_size"].unique())
    order = format_order(df)
    palette = format_palette(order)  # one colour per representation in every panel
    fig = Figure(figsize=(3.2 * len(archs) + 2.2, 2.8 * len(sizes) + 0.4), layout="constrained")
    grid = fig.subplots(len(sizes), len(archs), squeeze=False)
    bs = sorted(df["batch_size"].unique())
    for i, z in enumerate(sizes):
        for j, a in enumerate(archs):
            ax = grid[i, j]
            d = df[(df["arch"] == a) & (df["image_size"] == z)]
            if not d.empty:
                sns.lineplot(d, x="batch_size", y="throughput_ips", hue="format", hue_order=[f for f in order if f in
                             set(d["format"])], palette=palette, marker="o", ax=ax, legend=False)
            ax.set(title=f"{a}, {z}x{z} px", xlabel="batch size (images)" if i == len(sizes) - 1 else "",
                   ylabel="throughput (images/s)" if j == 0 else "", yscale="log")
            _log2_ticks(ax, bs)
    fig.legend(handles=[Line2D([], [], color=palette[f], marker="o", label=f) for f in order],
               title="representation", loc="outside right center", fontsize=8)
    fig.suptitle("Throughput against batch size per architecture and image size (a missing point was skipped; "
                 "the reasons are in benchmark_grid.csv)", fontsize=10)
    table = df.pivot_table(index=["arch", "image_size", "batch_size"], columns="format",
                           values="throughput_ips").round(1).reset_index()
    skipped = t.df[t.df["status"].astype(str) != "measured"] if "status" in t.df else t.df.iloc[:0]
    note = f" {len(skipped)} combinations not measured (reasons in benchmark_grid.csv)." if len(skipped) else ""
    return Section(title, "Images per second, every representation at every batch size and image size, measured "
                          "interleaved per architecture, size and batch in one run (seed 003 Tables 6-9)." + note
                          + _machine_note(df), table, fig, unit="images/s")


#: The columns the AMP sections show.
_AMP_COLUMNS = ("arch", "amp", "device", "batch_size", "epoch_time_s", "peak_mem_mb", "peak_mem_kind",
                "speedup_vs_off", "mem_reduction_vs_off")


def _amp_rows(preset, dataset) -> tuple[pd.DataFrame | None, str]:
    t = _load(results.AMP, preset, dataset)
    if t.df is None:
        return None, t.message
    df = _num(t.df, "speedup_vs_off", "mem_reduction_vs_off", "epoch_time_s", "peak_mem_mb", "batch_size")
    need = {"arch", "amp", "batch_size", "speedup_vs_off", "mem_reduction_vs_off"}
    if not need <= set(df.columns):
        return None, not_run_yet(f"amp.csv lacks {sorted(need - set(df.columns))}", preset)
    return df.assign(amp=df["amp"].astype(str)), ""


def amp_over_batch(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """AMP training speed-up and memory reduction factor against batch size (seed 003 Tables 2-5),
    one line per architecture and autocast type."""
    title = "Mixed-precision (AMP) training over batch size"
    df, msg = _amp_rows(preset, dataset)
    if df is None:
        return _missing(title, msg)
    df = df[df["amp"] != "off"]
    if df.groupby("arch")["batch_size"].nunique().max() < 2:
        return _missing(title, not_run_yet("AMP measured at one batch size only", preset, characterise_command(preset)))
    fig, axes = _fig(2, 5.0, 3.6)
    kw = dict(x="batch_size", hue="arch", hue_order=sorted(df["arch"].unique()), style="amp", marker="o")
    sns.lineplot(df, y="speedup_vs_off", ax=axes[0], **kw)
    sns.lineplot(df, y="mem_reduction_vs_off", ax=axes[1], legend=False, **kw)
    axes[0].set(xlabel="batch size (images)", ylabel="training speed-up vs float32 (x)", title="speed")
    axes[1].set(xlabel="batch size (images)", ylabel="memory reduction factor vs float32 (x)", title="memory")
    bs = sorted(df["batch_size"].unique())
    for ax in axes:
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        _log2_ticks(ax, bs)
    _finish(fig, "Autocast training against float32 over batch size: speed-up and memory reduction",
            legend_title=None)
    cols = [c for c in _AMP_COLUMNS if c in df.columns]
    return Section(title, "One epoch per batch size in float32 and with autocast, same model seed and batches; "
                          "ratios from the same run. On a CPU, memory is the peak increase of resident memory.",
                   df[cols].sort_values(["arch", "amp", "batch_size"]).round(3).reset_index(drop=True), fig)


def amp_training(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """AMP training speed-up and memory reduction factor (seed 003 Equations 17-18) at the
    preset's training batch size (the batch sweep is :func:`amp_over_batch`)."""
    title = "Mixed-precision (AMP) training"
    df, msg = _amp_rows(preset, dataset)
    if df is None:
        return _missing(title, msg)
    df, b = _one_batch(df, preset)
    fig, axes = _fig(2, 5.0, 3.6)
    palette = {a: amp_colour(a) for a in df["amp"].unique()}
    sns.barplot(df, x="arch", y="speedup_vs_off", hue="amp", palette=palette, saturation=1, ax=axes[0])
    axes[0].set(xlabel="architecture", ylabel="training speed-up vs float32 (x)", title="speed")
    sns.barplot(df, x="arch", y="mem_reduction_vs_off", hue="amp", palette=palette, saturation=1, ax=axes[1])
    axes[1].set(xlabel="architecture", ylabel="memory reduction factor vs float32 (x)", title="memory")
    for ax in axes:
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    _finish(fig, f"Training with autocast against float32 at batch {b}: speed-up and memory reduction",
            legend_title="training precision")
    cols = [c for c in _AMP_COLUMNS if c in df.columns]
    return Section(title, f"Epoch time and peak memory with autocast against float32 training, batch {b}.",
                   df[cols].round(3).reset_index(drop=True), fig)


def _one_batch(df: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, int]:
    """The rows of one batch size (never an average over several): the preset's training batch
    size where it was measured, else the one measured for the most architectures."""
    sizes = df.groupby("batch_size")["arch"].nunique()
    own = PRESETS.get(preset, {}).get("batch_size") if preset else None
    b = int(own) if own in sizes.index else int(sizes.sort_index().idxmax())
    return df[df["batch_size"] == b], b


def pareto_front(df: pd.DataFrame, cost: str, gain: str, cost_higher_better: bool = False) -> pd.DataFrame:
    """Rows not dominated by another (better or equal on ``cost`` and higher or equal ``gain``,
    one strictly), sorted from best to worst ``cost``. ``cost_higher_better`` for an x that is a
    speed (frames per second) rather than a cost."""
    d = df.dropna(subset=[cost, gain]).sort_values([cost, gain], ascending=[not cost_higher_better, False])
    keep, best = [], -np.inf
    for i, r in d.iterrows():
        if r[gain] > best:
            keep.append(i)
            best = r[gain]
    return d.loc[keep]


#: x candidates of the MBU-Net frontier: (column, higher is better, axis label)
_COSTS = (("fps", True, "frames per second (batch 1)"), ("latency_ms", False, "latency (ms)"),
          ("median_ms", False, "latency (ms)"), ("latency_ms_per_image", False, "latency (ms per image)"),
          ("bitops", False, "bit operations"), ("ops", False, "operations"), ("cost_score", False, "cost score (0-1)"),
          ("model_size_mb", False, "model size (MiB)"), ("packed_bytes", False, "packed size (bytes)"),
          ("nbytes", False, "size (bytes)"), ("size_bytes", False, "size (bytes)"), ("params", False, "parameters"))
_GAINS = ("test_dice", "dice", "packed_dice", "val_dice", "test_iou", "iou")


def mbu_pareto(preset: str | None = None, cost: str | None = None, gain: str | None = None, *, dataset: str | None = None) -> Section:
    """MBU-Net configurations (binary / masked layers): accuracy against speed or cost, with the
    Pareto frontier (from the ``mbu_*.csv`` tables, a ``*pareto*`` one first)."""
    title = "MBU-Net Pareto frontier"
    t = _load("mbu_*", preset, dataset)
    if t.df is None:
        return _missing(title, t.message)
    found = None
    names = sorted(t.df["table"].unique(), key=lambda n: ("pareto" not in n, n))
    for name in names:
        g = _num(t.df[t.df["table"] == name].dropna(axis=1, how="all"), *(c for c, _, _ in _COSTS), *_GAINS)
        xs = [c for c in _COSTS if c[0] in g and g[c[0]].notna().sum() > 1 and (cost is None or c[0] == cost)]
        ys = [y for y in _GAINS if y in g and g[y].notna().sum() > 1 and (gain is None or y == gain)]
        if xs and ys:
            found = (name, g, xs[0], ys[0])
            break
    if found is None:
        return _missing(title, not_run_yet(f"no mbu_*.csv table with a speed or cost column "
                                           f"({', '.join(c for c, _, _ in _COSTS)}) and an accuracy column "
                                           f"({', '.join(_GAINS)})", preset))
    name, g, (c, higher, xlabel), y = found
    front = pareto_front(g, c, y, cost_higher_better=higher)
    fig, axes = _fig(1, 6.5, 4.0)
    label = next((k for k in ("masked_layers", "config", "name", "variant", "case") if k in g.columns), None)
    hue = label if label and g[label].nunique() <= 20 else None
    if hue is not None and pd.api.types.is_float_dtype(g[hue]) and (g[hue].dropna() % 1 == 0).all():
        g = g.assign(**{hue: g[hue].astype("Int64").astype(str)})  # 4, not 4.0
    sns.scatterplot(g, x=c, y=y, hue=hue, ax=axes[0], s=40)
    axes[0].plot(front[c], front[y], color="black", lw=1.2, marker="o", mfc="none", label="Pareto frontier")
    axes[0].set(xlabel=f"{c}: {xlabel}", ylabel=f"{y} (0-1)", title="configurations and their frontier")
    _finish(fig, f"MBU-Net configurations: {y.replace('_', ' ')} against {xlabel}", legend_title=hue)
    better = "higher" if higher else "lower"
    keep = [k for k in ("config", "masked_layers", "case", "name", "variant") if k in front.columns]
    keep += [k for k in (c, y) if k not in keep]
    return Section(title, f"Each point is one MBU-Net configuration of `{name}.csv`; the line joins the "
                          f"configurations that no other one beats on both {c} ({better} is better) and {y}.",
                   front[keep].reset_index(drop=True), fig)


def lr_sweep(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Test Dice / IoU / loss per learning rate and architecture (seed 000 Tables 3-6), from
    ``training.csv`` when more than one learning rate was trained."""
    title = "Learning-rate sweep"
    t = _load(results.TRAINING, preset, dataset)
    if t.df is None:
        return _missing(title, t.message)
    df = _num(t.df, "lr", "test_dice", "test_iou", "test_loss", "val_loss")
    if "lr" not in df.columns or df["lr"].nunique() < 2:
        return _missing(title, not_run_yet("one learning rate only", preset, run_command(preset, "lr-sweep")))
    vals = [c for c in ("val_loss", "test_loss", "test_iou", "test_dice") if c in df.columns]
    table = df.pivot_table(index="lr", columns="arch", values=vals).sort_index(ascending=False).round(4)
    return Section(title, "Validation and test metrics per learning rate (best-validation-loss checkpoint).", table)


# ----------------------------------------------------------------------------------------------
# the answer: which model and representation for which priority
# ----------------------------------------------------------------------------------------------
def candidates(preset: str | None = None, image_size: int | None = None, *, dataset: str | None = None,
               train_seed: int | None = None) -> Loaded:
    """One row per (architecture, representation): latency per image at batch 1, best
    throughput, peak memory, model size (from ``benchmark.csv``) joined with the test Dice/IoU
    (``accuracy_by_format.csv``; the FP32 PyTorch Dice falls back on ``training.csv``, means
    over seeds). With ``train_seed``, the accuracies are those of that training seed alone
    (``accuracy_by_format_seeds.csv``, ``training.csv`` and ``mbu_accuracy.csv`` rows of that seed)."""
    df, msg, size = _bench(preset, image_size, dataset)
    if df is None:
        return Loaded(None, msg)
    one_seed = (lambda d: d[pd.to_numeric(d["train_seed"], errors="coerce") == train_seed]
                if train_seed is not None and "train_seed" in d else d)
    sub = df[df["image_size"] == size]
    keys = ["arch", "backend", "precision", "format"]
    b1 = sub[sub["batch_size"] == sub["batch_size"].min()].groupby(keys)[["latency_ms_per_image"]].min()
    agg = sub.groupby(keys).agg(throughput_ips=("throughput_ips", "max"), peak_mem_mb=("peak_mem_mb", "max"),
                                model_size_mb=("model_size_mb", "max"))
    out = b1.join(agg, how="outer").reset_index()
    out["accuracy_source"] = ""
    per_seed = _seed_accuracy(preset, dataset, train_seed)  # every seed deployed (make deploy-seeds)
    acc = per_seed if (per_seed.df is not None or train_seed is not None) else _accuracy(preset, dataset)
    for m in ("dice", "iou"):
        out[m] = np.nan
    if acc.df is not None:
        a = acc.df[acc.df["is_default"]].dropna(subset=[m for m in ("dice", "iou") if m in acc.df], how="all")
        a = a.groupby(["arch", "backend", "precision"])[[m for m in ("dice", "iou") if m in acc.df]].first()
        for i, r in out.iterrows():
            k = (r["arch"], r["backend"], r["precision"])
            if k in a.index:
                for m in a.columns:
                    out.at[i, m] = a.loc[k, m]
                out.at[i, "accuracy_source"] = (
                    f"accuracy_by_format_seeds.csv (seed {train_seed})" if train_seed is not None
                    else "accuracy_by_format_seeds.csv (mean over training seeds)" if per_seed.df is not None
                    else "accuracy_by_format.csv")
    tr = load_table(results.TRAINING, preset, dataset=dataset)
    if tr.df is not None and {"arch", "test_dice"} <= set(tr.df.columns):
        best = _num(tr.df, "test_dice", "test_iou", "val_loss", "lr")
        if "lr" in best.columns:  # the runs at each architecture's chosen learning rate
            lrs = chosen_lrs(best)
            best = best[np.isclose(best["lr"], best["arch"].map(lrs))]
        best = one_seed(best)
        best = best.groupby("arch")[[c for c in ("test_dice", "test_iou") if c in best]].mean()  # over seeds
        for i, r in out.iterrows():
            if np.isnan(r["dice"]) and (r["backend"], r["precision"]) == ("torch", "fp32") and r["arch"] in best.index:
                out.at[i, "dice"] = best.loc[r["arch"], "test_dice"]
                out.at[i, "iou"] = best.loc[r["arch"], "test_iou"] if "test_iou" in best else np.nan
                out.at[i, "accuracy_source"] = "training.csv (PyTorch FP32 test split)"
    mbu = load_table(results.MBU_ACCURACY, preset, dataset=dataset)
    if mbu.df is not None and {"config", "test_dice"} <= set(mbu.df.columns):
        m = _num(mbu.df, "test_dice", "test_iou", "packed_dice", "packed_iou")
        m = one_seed(m[m["config"].astype(str) == "mbu"])  # notebook 05's main MBU-Net configuration
        if len(m):
            r = m[[c for c in ("test_dice", "test_iou", "packed_dice", "packed_iou") if c in m]].mean()  # over seeds
            for i, c in out.iterrows():
                if c["arch"] != "mbu_unet" or not np.isnan(c["dice"]):
                    continue
                packed = c["backend"] == "bitpack" and pd.notna(r.get("packed_dice"))
                out.at[i, "dice"] = r["packed_dice"] if packed else r["test_dice"]
                out.at[i, "iou"] = r.get("packed_iou" if packed else "test_iou", np.nan)
                out.at[i, "accuracy_source"] = "mbu_accuracy.csv (config mbu)"
    out["image_size"] = size
    return Loaded(out, f"{len(out)} candidates at {size}x{size} px")


def _seed_accuracy(preset, dataset, train_seed: int | None) -> Loaded:
    """``accuracy_by_format_seeds.csv`` shaped as :func:`_accuracy` shapes
    ``accuracy_by_format.csv``: the rows of ``train_seed``, or (``None``) the mean over the seeds
    of every representation scored at all of them; ``is_default`` marks the INT8 configuration
    that stands for INT8 (notebook 06's chosen one, else the default)."""
    where = dict(train_seed=train_seed) if train_seed is not None else None
    t = load_table(results.ACCURACY_SEEDS, preset, dataset=dataset, where=where)
    if t.df is None:
        return t
    df = _num(t.df, "dice", "iou", "train_seed")
    df = df[df["status"].astype(str) == "ok"] if "status" in df else df
    df = df.assign(int8_name=df["int8_name"].fillna("").astype(str) if "int8_name" in df else "")
    keys = ["arch", "backend", "precision", "int8_name"]
    if train_seed is None:  # a representation collapsed at some seed has no mean: it is not a candidate
        n = df["train_seed"].nunique()
        g = df.groupby(keys)
        df = g[["dice", "iou"]].mean()[g.size() == n].reset_index()
    rank = _int8_rank(df["int8_name"])
    best = rank.groupby([df[k] for k in keys[:3]]).transform("min")
    return Loaded(_with_format(df.assign(is_default=rank == best)), t.message)


def deploy_seeds_command(preset: str | None) -> str:
    return f"make deploy-seeds PRESET={preset or 'quick'}"


def seed_stability(preset: str | None = None, *, dataset: str | None = None, dice_tolerance: float = 0.01,
                   **budgets) -> Section:
    """Does the recommendation hold for every training seed? The accuracy-dependent priorities
    of :func:`recommendations` recomputed from each seed's accuracies alone
    (``accuracy_by_format_seeds.csv``), next to the pick from the means, and whether that pick
    still qualifies at every seed: for the accuracy priorities, its Dice at that seed within
    ``TIE_STDS`` seed standard deviations of the seed's own pick (a tie, as the recommendation
    counts ties); for "fastest at (near) best accuracy", its Dice at that seed within
    ``dice_tolerance`` of the seed's best. ``budgets``: :func:`recommendations`'
    ``latency_budget_ms`` / ``size_budget_mb``, so the recommendation checked is the one shown."""
    title = "Stability across training seeds"
    t = _load(results.ACCURACY_SEEDS, preset, dataset, deploy_seeds_command(preset))
    if t.df is None:
        return _missing(title, t.message)
    seeds = sorted(int(v) for v in pd.to_numeric(t.df["train_seed"], errors="coerce").dropna().unique())
    main = recommendations(preset, dataset=dataset, dice_tolerance=dice_tolerance, **budgets)
    if not main.ok:
        return _missing(title, main.message)
    noise, _, _ = seed_spread(preset, dataset=dataset)
    keep = ["best accuracy", "best accuracy within a latency budget", "best accuracy within a size budget",
            "fastest at (near) best accuracy"]
    picks = main.table.set_index("priority").loc[lambda d: d.index.isin(keep)]
    out = pd.DataFrame({"from the means": picks["arch"] + " " + picks["representation"]})
    holds = pd.DataFrame(True, index=out.index, columns=seeds)
    same_arch = pd.Series(True, index=out.index)
    for sd in seeds:
        r = recommendations(preset, dataset=dataset, dice_tolerance=dice_tolerance, train_seed=sd, **budgets)
        c = candidates(preset, dataset=dataset, train_seed=sd)
        if not r.ok or c.df is None:
            holds[sd] = False
            continue
        rs = r.table.set_index("priority")
        dice = c.df.set_index(["arch", "format"])["dice"]
        col = []
        for prio in out.index:
            pa, pr = picks.loc[prio, "arch"], picks.loc[prio, "representation"]
            sa, srep, sdice = rs.loc[prio, "arch"], rs.loc[prio, "representation"], rs.loc[prio, "dice"]
            mine = dice.get((pa, pr), np.nan)
            if prio == "fastest at (near) best accuracy":
                ok = mine >= dice.max() - dice_tolerance
            else:
                ok = (noise == noise) and (sdice - mine) <= TIE_STDS * noise
            holds.loc[prio, sd] = bool(ok)
            same_arch[prio] &= sa == pa
            col.append(f"{sa} {srep} ({sdice:.4f}); mean pick {mine:.4f}")
        out[f"seed {sd}"] = col
    out["mean pick qualifies at every seed"] = np.where(holds.all(axis=1), "yes", "no")
    out["same architecture at every seed"] = np.where(same_arch, "yes", "no")
    n_hold = int(holds.all(axis=1).sum())
    text = (f"The recommendation recomputed from one training seed at a time ({len(seeds)} seeds; every "
            f"representation of each seed's model scored on the test split; latency, memory and size from the "
            f"same benchmark rows). For {n_hold} of {len(out)} accuracy-dependent priorities the pick from the means "
            f"still qualifies at every seed (accuracy priorities: within {TIE_STDS:g} x {noise:.4f} Dice of that "
            f"seed's own pick; fastest at near-best: within {dice_tolerance} of that seed's best Dice). Each seed "
            "column shows that seed's own pick with its Dice, and the Dice of the pick from the means at that seed.")
    return Section(title, text, out.reset_index())


#: What a priority of the recommendation shows when no measured candidate meets its criterion
#: (a budget too tight, a column nobody measured): neither missing hardware nor missing work.
NO_CANDIDATE = "no measured candidate meets this criterion"

#: Two accuracies closer than this many seed standard deviations are reported as a tie.
TIE_STDS = 2.0


def seed_spread(preset: str | None = None, *, dataset: str | None = None) -> tuple[float, int, pd.DataFrame | None]:
    """``(noise, seeds, summary)``: the largest standard deviation over training seeds of any
    architecture's test Dice (``training.csv``; NaN with fewer than two seeds), the fewest seeds
    of an architecture, and the per-architecture mean/std table."""
    t = load_table(results.TRAINING, preset, dataset=dataset)
    if t.df is None or "test_dice" not in t.df:
        return float("nan"), 0, None
    df = _num(t.df, "test_dice", "test_iou", "lr")
    if "lr" in df:  # the runs at each architecture's chosen learning rate (not the other sweep points)
        df = df[np.isclose(df["lr"], df["arch"].map(chosen_lrs(df)))]
    s = results.seed_summary(df, ["arch"], ["test_dice", "test_iou"])
    if s.empty:
        return float("nan"), 0, None
    return float(s["test_dice_std"].max()), int(s["seeds"].min()), s


def recommendations(preset: str | None = None, latency_budget_ms: float | None = None,
                    size_budget_mb: float | None = None, dice_tolerance: float = 0.01,
                    image_size: int | None = None, *, dataset: str | None = None,
                    train_seed: int | None = None) -> Section:
    """The study's answer: for each priority, the architecture and representation to deploy,
    computed from the measured tables. Budgets default to twice the fastest latency and a quarter
    of the largest model; ``dice_tolerance`` defines "as accurate as the best"."""
    title = "Which model and representation to deploy"
    c = candidates(preset, image_size, dataset=dataset, train_seed=train_seed)
    if c.df is None:
        return _missing(title, c.message)
    df = c.df
    rows = []

    def pick(priority, pool, col, best="min", criterion=""):
        pool = pool.dropna(subset=[col])
        if pool.empty:
            rows.append(dict(priority=priority, criterion=criterion, arch="-", representation="-",
                             value=NO_CANDIDATE, dice=np.nan))
            return
        # ties: the more accurate, then the faster candidate wins
        tie = [c for c in ("dice", "latency_ms_per_image") if c != col]
        r = pool.sort_values([col, *tie], ascending=[best == "min", *(c != "dice" for c in tie)],
                             na_position="last").iloc[0]
        rows.append(dict(priority=priority, criterion=criterion, arch=r["arch"], representation=r["format"],
                         value=f"{r[col]:.4g} {_UNITS.get(col, '')}".strip(), dice=r["dice"]))

    noise, n_seeds, _ = seed_spread(preset, dataset=dataset)

    def ties(pool, row):
        """Other candidates whose Dice is within TIE_STDS seed standard deviations of the pick."""
        if not (noise == noise) or row["arch"] == "-" or not np.isfinite(row["dice"]):
            return ""
        near = pool.dropna(subset=["dice"])
        near = near[(near["dice"] - row["dice"]).abs() <= TIE_STDS * noise]
        return ", ".join(f"{r.arch} {r.format}" for r in near.itertuples()
                         if (r.arch, r.format) != (row["arch"], row["representation"]))

    pick("lowest latency", df, "latency_ms_per_image", "min", "median ms per image at the smallest batch")
    pick("highest throughput", df, "throughput_ips", "max", "images/s at the best batch size")
    pick("smallest model", df, "model_size_mb", "min", "size on disk")
    pick("lowest inference memory", df, "peak_mem_mb", "min", "peak memory at the largest batch")
    pick("best accuracy", df, "dice", "max", "test Dice")
    has = df.dropna(subset=["dice"])
    if not has.empty:
        lat = latency_budget_ms if latency_budget_ms is not None else 2 * df["latency_ms_per_image"].min()
        pick("best accuracy within a latency budget", has[has["latency_ms_per_image"] <= lat], "dice", "max",
             f"test Dice with latency <= {lat:.3g} ms/image")
        size = size_budget_mb if size_budget_mb is not None else df["model_size_mb"].max() / 4
        pick("best accuracy within a size budget", has[has["model_size_mb"] <= size], "dice", "max",
             f"test Dice with model <= {size:.3g} MiB")
        near = has[has["dice"] >= has["dice"].max() - dice_tolerance]
        pick("fastest at (near) best accuracy", near, "latency_ms_per_image", "min",
             f"lowest latency with Dice within {dice_tolerance} of the best")
    else:
        rows.append(dict(priority="accuracy-aware choices", criterion="", arch="-", representation="-",
                         value=not_run_yet("no accuracy per representation (notebook 06)", preset), dice=np.nan))
    table = pd.DataFrame(rows)
    pools = {"best accuracy": df}
    if not has.empty:
        pools.update({"best accuracy within a latency budget": has[has["latency_ms_per_image"] <= lat],
                      "best accuracy within a size budget": has[has["model_size_mb"] <= size]})
    table["ties within the seed spread"] = [ties(pools[r["priority"]], r) if r["priority"] in pools else ""
                                            for _, r in table.iterrows()]
    text = (f"Computed from {c.message}; latency and memory from benchmark.csv, accuracy from "
            f"{', '.join(sorted(set(df['accuracy_source']) - {''})) or 'no accuracy table'}.")
    if noise == noise:
        note = (f"Accuracy differences under {TIE_STDS:g} x {noise:.4f} (the largest standard deviation of test Dice "
                f"over {n_seeds} training seeds) are ties: the candidates listed are as accurate as the pick "
                "within the noise of training.")
    else:
        note = ("Accuracy from one training seed: differences between models cannot be told from the noise of "
                "training here (run a preset with seeds >= 3).")
    return Section(title, text, table, notes=[note, "Timings depend on the machine in the benchmark rows; "
                                                    "compare representations, not absolute numbers."])


def answer(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """The study's answer in a few sentences, with the conditions it holds for (data, image size,
    width, epochs, seeds, machine), from :func:`recommendations` and ``training.csv``."""
    title = "The answer"
    rec = recommendations(preset, dataset=dataset)
    if not rec.ok:
        return _missing(title, rec.message)
    r = rec.table.set_index("priority")
    noise, n_seeds, spread = seed_spread(preset, dataset=dataset)
    tr = load_table(results.TRAINING, preset, dataset=dataset).df
    bench = load_table(results.BENCHMARK, preset, dataset=dataset).df
    cond = []
    if tr is not None:
        first = tr.iloc[0]
        cond.append(f"dataset {first.get('dataset', '?')}, {int(first['image_size'])}x{int(first['image_size'])} px "
                    f"inputs, width {int(first['width'])}, up to {int(first['epochs'])} epochs"
                    + (f" with early stopping (patience {int(first['patience'])})"
                       if "patience" in tr and pd.notna(first.get("patience")) else "")
                    + f", {n_seeds} training seed{'s' if n_seeds != 1 else ''}")
    if bench is not None and "cpu" in bench and "status" in bench:
        bench = bench[bench["status"] == "measured"].dropna(subset=["cpu"])
    if bench is not None and "cpu" in bench and len(bench):
        b = bench.iloc[0]
        cond.append(f"timed on {b['cpu']} ({int(b['threads_pinned']) if 'threads_pinned' in b and pd.notna(b['threads_pinned']) else '?'} "
                    f"threads, GPU: {b.get('gpu', 'none')})")
    lines = []

    def say(priority, what):
        if priority in r.index and r.loc[priority, "arch"] != "-":
            row = r.loc[priority]
            tie = row.get("ties within the seed spread", "")
            lines.append(f"- **{what}**: {row['arch']} as {row['representation']} ({row['value']})"
                         + (f"; as accurate within the seed spread: {tie}" if tie else ""))

    say("best accuracy", "Most accurate")
    say("fastest at (near) best accuracy", "Fastest at (near) the best accuracy")
    say("lowest latency", "Lowest latency")
    say("smallest model", "Smallest model")
    if spread is not None:
        parts = [f"{s.arch} {s.test_dice_mean:.3f}" + (f" ± {s.test_dice_std:.3f}" if s.seeds > 1 else "")
                 for s in spread.sort_values("test_dice_mean", ascending=False).itertuples()]
        lines.append(f"- Test Dice in PyTorch FP32 (mean ± std over seeds): {', '.join(parts)}.")
    text = ("Under these conditions: " + "; ".join(cond) + ".\n\n" if cond else "") + "\n".join(lines)
    notes = rec.notes[:1]
    return Section(title, text, notes=notes)


_UNITS = {"latency_ms_per_image": "ms/image", "throughput_ips": "images/s", "model_size_mb": "MiB",
          "peak_mem_mb": "MiB", "dice": ""}


def gpu_tables(preset: str | None = None) -> Section:
    """The benchmark tables measured on GPUs (``benchmark_<device>.csv``), if any: "not measured
    on this machine" when this machine has no CUDA GPU, "not run yet" when it has one."""
    title = "Benchmarks on GPUs"
    files = results.files(results.BENCHMARK_DEVICE)
    if not files:
        if not machine.cuda_available():
            return _missing(title, not_measured_here("no CUDA GPU here (TensorRT and ONNX Runtime CUDA need one); "
                                                     "run notebook 07 on a CUDA machine"))
        return _missing(title, not_run_yet("no benchmark_<gpu>.csv", preset))
    parts = []
    for p in files:
        loaded = load_table(p.stem)
        if loaded.df is None:
            continue
        d = _measured(_num(loaded.df, "latency_ms_per_image", "throughput_ips", "speedup"))
        d.insert(0, "table", p.stem)
        parts.append(d)
    if not parts:
        return _missing(title, not_run_yet("no readable benchmark_<gpu>.csv", preset))
    df = _with_format(pd.concat(parts, ignore_index=True))
    table = df.pivot_table(index=["table", "arch", "batch_size"], columns="format", values="speedup").round(2)
    return Section(title, "Latency speed-up over FP32 PyTorch on each GPU that ran the study.", table,
                   unit="x vs FP32 PyTorch")


def build_report(preset: str | None = None, dataset: str | None = None, **kw) -> list[Section]:
    """Every section, in report order, from the rows of ``preset`` and ``dataset`` (a dataset
    identity, ``unetq.data.dataset_identity``; None: all rows)."""
    return [
        answer(preset, dataset=dataset),
        latency_by_format(preset, dataset=dataset),
        memory_by_format(preset, dataset=dataset),
        accuracy_by_format(preset, dataset=dataset),
        throughput_vs_batch(preset, dataset=dataset),
        speedup_table(preset, "speedup", dataset=dataset),
        speedup_table(preset, "throughput_if", dataset=dataset),
        image_size_sweep(preset, dataset=dataset),
        batch_image_grid(preset, dataset=dataset),
        amp_training(preset, dataset=dataset),
        amp_over_batch(preset, dataset=dataset),
        mbu_pareto(preset, dataset=dataset),
        lr_sweep(preset, dataset=dataset),
        gpu_tables(preset),
        recommendations(preset, dataset=dataset, **kw),
        seed_stability(preset, dataset=dataset, **kw),
    ]


def show_table(df: pd.DataFrame, unit: str | None = None) -> None:
    """Display a table as the report shows tables (units in the headers, no index column,
    scrolling when wide: :func:`unetq.studies.figures.table_html`); returns None."""
    display(HTML(table_html(df, unit)))


def section_status(sections: Sequence[Section]) -> pd.DataFrame:
    """Which sections were computed and which were not, and why: ``shown`` (yes/no), ``status``
    (``shown``, :data:`NOT_RUN_YET` or :data:`NOT_MEASURED`) and ``reason`` (the rest of the
    section's message, with the command that fills it)."""
    return pd.DataFrame([dict(section=s.title, shown="yes" if s.ok else "no", status=s.status,
                              reason="" if s.ok else s.message.partition(": ")[2]) for s in sections])


# ----------------------------------------------------------------------------------------------
# which preset the report shows
# ----------------------------------------------------------------------------------------------
#: The tables whose rows say that a preset's study has run (the report's main sources).
PRESET_TABLES = (results.BENCHMARK, results.TRAINING, results.ACCURACY_BY_FORMAT, results.MBU_ACCURACY, results.AMP)
#: Which preset wins when several have results: the larger study first.
PRESET_PREFERENCE = ("paper", "quick", "ci")


def preset_rows(dataset: str | None = None) -> dict[str, int]:
    """Rows per preset over :data:`PRESET_TABLES` (of ``dataset`` when given)."""
    counts: dict[str, int] = {}
    for table in PRESET_TABLES:
        t = load_table(table, None, dataset=dataset)
        if t.df is None or "preset" not in t.df.columns:
            continue
        for p, n in t.df["preset"].astype(str).value_counts().items():
            counts[p] = counts.get(p, 0) + int(n)
    return counts


def choose_preset(preset: str | None, dataset: str | None = None) -> tuple[str | None, str]:
    """``(preset to show, why)``: ``preset`` when its rows exist; otherwise the preset that has
    results (the committed study's, read from the committed tables: the larger study first, then
    the one with the most rows), saying which and why; with no results at all, ``preset`` and
    the first step (``make all``)."""
    have = preset_rows(dataset)
    if preset is not None and have.get(preset):
        return preset, f"Results of preset `{preset}`, the preset this notebook runs with."
    if not have:
        return preset, (f"No results for any preset yet (no rows in {paths.results_dir()}). First step: "
                        f"`{run_command()}` runs notebooks 01-07 (preset quick) and writes them; then re-run this "
                        "notebook.")
    rank = {p: i for i, p in enumerate(PRESET_PREFERENCE)}
    pick = min(have, key=lambda p: (rank.get(p, len(rank)), -have[p], p))
    return pick, (f"No results for preset `{preset}` yet (its notebooks have not run here: "
                  f"`{run_command(preset)}` produces them), so this report shows the committed study's results: "
                  f"preset `{pick}` ({have[pick]} rows in its result tables).")


def show_preset(preset: str | None, dataset: str | None = None) -> str | None:
    """Choose the preset to show (:func:`choose_preset`), display which and why (with the
    smoke-test line when it is ``ci``), and return it."""
    shown, why = choose_preset(preset, dataset)
    show_preset_notice(shown, why)
    return shown
