"""The data notebook (``01_data``): which data a run uses, its statistics table and its figures
(sample images with masks, mask pixel-value proportions of seed 000 Figure 3, the crack fraction
per split)."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

import matplotlib.pyplot as plt

from .. import results
from ..config import StudyConfig
from ..data import data_stats_table, dataset_identity
from ..data.stats import appearance_summary, crack_appearance
from ..data.imageio import binarize, read_image, read_mask
from ..data.stats import per_image_crack_fraction


def dataset_name(cfg: StudyConfig) -> str:
    """``"synthetic"`` for the built-in generator, else the dataset's root folder."""
    return "synthetic" if cfg.source in (None, "synthetic") else str(cfg.source)


def describe(cfg: StudyConfig) -> dict:
    """The data settings of a run, as the notebook shows them."""
    return dict(preset=cfg.preset, n_images=cfg.n_images, source_size=cfg.source_size,
                image_size=cfg.image_size, seed=cfg.seed, source=dataset_name(cfg),
                dataset=dataset_identity(cfg.source), resize=cfg.resize)


def describe_text(cfg: StudyConfig) -> str:
    """:func:`describe` as a sentence for the notebook (not a dict's repr)."""
    d = describe(cfg)
    source = "the built-in crack generator" if d["source"] == "synthetic" else f"the dataset in {d['source']}"
    return (f"Preset {d['preset']}: {d['n_images']} images from {source} (identity {d['dataset']}), "
            f"{d['source_size']} px at the source, {d['image_size']} px for the models (resize: {d['resize']}), "
            f"seed {d['seed']}.")


def appearance(splits: Mapping) -> pd.DataFrame:
    """How the cracks look (``unetq.data.stats.crack_appearance`` over every image of every
    split, at the source resolution), summarised next to the range of real crack datasets."""
    samples = [s for ds in splits.values() for s in ds.samples]
    return appearance_summary(crack_appearance(samples))


def record_stats(cfg: StudyConfig, splits, proportions: pd.DataFrame,
                 appearance: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``data_stats.csv`` rows of this run (crack fraction per split, mask pixel values and,
    when given, the medians of :func:`appearance`), upserted; returns this run's rows."""
    stats = data_stats_table(splits, proportions, dataset=dataset_identity(cfg.source), source=dataset_name(cfg),
                             preset=cfg.preset,
                             n_images=cfg.n_images, source_size=cfg.source_size, image_size=cfg.image_size,
                             seed=cfg.seed)
    if appearance is not None:
        extra = pd.DataFrame([dict(split="all", statistic=f"{r.statistic}_{q}", value=getattr(r, q))
                              for r in appearance.itertuples() for q in ("median", "q1", "q3")])
        meta = stats.drop(columns=["split", "statistic", "value"]).iloc[:1]
        stats = pd.concat([stats, meta.merge(extra, how="cross")], ignore_index=True)
    results.write(results.DATA_STATS, stats)
    return stats


def pick_examples(dataset, n: int = 4) -> list:
    """``n`` samples of a CrackDataset to show: the first ``n - 1`` with cracks and the first
    crack-free one (fewer of a kind if the dataset lacks them)."""
    m = dataset.mask_stack()
    has = m.reshape(len(m), -1).any(1) if len(m) else np.zeros(0, bool)
    cracked = [i for i in range(len(has)) if has[i]]
    free = [i for i in range(len(has)) if not has[i]]
    idx = cracked[:max(n - 1, 0)] + free[:1]
    idx += [i for i in cracked + free if i not in idx][:n - len(idx)]
    return [dataset.samples[i] for i in idx[:n]]


def plot_samples(samples, n: int = 4, threshold: int = 100):
    """``n`` samples at source resolution: image, raw mask, binarised mask overlaid in red.
    ``samples``: a list of Samples, or a CrackDataset (then :func:`pick_examples` chooses)."""
    samples = pick_examples(samples, n) if hasattr(samples, "mask_stack") else list(samples)[:n]
    if not samples:
        raise ValueError("plot_samples: no samples")
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 2.8 * len(samples)), squeeze=False, dpi=72)
    for row, s in zip(axes, samples):
        img, raw = read_image(s.image), read_mask(s.masks)
        over = img.astype(np.float32) / 255
        b = binarize(raw, threshold).astype(bool)
        over[b] = 0.45 * over[b] + 0.55 * np.array([1.0, 0.1, 0.1])
        row[0].imshow(img, interpolation="nearest")
        row[0].set_title(f"{s.id}: image", fontsize=9)
        im = row[1].imshow(raw, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        row[1].set_title("raw mask (grey values)", fontsize=9)
        fig.colorbar(im, ax=row[1], fraction=0.046, pad=0.04, label="mask value (0-255)")
        row[2].imshow(over, interpolation="nearest")
        row[2].set_title(f"mask > {threshold} overlaid ({100 * b.mean():.1f} % crack)", fontsize=9)
        for ax in row:
            ax.set_xlabel("x (px)")
            ax.set_ylabel("y (px)")
    fig.tight_layout()
    return fig


def plot_pixel_proportions(props: pd.DataFrame):
    """Bar plot of :func:`~unetq.data.stats.pixel_value_proportions` before and after
    binarisation, in percent of mask pixels."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, stage, title in zip(axes, ("raw", "binarised"), ("before binarisation", "after binarisation")):
        d = props[props.stage == stage]
        bars = ax.bar(d["value"], 100 * d["fraction"], color=["0.2", "0.85", "tab:orange"][:len(d)],
                      edgecolor="k")
        ax.bar_label(bars, labels=[f"{100 * f:.1f} %" for f in d["fraction"]])
        ax.set_title(title)
        ax.set_xlabel("mask pixel value")
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("share of mask pixels (%)")
    fig.tight_layout()
    return fig


def plot_crack_fraction(splits: Mapping):
    """Per-image crack-pixel fraction per split (box + points), with the pooled fraction."""
    df = per_image_crack_fraction(splits)
    names = list(splits)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [100 * df.loc[df.split == k, "crack_fraction"].to_numpy() for k in names]
    ax.boxplot(data, tick_labels=names, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, 1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.5, color="tab:blue")
        if len(d):
            ax.scatter([i], [d.mean()], marker="D", color="tab:red", zorder=3,
                       label="mean over images" if i == 1 else None)
    ax.set_xlabel("split")
    ax.set_ylabel("crack pixels per image (% of pixels)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
