"""Reproducible train/val/test splits, written once to a split file and reused (or read from a
split file the user supplies), and the one-call entry point from a study configuration."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import paths
from ..config import StudyConfig
from ..io import write_json
from .dataset import CrackDataset
from .identity import dataset_identity, is_synthetic
from .imageio import DataError
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


def check_splits(parts: dict[str, list], where: str) -> None:
    """A :class:`DataError` naming the split and the sizes when a split is empty."""
    empty = [k for k in SPLITS if not parts.get(k)]
    if empty:
        sizes = ", ".join(f"{k} {len(parts.get(k) or [])}" for k in SPLITS)
        raise DataError(f"{where}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                        f"({sizes} images). Use more images (n_images), other ratios, or a split file that "
                        "names images for every split.")


def split_file_path(source, n: int | None, seed: int, ratios) -> Path:
    """Where the split of a dataset is written the first time it is made (``data_dir()/splits``)."""
    r = "-".join(f"{x:g}" for x in _check_ratios(ratios))
    return paths.data_dir() / "splits" / f"{dataset_identity(source)}_n{n}_seed{seed}_r{r}.json"


def read_split_file(path, samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """The split a JSON file names: ``{"train": [ids], "val": [ids], "test": [ids]}`` (sample ids
    as :func:`unetq.data.find_samples` gives them). Unknown ids are an error naming the file."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"split file {path}: cannot read it ({type(e).__name__}: {e})") from e
    if not isinstance(spec, dict) or not all(isinstance(spec.get(k), list) for k in SPLITS):
        raise DataError(f"split file {path}: expected a JSON object with lists 'train', 'val' and 'test'")
    by_id = {s.id: s for s in samples}
    unknown = [i for k in SPLITS for i in spec[k] if i not in by_id]
    if unknown:
        raise DataError(f"split file {path}: {len(unknown)} id(s) not in the dataset, e.g. {unknown[:5]}")
    return {k: [by_id[i] for i in spec[k]] for k in SPLITS}


def prepare_splits(source="synthetic", n: int | None = 320, source_size: int = 448,
                   image_size: int = 256, seed: int = 0, ratios=(0.8, 0.1, 0.1),
                   threshold: int = 100, augment: bool = False, layout: str = "auto",
                   cache="auto", num_workers: int = 0, resize: str = "pad",
                   split_file=None) -> dict[str, CrackDataset]:
    """``{"train", "val", "test"}`` → :class:`CrackDataset`.

    ``source="synthetic"`` (or None) uses ``n`` generated images of ``source_size`` px, cached in
    ``paths.data_dir()/synthetic_n{n}_s{source_size}_seed{seed}``. Any other value is the root
    of a real dataset (``layout`` auto-detected); there ``n`` (if given) takes a seeded subset
    and ``source_size`` is ignored. ``augment`` (flips) applies to the training split only;
    ``resize``: how non-square images become square (``unetq.data.imageio.RESIZE_MODES``).

    The split is read from ``split_file`` when given (see :func:`read_split_file`); otherwise it
    is made by :func:`split_samples` the first time and written to :func:`split_file_path`, then
    read back from there on every later call, so it never changes under a run. An empty split is
    a :class:`DataError`."""
    if is_synthetic(source):
        if n is None:
            raise ValueError("prepare_splits: the synthetic source needs n (number of images)")
        root = ensure_synthetic(int(n), int(source_size), int(seed))
        samples = find_samples(root, layout="kaggle")
    else:
        root = Path(source).expanduser()
        samples = _subset(find_samples(root, layout=layout), n, seed)
    if split_file is not None:
        parts, where = read_split_file(split_file, samples), f"split file {split_file}"
    else:
        stored = split_file_path(source, n, seed, ratios)
        if stored.exists():
            parts, where = read_split_file(stored, samples), f"split file {stored}"
        else:
            parts, where = split_samples(samples, ratios, seed), f"dataset {root}"
            check_splits(parts, where)
            write_json(dict({k: [s.id for s in parts[k]] for k in SPLITS}, dataset=dataset_identity(source),
                            n=n, seed=seed, ratios=list(ratios)), stored)
    check_splits(parts, where)
    return {k: CrackDataset(v, size=int(image_size), threshold=threshold,
                            augment=augment and k == "train", cache=cache, num_workers=num_workers,
                            resize=resize)
            for k, v in parts.items()}


def splits_from_preset(cfg: StudyConfig, **kw) -> dict[str, CrackDataset]:
    """:func:`prepare_splits` from a :class:`unetq.config.StudyConfig` (``source``, ``n_images``,
    ``source_size``, ``image_size``, ``seed``, ``threshold``, ``augment``, ``resize``,
    ``split_file``; ``num_workers`` sets the decoding threads). ``kw`` overrides the other arguments of :func:`prepare_splits`."""
    kw.setdefault("num_workers", int(cfg.num_workers or 0))
    return prepare_splits(
        source=cfg.source or "synthetic", n=cfg.n_images, source_size=cfg.source_size,
        image_size=cfg.image_size, seed=cfg.seed, threshold=cfg.threshold, augment=cfg.augment,
        resize=cfg.resize, split_file=cfg.split_file, **kw)
