"""Reproducible train/val/test splits and the one-call entry point from a study configuration."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import StudyConfig
from .dataset import CrackDataset
from .layouts import Sample, find_samples
from .synthetic import ensure_synthetic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _check_ratios(ratios) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(x < 0 for x in r) or not math.isclose(sum(r), 1.0, abs_tol=1e-6):
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    return r


def split_samples(samples: Sequence[Sample], ratios=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list]:
    """Split into ``{"train", "val", "test"}`` reproducibly: samples are sorted by id, then
    permuted with ``numpy.random.default_rng(seed)``; val and test get ``round(n * ratio)``
    items, train the rest.

    A dataset's own split is honoured: samples marked ``"test"`` (``"val"``) form the test (val)
    split; a split the dataset does not provide is carved out of its training samples with the
    ratios renormalised (e.g. DeepCrack's train/test: val = 0.1 / 0.9 of its train images)."""
    r = dict(zip(SPLITS, _check_ratios(ratios)))
    samples = sorted(samples, key=lambda s: s.id)
    out = {k: [s for s in samples if getattr(s, "split", None) == k] for k in ("val", "test")}
    pool = [s for s in samples if getattr(s, "split", None) not in ("val", "test")]
    missing = [k for k in ("val", "test") if not out[k]]
    if out["val"] or out["test"]:
        log.info("keeping the dataset's own split: %s",
                 {k: len(v) for k, v in out.items() if v})
    rng = np.random.default_rng(int(seed))
    order = [pool[i] for i in rng.permutation(len(pool))]
    denom = r["train"] + sum(r[k] for k in missing)
    start = 0
    for k in missing:
        m = int(round(len(order) * r[k] / denom)) if denom > 0 else 0
        out[k] = order[start:start + m]
        start += m
    out["train"] = order[start:]
    return {k: out[k] for k in SPLITS}


def _subset(samples: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """At most ``n`` samples, a seeded random choice (kept in id order), for real datasets."""
    if n is None or n >= len(samples):
        return samples
    rng = np.random.default_rng([int(seed), 1])
    keep = np.sort(rng.choice(len(samples), size=int(n), replace=False))
    return [samples[i] for i in keep]


def prepare_splits(source="synthetic", n: int | None = 320, source_size: int = 448,
                   image_size: int = 256, seed: int = 0, ratios=(0.8, 0.1, 0.1),
                   threshold: int = 100, augment: bool = False, layout: str = "auto",
                   cache="auto", num_workers: int = 0) -> dict[str, CrackDataset]:
    """``{"train", "val", "test"}`` → :class:`CrackDataset`.

    ``source="synthetic"`` (or None) uses ``n`` generated images of ``source_size`` px, cached in
    ``paths.data_dir()/synthetic_n{n}_s{source_size}_seed{seed}``. Any other value is the root
    of a real dataset (``layout`` auto-detected); there ``n`` (if given) takes a seeded subset
    and ``source_size`` is ignored. ``augment`` (flips) applies to the training split only."""
    if source is None or str(source) == "synthetic":
        if n is None:
            raise ValueError("prepare_splits: the synthetic source needs n (number of images)")
        root = ensure_synthetic(int(n), int(source_size), int(seed))
        samples = find_samples(root, layout="kaggle")
    else:
        root = Path(source).expanduser()
        samples = _subset(find_samples(root, layout=layout), n, seed)
    parts = split_samples(samples, ratios, seed)
    return {k: CrackDataset(v, size=int(image_size), threshold=threshold,
                            augment=augment and k == "train", cache=cache, num_workers=num_workers)
            for k, v in parts.items()}


def splits_from_preset(cfg: StudyConfig, **kw) -> dict[str, CrackDataset]:
    """:func:`prepare_splits` from a :class:`unetq.config.StudyConfig` (``source``, ``n_images``,
    ``source_size``, ``image_size``, ``seed``, ``threshold``, ``augment``; ``num_workers`` sets
    the decoding threads). ``kw`` overrides the other arguments of :func:`prepare_splits`."""
    kw.setdefault("num_workers", int(cfg.num_workers or 0))
    return prepare_splits(
        source=cfg.source or "synthetic", n=cfg.n_images, source_size=cfg.source_size,
        image_size=cfg.image_size, seed=cfg.seed, threshold=cfg.threshold, augment=cfg.augment, **kw)
