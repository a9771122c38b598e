"""Dataset statistics: the mask pixel-value proportions of seed 000 (Figure 3) and the crack
fraction of each split, gathered into the tidy ``data_stats.csv`` table."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .imageio import as_mask_array


def pixel_value_proportions(masks: Iterable, threshold: int = 100, progress: bool = False) -> pd.DataFrame:
    """Fraction of mask pixels equal to 0, equal to 255 and any other value, before
    binarisation (``stage="raw"``) and after it (``stage="binarised"``: 0 or 255 only).

    ``masks``: paths, lists of paths (merged), Samples, PIL images or uint8 arrays, at the
    source resolution. Returns columns ``stage, value, pixels, fraction``."""
    from tqdm.auto import tqdm

    zero = full = other = above = total = 0
    for m in tqdm(masks, desc="mask pixel values", disable=not progress, leave=False):
        a = np.asarray(as_mask_array(m))
        if a.dtype != np.uint8:
            raise ValueError(f"pixel_value_proportions expects uint8 masks, got {a.dtype}")
        counts = np.bincount(a.ravel(), minlength=256)
        zero += int(counts[0])
        full += int(counts[255])
        above += int(counts[threshold + 1:].sum())
        total += int(a.size)
    if total == 0:
        raise ValueError("pixel_value_proportions: no mask pixels given")
    other = total - zero - full
    rows = [("raw", "0", zero), ("raw", "255", full), ("raw", "other", other),
            ("binarised", "0", total - above), ("binarised", "255", above)]
    df = pd.DataFrame(rows, columns=["stage", "value", "pixels"])
    df["fraction"] = df["pixels"] / total
    return df


def crack_fraction_per_split(splits: Mapping) -> pd.DataFrame:
    """Per split: images, crack-free images, crack-pixel fraction (over the split; every image
    has the same size, so it is also the mean per-image fraction) and the std of the per-image
    fraction, on the preprocessed masks."""
    rows = []
    for name, ds in splits.items():
        m = ds.mask_stack()
        per_img = m.reshape(len(m), -1).mean(1) if len(m) else np.zeros(0)
        rows.append(dict(
            split=name, images=int(len(m)), crack_free_images=int((per_img == 0).sum()),
            crack_pixel_fraction=float(m.mean()) if len(m) else float("nan"),
            crack_fraction_std=float(per_img.std()) if len(m) else float("nan"),
            image_size=int(ds.size)))
    return pd.DataFrame(rows)


def per_image_crack_fraction(splits: Mapping) -> pd.DataFrame:
    """One row per image: ``split, id, crack_fraction`` (preprocessed masks)."""
    rows = []
    for name, ds in splits.items():
        m = ds.mask_stack()
        frac = m.reshape(len(m), -1).mean(1) if len(m) else np.zeros(0)
        rows += [dict(split=name, id=s.id, crack_fraction=float(f)) for s, f in zip(ds.samples, frac)]
    return pd.DataFrame(rows, columns=["split", "id", "crack_fraction"])


def split_sizes(splits: Mapping) -> pd.DataFrame:
    """``split, images`` (ints, deterministic for a seed: the notebooks check this output)."""
    return pd.DataFrame([dict(split=k, images=len(v)) for k, v in splits.items()])


def data_stats_table(splits: Mapping, proportions: pd.DataFrame, **meta) -> pd.DataFrame:
    """The tidy ``data_stats.csv`` rows: ``meta`` columns (e.g. dataset, preset, sizes, seed) +
    ``split, statistic, value``. ``proportions`` comes from :func:`pixel_value_proportions`
    (split ``"all"``)."""
    rows = []
    for r in crack_fraction_per_split(splits).to_dict("records"):
        for stat in ("images", "crack_free_images", "crack_pixel_fraction", "crack_fraction_std"):
            rows.append(dict(split=r["split"], statistic=stat, value=r[stat]))
    for r in proportions.to_dict("records"):
        rows.append(dict(split="all", statistic=f"mask_{r['stage']}_fraction_{r['value']}",
                         value=r["fraction"]))
    df = pd.DataFrame(rows)
    for i, (k, v) in enumerate(meta.items()):
        df.insert(i, k, v)
    return df
