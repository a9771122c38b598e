"""The result tables of the study: every table's name, key columns (with their types) and the
columns its readers need, one writer and one reader. Studies write through :func:`write`, the
report reads through :func:`read`; nothing else names a results file.

- :func:`write` merges rows into ``results_dir()/<name>.csv`` atomically and under a file lock
  (concurrent writers keep each other's rows): rows whose key matches
  an existing row replace it, every other row is kept. Keys are compared after casting both sides
  to the declared types (a ``1`` read back as ``1.0`` or ``"1"`` is the same key; ``None`` and NaN
  are the same). A frame that lacks a key or required column raises :class:`SchemaError` naming
  the table and the column, so a renamed column fails where it is written.
- :func:`read` returns :class:`Loaded`: the table (rows of one preset when asked), or ``None``
  with the reason, never an exception: a missing, empty, unreadable table or one that lacks a
  column its readers need is reported with the file and the column.

Every table whose rows depend on the data has a ``dataset`` key column (the identity of
``unetq.data.dataset_identity``), so runs on different data never replace each other's rows.

Tables with a part in their name (``params_<arch>``, ``benchmark_<device>``) are declared with a
``{placeholder}`` and written with that part given (``write(PARAMS, df, arch="unet")``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from . import paths
from .io import locked, write_csv

NOT_RUN = "not measured on this machine / not run"


class SchemaError(ValueError):
    """A results frame does not have the columns its table declares."""


@dataclass(frozen=True)
class Table:
    """A results table: ``name`` (file stem, may hold ``{part}`` placeholders), ``key`` columns
    with their types (``"str"``, ``"int"``, ``"float"``, ``"bool"``), and ``required``: the other
    columns every reader of the table uses."""

    name: str
    key: dict = field(default_factory=dict)
    required: tuple = ()
    doc: str = ""

    def file_name(self, **parts) -> str:
        try:
            return self.name.format(**parts) + ".csv"
        except KeyError as e:
            raise ValueError(f"table {self.name!r} needs its {e.args[0]!r} part to name a file") from None

    def path(self, root: str | os.PathLike | None = None, **parts) -> Path:
        return Path(root or paths.results_dir()) / self.file_name(**parts)

    @property
    def key_columns(self) -> list[str]:
        return list(self.key)

    def check(self, df: pd.DataFrame, *, writing: bool) -> None:
        """:class:`SchemaError` naming the missing columns (key + required when writing)."""
        need = (self.key_columns if writing else []) + list(self.required)
        missing = [c for c in need if c not in df.columns]
        if missing:
            what = "written to" if writing else "read from"
            raise SchemaError(f"results table {self.name}.csv: column(s) {missing} missing in the frame {what} it "
                              f"(it has {sorted(map(str, df.columns))})")


S, I, F, B = "str", "int", "float", "bool"

DATA_STATS = Table("data_stats", dict(dataset=S, preset=S, n_images=I, source_size=I, image_size=I, seed=I,
                                      split=S, statistic=S), doc="notebook 01: pixel values, crack fraction")
TRAINING = Table("training", dict(arch=S, preset=S, dataset=S, width=I, image_size=I, lr=F, epochs=I, amp=S,
                                  train_seed=I),
                 ("test_dice",), "one row per training run (seed 000 Tables 3-6)")
AMP = Table("amp", dict(arch=S, preset=S, dataset=S, width=I, image_size=I, batch_size=I, amp=S, device=S),
            ("speedup_vs_off", "mem_reduction_vs_off"), "AMP vs float32 training (seed 003 Tables 2-5)")
PARAMS = Table("params_{arch}", dict(arch=S, width=I, image_size=I, block=S), ("params",),
               "per-block parameters and MACs (seed 000 Tables 1-2, seed 002 Tables 3-4)")
PROFILE = Table("profile_{arch}", dict(arch=S, preset=S, width=I, image_size=I, device=S, block=S), (),
                "per-block forward time (seed 002 Tables 5-6)")
MBU_COST_RANKING = Table("mbu_cost_ranking", dict(preset=S, layer=S), ("score",), "seed 001 Table A.4")
MBU_ACCURACY = Table("mbu_accuracy", dict(preset=S, dataset=S, config=S, train_seed=I), ("test_dice",),
                     "seed 001 Table 1")
MBU_SPARSITY = Table("mbu_sparsity", dict(preset=S, dataset=S, config=S, layer=S), ("zero_fraction",), "seed 001 Figure 3a")
MBU_ZEROS = Table("mbu_zeros", dict(preset=S, dataset=S, backbone=S, rule=S, masked_layers=I, width=I, image_size=I,
                                    lr=F, train_seed=I, epoch=I, layer=S), ("zero_fraction", "test_dice"),
                  "seed 001 Figure 3a: do the zeros emerge (python -m unetq.cli.mbu_zeros)")
MBU_ABLATION = Table("mbu_ablation", dict(preset=S, dataset=S, experiment=S, config=S, width=I, image_size=I,
                                          lr=F, train_seed=I), ("test_dice", "chosen"),
                     "seed 001 Table 1 and the masking order, trained from scratch (python -m unetq.cli.mbu_ablation)")
MBU_ABLATION_FRONTIER = Table("mbu_ablation_frontier", dict(preset=S, dataset=S, config=S, width=I, image_size=I),
                              ("masked_layers", "test_dice_mean", "fps", "on_frontier"),
                              "seed 001 Figure 7 from scratch: Dice over seeds against the packed engine's frames per "
                              "second (python -m unetq.cli.mbu_ablation --experiment pareto --frontier)")
MBU_SPEED = Table("mbu_speed", dict(preset=S, dataset=S, case=S), ("median_ms",), "packed engine vs its peers")
MBU_PARETO = Table("mbu_pareto", dict(preset=S, dataset=S, config=S), ("masked_layers", "test_dice", "fps"),
                   "seed 001 Figure 7")
ACCURACY_BY_FORMAT = Table("accuracy_by_format", dict(arch=S, preset=S, dataset=S, split=S, backend=S, precision=S, config=S),
                           ("arch", "backend", "precision"), "loss/IoU/Dice per representation")
ACCURACY_SEEDS = Table("accuracy_by_format_seeds", dict(arch=S, preset=S, dataset=S, split=S, backend=S, precision=S,
                                                     config=S, train_seed=I), ("arch", "backend", "precision"),
                       "every representation of every training seed (python -m unetq.cli.deploy_seeds)")
MODEL_SIZES = Table("model_sizes", dict(arch=S, preset=S, dataset=S, representation=S), ("size_bytes",),
                    "bytes on disk per representation")
INT8_SENSITIVITY = Table("int8_sensitivity_{arch}", dict(arch=S, preset=S, dataset=S, mode=S, node=S), ("delta_dice",),
                         "one layer in INT8 at a time")
INT8_CONFIGS = Table("int8_configs", dict(arch=S, preset=S, dataset=S, split=S, config=S), ("dice",),
                     "the INT8 configuration grid")
INT8_SPEED = Table("int8_speed", dict(arch=S, preset=S, dataset=S, variant=S, batch=I), ("median_s",),
                   "ONNX Runtime INT8 vs FP32 latency")
_BENCH_KEY = dict(preset=S, dataset=S, arch=S, width=I, backend=S, precision=S, batch_size=I, image_size=I)
BENCHMARK = Table("benchmark", _BENCH_KEY, ("status",), "latency/throughput/memory per format")
BENCHMARK_DEVICE = Table("benchmark_{device}", _BENCH_KEY, ("status",), "benchmark.csv rows measured on a GPU")
BENCHMARK_DATASET = Table("benchmark_dataset", _BENCH_KEY, ("status",), "whole-test-split timing (seed 000)")
BENCHMARK_GRID = Table("benchmark_grid", _BENCH_KEY, ("status",),
                       "every format over batch x image size (seed 003 Tables 6-9; python -m unetq.cli.characterise)")

TABLES: dict[str, Table] = {t.name: t for t in (
    DATA_STATS, TRAINING, AMP, PARAMS, PROFILE, MBU_COST_RANKING, MBU_ACCURACY, MBU_SPARSITY, MBU_ZEROS, MBU_ABLATION,
    MBU_ABLATION_FRONTIER, MBU_SPEED, MBU_PARETO, ACCURACY_BY_FORMAT, ACCURACY_SEEDS, MODEL_SIZES, INT8_SENSITIVITY,
    INT8_CONFIGS, INT8_SPEED, BENCHMARK, BENCHMARK_GRID, BENCHMARK_DEVICE, BENCHMARK_DATASET)}


# ----------------------------------------------------------------------------------------------
# keys compared by value
# ----------------------------------------------------------------------------------------------
def _canonical(value, kind: str) -> str:
    """One spelling per key value: numbers by value (``1``, ``1.0`` and ``"1"`` agree), missing
    values (None, NaN, "") as ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if kind in (I, F):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return str(value)
        if math.isnan(v):
            return ""
        return repr(int(v)) if v.is_integer() else repr(v)
    if kind == B:
        s = str(value).strip().lower()
        return {"true": "True", "1": "True", "1.0": "True", "false": "False", "0": "False", "0.0": "False"}.get(s, s)
    s = str(value)
    return "" if s in ("nan", "None") else s


