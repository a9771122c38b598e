"""Accuracy of any runner on a split, with the project's metrics (``unetq.metrics``), and the
check that a model still computes something (:func:`output_collapse`).

A **collapsed** model gives the same output whatever the image: every logit equal (an INT8
calibration whose output scale rounds everything to one level, e.g. entropy calibration of a
Squeeze U-Net), or the same map for every image. Its Dice is not an accuracy of that
representation, so :func:`evaluate_runner` reports ``collapsed`` and the reason, and the study
tables record such a row with status ``"collapsed: ..."`` and no metrics.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from ..metrics import SegmentationMeter
from .data_utils import dataset_len, iter_batches


#: Output spread (max - min) below ``COLLAPSE_ATOL + COLLAPSE_RTOL * max |logit|`` is no spread:
#: this covers an INT8 output stuck on a few quantization levels away from zero, while a model
#: that separates crack from background spans logits of both signs or a large part of their size.
COLLAPSE_RTOL = 5e-2
COLLAPSE_ATOL = 1e-6
#: Images whose output maps differ by no more than ``COLLAPSE_ATOL + COLLAPSE_MAP_RTOL * max |logit|``
#: got the same map (tight: a model ignoring its input gives the very same numbers).
COLLAPSE_MAP_RTOL = 1e-4


class OutputSpread:
    """Streaming summary of a model's logits over an evaluation set, for :func:`output_collapse`:
    ``update(logits)`` per batch ``[B, ...]``; keeps the finite minimum and maximum, the largest
    |logit|, the largest difference of any image from the first image, and the counts."""

    def __init__(self):
        self.lo, self.hi, self.scale, self.across = np.inf, -np.inf, 0.0, 0.0
        self.n_images = self.n_finite = 0
        self._first: np.ndarray | None = None

    def update(self, logits) -> None:
        a = np.asarray(logits, dtype=np.float32)
        if a.ndim == 0 or a.shape[0] == 0:
            return
        a = a.reshape(a.shape[0], -1)
        fin = np.isfinite(a)
        self.n_images += a.shape[0]
        self.n_finite += int(fin.sum())
        if fin.any():
            v = a[fin]
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
            self.scale = max(self.scale, float(np.abs(v).max()))
        if self._first is None:
            self._first = a[0].copy()
        if self._first.shape == a.shape[1:]:
            with np.errstate(invalid="ignore"):
                d = np.abs(a - self._first)
            d = d[np.isfinite(d)]
            if d.size:
                self.across = max(self.across, float(d.max()))


def output_collapse(outputs, rtol: float = COLLAPSE_RTOL, atol: float = COLLAPSE_ATOL,
                    map_rtol: float = COLLAPSE_MAP_RTOL) -> str | None:
    """Why the model whose logits are ``outputs`` has collapsed, or None when it has not.

    ``outputs``: logits of the evaluation images (an array ``[N, ...]``, a list of such batches,
    or an :class:`OutputSpread`). Collapsed means: no finite logit at all; or the logits are
    constant or nearly (max - min <= ``atol + rtol * max |logit|``) over every pixel of every
    image; or, with two or more images, every image gets the same output map (no pixel differs
    from the first image's by more than ``atol + map_rtol * max |logit|``). A model that looks at
    its input fails all three.
    """
    if isinstance(outputs, OutputSpread):
        s = outputs
    else:
        s = OutputSpread()
        for batch in ([outputs] if isinstance(outputs, np.ndarray) else outputs):
            s.update(batch)
    if s.n_images == 0:
        raise ValueError("output_collapse(): no outputs given")
    if s.n_finite == 0:
        return "no finite output"
    tol = atol + rtol * s.scale
    if s.hi - s.lo <= tol:
        return f"constant output (every logit in [{s.lo:.6g}, {s.hi:.6g}] over {s.n_images} image(s))"
    if s.n_images > 1 and s.across <= atol + map_rtol * s.scale:
        return f"the same output map for all {s.n_images} images (largest difference {s.across:.3g})"
    return None


def evaluate_runner(runner, dataset, batch_size: int = 8, progress: bool = False, threshold: float = 0.5) -> dict:
    """Loss (BCE + Dice, per batch, averaged over images), split-level IoU / Dice, per-image mean
    IoU / Dice, ``n`` and TP/FP/FN of ``runner`` on ``dataset`` (items ``(image, mask)``), plus
    ``seconds`` (wall time of the loop; not a benchmark), ``nonfinite`` (count of inf/NaN
    logits, e.g. float16 overflow; NaN is scored as background), ``collapsed`` (bool) and
    ``collapse_reason`` (:func:`output_collapse`; ``""`` when not collapsed). The metrics of a
    collapsed model are still computed, but are not an accuracy: callers that tabulate must
    record the row as collapsed, not score it (``unetq.studies.quantization`` does)."""
    n = dataset_len(dataset)
    if n == 0:
        raise ValueError("evaluate_runner(): the dataset is empty")
    meter = SegmentationMeter(threshold=threshold)
    spread = OutputSpread()
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
        spread.update(logits)
        bad = ~np.isfinite(logits)
        if bad.any():  # e.g. float16 overflow: count it, score NaN as "no crack"
            nonfinite += int(bad.sum())
            logits = np.where(np.isnan(logits), -1e4, logits)
        meter.update(logits, y)
    out = meter.compute()
    out["seconds"] = time.perf_counter() - t0
    out["nonfinite"] = nonfinite
    why = output_collapse(spread)
    out["collapsed"], out["collapse_reason"] = why is not None, why or ""
    return out
