"""The study's report (notebook ``08_report``): every section is computed from the result tables,
read through :mod:`unetq.results`; a section that cannot be computed says why instead of
failing: ``"not measured on this machine"`` only when the hardware it needs is absent here (a
CUDA GPU for TensorRT and ONNX Runtime CUDA), ``"not run yet"`` with the command that fills it
(``make all PRESET=<preset>``) for work that could run here.

- :func:`load_table`        a results table (or ``None`` and the reason): ``unetq.results.read``
- :class:`Section`          title, text, table and figure; displays itself in a notebook
  (:mod:`unetq.studies.sections`, with the table loading the sections share)
- section builders          :func:`latency_by_format` (seed 000 Fig. 5), :func:`memory_by_format`
  (Fig. 6), :func:`accuracy_by_format` (Figs. 7-8), :func:`throughput_vs_batch`,
  :func:`speedup_table` (seed 003 Tables 6-9), :func:`image_size_sweep`, :func:`amp_training`
  (seed 003), :func:`mbu_frontier_from_scratch`, :func:`mbu_pareto`, :func:`lr_sweep`; the answer, :func:`recommendations`,
  :func:`seed_stability` and :func:`answer`, from :mod:`unetq.studies.recommend`
- :func:`build_report`      all sections in report order; :func:`section_status` which were shown
- :func:`choose_preset`     the preset whose rows the report shows (the committed study's when the
  notebook's own preset has none) and why; :func:`show_preset`
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import HTML, display
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import machine, paths, results
from ..config import PRESETS
from ..models.mbu_unet import LAYER_NAMES
from ..results import NOT_RUN  # noqa: F401 (re-exported with the notices: the report's vocabulary)
from ..results import read as load_table
from .figures import amp_colour, draw_dice_fps_frontier, format_palette, legend_outside, table_html
from .notice import NOT_MEASURED, NOT_RUN_YET, not_measured_here, not_run_yet, run_command, \
    show_preset_notice  # noqa: F401 (NOT_MEASURED, NOT_RUN_YET: re-exported)
from .recommend import NO_CANDIDATE, answer, candidates, recommendations, seed_stability  # noqa: F401
from .sections import (METRICS, Section, absent_hardware, accuracy_rows, bench_rows, format_label,  # noqa: F401
                       format_order, load_or_missing, measured_rows, missing, numeric, with_format)

# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
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
    df, msg, size = bench_rows(preset, image_size, dataset)
    if df is None:
        return missing(title, msg)
    sub = df[(df["image_size"] == size) & (df["batch_size"] == batch_size)]
    if sub.empty:
        return missing(title, not_run_yet(f"no measured rows at batch {batch_size}, {size}x{size} px", preset))
    data = load_table(results.BENCHMARK_DATASET, preset, dataset=dataset)
    dset = None
    if data.df is not None:
        dset = with_format(measured_rows(numeric(data.df, "seconds_total")))
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
    df, msg, size = bench_rows(preset, image_size, dataset)
    if df is None:
        return missing(title, msg)
    sub = df[df["image_size"] == size]
    b = int(batch_size or sub["batch_size"].max())
    sub = sub[sub["batch_size"] == b]
    if sub.empty:
        return missing(title, not_run_yet(f"no measured rows at batch {b}", preset))
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


def accuracy_by_format(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Loss, IoU and Dice of every representation, one panel per architecture (seed 000
    Figures 7-8)."""
    title = "Accuracy by format"
    t = accuracy_rows(preset, dataset)
    mbu, mbu_note = _mbu_accuracy_rows(preset, dataset)
    if t.df is None and mbu is None:
        return missing(title, t.message)
    df = t.df if t.df is not None else pd.DataFrame(columns=["arch", "format", *METRICS])
    metrics = [m for m in METRICS if m in df.columns]
    if not metrics:
        return missing(title, not_run_yet(f"accuracy_by_format.csv has none of {METRICS}", preset))
    if "status" in df.columns:
        df = df[df["status"].isin(["measured", "ok", "evaluated"]) | df[metrics].notna().any(axis=1)]
    df = df.dropna(subset=metrics, how="all")
    notes = []
    if mbu is not None and "mbu_unet" not in set(df["arch"]):
        df = pd.concat([df, mbu], ignore_index=True)
        notes.append(mbu_note)
    if df.empty:
        return missing(title, not_run_yet("no evaluated representation in accuracy_by_format.csv", preset))
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
    m = numeric(t.df[t.df["config"].astype(str) == "mbu"], "test_loss", "test_iou", "test_dice", "packed_dice",
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
    return with_format(pd.DataFrame(rows)), (f"MBU-Net from mbu_accuracy.csv (notebook 05, configuration mbu, "
                                              f"mean over {n} training run{'s' if n != 1 else ''}).")


def throughput_vs_batch(preset: str | None = None, image_size: int | None = None, *, dataset: str | None = None) -> Section:
    """Throughput (images/s) against batch size, one line per representation, per architecture."""
    title = "Throughput vs batch size"
    df, msg, size = bench_rows(preset, image_size, dataset)
    if df is None:
        return missing(title, msg)
    sub = df[df["image_size"] == size]
    if sub["batch_size"].nunique() < 2:
        return missing(title, not_run_yet(f"only one batch size measured at {size}x{size} px", preset))
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
    df, msg, size = bench_rows(preset, image_size, dataset)
    if df is None:
        return missing(title, msg)
    sub = df[df["image_size"] == size]
    if value not in sub.columns or sub[value].notna().sum() == 0:
        return missing(title, not_run_yet(f"no {value} values (the FP32 PyTorch baseline was not measured)", preset))
    table = sub.pivot_table(index=["arch", "batch_size"], columns="format", values=value).round(2)
    return Section(title, f"Ratios measured side by side (interleaved) in one run, {size}x{size} px; "
                          "1.0 = FP32 PyTorch of the same architecture and batch size.", table,
                   unit="x vs FP32 PyTorch")


def image_size_sweep(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Latency per image against image size for the representations swept over size."""
    title = "Latency vs image size"
    t = load_or_missing(results.BENCHMARK, preset, dataset)
    if t.df is None:
        return missing(title, t.message)
    df = with_format(measured_rows(numeric(t.df, "latency_ms_per_image")))
    if df.empty or df["image_size"].nunique() < 2:
        return missing(title, not_run_yet("one image size only", preset))
    # per (arch, format), the batch size that was measured at every size it appears at
    b = int(df.groupby("batch_size")["image_size"].nunique().idxmax())
    sub = df[df["batch_size"] == b]
    sub = sub[sub.groupby(["arch", "format"])["image_size"].transform("nunique") > 1]
    if sub.empty:
        return missing(title, not_run_yet("no representation measured at two image sizes", preset))
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
    t = load_or_missing(results.BENCHMARK_GRID, preset, dataset, cmd)
    if t.df is None:
        return missing(title, t.message)
    df = with_format(measured_rows(numeric(t.df, "throughput_ips", "latency_ms_per_image", "speedup")))
    if df.empty:
        absent = absent_hardware(t.df)
        return missing(title, not_measured_here(absent) if absent
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
    t = load_or_missing(results.AMP, preset, dataset)
    if t.df is None:
        return None, t.message
    df = numeric(t.df, "speedup_vs_off", "mem_reduction_vs_off", "epoch_time_s", "peak_mem_mb", "batch_size")
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
        return missing(title, msg)
    df = df[df["amp"] != "off"]
    if df.groupby("arch")["batch_size"].nunique().max() < 2:
        return missing(title, not_run_yet("AMP measured at one batch size only", preset, characterise_command(preset)))
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
        return missing(title, msg)
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


def mbu_frontier_from_scratch(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """Seed 001's Figure 7 from scratch: every masked-layer count k recorded in
    ``mbu_ablation_frontier.csv`` (each k trained from scratch at its own learning rate, several
    seeds), test Dice mean ± std against the packed engine's frames per second, and the frontier."""
    title = "MBU-Net Pareto frontier, each k trained from scratch"
    command = run_command(preset, "mbu-pareto")
    t = load_or_missing(results.MBU_ABLATION_FRONTIER, preset, dataset, command)
    if t.df is None:
        return missing(title, t.message)
    d = numeric(t.df, "masked_layers", "lr", "seeds", "test_dice_mean", "test_dice_std", "fps", "median_ms")
    d = d.dropna(subset=["fps", "test_dice_mean"]).sort_values("masked_layers")
    if len(d) < 2:
        return missing(title, not_run_yet("fewer than two masked-layer counts recorded", preset, command))
    fig, axes = _fig(1, 7.0, 4.2)
    draw_dice_fps_frontier(axes[0], d)
    fig.suptitle("Test Dice against the packed engine's frame rate, k cheapest layers masked", fontsize=11)
    r = d.iloc[0]
    text = (f"{len(d)} of {len(LAYER_NAMES) + 1} masked-layer counts recorded (k = {', '.join(str(int(k)) for k in d['masked_layers'])}); "
            f"each trained from scratch at the learning rate its own grid chose, Dice over "
            f"{int(d['seeds'].min())}-{int(d['seeds'].max())} seeds. Frame rates: batch 1, {int(r['image_size'])} px, "
            f"width {int(r['width'])}, {int(r['threads'])} thread(s), {r['cpu']}, timed side by side in one run.")
    for col in ("speed_note", "load_note"):
        note = r.get(col)  # an empty note reads back from the CSV as NaN
        if isinstance(note, str) and note:
            text += f" Note: {note}."
    keep = ["config", "masked_layers", "lr", "seeds", "test_dice_mean", "test_dice_std", "fps", "median_ms",
            "on_frontier"]
    return Section(title, text, d[[c for c in keep if c in d.columns]].reset_index(drop=True), fig)


def mbu_pareto(preset: str | None = None, cost: str | None = None, gain: str | None = None, *, dataset: str | None = None) -> Section:
    """MBU-Net configurations (binary / masked layers): accuracy against speed or cost, with the
    Pareto frontier (from the ``mbu_*.csv`` tables, a ``*pareto*`` one first)."""
    title = "MBU-Net Pareto frontier"
    t = load_or_missing("mbu_*", preset, dataset)
    if t.df is None:
        return missing(title, t.message)
    found = None
    names = sorted(t.df["table"].unique(), key=lambda n: ("pareto" not in n, n))
    for name in names:
        g = numeric(t.df[t.df["table"] == name].dropna(axis=1, how="all"), *(c for c, _, _ in _COSTS), *_GAINS)
        xs = [c for c in _COSTS if c[0] in g and g[c[0]].notna().sum() > 1 and (cost is None or c[0] == cost)]
        ys = [y for y in _GAINS if y in g and g[y].notna().sum() > 1 and (gain is None or y == gain)]
        if xs and ys:
            found = (name, g, xs[0], ys[0])
            break
    if found is None:
        return missing(title, not_run_yet(f"no mbu_*.csv table with a speed or cost column "
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
    t = load_or_missing(results.TRAINING, preset, dataset)
    if t.df is None:
        return missing(title, t.message)
    df = numeric(t.df, "lr", "test_dice", "test_iou", "test_loss", "val_loss")
    if "lr" not in df.columns or df["lr"].nunique() < 2:
        return missing(title, not_run_yet("one learning rate only", preset, run_command(preset, "lr-sweep")))
    vals = [c for c in ("val_loss", "test_loss", "test_iou", "test_dice") if c in df.columns]
    table = df.pivot_table(index="lr", columns="arch", values=vals).sort_index(ascending=False).round(4)
    return Section(title, "Validation and test metrics per learning rate (best-validation-loss checkpoint).", table)


def gpu_tables(preset: str | None = None) -> Section:
    """The benchmark tables measured on GPUs (``benchmark_<device>.csv``), if any: "not measured
    on this machine" when this machine has no CUDA GPU, "not run yet" when it has one."""
    title = "Benchmarks on GPUs"
    files = results.files(results.BENCHMARK_DEVICE)
    if not files:
        if not machine.cuda_available():
            return missing(title, not_measured_here("no CUDA GPU here (TensorRT and ONNX Runtime CUDA need one); "
                                                     "run notebook 07 on a CUDA machine"))
        return missing(title, not_run_yet("no benchmark_<gpu>.csv", preset))
    parts = []
    for p in files:
        loaded = load_table(p.stem)
        if loaded.df is None:
            continue
        d = measured_rows(numeric(loaded.df, "latency_ms_per_image", "throughput_ips", "speedup"))
        d.insert(0, "table", p.stem)
        parts.append(d)
    if not parts:
        return missing(title, not_run_yet("no readable benchmark_<gpu>.csv", preset))
    df = with_format(pd.concat(parts, ignore_index=True))
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
        mbu_frontier_from_scratch(preset, dataset=dataset),
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
