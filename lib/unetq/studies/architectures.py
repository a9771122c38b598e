"""The architecture notebooks (``02_unet``, ``03_ghost_unet``, ``04_squeeze_unet``): one study
run per architecture, its result tables and its figures.

Tables (through :mod:`unetq.results`):

- ``training.csv``       one row per training run, keyed by (arch, preset, width, image_size, lr,
                         epochs, amp): a learning-rate sweep collects into it (seed 000 Tables 3-6)
- ``amp.csv``            AMP vs float32 training time and memory (seed 003 Tables 2-5)
- ``params_<arch>.csv``  per-block parameters and MACs (seed 000 Tables 1-2, seed 002 Tables 3-4)
- ``profile_<arch>.csv`` per-block forward time (seed 002 Tables 5-6)

Rows holding a timing carry the :func:`unetq.machine.machine_info` columns of the machine that
timed. Every figure function returns a matplotlib ``Figure`` (or the axes); nothing here calls
``plt.show()``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from .. import results
from ..config import StudyConfig
from ..data import dataset_identity, splits_from_preset
from ..machine import machine_info
from ..metrics import error_classes
from ..models import create_model, paper_param_table, param_table, profile_layers
from ..train import amp_comparison as _amp_comparison
from ..train import amp_modes, load_or_train, resolve_device
from ..train import sample_predictions as _sample_predictions
from .figures import ERROR_COLOURS, amp_colour, to_hw
from .tuning import chosen_lr

#: The width and image size of the papers' parameter tables.
PAPER_WIDTH, PAPER_IMAGE_SIZE = 64, 256


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def device(cfg: StudyConfig) -> torch.device:
    """The device the run trains on (``cfg.device``: auto = CUDA if available, else CPU)."""
    return resolve_device(cfg.device)


def with_lr(arch: str, cfg: StudyConfig, lr: float | None = None) -> tuple[StudyConfig, str]:
    """``(cfg, why)``: ``cfg`` at the learning rate ``lr`` when given (a sweep point), else at the
    one chosen on validation from the learning-rate sweep (``unetq.studies.tuning``)."""
    if lr is not None:
        return cfg.replace(lr=float(lr)), "set by the notebook's lr parameter"
    chosen, why = chosen_lr(arch, cfg)
    return cfg.replace(lr=chosen), why


def describe_run(arch: str, cfg: StudyConfig, dev) -> str:
    return (f"{arch}: preset {cfg.preset}, width {cfg.width}, {cfg.image_size} px, "
            f"{cfg.n_images} images, {cfg.epochs} epochs, batch {cfg.batch_size}, "
            f"lr {cfg.lr:g}, training precision {cfg.amp}, device {dev}; {cfg.seeds} training seed(s), "
            f"early stopping {cfg.patience or 'off'}, schedule {cfg.lr_schedule}, "
            f"BatchNorm re-estimation {'on' if cfg.bn_recalibration else 'off'}")


def param_tables(arch: str, cfg: StudyConfig) -> dict[tuple[int, int], pd.DataFrame]:
    """``{(width, image_size): param_table}`` at the papers' size and at the run's."""
    out = {}
    for width, size in ((PAPER_WIDTH, PAPER_IMAGE_SIZE), (cfg.width, cfg.image_size)):
        if (width, size) not in out:
            out[(width, size)] = param_table(create_model(arch, width=width), image_size=size)
    return out


def paper_comparison(arch: str, tables: dict[tuple[int, int], pd.DataFrame]) -> pd.DataFrame:
    """The papers' per-block counts next to this implementation's at width 64, 256 px."""
    return tables[(PAPER_WIDTH, PAPER_IMAGE_SIZE)].merge(
        paper_param_table(arch).drop(columns="paper_row"), on="block", how="left")


def profile(arch: str, cfg: StudyConfig, dev) -> pd.DataFrame:
    """Per-block forward time of the run's model (``cfg.bench_repeats`` passes), recorded."""
    prof = profile_layers(create_model(arch, width=cfg.width), image_size=cfg.image_size,
                          repeats=cfg.bench_repeats, device=dev)
    record_profile(arch, cfg, prof, device=str(dev))
    return prof


def train(arch: str, cfg: StudyConfig, **kw) -> list[tuple]:
    """``[(model, ckpt), ...]``, one per training seed (``train_seed`` 0 .. ``cfg.seeds`` - 1, the
    same data and split), each trained if its checkpoint is missing."""
    return [load_or_train(arch, cfg.replace(train_seed=s), **kw) for s in range(cfg.seeds)]


