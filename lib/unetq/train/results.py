"""The result tables of the architecture notebooks (tidy CSV under ``paths.results_dir()``).

- ``training.csv``       one row per training run, keyed by (arch, preset, width, image_size, lr,
                         epochs, amp): a learning-rate sweep collects into it (seed 000 Tables 3-6)
- ``amp.csv``            AMP vs float32 training time and memory (seed 003 Tables 2-5)
- ``params_<arch>.csv``  per-block parameters and MACs (seed 000 Tables 1-2, seed 002 Tables 3-4)
- ``profile_<arch>.csv`` per-block forward time (seed 002 Tables 5-6)

Rows holding a timing carry the ``unetq.io.machine_info()`` columns of the machine that timed.
"""
from __future__ import annotations

import pandas as pd

from .. import paths
from ..io import machine_info, upsert_csv

TRAINING_KEY = ["arch", "preset", "width", "image_size", "lr", "epochs", "amp"]
AMP_KEY = ["arch", "preset", "width", "image_size", "batch_size", "amp", "device"]
PARAMS_KEY = ["arch", "width", "image_size", "block"]
PROFILE_KEY = ["arch", "preset", "width", "image_size", "device", "block"]


def training_row(arch: str, cfg: dict, ckpt: dict) -> dict:
    """The ``training.csv`` row of a checkpoint from :func:`unetq.train.load_or_train`."""
    tc, dc, test = ckpt["train_config"], ckpt.get("data_config", {}), ckpt.get("test_metrics", {})
    best = ckpt.get("best_val", {})
    sizes = ckpt.get("split_sizes", {})
    row = dict(
        arch=arch, preset=cfg.get("preset"), width=ckpt["model_config"].get("width"),
        image_size=dc.get("image_size"), lr=tc["lr"], epochs=tc["epochs"], amp=tc["amp"],
        batch_size=tc["batch_size"], optimizer=tc["optimizer"], seed=tc["seed"],
        n_train=sizes.get("train"), n_val=sizes.get("val"), n_test=sizes.get("test"),
        params=ckpt.get("n_params"), best_epoch=ckpt.get("best_epoch"),
        val_loss=best.get("loss"), val_iou=best.get("iou"), val_dice=best.get("dice"),
        test_loss=test.get("loss"), test_iou=test.get("iou"), test_dice=test.get("dice"),
        test_iou_img=test.get("iou_img"), test_dice_img=test.get("dice_img"),
        train_time_s=ckpt.get("total_time_s"), device=ckpt.get("device"),
        checkpoint=ckpt.get("checkpoint_name"), trained_at=ckpt.get("created"),
    )
    row.update(ckpt.get("machine") or {})  # the machine that trained (and timed) it
    return row


def record_training(arch: str, cfg: dict, ckpt: dict) -> pd.DataFrame:
    """Upsert this run's row into ``training.csv``; returns the whole table."""
    return upsert_csv(pd.DataFrame([training_row(arch, cfg, ckpt)]),
                      paths.results_dir() / "training.csv", TRAINING_KEY)


def record_amp(df: pd.DataFrame) -> pd.DataFrame:
    """Upsert the rows of :func:`unetq.train.amp_comparison` into ``amp.csv``."""
    return upsert_csv(df, paths.results_dir() / "amp.csv", AMP_KEY)


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
    return upsert_csv(pd.concat(parts, ignore_index=True),
                      paths.results_dir() / f"params_{arch}.csv", PARAMS_KEY)


def record_profile(arch: str, cfg: dict, profile: pd.DataFrame, device: str) -> pd.DataFrame:
    """Upsert a per-block profile (``unetq.models.profile_layers``) into ``profile_<arch>.csv``
    with the run's settings and the machine columns."""
    t = profile.copy()
    for i, (k, v) in enumerate(dict(arch=arch, preset=cfg.get("preset"), width=cfg.get("width"),
                                    image_size=cfg.get("image_size"), device=device).items()):
        t.insert(i, k, v)
    for k, v in machine_info().items():
        t[k] = v
    return upsert_csv(t, paths.results_dir() / f"profile_{arch}.csv", PROFILE_KEY)
