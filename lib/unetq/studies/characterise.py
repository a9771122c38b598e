"""Seed 003's characterisation (its Tables 2-9): every architecture x engine x precision over
batch sizes and image sizes, and AMP training over batch sizes
(``python -m unetq.cli.characterise``, ``make characterise``).

- :func:`run_grid`: the benchmark suite of notebook 07 (:func:`unetq.studies.benchmark.run_benchmark`)
  with its ``grid`` preset: every format available here at every batch size (1 .. 32) and image
  size (128, 256, 512 px), measured interleaved per architecture, size and batch, ratios to FP32
  PyTorch computed inside the run; a call slower than the preset's ``max_call_s`` is measured
  once and the bigger batches are skipped with the reason (what "as memory allows" becomes on a
  small CPU). Rows go to ``benchmark_grid.csv``, apart from the main job's ``benchmark.csv``.
- :func:`amp_over_batch`: one epoch per precision mode (float32 and each autocast type this
  device has) at every batch size, per architecture, into ``amp.csv`` (its key holds the
  batch size), architecture by architecture as each finishes.

The grid times the study's trained models (the preset's checkpoints, as notebook 07 does; INT8
calibration needs trained weights); the AMP comparison trains fresh copies, as notebooks 02-05
do. Both are timing runs: run them on a quiet machine.
"""
from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from ..config import StudyConfig
from ..data import splits_from_preset
from ..train import amp_comparison, amp_modes
from .architectures import record_amp
from .benchmark import ARCHS, MODEL_KW, SuiteDeps, bench_settings, run_benchmark

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
IMAGE_SIZES = (128, 256, 512)


def grid_settings(cfg: StudyConfig, batch_sizes=BATCH_SIZES, image_sizes=IMAGE_SIZES, archs=ARCHS, **overrides) -> dict:
    """The ``grid`` benchmark settings for ``cfg`` (see ``unetq.studies.benchmark.BENCH_PRESETS``)."""
    return bench_settings(cfg, "grid", batch_sizes=list(batch_sizes), image_sizes=list(image_sizes),
                          archs=list(archs), **overrides)


def run_grid(cfg: StudyConfig, settings: dict | None = None, *, progress: bool = True,
             deps: SuiteDeps | None = None) -> pd.DataFrame:
    """Every format x batch x image size of :func:`grid_settings` (or ``settings``), written to
    ``benchmark_grid.csv``; returns the rows."""
    bench, _ = run_benchmark(cfg, settings or grid_settings(cfg), progress=progress, deps=deps)
    return bench


def amp_over_batch(cfg: StudyConfig, archs=ARCHS, batch_sizes=BATCH_SIZES, *, device=None, epochs: int = 1,
                   record: bool = True, progress: bool = True) -> pd.DataFrame:
    """:func:`unetq.train.amp_comparison` at every batch size of ``batch_sizes`` for every
    architecture (the benchmark's model keywords: notebook 05's MBU-Net), upserted into
    ``amp.csv`` per architecture when ``record``."""
    splits = splits_from_preset(cfg)
    modes = amp_modes(device if device is not None else "auto")
    parts = []
    for arch in tqdm(list(archs), desc="AMP over batch size", unit="arch", disable=not progress):
        rows = [amp_comparison(arch, cfg.replace(batch_size=int(b)), modes, epochs, device=device, splits=splits,
                               progress=False, **MODEL_KW.get(arch, {}))
                for b in batch_sizes]
        df = pd.concat(rows, ignore_index=True)
        if record:
            record_amp(df)
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
