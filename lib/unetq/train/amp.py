"""Mixed-precision (AMP) training versus float32: epoch time and peak memory (seed 003, Sec. 6.1).

Seed 003 reports the training-time speed-up ``T_without_AMP / T_with_AMP`` (its Eq. 17) and the
memory reduction factor ``M_without_AMP / M_with_AMP`` (Eq. 18). :func:`amp_comparison` trains a
fresh copy of the model (same seed, same batches) for ``epochs`` epochs in each mode and reports
both ratios against ``"off"``. Memory is what :class:`unetq.train.memory.PeakMemory` measures:
peak allocated tensor memory on CUDA, peak RSS increase during the epoch on CPU.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import StudyConfig
from ..data import dataset_identity, splits_from_preset
from ..machine import PeakMemory, machine_info
from ..models import create_model
from .config import TrainConfig, resolve_device
from .loop import autocast_context, epoch_loader, make_optimizer, make_scaler, train_epoch

AUTOCAST_DTYPE = {"off": "float32", "fp16": "float16", "bf16": "bfloat16"}


def amp_modes(device="auto") -> tuple[str, ...]:
    """The modes worth comparing on ``device``: ``("off", "bf16")`` on CPU; ``("off", "fp16",
    "bf16")`` on CUDA (without bf16 on GPUs that lack it)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return ("off", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("off", "fp16")
    return ("off", "bf16")


def amp_comparison(arch: str, cfg: StudyConfig, modes=None, epochs: int = 1, *, device=None,
                   splits: dict | None = None, warmup_batches: int = 1, progress: bool = True,
                   **model_kw) -> pd.DataFrame:
    """One row per precision mode: training ``epochs`` epoch(s) of a fresh ``arch`` model.

    Columns: arch, preset, width, image_size, batch_size, amp, autocast_dtype, device,
    device_name, epochs, n_images (per epoch), epoch_time_s (mean), images_per_s, peak_mem_mb
    (max over epochs), peak_mem_kind, train_loss (last epoch), speedup_vs_off, mem_reduction_vs_off
    (NaN when "off" is not among ``modes``), then the ``unetq.machine.machine_info()`` columns.
    ``warmup_batches`` untimed steps run first in every mode (one-time kernel set-up)."""
    tcfg = TrainConfig.from_preset(cfg, device=device)
    dev = resolve_device(tcfg.device)
    modes = tuple(modes) if modes is not None else amp_modes(dev)
    for m in modes:
        autocast_context(dev, m)  # a clear error before any work for an impossible mode
    if splits is None:
        splits = splits_from_preset(cfg)
    train = splits["train"]
    rows = []
    for mode in tqdm(modes, desc=f"AMP comparison {arch}", disable=not progress, unit="mode"):
        torch.manual_seed(tcfg.seed)
        model = create_model(name=arch, width=cfg.width, **model_kw).to(dev)
        opt = make_optimizer(model, tcfg)
        scaler = make_scaler(dev, mode)
        if warmup_batches > 0:
            warm = epoch_loader(torch.utils.data.Subset(train, range(min(len(train), tcfg.batch_size * warmup_batches))),
                                tcfg.batch_size, tcfg.seed, -1)
            train_epoch(model, warm, opt, scaler, dev, mode, progress=False)
        times, mems, losses, kind = [], [], [], ""
        for e in range(epochs):
            loader = epoch_loader(train, tcfg.batch_size, tcfg.seed, e, tcfg.num_workers)
            with PeakMemory(dev) as mem:
                r = train_epoch(model, loader, opt, scaler, dev, mode, tcfg.grad_clip,
                                progress, f"{mode} epoch {e + 1}/{epochs}")
            times.append(r["time_s"])
            mems.append(mem.peak_mb)
            losses.append(r["loss"])
            kind = mem.kind
        t = float(np.mean(times))
        rows.append(dict(arch=arch, preset=cfg.preset, dataset=dataset_identity(cfg.source), width=cfg.width,
                         image_size=cfg.image_size, batch_size=tcfg.batch_size, amp=mode,
                         autocast_dtype=AUTOCAST_DTYPE[mode], device=dev.type,
                         device_name=(torch.cuda.get_device_name(dev) if dev.type == "cuda"
                                      else machine_info()["cpu"]),
                         epochs=epochs, n_images=len(train), epoch_time_s=t,
                         images_per_s=len(train) / t, peak_mem_mb=float(np.max(mems)),
                         peak_mem_kind=kind, train_loss=float(losses[-1])))
        del model, opt
    df = pd.DataFrame(rows)
    if "off" in modes:
        ref = df.loc[df["amp"] == "off"].iloc[0]
        df["speedup_vs_off"] = ref["epoch_time_s"] / df["epoch_time_s"]
        df["mem_reduction_vs_off"] = ref["peak_mem_mb"] / df["peak_mem_mb"].where(df["peak_mem_mb"] > 0)
    else:
        df["speedup_vs_off"] = np.nan
        df["mem_reduction_vs_off"] = np.nan
    info = machine_info()
    for k, v in info.items():
        df[k] = v
    return df
