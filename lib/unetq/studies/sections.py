"""What every section of the report is made of: :class:`Section` (title, text, table, figure;
displays itself in a notebook), the loading of result tables with the reason when one is missing
(:func:`load_or_missing`), the representation labels and their reading order
(:func:`format_label`, :func:`format_order`), and the two tables several sections read: the
measured benchmark rows (:func:`bench_rows`) and the accuracy per representation
(:func:`accuracy_rows`). :mod:`unetq.studies.report` builds the sections from them,
:mod:`unetq.studies.recommend` the answer.
"""
from __future__ import annotations

import html as _html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML, Markdown, display

from .. import results
from ..results import Loaded
from ..results import read as load_table
from .figures import figure_image, save_figure, table_html
from .notice import NOT_MEASURED, missing_reason, not_measured_here, not_run_yet

METRICS = ("loss", "iou", "dice")


def load_or_missing(table, preset: str | None, dataset: str | None = None, command: str | None = None) -> Loaded:
    """:func:`load_table`, a missing table reported as not run yet, with the command that fills
    it (default: the preset's main job)."""
    t = load_table(table, preset, dataset=dataset)
    return t if t.df is not None else Loaded(None, not_run_yet(missing_reason(t.message), preset, command))


def absent_hardware(df: pd.DataFrame) -> str:
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


def with_format(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["format"] = [format_label(b, p) for b, p in zip(df["backend"], df["precision"])]
    return df


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"] == "measured"]
    return df


def numeric(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
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


def missing(title: str, msg: str) -> Section:
    return Section(title, message=msg)


def pick_size(df: pd.DataFrame, image_size: int | None) -> int:
    if image_size is not None:
        return int(image_size)
    # the size measured at the most batch sizes is the study's main size
    counts = df.groupby("image_size")["batch_size"].nunique()
    return int(counts.idxmax())


def bench_rows(preset, image_size=None, dataset=None) -> tuple[pd.DataFrame | None, str, int | None]:
    t = load_or_missing(results.BENCHMARK, preset, dataset)
    if t.df is None:
        return None, t.message, None
    df = measured_rows(numeric(t.df, "latency_ms", "latency_ms_per_image", "throughput_ips", "peak_mem_mb",
                        "model_size_mb", "speedup", "throughput_if", "energy_j_per_image"))
    if df.empty:
        absent = absent_hardware(t.df)
        return None, (not_measured_here(absent) if absent
                      else not_run_yet("benchmark.csv has no measured rows", preset)), None
    size = pick_size(df, image_size)
    return with_format(df), "", size


def accuracy_rows(preset, dataset=None) -> Loaded:
    t = load_or_missing(results.ACCURACY_BY_FORMAT, preset, dataset)
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
    df = numeric(df.rename(columns=ren), *METRICS)
    if "split" in df.columns and (df["split"] == "test").any():
        df = df[df["split"] == "test"]
    df = with_format(df)
    df = df.reset_index(drop=True)
    df["is_default"] = True
    if "int8_name" in df.columns:  # several INT8 configurations: one represents the format
        name = df["int8_name"].fillna("").astype(str)
        rank = int8_rank(name)
        keys = ["arch", "backend", "precision"]
        first = rank.groupby([df[k] for k in keys]).transform("min")
        df["is_default"] = rank == first
        df["is_default"] &= ~df.assign(_r=rank).duplicated(keys + ["_r"])
        several = df.groupby(keys)["format"].transform("size") > 1
        label = several & ~df["is_default"] & (name != "")
        df.loc[label, "format"] = df.loc[label, "format"] + " (" + name[label] + ")"
    return Loaded(df, t.message)


#: which INT8 configuration of the quantization notebook stands for "INT8" in the report
INT8_PRIORITY = ("chosen", "default", "")


def int8_rank(names: pd.Series) -> pd.Series:
    """Position of each INT8 configuration name in :data:`INT8_PRIORITY` (others last)."""
    return names.map(lambda n: INT8_PRIORITY.index(n) if n in INT8_PRIORITY else len(INT8_PRIORITY))


