"""Interactive exploration (used in ``08_report``): one dataset image through a chosen model and
representation, and any results table plotted by chosen columns.

The logic is plain, testable code: :func:`list_checkpoints` and :func:`model_label` (models
named by architecture, preset and settings, not by file), :func:`representations` and
:func:`format_options` (a representation that takes seconds per image here says so in its
label), :class:`PredictionCache` (runners and predictions, built once), :func:`overlay`,
:func:`view_arrays` (scores from :mod:`unetq.metrics`, colours from
:data:`unetq.studies.figures.ERROR_COLOURS`), :class:`TablePlotSpec` and :func:`plot_table`
(rows filtered by preset, dataset, image size, batch size, format and split, never silently
averaged across them). :class:`Explorer` is the thin ipywidgets layer on top: its callbacks
(``on_image_change``, ``on_table_change``, ``on_plot_change``) can be called directly, and
without a browser (papermill, nbval) the widgets simply render as their text form.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

import ipywidgets as w
import seaborn as sns
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..config import StudyConfig
from ..data import SYNTHETIC, dataset_identity, splits_from_preset
from .. import results as results_tables
from ..deploy import available_runners, format_applies, make_runner
from ..machine import cuda_available
from ..metrics import error_classes, mask_scores
from ..paths import checkpoints_dir, models_dir, results_dir
from ..results import read as read_table
from ..train import CheckpointError, load_checkpoint, read_checkpoint
from .figures import ERROR_COLOURS, column_label, error_image, figure_image, format_key, format_palette, legend_outside
from .notice import missing_reason, not_run_yet

KNOWN_ARCHS = ("squeeze_unet", "ghost_unet", "mbu_unet", "unet")  # longest names first
ARCH_NAMES = {"unet": "U-Net", "ghost_unet": "Ghost U-Net", "squeeze_unet": "Squeeze U-Net", "mbu_unet": "MBU-Net"}
PLOT_KINDS = ("bar", "line", "scatter", "box")
#: A representation slower than this (seconds per image) is marked slow in its option label.
SLOW_S_PER_IMAGE = 0.25
#: Representations known to be emulated (seconds per image) on a CPU without CUDA when unmeasured.
SLOW_ON_CPU = {("torch", "fp16")}


# ----------------------------------------------------------------------------------------------
# what can be explored
# ----------------------------------------------------------------------------------------------
def arch_of(stem: str) -> str | None:
    """The architecture a checkpoint file stem (``mbu_unet_quick``) belongs to."""
    return next((a for a in KNOWN_ARCHS if stem == a or stem.startswith(a + "_")), None)


def model_label(stem: str) -> str:
    """A model's name for people, from its checkpoint stem (``unetq.train.checkpoint_path``):
    architecture, preset and what differs from the preset's run (``"U-Net, preset quick, lr
    0.003, variant 881214cd"``) instead of the file name."""
    arch = arch_of(stem)
    if arch is None:
        return stem
    tokens = [t for t in stem[len(arch) + 1:].split("_") if t]
    parts = [ARCH_NAMES.get(arch, arch)]
    if tokens:
        parts.append(f"preset {tokens[0]}")
    for t in tokens[1:]:
        if re.fullmatch(r"lr[0-9.eE+-]+", t):
            parts.append(f"lr {t[2:]}")
        elif re.fullmatch(r"[0-9a-f]{8}", t):
            parts.append(f"variant {t}")
        else:
            parts.append(t)
    return ", ".join(parts)


def list_checkpoints(preset: str | None = None, folder: str | os.PathLike | None = None,
                     dataset: str | None = None) -> pd.DataFrame:
    """Checkpoints present (``name``, ``arch``, ``path``, ``label``: :func:`model_label`), those of
    ``preset`` only when given, and of ``dataset`` (an identity, ``unetq.data.dataset_identity``)
    only when given."""
    folder = Path(folder) if folder else checkpoints_dir()
    rows = []
    for p in sorted(folder.glob("*.pt")):
        arch = arch_of(p.stem)
        if arch is None or p.stem.endswith(".resume"):  # not a model, or fit's resume state
            continue
        rest = p.stem[len(arch) + 1:]
        if preset is not None and rest.split("_")[0] != preset:
            continue
        if dataset is not None and _checkpoint_dataset(p) != dataset:
            continue
        rows.append(dict(name=p.stem, arch=arch, path=str(p), label=model_label(p.stem)))
    return pd.DataFrame(rows, columns=["name", "arch", "path", "label"])