def _keys(df: pd.DataFrame, table: Table) -> list[tuple]:
    cols = [[_canonical(v, kind) for v in (df[c] if c in df.columns else [None] * len(df))]
            for c, kind in table.key.items()]
    return list(zip(*cols)) if cols else [() for _ in range(len(df))]


def has_key(table: Table, df: pd.DataFrame | None, row) -> bool:
    """Whether ``df`` holds a row with the key of ``row`` (a mapping), compared as :func:`write`
    compares keys."""
    if df is None or df.empty:
        return False
    return _keys(pd.DataFrame([dict(row)]), table)[0] in set(_keys(df, table))


#: Values of key columns that tables written before the column existed lack: every run before the
#: ``dataset`` column used the built-in generator, in a version older than any recorded one.
LEGACY_KEY_VALUES = {"dataset": "synthetic", "train_seed": 0}


def _upgrade(df: pd.DataFrame, table: Table | None) -> pd.DataFrame:
    missing = {c: v for c, v in LEGACY_KEY_VALUES.items() if table is not None and c in table.key
               and c not in df.columns}
    return df.assign(**missing) if missing else df


def merge(old: pd.DataFrame | None, new: pd.DataFrame, table: Table) -> pd.DataFrame:
    """``old`` with the rows of ``new`` upserted by ``table``'s key (nothing of ``old`` is
    dropped except rows whose key ``new`` holds)."""
    if old is None or old.empty:
        return new.reset_index(drop=True)
    old = _upgrade(old, table)
    fresh = set(_keys(new, table))
    keep = [k not in fresh for k in _keys(old, table)]
    return pd.concat([old[keep], new], ignore_index=True)


