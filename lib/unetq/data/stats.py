"""Dataset statistics: the mask pixel-value proportions of seed 000 (Figure 3), the crack
fraction of each split, gathered into the tidy ``data_stats.csv`` table, and the appearance of
the cracks (:func:`crack_appearance`: crack fraction, label width, crack contrast in background
standard deviations, texture), measured the same way on the generator and on a real dataset so
the two can be compared."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

import torch
import torch.nn.functional as F

from .. import results
from .imageio import as_mask_array, binarize, read_image, read_mask

#: Typical values of published road-crack datasets (CrackForest, Crack500, the Kaggle crack set
#: of seed 000) at their native resolution, for comparison with :func:`crack_appearance`:
#: 1-5 % crack pixels, labels 2-4 px wide on the visible crack, cracks well over one background
#: standard deviation darker than their surroundings.
REAL_RANGES = {"crack_fraction": (0.01, 0.05), "label_width_px": (2.0, 4.0), "contrast_bg_std": (1.0, None)}


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.max_pool2d(t, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0.5


def crack_appearance(samples, threshold: int = 100, ring: tuple[int, int] = (2, 8)) -> pd.DataFrame:
    """Per image with cracks, at the source resolution: ``crack_fraction`` (labelled pixels),
    ``label_width_px`` (2 x labelled pixels / labelled pixels on the label's border: the width of
    a band, exact for bands of 2 px and more), ``contrast_bg_std`` (mean grey level of the
    background ``ring`` px around the label minus that of the labelled pixels, in standard
    deviations of that background), ``texture_std`` (grey-level standard deviation of the
    background after removing its 9-px local mean: the fine grain) and ``width``, ``height``.
    ``samples``: Samples (or objects with ``image`` and ``masks`` paths)."""
    rows = []
    for s in samples:
        img = read_image(s.image).astype(np.float32)
        lab = binarize(read_mask(s.masks), threshold).astype(bool)
        grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
        h, w = lab.shape
        n = int(lab.sum())
        row = dict(id=getattr(s, "id", ""), width=w, height=h, crack_fraction=n / lab.size)
        if n:
            inner = lab & ~_dilate(~lab, 1)  # pixels whose 3x3 neighbourhood is all crack
            border = n - int(inner.sum())
            ringm = _dilate(lab, ring[1]) & ~_dilate(lab, ring[0])
            bg = grey[ringm]
            row["label_width_px"] = 2.0 * n / max(border, 1)
            row["contrast_bg_std"] = float((bg.mean() - grey[lab].mean()) / max(bg.std(), 1e-6)) if bg.size else np.nan
        local = F.avg_pool2d(torch.from_numpy(grey)[None, None], 9, stride=1, padding=4,
                             count_include_pad=False)[0, 0].numpy()
        far = ~_dilate(lab, ring[1]) if n else np.ones_like(lab)
        row["texture_std"] = float((grey - local)[far].std()) if far.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def appearance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range of :func:`crack_appearance` over the images (crack
    fraction over every image, the others over images with cracks), next to
    :data:`REAL_RANGES`."""
    out = []
    for col in ("crack_fraction", "label_width_px", "contrast_bg_std", "texture_std"):
        v = table[col].dropna() if col in table else pd.Series(dtype=float)
        lo, hi = REAL_RANGES.get(col, (None, None))
        out.append(dict(statistic=col, mean=float(v.mean()) if len(v) else np.nan,
                        median=float(v.median()) if len(v) else np.nan,
                        q1=float(v.quantile(0.25)) if len(v) else np.nan,
                        q3=float(v.quantile(0.75)) if len(v) else np.nan,
                        real_low=lo, real_high=hi))
    return pd.DataFrame(out)


def pixel_value_proportions(masks: Iterable, threshold: int = 100, progress: bool = False) -> pd.DataFrame:
    """Fraction of mask pixels equal to 0, equal to 255 and any other value, before
    binarisation (``stage="raw"``) and after it (``stage="binarised"``: 0 or 255 only; a 0/1
    mask's 1s count as crack, as :func:`unetq.data.imageio.binarize` does).

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
        zero_one = counts[1] > 0 and not counts[2:].any()  # a 0/1 mask: 1 is crack (imageio.binarize)
        above += int(counts[1]) if zero_one and threshold >= 1 else int(counts[threshold + 1:].sum())
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
    return results.lead_columns(pd.DataFrame(rows), meta)
