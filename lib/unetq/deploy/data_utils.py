"""Turning the project's datasets (or plain arrays) into float32 NCHW numpy batches."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def dataset_len(data) -> int:
    if isinstance(data, np.ndarray):
        return data.shape[0]
    try:
        return len(data)
    except TypeError as e:
        raise TypeError(f"calibration/evaluation data of type {type(data).__name__} has no length") from e


def get_item(data, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(image [C,H,W], mask [1,H,W] or None)`` of item ``i`` of a dataset or array."""
    if isinstance(data, np.ndarray):
        return _to_numpy(data[i]), None
    item = data[i]
    if isinstance(item, (tuple, list)):
        img = _to_numpy(item[0])
        mask = _to_numpy(item[1]) if len(item) > 1 else None
    else:
        img, mask = _to_numpy(item), None
    if img.ndim != 3:
        raise ValueError(f"item {i} of {type(data).__name__}: expected an image [C,H,W], got shape {img.shape}")
    return img, mask


def iter_batches(data, batch_size: int, indices=None, with_masks: bool = True
                 ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(images [B,C,H,W] float32, masks [B,1,H,W] or None)`` in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = list(range(dataset_len(data))) if indices is None else list(indices)
    for start in range(0, len(idx), batch_size):
        items = [get_item(data, i) for i in idx[start:start + batch_size]]
        imgs = np.ascontiguousarray(np.stack([im for im, _ in items]))
        masks = None
        if with_masks and all(m is not None for _, m in items):
            masks = np.stack([m for _, m in items])
        yield imgs, masks


def pick_indices(n_total: int, n: int | None, seed: int = 0) -> list[int]:
    """``n`` distinct indices out of ``n_total`` (all of them when ``n`` is None or larger),
    chosen reproducibly and returned sorted."""
    if n is None or n >= n_total:
        return list(range(n_total))
    if n < 1:
        raise ValueError(f"need at least one calibration image, got n={n}")
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())
