"""Figures of the architecture notebooks. Every function returns a matplotlib ``Figure`` (the
notebook displays it; nothing here calls ``plt.show()``)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

__all__ = ["plot_history", "plot_predictions", "plot_amp", "error_map", "ERROR_COLOURS"]

# error map classes: 0 true negative, 1 true positive, 2 false positive, 3 false negative
ERROR_COLOURS = {"true negative": "#000000", "true positive": "#ffffff",
                 "false positive": "#e4572e", "false negative": "#29a8ff"}


def _history_frame(history) -> pd.DataFrame:
    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    need = {"epoch", "train_loss", "val_loss", "val_dice"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)} (got {list(df.columns)})")
    return df


def plot_history(history, title: str | None = None):
    """Training and validation loss, and validation IoU/Dice, per epoch (best epoch marked)."""
    df = _history_frame(history)
    fig, (ax_loss, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(df["epoch"], df["train_loss"], "o-", label="train")
    ax_loss.plot(df["epoch"], df["val_loss"], "s-", label="validation")
    best = df.loc[df["val_loss"].idxmin()] if df["val_loss"].notna().any() else None
    if best is not None:
        ax_loss.axvline(best["epoch"], color="0.6", ls="--", lw=1,
                        label=f"best (epoch {int(best['epoch'])})")
    losses = pd.concat([df["train_loss"], df["val_loss"]]).to_numpy(dtype=float)
    losses = losses[np.isfinite(losses) & (losses > 0)]
    if losses.size and losses.max() / losses.min() > 50:  # a diverging run (large lr): log axis
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("BCE + Dice loss (unitless)")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_m.plot(df["epoch"], df["val_dice"], "o-", label="Dice")
    if "val_iou" in df:
        ax_m.plot(df["epoch"], df["val_iou"], "s-", label="IoU")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("validation score (0-1)")
    ax_m.set_ylim(0, 1)
    ax_m.set_title("validation IoU and Dice (split level)")
    ax_m.legend()
    for ax in (ax_loss, ax_m):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _hw(a: np.ndarray) -> np.ndarray:
    """[C, H, W] or [H, W] -> [H, W] (first channel) or [H, W, 3] for an RGB image."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.clip(np.transpose(a, (1, 2, 0)), 0, 1)
    if a.ndim == 3:
        return a[0]
    if a.ndim == 2:
        return a
    raise ValueError(f"expected an image [C, H, W] or [H, W], got shape {a.shape}")


def error_map(mask: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class per pixel: 0 TN, 1 TP, 2 FP, 3 FN (see :data:`ERROR_COLOURS`)."""
    t = _hw(mask) >= 0.5
    p = _hw(prob) > threshold
    out = np.zeros(t.shape, np.uint8)
    out[p & t] = 1
    out[p & ~t] = 2
    out[~p & t] = 3
    return out


def plot_predictions(images, masks, probs, n: int = 4, threshold: float = 0.5, title: str | None = None):
    """A row per image: input, ground truth, predicted probability, error map (TP white,
    FP red, FN blue) with a legend. Arrays are ``[N, C, H, W]`` (numpy or tensors)."""
    images, masks, probs = (np.asarray(getattr(a, "cpu", lambda: a)()) for a in (images, masks, probs))
    if not (len(images) == len(masks) == len(probs)):
        raise ValueError(f"images, masks and probs differ in length: {len(images)}, {len(masks)}, {len(probs)}")
    n = min(n, len(images))
    if n == 0:
        raise ValueError("plot_predictions: no images")
    cmap = ListedColormap(list(ERROR_COLOURS.values()))
    fig, axes = plt.subplots(n, 4, figsize=(11, 2.6 * n + 0.6), squeeze=False, layout="constrained")
    for i in range(n):
        img = _hw(images[i])
        axes[i, 0].imshow(img, cmap=None if img.ndim == 3 else "gray")
        axes[i, 1].imshow(_hw(masks[i]), cmap="gray", vmin=0, vmax=1)
        im = axes[i, 2].imshow(_hw(probs[i]), cmap="magma", vmin=0, vmax=1)
        axes[i, 3].imshow(error_map(masks[i], probs[i], threshold), cmap=cmap, vmin=0, vmax=3,
                          interpolation="nearest")
    for j, t in enumerate(["image", "ground truth", "predicted probability",
                           f"error map (p > {threshold:g})"]):
        axes[0, j].set_title(t)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, location="right", shrink=min(0.9, 0.45 + 0.1 * n),
                 label="predicted crack probability (0-1)")
    fig.legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=k) for k, c in ERROR_COLOURS.items()],
               loc="outside lower center", ncol=4, frameon=False, title="error map")
    if title:
        fig.suptitle(title)
    return fig


def plot_amp(df: pd.DataFrame, title: str | None = None):
    """Epoch time and peak memory per precision mode (from ``unetq.train.amp_comparison``),
    bars annotated with the speed-up / memory reduction factor versus float32."""
    need = {"amp", "epoch_time_s", "peak_mem_mb"}
    if missing := need - set(df.columns):
        raise ValueError(f"AMP table lacks columns {sorted(missing)}")
    labels = [f"{r.amp}\n({r.autocast_dtype})" if "autocast_dtype" in df else r.amp for r in df.itertuples()]
    x = np.arange(len(df))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bars = ax_t.bar(x, df["epoch_time_s"], color=colours[: len(df)])
    ax_t.set_ylabel("training time per epoch (s)")
    ax_t.set_title("epoch time (lower is better)")
    if "speedup_vs_off" in df:
        ax_t.bar_label(bars, labels=[f"{v:.2f}x" if np.isfinite(v) else "" for v in df["speedup_vs_off"]])
    kind = str(df["peak_mem_kind"].iloc[0]) if "peak_mem_kind" in df else ""
    mem_label = {"cpu_peak_rss_increase": "peak RSS increase during epoch (MiB)",
                 "cuda_peak_allocated": "peak CUDA memory allocated (MiB)"}.get(kind, "peak memory (MiB)")
    bars = ax_m.bar(x, df["peak_mem_mb"], color=colours[: len(df)])
    ax_m.set_ylabel(mem_label)
    ax_m.set_title("memory (lower is better)")
    if "mem_reduction_vs_off" in df:
        ax_m.bar_label(bars, labels=[f"{v:.2f}x" if np.isfinite(v) else "" for v in df["mem_reduction_vs_off"]])
    for ax in (ax_t, ax_m):
        ax.set_xticks(x, labels)
        ax.set_xlabel("training precision (autocast dtype)")
        ax.margins(y=0.15)
    dev = f" on {df['device'].iloc[0]}" if "device" in df else ""
    fig.suptitle(title or f"mixed precision vs float32 training{dev} (bar labels: factor vs off)")
    fig.tight_layout()
    return fig
