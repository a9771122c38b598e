"""Interactive exploration (used in ``08_report``): one dataset image through a chosen model and
representation, and any results table plotted by chosen columns.

The logic is plain, testable code: :func:`list_checkpoints`, :func:`representations`,
:class:`PredictionCache` (runners and predictions, built once), :func:`overlay`,
:func:`view_arrays` (scores from :mod:`unetq.metrics`, colours from
:data:`unetq.studies.figures.ERROR_COLOURS`), :class:`TablePlotSpec` and :func:`plot_table`. :class:`Explorer` is the thin ipywidgets layer on top: its callbacks
(``on_image_change``, ``on_table_change``, ``on_plot_change``) can be called directly, and
without a browser (papermill, nbval) the widgets simply render as their text form.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

import ipywidgets as w
import seaborn as sns
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..config import StudyConfig
from ..data import SYNTHETIC, dataset_identity, splits_from_preset
from ..deploy import available_runners, format_applies, make_runner
from ..metrics import error_classes, mask_scores
from ..paths import checkpoints_dir, models_dir, results_dir
from ..results import read as read_table
from ..train import CheckpointError, load_checkpoint, read_checkpoint
from .figures import ERROR_COLOURS, error_image, figure_image

KNOWN_ARCHS = ("squeeze_unet", "ghost_unet", "mbu_unet", "unet")  # longest names first
PLOT_KINDS = ("bar", "line", "scatter", "box")


# ----------------------------------------------------------------------------------------------
# what can be explored
# ----------------------------------------------------------------------------------------------
def arch_of(stem: str) -> str | None:
    """The architecture a checkpoint file stem (``mbu_unet_quick``) belongs to."""
    return next((a for a in KNOWN_ARCHS if stem == a or stem.startswith(a + "_")), None)


def list_checkpoints(preset: str | None = None, folder: str | os.PathLike | None = None,
                     dataset: str | None = None) -> pd.DataFrame:
    """Checkpoints present (``name``, ``arch``, ``path``), those of ``preset`` only when given,
    and of ``dataset`` (an identity, ``unetq.data.dataset_identity``) only when given."""
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
        rows.append(dict(name=p.stem, arch=arch, path=str(p)))
    return pd.DataFrame(rows, columns=["name", "arch", "path"])


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
    :func:`unetq.deploy.make_runner`)."""

    def __init__(self, dataset, models: Mapping[str, Any], image_size: int | None = None, calib=None,
                 factory: Callable | None = None, workdir: str | os.PathLike | None = None):
        self.dataset, self.calib = dataset, calib
        self._models = dict(models)
        self.factory = factory or _default_factory
        self.image_size = image_size or (_item(dataset, 0)[0].shape[-1] if len(dataset) else None)
        self.workdir = Path(workdir) if workdir else None
        self._runners: dict[tuple[str, str], Any] = {}
        self._probs: dict[tuple[str, str, int], np.ndarray] = {}
        self.errors: dict[tuple[str, str], str] = {}

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

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
                model=name, format=fmt, index=int(index))


def view_figure(v: Mapping[str, Any]):
    """Image, overlay and error map of :func:`view_arrays`, Dice in the title."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (img, title) in zip(axes, [(v["image"], f"image #{v['index']}"),
                                       (v["overlay"], "prediction vs truth"), (v["error"], "error map")]):
        ax.imshow(img)
        ax.set_title(title)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    axes[2].legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=n) for n, c in ERROR_COLOURS.items()],
                   fontsize=7, loc="lower right")
    fig.suptitle(f"{v['model']} · {v['format']} · Dice {v['dice']:.3f} · IoU {v['iou']:.3f}")
    return fig


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def table_choices(folder: str | os.PathLike | None = None) -> list[str]:
    """Names (file stems) of the results tables present."""
    folder = Path(folder) if folder else results_dir()
    return sorted(p.stem for p in folder.glob("*.csv"))


@dataclass
class TablePlotSpec:
    """What to plot from a results table: ``x``, ``y`` and optional ``hue`` columns, a ``kind``."""

    table: str
    x: str
    y: str
    hue: str | None = None
    kind: str = "bar"

    def validate(self, df: pd.DataFrame) -> None:
        if self.kind not in PLOT_KINDS:
            raise ValueError(f"plot kind {self.kind!r} unknown; choose one of {PLOT_KINDS}")
        missing = [c for c in (self.x, self.y, self.hue) if c and c not in df.columns]
        if missing:
            raise ValueError(f"table {self.table!r} has no column(s) {missing}; it has {list(df.columns)}")
        if not pd.api.types.is_numeric_dtype(pd.to_numeric(df[self.y], errors="coerce").dropna()) \
                or pd.to_numeric(df[self.y], errors="coerce").notna().sum() == 0:
            raise ValueError(f"column {self.y!r} of table {self.table!r} has no numeric values to plot on y")


def numeric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.to_numeric(df[c], errors="coerce").notna().any()]


def plot_table(df: pd.DataFrame, spec: TablePlotSpec):
    """A seaborn plot of ``df`` by ``spec`` (rows without a numeric y are dropped)."""
    spec.validate(df)
    d = df.copy()
    d[spec.y] = pd.to_numeric(d[spec.y], errors="coerce")
    d = d.dropna(subset=[spec.y])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    kw = dict(data=d, x=spec.x, y=spec.y, hue=spec.hue, ax=ax)
    {"bar": sns.barplot, "line": sns.lineplot, "scatter": sns.scatterplot, "box": sns.boxplot}[spec.kind](**kw)
    ax.set(xlabel=_axis_label(spec.x), ylabel=_axis_label(spec.y), title=f"{spec.table}.csv")
    if spec.kind in ("bar", "box"):
        ax.tick_params(axis="x", rotation=45)
    return fig


_UNITS = {"_ms_per_image": "ms per image", "_j_per_image": "J per image", "_ms": "ms", "_s": "s",
          "_mb": "MiB", "_bytes": "bytes", "_ips": "images/s", "_j": "J", "_px": "px", "image_size": "px",
          "batch_size": "images", "lr": "1"}


def _axis_label(col: str) -> str:
    """Column name with its unit, read off the column's suffix (``latency_ms`` -> ``(ms)``)."""
    for suffix, unit in _UNITS.items():
        if col.endswith(suffix) or col == suffix:
            return f"{col} ({unit})"
    if col in ("iou", "dice", "test_iou", "test_dice", "val_dice", "val_iou"):
        return f"{col} (0-1)"
    if col in ("speedup", "throughput_if", "memory_reduction", "size_reduction", "speedup_vs_off",
               "mem_reduction_vs_off"):
        return f"{col} (x, ratio)"
    return col