# ----------------------------------------------------------------------------------------------
# writer and reader
# ----------------------------------------------------------------------------------------------
def write(table: Table, df: pd.DataFrame, *, root: str | os.PathLike | None = None, **parts) -> pd.DataFrame:
    """Upsert ``df`` into ``table`` (see the module docstring); returns the whole table."""
    table.check(df, writing=True)
    path = table.path(root, **parts)
    with locked(path):  # concurrent writers (parallel sweeps) must not drop each other's rows
        old = None
        if path.exists():
            try:
                old = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                old = None
        out = merge(old, df, table)
        write_csv(out, path)
    return out


class Loaded(NamedTuple):
    """A results table (``df``), or ``df=None`` with the reason in ``message``."""

    df: pd.DataFrame | None
    message: str


def read(table: Table | str, preset: str | None = None, *, dataset: str | None = None,
         root: str | os.PathLike | None = None, where: dict | None = None, **parts) -> Loaded:
    """The table as :class:`Loaded`. ``table`` is a :class:`Table` (with its name ``parts``), or
    a file stem, possibly a glob (``"mbu_*"``: every match concatenated with a ``table``
    column). Outside the main job (``paths.is_published()`` false) and with no ``root``, the
    committed table is read beneath this run's own rows. With ``preset``, rows of other presets are dropped when the table has a ``preset``
    column (and the message says so if none is left); likewise ``dataset`` and each
    ``{column: value}`` of ``where``."""
    own = Path(root or paths.results_dir())
    if isinstance(table, Table):
        stem, schema = table.file_name(**parts)[:-4], table
    else:
        stem = table[:-4] if table.endswith(".csv") else table
        schema = TABLES.get(stem)
    # A run folder (an interactive session, a sweep's configuration) sees the committed tables
    # beneath its own rows: its rows replace committed rows of the same key.
    roots = [own]
    committed = paths.published_dir() / "results"
    if root is None and not paths.is_published() and committed.resolve() != own.resolve():
        roots.insert(0, committed)
    loaded = []
    for r in roots:
        frames = []
        for p in sorted(r.glob(f"{stem}.csv")):
            try:
                df = pd.read_csv(p)
            except pd.errors.EmptyDataError:
                continue
            except Exception as e:  # a corrupt file must not stop a report
                return Loaded(None, f"{NOT_RUN}: {p} could not be read ({type(e).__name__}: {e})")
            if "*" in stem or "?" in stem:
                df.insert(0, "table", p.stem)
            frames.append(df)
        if frames:
            loaded.append(_upgrade(pd.concat(frames, ignore_index=True), schema))
    if not loaded:
        return Loaded(None, f"{NOT_RUN}: no {stem}.csv in {own}")
    frames = loaded[:1]
    for df in loaded[1:]:
        if schema is not None and all(c in df.columns and c in frames[0].columns for c in schema.key):
            frames = [merge(frames[0], df, schema)]
        else:
            frames = [pd.concat([frames[0], df], ignore_index=True)]
    df = _upgrade(pd.concat(frames, ignore_index=True), schema)
    if df.empty:
        return Loaded(None, f"{NOT_RUN}: {stem}.csv is empty")
    if schema is not None:
        try:
            schema.check(df, writing=False)
        except SchemaError as e:
            return Loaded(None, f"{NOT_RUN}: {e}")
    for col, want in (("preset", preset), ("dataset", dataset), *(where or {}).items()):
        if want is not None and col in df.columns:
            sub = df[df[col].astype(str) == str(want)]
            if sub.empty:
                have = ", ".join(sorted(df[col].astype(str).unique()))
                return Loaded(None, f"{NOT_RUN}: {stem}.csv has no rows for {col} {want!r} (has: {have})")
            df = sub.reset_index(drop=True)
    return Loaded(df, f"{stem}.csv: {len(df)} rows")


def lead_columns(df: pd.DataFrame, values: dict) -> pd.DataFrame:
    """A copy of ``df`` with a constant column per ``values`` item, first and in that order (the
    run's identifying columns at the front of a results row)."""
    out = df.copy()
    for i, (k, v) in enumerate(values.items()):
        out.insert(i, k, v)
    return out


def seed_summary(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds of ``metrics``
    per group ``by``: columns ``<metric>_mean``, ``<metric>_std`` and ``seeds``."""
    by = [c for c in by if c in df.columns]
    metrics = [m for m in metrics if m in df.columns]
    g = df.groupby(by, sort=False, dropna=False)
    out = g[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["seeds"] = g.size()
    return out.reset_index()


def files(table: Table, root: str | os.PathLike | None = None) -> list[Path]:
    """Every file of a table with a ``{part}`` in its name (e.g. each ``benchmark_<device>.csv``)."""
    import re

    root = Path(root or paths.results_dir())
    pattern = re.sub(r"\{[^}]+\}", "*", table.name)
    fixed = {t.name for t in TABLES.values() if "{" not in t.name}
    return sorted(p for p in root.glob(f"{pattern}.csv") if p.stem not in fixed)