def _checkpoint_dataset(path: Path) -> str | None:
    try:
        return (read_checkpoint(path).get("data_config") or {}).get("dataset", SYNTHETIC)
    except CheckpointError:
        return None


def representations(arch: str, available: pd.DataFrame | None = None) -> list[str]:
    """``"backend/precision"`` choices that run here for ``arch`` (FP32 PyTorch first)."""
    if available is None:
        available = available_runners()
    out = [f"{r.backend}/{r.precision}" for r in available.itertuples()
           if bool(r.available) and format_applies(arch, r.backend, r.precision)]
    out.sort(key=lambda f: f != "torch/fp32")
    return out


def representation_timings(preset: str | None = None, dataset: str | None = None,
                           root: str | os.PathLike | None = None) -> dict[tuple[str, str, str], float]:
    """Seconds per image of each ``(arch, backend, precision)`` on this study's machine, from
    ``benchmark.csv``: the measured latency at the smallest batch (largest image size measured),
    or the estimate of a row skipped as too slow (``"~3.4 s per call of 8 images"``)."""
    t = read_table(results_tables.BENCHMARK, preset, dataset=dataset, root=root)
    if t.df is None:
        return {}
    df = t.df
    out: dict[tuple[str, str, str], float] = {}
    if "latency_ms_per_image" in df.columns:
        m = df[df["status"] == "measured"].copy()
        m["latency_ms_per_image"] = pd.to_numeric(m["latency_ms_per_image"], errors="coerce")
        m = m.dropna(subset=["latency_ms_per_image"])
        if len(m):
            m = m[m["batch_size"] == m["batch_size"].min()]
            for (a, b, p), g in m.groupby(["arch", "backend", "precision"]):
                largest = g[g["image_size"] == g["image_size"].max()]
                out[(a, b, p)] = float(largest["latency_ms_per_image"].median()) / 1e3
    if "reason" in df.columns:
        for r in df[df["status"].astype(str) == "skipped"].itertuples():
            m = re.search(r"~([0-9.]+) s per call of (\d+) image", str(r.reason))
            if m and (r.arch, r.backend, r.precision) not in out:
                out[(r.arch, r.backend, r.precision)] = float(m.group(1)) / int(m.group(2))
    return out


def format_label(fmt: str, arch: str | None = None, timings: Mapping | None = None) -> str:
    """The option label of a representation ``"backend/precision"``: ``"torch fp16"``, marked
    when it takes a good fraction of a second or more per image here (measured in
    ``benchmark.csv``, or known to be emulated on a CPU)."""
    backend, _, precision = fmt.partition("/")
    label = f"{backend} {precision}".strip()
    secs = (timings or {}).get((arch, backend, precision))
    if secs is not None and secs >= SLOW_S_PER_IMAGE:
        return f"{label} (slow: ~{secs:.2g} s per image here)"
    if secs is None and (backend, precision) in SLOW_ON_CPU and not cuda_available():
        return f"{label} (slow on a CPU: seconds per image)"
    return label


def format_options(arch: str, available: pd.DataFrame | None = None,
                   timings: Mapping | None = None) -> list[tuple[str, str]]:
    """``(label, "backend/precision")`` choices of :func:`representations`, slow ones marked
    (:func:`format_label`)."""
    return [(format_label(f, arch, timings), f) for f in representations(arch, available)]


# ----------------------------------------------------------------------------------------------
# predictions
# ----------------------------------------------------------------------------------------------
def _default_factory(model, backend: str, precision: str, image_size: int, calib, workdir: Path):
    return make_runner(backend, precision, model=model, image_size=image_size, calib_data=calib, workdir=workdir)


