"""The learning rate of each architecture, chosen on the validation split from one grid.

Every architecture gets the same procedure: ``python -m unetq.cli.lr_sweep`` trains each one at
every learning rate of :data:`LR_GRID` (training seed 0, the preset's epoch cap, early stopping,
schedule) and records the runs in ``training.csv``; :func:`chosen_lr` then takes, for an
architecture, the learning rate with the lowest mean validation loss among the swept ones. Where
no sweep was run for these settings (fewer than two learning rates in the table), the preset's
learning rate is used, and :func:`tuned` says so. Every notebook loads its models through
:func:`tuned`, so notebooks 02-07 use the same checkpoints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import results
from ..config import StudyConfig
from ..data import dataset_identity

#: The learning rates every architecture is tried at (Adam). A sweep over (3e-4, 1e-3, 3e-3) at
#: the quick preset chose the top value for every architecture, so the grid was moved up one
#: step (3e-4 was the worst for all four); a choice at either end of the grid is flagged by the
#: sweep's printout so the grid can be widened again.
LR_GRID = (1e-3, 3e-3, 1e-2)

#: The settings a sweep row must share with a run to count for it.
_SAME = ("preset", "dataset", "width", "image_size", "epochs", "amp")


def lr_at_grid_edge(lr: float, swept) -> bool:
    """Whether ``lr`` is the smallest or largest of the learning rates ``swept`` (at least two
    distinct ones): the optimum may then lie outside the grid."""
    swept = {float(v) for v in swept}
    return len(swept) > 1 and float(lr) in (min(swept), max(swept))


def sweep_rows(arch: str, cfg: StudyConfig, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``training.csv`` rows of ``arch`` trained with ``cfg``'s settings (any learning rate)."""
    t = table if table is not None else results.read(results.TRAINING).df
    if t is None or t.empty:
        return pd.DataFrame()
    want = dict(preset=cfg.preset, dataset=dataset_identity(cfg.source), width=cfg.width,
                image_size=cfg.image_size, epochs=cfg.epochs, amp=cfg.amp)
    keep = t["arch"].astype(str) == arch
    for k in _SAME:
        if k in t:
            v = want[k]
            keep &= (t[k].astype(str) == str(v)) if isinstance(v, str) else np.isclose(
                pd.to_numeric(t[k], errors="coerce"), float(v))
    return t[keep]


def chosen_lr(arch: str, cfg: StudyConfig, table: pd.DataFrame | None = None) -> tuple[float, str]:
    """``(lr, why)``: the swept learning rate with the lowest mean validation loss over its
    seeds, or the preset's when fewer than two learning rates were swept."""
    rows = sweep_rows(arch, cfg, table)
    if rows.empty or "val_loss" not in rows or rows["lr"].nunique() < 2:
        return float(cfg.lr), "the preset's learning rate (no learning-rate sweep for these settings)"
    by = rows.groupby("lr")["val_loss"].mean()
    lr = float(by.idxmin())
    tried = ", ".join(f"{k:g}" for k in sorted(by.index))
    return lr, f"lowest mean validation loss among {tried} (learning-rate sweep in training.csv)"


def tuned(arch: str, cfg: StudyConfig, table: pd.DataFrame | None = None) -> StudyConfig:
    """``cfg`` with ``arch``'s chosen learning rate (:func:`chosen_lr`)."""
    return cfg.replace(lr=chosen_lr(arch, cfg, table)[0])


def chosen_lrs(training: pd.DataFrame) -> dict[str, float]:
    """``arch -> lr`` for a ``training.csv`` extract of one preset and dataset: per architecture,
    the learning rate with the lowest mean validation loss when several were trained, else the
    only one (for the report, which reads the table as it is)."""
    out = {}
    for arch, g in training.groupby("arch"):
        lrs = pd.to_numeric(g["lr"], errors="coerce")
        if lrs.nunique() < 2 or "val_loss" not in g:
            out[arch] = float(lrs.iloc[0])
        else:
            out[arch] = float(g.assign(lr=lrs).groupby("lr")["val_loss"].mean().idxmin())
    return out
