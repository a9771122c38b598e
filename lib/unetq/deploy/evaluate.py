"""Accuracy of any runner on a split, with the project's metrics (``unetq.metrics``)."""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..metrics import SegmentationMeter
from .data_utils import dataset_len, iter_batches


def evaluate_runner(runner, dataset, batch_size: int = 8, progress: bool = False, threshold: float = 0.5) -> dict:
    """Loss (BCE + Dice, per batch, averaged over images), split-level IoU / Dice, per-image mean
    IoU / Dice, ``n`` and TP/FP/FN of ``runner`` on ``dataset`` (items ``(image, mask)``), plus
    ``seconds`` (wall time of the loop; not a benchmark) and ``nonfinite`` (count of inf/NaN
    logits, e.g. float16 overflow; NaN is scored as background)."""
    n = dataset_len(dataset)
    if n == 0:
        raise ValueError("evaluate_runner(): the dataset is empty")
    meter = SegmentationMeter(threshold=threshold)
    nonfinite = 0
    t0 = time.perf_counter()
    batches = iter_batches(dataset, batch_size)
    for x, y in tqdm(batches, total=-(-n // batch_size), desc=f"eval {getattr(runner, 'name', 'runner')}",
                     leave=False, disable=not progress, unit="batch"):
        if y is None:
            raise ValueError("evaluate_runner(): dataset items must be (image, mask) pairs")
        logits = runner(x)
        if logits.shape != y.shape:
            raise ValueError(f"runner {getattr(runner, 'name', runner)} returned {logits.shape} for masks {y.shape}")
        bad = ~np.isfinite(logits)
        if bad.any():  # e.g. float16 overflow: count it, score NaN as "no crack"
            nonfinite += int(bad.sum())
            logits = np.where(np.isnan(logits), -1e4, logits)
        meter.update(logits, y)
    out = meter.compute()
    out["seconds"] = time.perf_counter() - t0
    out["nonfinite"] = nonfinite
    return out