def _item(dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= index < len(dataset):
        raise IndexError(f"image index {index} out of range: the split has {len(dataset)} images")
    img, mask = dataset[index][:2]
    img = np.asarray(img, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"dataset image {index} must be [3, H, W], got shape {img.shape}")
    return img, mask.reshape(mask.shape[-2:])


class PredictionCache:
    """Runners (one per model and representation) and per-image probabilities, computed once.

    ``models``: name -> model, or name -> zero-argument loader (called on first use).
    ``factory(model, backend, precision, image_size, calib, workdir)`` builds a runner (default:
    :func:`unetq.deploy.make_runner`). ``labels``: name -> the model's name for people (default
    :func:`model_label` of the name)."""

    def __init__(self, dataset, models: Mapping[str, Any], image_size: int | None = None, calib=None,
                 factory: Callable | None = None, workdir: str | os.PathLike | None = None,
                 labels: Mapping[str, str] | None = None):
        self.dataset, self.calib = dataset, calib
        self._models = dict(models)
        self.labels = dict(labels or {})
        self.factory = factory or _default_factory
        self.image_size = image_size or (_item(dataset, 0)[0].shape[-1] if len(dataset) else None)
        self.workdir = Path(workdir) if workdir else None
        self._runners: dict[tuple[str, str], Any] = {}
        self._probs: dict[tuple[str, str, int], np.ndarray] = {}
        self.errors: dict[tuple[str, str], str] = {}

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def label(self, name: str) -> str:
        """The model's name for people (architecture, preset, settings)."""
        return self.labels.get(name) or model_label(name)

    def model(self, name: str):
        if name not in self._models:
            raise KeyError(f"no model {name!r}; have {self.model_names}")
        m = self._models[name]
        if callable(m) and not hasattr(m, "parameters"):
            m = self._models[name] = m()
        return m

    def runner(self, name: str, fmt: str):
        key = (name, fmt)
        if key in self.errors:
            raise RuntimeError(self.errors[key])
        if key not in self._runners:
            backend, precision = fmt.split("/")
            if self.workdir is None:
                self.workdir = models_dir() / "explorer"
            try:
                self._runners[key] = self.factory(self.model(name), backend, precision, self.image_size,
                                                  self.calib, self.workdir / name)
            except Exception as e:
                self.errors[key] = f"{fmt} for {name} failed: {type(e).__name__}: {e}"
                raise RuntimeError(self.errors[key]) from e
        return self._runners[key]

    def probability(self, name: str, fmt: str, index: int) -> np.ndarray:
        """Sigmoid of the logits, ``[H, W]`` in [0, 1]."""
        key = (name, fmt, int(index))
        if key not in self._probs:
            img, _ = _item(self.dataset, index)
            logits = np.asarray(self.runner(name, fmt)(img[None]), dtype=np.float32)
            self._probs[key] = 1.0 / (1.0 + np.exp(-logits[0, 0]))
        return self._probs[key]

    @property
    def n_cached(self) -> int:
        """Predictions held."""
        return len(self._probs)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


#: Overlay colours: the error-map colours of :data:`unetq.studies.figures.ERROR_COLOURS`.
TP_RGB, FP_RGB, FN_RGB = (_rgb(ERROR_COLOURS[k]) for k in ("true positive", "false positive", "false negative"))


def _hwc_uint8(image) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.max() <= 1.0 + 1e-6:
        img = img * 255.0
    return np.clip(img, 0, 255).astype(np.uint8)


def overlay(image, truth, pred, alpha: float = 0.55) -> np.ndarray:
    """The image with true positives, false positives and false negatives in their
    :data:`~unetq.studies.figures.ERROR_COLOURS`, blended with ``alpha``; ``uint8 [H, W, 3]``."""
    base = _hwc_uint8(image).astype(np.float32)
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    if t.shape != base.shape[:2] or p.shape != base.shape[:2]:
        raise ValueError(f"image {base.shape[:2]}, truth {t.shape} and prediction {p.shape} must match")
    out = base.copy()
    for m, rgb in ((t & p, TP_RGB), (p & ~t, FP_RGB), (t & ~p, FN_RGB)):
        out[m] = (1 - alpha) * base[m] + alpha * np.asarray(rgb, np.float32)
    return out.astype(np.uint8)


def view_arrays(cache: PredictionCache, name: str, fmt: str, index: int, threshold: float = 0.5) -> dict:
    """Everything the image view shows: image, truth, probability, prediction, overlay, error
    map, per-image Dice and IoU."""
    img, truth = _item(cache.dataset, index)
    prob = cache.probability(name, fmt, index)
    pred = prob > threshold
    t = truth > 0.5
    scores = mask_scores(pred, t)
    return dict(image=_hwc_uint8(img), truth=t, prob=prob, pred=pred, overlay=overlay(img, t, pred),
                error=error_image(error_classes(t, pred)), dice=scores["dice"], iou=scores["iou"],
                model=name, model_label=cache.label(name), format=fmt, index=int(index))


def view_figure(v: Mapping[str, Any]):
    """Image, overlay and error map of :func:`view_arrays`, Dice in the title; the error map's
    legend (outside the images) in the colours drawn (:data:`ERROR_COLOURS`)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (img, title) in zip(axes, [(v["image"], f"image #{v['index']}"),
                                       (v["overlay"], "prediction vs truth"), (v["error"], "error map")]):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    fig.legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=n) for n, c in ERROR_COLOURS.items()],
               fontsize=8, loc="outside right center", frameon=False, title="error map")
    model = v.get("model_label") or model_label(v["model"])
    fig.suptitle(f"{model} as {v['format'].replace('/', ' ')}: per-image Dice {v['dice']:.3f}, IoU {v['iou']:.3f}")
    return fig


def show_static_view(ex: "Explorer") -> None:
    """The explorer's current image view as a static figure (for the HTML page, where widgets
    do not run), or the reason there is none; returns None."""
    if ex.last_view:
        display(figure_image(view_figure(ex.last_view)))
    else:
        display(Markdown(f"*{ex.status.value or 'no model to show'}*"))


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def table_choices(folder: str | os.PathLike | None = None) -> list[str]:
    """Names (file stems) of the results tables present."""
    folder = Path(folder) if folder else results_dir()
    return sorted(p.stem for p in folder.glob("*.csv"))


#: Columns a plot is filtered by (one value each, or all of them said in the title): rows that
#: differ in these are different measurements, not repeats to average.
FILTER_COLUMNS = ("preset", "dataset", "image_size", "batch_size", "format", "split")


def with_format(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``format`` column (``"<backend> <precision>"``) when it has backend and
    precision and no format of its own."""
    if "format" in df.columns or not {"backend", "precision"} <= set(df.columns):
        return df
    return df.assign(format=df["backend"].astype(str) + " " + df["precision"].astype(str))