def describe_training(runs: list[tuple]) -> str:
    lines = []
    for _, ck in runs:
        t, h = ck.get("test_metrics", {}), ck["history"]
        stop = " (stopped early)" if len(h) < ck["train_config"]["epochs"] else ""
        lines.append(f"seed {ck['train_config']['seed']}: best epoch {ck['best_epoch']} of {len(h)}{stop}, "
                     f"test Dice {t.get('dice', float('nan')):.4f}, {ck['total_time_s']:.0f} s on {ck['device']}")
    return "\n".join(lines)


#: The columns of :func:`training_summary`.
SUMMARY_METRICS = ["val_loss", "val_dice", "test_loss", "test_iou", "test_dice", "test_dice_at_val_threshold",
                   "test_f1_tol", "epochs_trained", "train_time_s"]


def training_summary(table: pd.DataFrame, arch: str | None = None) -> pd.DataFrame:
    """Mean and standard deviation over training seeds of the ``training.csv`` rows (of ``arch``)."""
    t = table if arch is None else table[table["arch"] == arch]
    return results.seed_summary(t, ["arch", "preset", "dataset", "width", "image_size", "lr", "epochs", "amp"],
                                SUMMARY_METRICS)


def sample_predictions(model, cfg: StudyConfig, n: int = 4, dev="cpu"):
    """``(images, masks, probs)`` of ``n`` test images (see :func:`unetq.train.sample_predictions`)."""
    return _sample_predictions(model, splits_from_preset(cfg)["test"], n=n, device=dev)


def amp_comparison(arch: str, cfg: StudyConfig, dev, epochs: int = 1) -> pd.DataFrame:
    """One epoch in each precision mode this device has (:func:`unetq.train.amp_comparison`),
    recorded in ``amp.csv``."""
    table = _amp_comparison(arch, cfg, modes=amp_modes(dev), epochs=epochs)
    record_amp(table)
    return table


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------
def training_row(arch: str, cfg: StudyConfig, ckpt: dict) -> dict:
    """The ``training.csv`` row of a checkpoint from :func:`unetq.train.load_or_train`."""
    tc, dc, test = ckpt["train_config"], ckpt.get("data_config", {}), ckpt.get("test_metrics", {})
    best = ckpt.get("best_val", {})
    sizes = ckpt.get("split_sizes", {})
    row = dict(
        arch=arch, preset=cfg.preset, dataset=dc.get("dataset") or dataset_identity(cfg.source),
        width=ckpt["model_config"].get("width"),
        image_size=dc.get("image_size"), lr=tc["lr"], epochs=tc["epochs"], amp=tc["amp"],
        batch_size=tc["batch_size"], optimizer=tc["optimizer"], train_seed=tc["seed"],
        data_seed=dc.get("seed"), patience=tc.get("patience"), lr_schedule=tc.get("lr_schedule", "constant"),
        bn_recalibration=tc.get("bn_recalibration", False), epochs_trained=len(ckpt.get("history", [])),
        n_train=sizes.get("train"), n_val=sizes.get("val"), n_test=sizes.get("test"),
        params=ckpt.get("n_params"), best_epoch=ckpt.get("best_epoch"),
        val_loss=best.get("loss"), val_iou=best.get("iou"), val_dice=best.get("dice"),
        test_loss=test.get("loss"), test_iou=test.get("iou"), test_dice=test.get("dice"),
        test_iou_img=test.get("iou_img"), test_dice_img=test.get("dice_img"),
        test_precision_tol=test.get("precision_tol"), test_recall_tol=test.get("recall_tol"),
        test_f1_tol=test.get("f1_tol"), tolerance_px=test.get("tolerance_px"),
        val_threshold=ckpt.get("val_threshold"),
        test_iou_at_val_threshold=(ckpt.get("test_metrics_at_val_threshold") or {}).get("iou"),
        test_dice_at_val_threshold=(ckpt.get("test_metrics_at_val_threshold") or {}).get("dice"),
        test_f1_tol_at_val_threshold=(ckpt.get("test_metrics_at_val_threshold") or {}).get("f1_tol"),
        train_time_s=ckpt.get("total_time_s"), device=ckpt.get("device"),
        checkpoint=ckpt.get("checkpoint_name"), trained_at=ckpt.get("created"),
    )
    row.update(ckpt.get("machine") or {})  # the machine that trained (and timed) it
    return row