# ----------------------------------------------------------------------------------------------
# widgets (thin)
# ----------------------------------------------------------------------------------------------
class Explorer:
    """Two tabs: *image* (index slider, model, representation -> overlay, error map, Dice) and
    *tables* (table, x, y, hue, kind -> seaborn plot). ``.widget`` is the ipywidgets Tab."""

    def __init__(self, cache: PredictionCache | None, available: pd.DataFrame | None = None,
                 results: str | os.PathLike | None = None, message: str = ""):
        self.cache, self.available, self.results = cache, available, results
        self.last_view: dict | None = None
        self.last_figure = None
        self.last_error = ""
        names = cache.model_names if cache is not None else []
        n = len(cache.dataset) if cache is not None else 0
        self.index = w.IntSlider(value=0, min=0, max=max(0, n - 1), description="image")
        self.model = w.Dropdown(options=names, value=names[0] if names else None, description="model")
        self.fmt = w.Dropdown(options=[], description="format")
        self.image_out = w.Output()
        self.status = w.HTML(message)
        tables = table_choices(results)
        self.table = w.Dropdown(options=tables, value=tables[0] if tables else None, description="table")
        self.x = w.Dropdown(description="x")
        self.y = w.Dropdown(description="y")
        self.hue = w.Dropdown(description="hue")
        self.kind = w.Dropdown(options=PLOT_KINDS, value="bar", description="kind")
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
        table_tab = w.VBox([w.HBox([self.table, self.kind]), w.HBox([self.x, self.y, self.hue]), self.table_out])
        self.widget = w.Tab(children=[image_tab, table_tab])
        self.widget.set_title(0, "image")
        self.widget.set_title(1, "tables")

    # -- image view
    def _update_formats(self):
        if self.model.value is None:
            self.fmt.options = []
            return
        arch = arch_of(self.model.value) or self.model.value
        opts = representations(arch, self.available)
        self.fmt.options = opts
        self.fmt.value = opts[0] if opts else None

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
            self.last_error = loaded.message
            self.table_out.clear_output(wait=True)
            with self.table_out:
                print(loaded.message)
        return loaded.df

    def on_table_change(self, change=None):
        if self.table.value is None:
            return
        df = self._table(self.table.value)
        if df is None:
            return
        cols = list(df.columns)
        nums = numeric_columns(df)
        self.x.options, self.y.options, self.hue.options = cols, nums, [None, *cols]
        self.x.value = next((c for c in ("format", "backend", "arch", "batch_size", "lr") if c in cols), cols[0])
        self.y.value = next((c for c in ("latency_ms_per_image", "test_dice", "dice", "throughput_ips") if c in nums),
                            nums[0] if nums else None)
        self.hue.value = "arch" if "arch" in cols and self.x.value != "arch" else None
        self.on_plot_change()

    def spec(self) -> TablePlotSpec | None:
        if self.table.value is None or self.x.value is None or self.y.value is None:
            return None
        return TablePlotSpec(self.table.value, self.x.value, self.y.value, self.hue.value, self.kind.value)

    def on_plot_change(self, change=None):
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
    in ``checkpoints_dir()`` (loaded lazily)."""
    ckpts = list_checkpoints(cfg.preset, dataset=dataset_identity(cfg.source))
    available = available_runners()
    if ckpts.empty:
        return Explorer(None, available, message=f"no checkpoint for preset {cfg.preset!r} in "
                                                 f"{checkpoints_dir()} (run notebooks 02-05 first)")
    splits = splits_from_preset(cfg)

    def loader(path):
        def load():
            return load_checkpoint(path)[0].cpu().eval()
        return load

    models = {r.name: loader(r.path) for r in ckpts.itertuples()}
    cache = PredictionCache(splits[split], models, image_size=cfg.image_size, calib=splits["train"])
    ex = Explorer(cache, available)
    ex.on_image_change()
    return ex