def filter_choices(df: pd.DataFrame) -> dict[str, list]:
    """``{column: values}`` of the :data:`FILTER_COLUMNS` of ``df`` that hold more than one value."""
    df = with_format(df)
    out = {}
    for c in FILTER_COLUMNS:
        if c in df.columns:
            vals = [v.item() if hasattr(v, "item") else v for v in pd.unique(df[c].dropna())]
            if len(vals) > 1:
                out[c] = sorted(vals, key=lambda v: (str(type(v)), v))
    return out


def default_filters(df: pd.DataFrame, preset: str | None = None) -> dict[str, Any]:
    """One value per filter column (:func:`filter_choices`): ``preset`` when the table has it,
    ``torch fp32`` for the format, the test split, else the most frequent value."""
    df = with_format(df)
    out = {}
    for c, vals in filter_choices(df).items():
        prefer = {"preset": preset, "format": "torch fp32", "split": "test"}.get(c)
        out[c] = prefer if prefer in vals else df[c].value_counts().idxmax()
        out[c] = out[c].item() if hasattr(out[c], "item") else out[c]
    return out


@dataclass
class TablePlotSpec:
    """What to plot from a results table: ``x``, ``y`` and optional ``hue`` columns, a ``kind``,
    and ``filters`` ``{column: value}`` (None: every value, said in the plot's title)."""

    table: str
    x: str
    y: str
    hue: str | None = None
    kind: str = "bar"
    filters: dict = field(default_factory=dict)

    def validate(self, df: pd.DataFrame) -> None:
        df = with_format(df)
        if self.kind not in PLOT_KINDS:
            raise ValueError(f"plot kind {self.kind!r} unknown; choose one of {PLOT_KINDS}")
        missing = [c for c in (self.x, self.y, self.hue, *self.filters) if c and c not in df.columns]
        if missing:
            raise ValueError(f"table {self.table!r} has no column(s) {missing}; it has {list(df.columns)}")
        if not pd.api.types.is_numeric_dtype(pd.to_numeric(df[self.y], errors="coerce").dropna()) \
                or pd.to_numeric(df[self.y], errors="coerce").notna().sum() == 0:
            raise ValueError(f"column {self.y!r} of table {self.table!r} has no numeric values to plot on y")