def record_training(arch: str, cfg: StudyConfig, ckpt) -> pd.DataFrame:
    """Upsert the row of a run (``ckpt``), or of every seed's run (a list of ``(model, ckpt)``),
    into ``training.csv``; returns the whole table."""
    ckpts = [c for _, c in ckpt] if isinstance(ckpt, list) else [ckpt]
    return results.write(results.TRAINING, pd.DataFrame([training_row(arch, cfg, c) for c in ckpts]))


def record_amp(df: pd.DataFrame) -> pd.DataFrame:
    """Upsert the rows of :func:`unetq.train.amp_comparison` into ``amp.csv``."""
    return results.write(results.AMP, df)


def record_params(arch: str, tables: dict[tuple[int, int], pd.DataFrame]) -> pd.DataFrame:
    """Upsert parameter tables (``{(width, image_size): unetq.models.param_table(...)}``) into
    ``params_<arch>.csv``."""
    parts = []
    for (width, image_size), t in tables.items():
        t = t.copy()
        t.insert(0, "image_size", image_size)
        t.insert(0, "width", width)
        t.insert(0, "arch", arch)
        parts.append(t)
    return results.write(results.PARAMS, pd.concat(parts, ignore_index=True), arch=arch)


def record_profile(arch: str, cfg: StudyConfig, profile: pd.DataFrame, device: str) -> pd.DataFrame:
    """Upsert a per-block profile (``unetq.models.profile_layers``) into ``profile_<arch>.csv``
    with the run's settings and the machine columns."""
    t = results.lead_columns(profile, dict(arch=arch, preset=cfg.preset, width=cfg.width,
                                           image_size=cfg.image_size, device=device))
    for k, v in machine_info().items():
        t[k] = v
    return results.write(results.PROFILE, t, arch=arch)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
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
        img = to_hw(images[i])
        axes[i, 0].imshow(img, cmap=None if img.ndim == 3 else "gray")
        axes[i, 1].imshow(to_hw(masks[i]), cmap="gray", vmin=0, vmax=1)
        im = axes[i, 2].imshow(to_hw(probs[i]), cmap="magma", vmin=0, vmax=1)
        axes[i, 3].imshow(error_classes(to_hw(masks[i]) >= 0.5, to_hw(probs[i]) > threshold), cmap=cmap, vmin=0, vmax=3,
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
    """Epoch time and peak memory per precision mode (from :func:`amp_comparison`),
    bars annotated with the speed-up / memory reduction factor versus float32."""
    need = {"amp", "epoch_time_s", "peak_mem_mb"}
    if missing := need - set(df.columns):
        raise ValueError(f"AMP table lacks columns {sorted(missing)}")
    labels = [f"{r.amp}\n({r.autocast_dtype})" if "autocast_dtype" in df else r.amp for r in df.itertuples()]
    x = np.arange(len(df))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = [amp_colour(a) for a in df["amp"]]  # a precision has one colour in every figure
    bars = ax_t.bar(x, df["epoch_time_s"], color=colours)
    ax_t.set_ylabel("training time per epoch (s)")
    ax_t.set_title("epoch time (lower is better)")
    if "speedup_vs_off" in df:
        ax_t.bar_label(bars, labels=[f"{v:.2f}x" if np.isfinite(v) else "" for v in df["speedup_vs_off"]])
    kind = str(df["peak_mem_kind"].iloc[0]) if "peak_mem_kind" in df else ""
    mem_label = {"cpu_peak_rss_increase": "peak RSS increase during epoch (MiB)",
                 "cuda_peak_allocated": "peak CUDA memory allocated (MiB)"}.get(kind, "peak memory (MiB)")
    bars = ax_m.bar(x, df["peak_mem_mb"], color=colours)
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


def plot_profile(df: pd.DataFrame, ax=None, title: str | None = None):
    """Horizontal bar chart of ``profile_layers`` output (first block on top); returns the axes."""
    missing = {"block", "time_ms"} - set(df.columns)
    if missing:
        raise ValueError(f"plot_profile needs columns block and time_ms (the profile_layers table); missing {sorted(missing)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(df) + 1.2))
    ax.barh(df["block"], df["time_ms"], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("time per forward pass (ms)")
    ax.set_ylabel("block")
    if "share_percent" in df.columns:
        for y, (t, s) in enumerate(zip(df["time_ms"], df["share_percent"])):
            ax.annotate(f"{s:.0f}%", (t, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    if title:
        ax.set_title(title)
    return ax
