"""The PyTorch dataset and loader.

Items are ``(image float32 [3,S,S] in [0,1], mask float32 [1,S,S] in {0,1})`` (preprocessing in
:func:`unetq.data.imageio.load_pair`). Small datasets (``cache="auto"``: up to
``CACHE_LIMIT_BYTES`` of resized uint8 arrays) are decoded once at construction, so epochs never
re-decode JPEGs and every decoding error surfaces immediately, naming the file; bigger ones stay
lazy (headers are still checked at construction) and decode per item, in DataLoader workers.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .imageio import load_pair
from .layouts import Sample, validate_samples


#: ``cache="auto"`` keeps the resized uint8 arrays in memory up to this size.
CACHE_LIMIT_BYTES = 1 << 30


class CrackDataset(Dataset):
    """Binary segmentation dataset over ``samples`` resized to ``size × size``.

    ``threshold``: raw mask values ``> threshold`` are foreground (seed 000: 100).
    ``augment``: random horizontal/vertical flips (off by default; torch RNG, so a seeded
    DataLoader makes them reproducible). ``cache``: True, False or ``"auto"``.
    ``num_workers``: threads that decode while filling the cache (Pillow releases the GIL).
    ``resize``: how non-square images become square (``unetq.data.imageio.RESIZE_MODES``)."""

    def __init__(self, samples: Sequence[Sample], size: int = 256, threshold: int = 100,
                 augment: bool = False, cache: bool | str = "auto", num_workers: int = 0,
                 progress: bool = True, resize: str = "pad"):
        from tqdm.auto import tqdm

        if size < 1:
            raise ValueError(f"CrackDataset: size must be positive, got {size}")
        if not 0 <= threshold < 255:
            raise ValueError(f"CrackDataset: threshold must be in [0, 255), got {threshold}")
        self.samples = list(samples)
        self.size, self.threshold, self.augment = int(size), int(threshold), bool(augment)
        self.resize = resize
        nbytes = len(self.samples) * self.size * self.size * 4
        self.cached = bool(nbytes <= CACHE_LIMIT_BYTES) if cache == "auto" else bool(cache)
        self._images = self._masks = None
        if not self.samples:
            return
        if not self.cached:
            validate_samples(self.samples, progress=progress and len(self.samples) > 2000)
            return
        self._images = np.empty((len(self.samples), self.size, self.size, 3), np.uint8)
        self._masks = np.empty((len(self.samples), self.size, self.size), np.uint8)

        def fill(i):
            self._images[i], self._masks[i] = load_pair(
                self.samples[i].image, self.samples[i].masks, self.size, self.threshold, self.resize)

        it = range(len(self.samples))
        bar = dict(total=len(self.samples), desc=f"decoding {self.size}px", leave=False,
                   disable=not progress or len(self.samples) < 50)
        if num_workers > 0:
            with ThreadPoolExecutor(num_workers) as ex:
                for _ in tqdm(ex.map(fill, it), **bar):
                    pass
        else:
            for i in tqdm(it, **bar):
                fill(i)

    def __len__(self) -> int:
        return len(self.samples)

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed uint8 (image ``[S,S,3]``, mask ``[S,S]`` in {0,1}) of item ``i``."""
        if self.cached:
            return self._images[i], self._masks[i]
        s = self.samples[i]
        return load_pair(s.image, s.masks, self.size, self.threshold, self.resize)

    def mask_stack(self) -> np.ndarray:
        """All preprocessed masks, uint8 ``[N,S,S]`` (decodes every mask when not cached)."""
        if self.cached:
            return self._masks
        if not self.samples:
            return np.zeros((0, self.size, self.size), np.uint8)
        return np.stack([self.arrays(i)[1] for i in range(len(self))])

    def __getitem__(self, i: int):
        img, mask = self.arrays(i)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
        y = torch.from_numpy(np.ascontiguousarray(mask)).float().unsqueeze_(0)
        if self.augment:
            flip = torch.rand(2)
            if flip[0] < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if flip[1] < 0.5:
                x, y = x.flip(-2), y.flip(-2)
        return x, y

    def __repr__(self) -> str:
        return (f"CrackDataset(n={len(self)}, size={self.size}, threshold={self.threshold}, "
                f"augment={self.augment}, cached={self.cached})")


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader whose shuffling (and flip augmentation) is reproducible from ``seed``."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                      num_workers=num_workers, worker_init_fn=_seed_worker if num_workers else None,
                      persistent_workers=num_workers > 0, drop_last=False)