def numeric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.to_numeric(df[c], errors="coerce").notna().any()]


def filter_rows(df: pd.DataFrame, spec: TablePlotSpec) -> pd.DataFrame:
    """The rows of ``df`` that ``spec`` plots: its filters applied (a filter on the x or hue
    column is ignored), rows without a numeric y dropped."""
    d = with_format(df).copy()
    for c, v in spec.filters.items():
        if v is None or c in (spec.x, spec.hue):
            continue
        d = d[d[c].astype(str) == str(v)]
    d[spec.y] = pd.to_numeric(d[spec.y], errors="coerce")
    return d.dropna(subset=[spec.y])


def averaged_over(d: pd.DataFrame, spec: TablePlotSpec) -> list[str]:
    """The :data:`FILTER_COLUMNS` (and run columns) that differ between rows a point of the plot
    would average: the plot says so instead of averaging silently."""
    keys = [c for c in (spec.x, spec.hue) if c]
    if d.empty:
        return []
    cols = [c for c in (*FILTER_COLUMNS, "arch", "backend", "precision", "config", "int8_name", "train_seed", "seed",
                        "width", "lr") if c in d.columns and c not in keys and c != spec.y]
    g = d.groupby(keys, dropna=False)
    return [c for c in cols if g[c].nunique(dropna=False).max() > 1]


def _describe_filters(spec: TablePlotSpec) -> str:
    return ", ".join(f"{c} {'all' if v is None else v}" for c, v in spec.filters.items()
                     if c not in (spec.x, spec.hue))


def plot_table(df: pd.DataFrame, spec: TablePlotSpec):
    """A seaborn plot of ``df`` by ``spec``: rows filtered (:func:`filter_rows`), colours of a
    format/engine hue from :data:`~unetq.studies.figures.FORMAT_COLOURS`, the title a sentence
    naming the filters and any column the points average over."""
    spec.validate(df)
    d = filter_rows(df, spec)
    if d.empty:
        raise ValueError(f"no rows of table {spec.table!r} with a numeric {spec.y!r} match the filters "
                         f"({_describe_filters(spec) or 'none'})")
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    kw = dict(data=d, x=spec.x, y=spec.y, hue=spec.hue, ax=ax)
    if spec.hue is not None and spec.hue in ("format", "backend", "precision") and \
            all(format_key(v) for v in d[spec.hue].astype(str).unique()):
        kw["hue"] = d[spec.hue].astype(str)
        kw["palette"] = format_palette(sorted(kw["hue"].unique()))
        if spec.kind in ("bar", "box"):
            kw["saturation"] = 1
    {"bar": sns.barplot, "line": sns.lineplot, "scatter": sns.scatterplot, "box": sns.boxplot}[spec.kind](**kw)
    title = f"{column_label(spec.y)} by {spec.x}" + (f" and {spec.hue}" if spec.hue else "")
    mean = averaged_over(d, spec)
    sub = [f"table {spec.table}"] + ([_describe_filters(spec)] if _describe_filters(spec) else [])
    if mean and spec.kind in ("bar", "line"):
        sub.append(f"each point the mean over differing {', '.join(mean)}")
    ax.set(xlabel=_axis_label(spec.x), ylabel=_axis_label(spec.y))
    ax.set_title("; ".join(sub), fontsize=9)
    fig.suptitle(title[:1].upper() + title[1:])
    if spec.kind in ("bar", "box") and d[spec.x].astype(str).str.len().max() > 6:
        ax.tick_params(axis="x", rotation=30)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    if spec.hue:
        legend_outside(fig, [ax], title=spec.hue)
    return fig


def _axis_label(col: str) -> str:
    """Column name with its unit (:func:`unetq.studies.figures.column_label`)."""
    return column_label(col)


# ----------------------------------------------------------------------------------------------
# widgets (thin)
# ----------------------------------------------------------------------------------------------
class Explorer:
    """Two tabs: *image* (index slider, model, representation -> overlay, error map, Dice) and
    *tables* (table, x, y, hue, kind, one filter per :data:`FILTER_COLUMNS` column the table
    varies in -> seaborn plot). ``.widget`` is the ipywidgets Tab. Models are listed by their
    names for people (:func:`model_label`), representations with slow ones marked
    (:func:`format_label`, from ``timings``: :func:`representation_timings`); ``preset`` is the
    tables' default filter."""

    def __init__(self, cache: PredictionCache | None, available: pd.DataFrame | None = None,
                 results: str | os.PathLike | None = None, message: str = "", timings: Mapping | None = None,
                 preset: str | None = None):
        self.cache, self.available, self.results = cache, available, results
        self.timings, self.preset = dict(timings or {}), preset
        self.last_view: dict | None = None
        self.last_figure = None
        self.last_error = ""
        names = cache.model_names if cache is not None else []
        n = len(cache.dataset) if cache is not None else 0
        self.index = w.IntSlider(value=0, min=0, max=max(0, n - 1), description="image")
        self.model = w.Dropdown(options=[(cache.label(m), m) for m in names] if names else [],
                                value=names[0] if names else None, description="model",
                                layout=w.Layout(width="auto"))
        self.fmt = w.Dropdown(options=[], description="format", layout=w.Layout(width="auto"))
        self.image_out = w.Output()
        self.status = w.HTML(message)
        tables = table_choices(results)
        self.table = w.Dropdown(options=tables, value=tables[0] if tables else None, description="table")
        self.x = w.Dropdown(description="x")
        self.y = w.Dropdown(description="y")
        self.hue = w.Dropdown(description="hue")
        self.kind = w.Dropdown(options=PLOT_KINDS, value="bar", description="kind")
        self.filters: dict[str, w.Dropdown] = {}
        self.filter_box = w.HBox([])
        self.table_out = w.Output()
        self._update_formats()
        self.on_table_change()
        self.index.observe(self.on_image_change, names="value")
        self.fmt.observe(self.on_image_change, names="value")
        self.model.observe(self._on_model_change, names="value")
        self.table.observe(self.on_table_change, names="value")
        for d in (self.x, self.y, self.hue, self.kind):
            d.observe(self.on_plot_change, names="value")
        image_tab = w.VBox([w.HBox([self.index, self.model, self.fmt]), self.status, self.image_out])
        table_tab = w.VBox([w.HBox([self.table, self.kind]), w.HBox([self.x, self.y, self.hue]), self.filter_box,
                            self.table_out])
        self.widget = w.Tab(children=[image_tab, table_tab])
        self.widget.set_title(0, "image")
        self.widget.set_title(1, "tables")

    # -- image view
    def _update_formats(self):
        if self.model.value is None:
            self.fmt.options = []
            return
        arch = arch_of(self.model.value) or self.model.value
        opts = format_options(arch, self.available, self.timings)
        self.fmt.options = opts
        self.fmt.value = opts[0][1] if opts else None

    def _on_model_change(self, change=None):
        self._update_formats()
        self.on_image_change()

    def on_image_change(self, change=None) -> dict | None:
        """Recompute (from the cache) and redraw the image view; returns its arrays."""
        if self.cache is None or self.model.value is None or self.fmt.value is None:
            self.status.value = self.status.value or "no model to show (no checkpoint present)"
            return None
        try:
            v = view_arrays(self.cache, self.model.value, self.fmt.value, self.index.value)
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            self.status.value = f"<b>cannot show this view:</b> {self.last_error}"
            return None
        self.last_view, self.last_error = v, ""
        self.status.value = f"per-image Dice <b>{v['dice']:.3f}</b>, IoU {v['iou']:.3f}"
        self.image_out.clear_output(wait=True)
        with self.image_out:
            display(figure_image(view_figure(v)))
        return v

    # -- table view
    def _table(self, name: str) -> pd.DataFrame | None:
        loaded = read_table(name, root=self.results)
        if loaded.df is None:
            self.last_error = not_run_yet(missing_reason(loaded.message), self.preset)
            self.table_out.clear_output(wait=True)
            with self.table_out:
                print(self.last_error)
        return loaded.df

    def on_table_change(self, change=None):
        if self.table.value is None:
            return
        df = self._table(self.table.value)
        if df is None:
            return
        df = with_format(df)
        cols = list(df.columns)
        nums = numeric_columns(df)
        self._updating = True
        try:
            self.x.options, self.y.options, self.hue.options = cols, nums, [None, *cols]
            self.x.value = next((c for c in ("format", "backend", "arch", "batch_size", "lr") if c in cols), cols[0])
            self.y.value = next((c for c in ("latency_ms_per_image", "test_dice", "dice", "throughput_ips")
                                 if c in nums), nums[0] if nums else None)
            self.hue.value = "arch" if "arch" in cols and self.x.value != "arch" else None
            self._build_filters(df)
        finally:
            self._updating = False
        self.on_plot_change()

    def _build_filters(self, df: pd.DataFrame) -> None:
        """One dropdown per filter column the table varies in, set to :func:`default_filters`."""
        defaults = default_filters(df, self.preset)
        self.filters = {}
        for c, vals in filter_choices(df).items():
            d = w.Dropdown(options=[("all (averaged)", None)] + [(str(v), v) for v in vals], value=defaults.get(c),
                           description=c, layout=w.Layout(width="auto"))
            d.observe(self.on_plot_change, names="value")
            self.filters[c] = d
        self.filter_box.children = tuple(self.filters.values())

    def spec(self) -> TablePlotSpec | None:
        if self.table.value is None or self.x.value is None or self.y.value is None:
            return None
        return TablePlotSpec(self.table.value, self.x.value, self.y.value, self.hue.value, self.kind.value,
                             filters={c: d.value for c, d in self.filters.items()})

    def on_plot_change(self, change=None):
        if getattr(self, "_updating", False):
            return None
        spec = self.spec()
        if spec is None:
            return None
        df = self._table(spec.table)
        if df is None:
            return None
        self.table_out.clear_output(wait=True)
        try:
            self.last_figure = plot_table(df, spec)
        except ValueError as e:
            self.last_error = str(e)
            with self.table_out:
                print(f"cannot plot: {e}")
            return None
        with self.table_out:
            display(figure_image(self.last_figure))
        return self.last_figure

    def _ipython_display_(self):
        display(self.widget)


def build_explorer(cfg: StudyConfig, split: str = "test") -> Explorer:
    """The explorer over ``split`` of the run's data and the checkpoints of its preset present
    in ``checkpoints_dir()`` (loaded lazily); without one, the tables tab alone and the first
    step in the status line."""
    ds = dataset_identity(cfg.source)
    ckpts = list_checkpoints(cfg.preset, dataset=ds)
    available = available_runners()
    timings = representation_timings(cfg.preset, dataset=ds)
    if ckpts.empty:
        return Explorer(None, available, timings=timings, preset=cfg.preset,
                        message=f"No trained model of preset {cfg.preset!r} here (trained weights are not committed): "
                                f"<code>make all PRESET={cfg.preset}</code> trains them (notebooks 02-05) into "
                                f"{checkpoints_dir()}. The tables tab works on the result tables.")
    splits = splits_from_preset(cfg)

    def loader(path):
        def load():
            return load_checkpoint(path)[0].cpu().eval()
        return load

    models = {r.name: loader(r.path) for r in ckpts.itertuples()}
    cache = PredictionCache(splits[split], models, image_size=cfg.image_size, calib=splits["train"],
                            labels=dict(zip(ckpts["name"], ckpts["label"])))
    ex = Explorer(cache, available, timings=timings, preset=cfg.preset)
    ex.on_image_change()
    return ex
