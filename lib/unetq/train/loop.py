"""The training loop (resumable, seeded, mixed precision), evaluation and prediction."""
from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..io import save_torch
from ..machine import PeakMemory
from ..metrics import SegmentationMeter, bce_dice_loss
from ..models.tables import eval_mode
from . import distributed
from .checkpoint import NonFiniteError, nonfinite_tensors, parameter_layout, write_checkpoint
from .config import TrainConfig, resolve_device

HISTORY_COLUMNS = [
    "epoch", "train_loss", "val_loss", "val_iou", "val_dice", "val_iou_img", "val_dice_img", "lr",
    "epoch_time_s", "val_time_s", "images_per_s", "peak_mem_mb", "peak_mem_kind", "zero_fraction",
]


def _zero_fractions(model) -> dict:
    """``zero_fraction`` (the mean over masked layers of their zero fractions, seed 001's "on average,
    each layer"; NaN for a model without masked layers) and
    ``zeros_by_layer`` (``{layer: fraction}``) of a model that reports them (MBU-Net)."""
    fn = getattr(getattr(model, "module", model), "zero_fractions", None)  # DDP wraps the model
    by_layer = fn() if callable(fn) else {}
    if not by_layer:
        return dict(zero_fraction=float("nan"))
    return dict(zero_fraction=float(np.mean(list(by_layer.values()))), zeros_by_layer=by_layer)


# --------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------
def autocast_context(device: torch.device, amp: str):
    """The autocast context for ``amp`` on ``device`` (a null context for ``"off"``)."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(
                "amp='fp16' (float16 autocast with loss scaling) is only supported on CUDA here; "
                f"the device is {device}. Use amp='bf16' for mixed precision on a CPU."
            )
        return torch.autocast("cuda", dtype=torch.float16)
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"amp='bf16' requested but {torch.cuda.get_device_name(device)} "
                             "does not support bfloat16")
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"amp must be 'off', 'fp16' or 'bf16', got {amp!r}")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """``ReduceLROnPlateau`` on the validation loss for ``lr_schedule="plateau"``, else None."""
    if cfg.lr_schedule != "plateau":
        return None
    wait = max(1, cfg.patience // 2) if cfg.patience else 2
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=wait)


def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a disabled (pass-through) scaler otherwise."""
    return torch.amp.GradScaler(device.type, enabled=(amp == "fp16" and device.type == "cuda"))


# --------------------------------------------------------------------------------------------
# data order
# --------------------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch`` (0-based): a function of (seed, epoch) only, so a
    resumed run sees exactly the batches of an uninterrupted one."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


def epoch_loader(dataset, batch_size: int, seed: int, epoch: int, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=epoch_order(len(dataset), seed, epoch),
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=False)


# --------------------------------------------------------------------------------------------
# non-finite values
# --------------------------------------------------------------------------------------------
def _item_name(dataset, i: int, part: int) -> str:
    """``dataset`` item ``i`` named by its file when the dataset knows it (``CrackDataset``),
    else by its index; ``part`` 0 = image, 1 = mask."""
    samples = getattr(dataset, "samples", None)
    if samples is not None and 0 <= i < len(samples) and hasattr(samples[i], "image"):
        s = samples[i]
        return f"sample {i} ({s.image if part == 0 else ', '.join(map(str, s.masks))})"
    return f"sample {i}"


def _nonfinite_items(dataset, indices, limit: int = 5) -> list[str]:
    """Descriptions of up to ``limit`` items of ``dataset`` (among ``indices``) whose image or
    mask holds NaN / Inf."""
    out = []
    for i in indices:
        item = dataset[int(i)]
        for part, what in ((0, "image"), (1, "mask")):
            t = torch.as_tensor(item[part])
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                out.append(f"the {what} of {_item_name(dataset, int(i), part)} holds NaN/Inf")
        if len(out) >= limit:
            break
    return out


def _raise_nonfinite(where: str, value: float, dataset, indices, lr: float) -> None:
    """Raise :class:`NonFiniteError` for a non-finite loss, naming the bad inputs if any."""
    bad = _nonfinite_items(dataset, indices)
    if not bad and dataset is not None:  # the batch's indices may not be recoverable from its sampler
        bad = _nonfinite_items(dataset, range(len(dataset)))
    if bad:
        raise NonFiniteError(f"{where}: the loss is {value} because the input is not finite: "
                             + "; ".join(bad) + ". Fix or remove these files.")
    raise NonFiniteError(f"{where}: the loss is {value} (not finite): training diverged at lr={lr:g}. "
                         "Lower the learning rate or clip gradients (grad_clip); no checkpoint of these "
                         "weights is written.")


# --------------------------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------------------------
def train_epoch(model, loader, optimizer, scaler, device, amp="off", grad_clip=None,
                progress=True, desc="train", on_batch: Callable | None = None,
                epoch: int = 0) -> dict:
    """One pass over ``loader``; returns ``dict(loss, n, time_s)`` (``time_s`` is wall time
    including data loading, with the device synchronised at the end). A non-finite batch loss
    raises :class:`NonFiniteError` before the optimizer step, naming the epoch and the samples
    (files) whose image or mask holds NaN/Inf, or else the learning rate that diverged."""
    model.train()
    total, n = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    order = getattr(loader, "sampler", None)
    for i, (x, y) in enumerate(bar):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, amp):
            logits = model(x)
        loss = bce_dice_loss(logits, y)
        lv = float(loss.detach())
        if not math.isfinite(lv):
            start = i * (loader.batch_size or 1)
            idx = list(order)[start:start + x.shape[0]] if order is not None else []
            _raise_nonfinite(f"epoch {epoch + 1}, batch {i + 1}", lv, loader.dataset, idx,
                             float(optimizer.param_groups[0]["lr"]))
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total += lv * x.shape[0]
        n += x.shape[0]
        if progress:
            bar.set_postfix(loss=f"{lv:.4f}")
        if on_batch is not None:
            on_batch(epoch, i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return dict(loss=total / max(n, 1), n=n, time_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# evaluation and prediction
# --------------------------------------------------------------------------------------------
def evaluate(model, dataset, batch_size: int = 16, device="auto", amp: str = "off",
             progress: bool = False, threshold: float = 0.5, tolerance: int | None = None) -> dict:
    """Loss, IoU and Dice (split level and per-image mean) of ``model`` on ``dataset``.

    Returns ``dict(loss, iou, dice, iou_img, dice_img, n, tp, fp, fn)``; see
    :mod:`unetq.metrics` for the definitions and the empty-mask rule."""
    if len(dataset) == 0:
        raise ValueError("evaluate(): the dataset is empty")
    dev = resolve_device(device)
    model.to(dev)
    meter = SegmentationMeter(threshold=threshold, tolerance=tolerance)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with eval_mode(model), torch.inference_mode():
        for x, y in tqdm(loader, desc="evaluate", leave=False, disable=not progress, unit="batch"):
            x, y = x.to(dev), y.to(dev)
            with autocast_context(dev, amp):
                logits = model(x)
            meter.update(logits.float(), y)
    return meter.compute()


def predict(model, images, batch_size: int = 16, device="auto", amp: str = "off") -> np.ndarray:
    """Sigmoid probabilities (float32 numpy ``[N, classes, H, W]``) for ``images``
    (float32 ``[N, 3, H, W]`` tensor or numpy array in [0, 1])."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("predict(): images must be a [N, C, H, W] tensor or numpy array")
    dev = resolve_device(device)
    model.to(dev)
    out = []
    with eval_mode(model), torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(dev, torch.float32)
            with autocast_context(dev, amp):
                logits = model(x)
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def sample_predictions(model, dataset, n: int = 4, seed: int = 0, device="auto"):
    """``(images, masks, probs)`` numpy arrays for ``n`` images of ``dataset`` picked with
    ``seed`` (preferring images that contain a crack), for :func:`unetq.studies.architectures.plot_predictions`."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    with_crack = [int(i) for i in order if float(dataset[int(i)][1].sum()) > 0]
    taken = set(with_crack)
    pick = (with_crack + [int(i) for i in order if int(i) not in taken])[:n]
    images = torch.stack([dataset[int(i)][0] for i in pick])
    masks = torch.stack([dataset[int(i)][1] for i in pick])
    return images.numpy(), masks.numpy(), predict(model, images, device=device)


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    history: pd.DataFrame
    best_val_loss: float
    best_epoch: int
    total_time_s: float
    ckpt_path: Path
    device: str
    resumed_from_epoch: int = 0
    extra: dict = field(default_factory=dict)


def resume_state_path(ckpt_path: str | Path) -> Path:
    """Where :func:`fit` keeps its per-epoch resume state, next to the checkpoint."""
    p = Path(ckpt_path)
    return p.with_name(p.stem + ".resume.pt")


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _rng_state() -> dict:
    st = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _fingerprint(model, cfg: TrainConfig, splits, meta: dict | None) -> dict:
    return dict(train=cfg.identity(), model=getattr(model, "config", None),
                n_train=len(splits["train"]), n_val=len(splits["val"]),
                identity=(meta or {}).get("identity"), world_size=(meta or {}).get("world_size", 1))


def _sort_key(loss: float) -> float:
    return math.inf if not math.isfinite(loss) else loss


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, dataset, batch_size: int = 8, device="cpu",
                          amp: str = "off") -> int:
    """Re-estimate every BatchNorm's running statistics for the current weights: reset them,
    then one pass over ``dataset`` (in order, no gradients, no parameter change) in train mode
    with a cumulative average (``momentum=None``). Returns the number of BatchNorm layers.

    Binary networks need it: a sign after BatchNorm flips wherever the running mean lags the
    weights by a little, and with Adam the running averages of the last batches (momentum 0.1)
    describe weights several steps old. Global RNG state is left untouched (resumable runs)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or dataset is None or len(dataset) == 0:
        return 0
    device = torch.device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
                with autocast_context(device, amp):
                    model(x.to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(bns)


def fit(model: torch.nn.Module, splits: dict, cfg: TrainConfig, ckpt_path: str | Path, *,
        resume: bool = True, keep_state: bool = False, meta: dict | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        on_epoch: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``model`` on ``splits["train"]``, validating on ``splits["val"]`` after each epoch.

    - The weights with the lowest validation loss are written to ``ckpt_path`` (a dict with
      ``model_config``, ``state_dict``, ``train_config``, ``history``, ``best_epoch``,
      ``best_val_loss`` and ``meta``) and loaded into ``model`` at the end (eval mode).
    - After every epoch a resume state (weights, optimizer, grad scaler, RNG states, history,
      best so far) is written atomically to :func:`resume_state_path`. If the process dies,
      calling ``fit`` again with the same configuration continues after the last finished epoch
      and ends with the same weights as an uninterrupted run (on CPU: bit for bit). The state
      is deleted at the end unless ``keep_state``.
    - ``on_batch(epoch, batch_index)`` is called after every optimizer step, ``on_epoch(epochs
      done)`` after every epoch's files are written (test hooks).
    - Under ``torchrun`` (a process group, :mod:`unetq.train.distributed`) each rank trains on its
      slice of every global batch with SyncBatchNorm and DDP, and only rank 0 writes files.
    - A non-finite training or validation loss, or weights with NaN/Inf after an epoch, stop
      training with :class:`~unetq.train.checkpoint.NonFiniteError` naming the epoch and, when
      the input is at fault, the samples (files); such weights never become the checkpoint (the
      resume state of the last finite epoch is kept).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be a unetq.train.TrainConfig (use TrainConfig.from_preset)")
    for key in ("train", "val"):
        if key not in splits:
            raise ValueError(f"splits must contain a {key!r} dataset (got keys {sorted(splits)})")
        if len(splits[key]) == 0:
            raise ValueError(f"the {key!r} split is empty")
    device = resolve_device(cfg.device)
    autocast_context(device, cfg.amp)  # fail early on an impossible precision
    ckpt_path = Path(ckpt_path)
    state_path = resume_state_path(ckpt_path)
    model.to(device)
    world_size, _ = distributed.world()
    model, trained = distributed.wrap(model)  # SyncBatchNorm + DDP under torchrun; else the model itself
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = make_scaler(device, cfg.amp)
    fingerprint = _fingerprint(model, cfg, splits, dict(meta or {}, world_size=world_size) if world_size > 1 else meta)
    eval_bs = cfg.eval_batch_size or cfg.batch_size

    history: list[dict] = []
    start_epoch, best_loss, best_epoch, best_state, elapsed = 0, math.inf, 0, None, 0.0
    torch.manual_seed(cfg.seed)
    if resume and state_path.exists():
        try:
            st = torch.load(state_path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 -- a damaged resume state only costs a restart
            warnings.warn(f"{state_path}: cannot read the resume state ({e}); training from scratch")
            st = None
        same_layout = st is not None and parameter_layout(st.get("model", {})) == parameter_layout(model.state_dict())
        if st is not None and st.get("fingerprint") == fingerprint and same_layout:
            model.load_state_dict(st["model"])
            optimizer.load_state_dict(st["optimizer"])
            scaler.load_state_dict(st["scaler"])
            if scheduler is not None and st.get("scheduler") is not None:
                scheduler.load_state_dict(st["scheduler"])
            _set_rng_state(st["rng"])
            start_epoch, history = st["epoch"], st["history"]
            best_loss, best_epoch, best_state = st["best_val_loss"], st["best_epoch"], st["best_state"]
            elapsed = st["elapsed_s"]
            before = st.get("torch_threads")
            if before is not None and before != torch.get_num_threads():
                warnings.warn(f"{state_path}: resuming after epoch {start_epoch} with {torch.get_num_threads()} "
                              f"torch thread(s); the epochs before ran with {before}. The finished run is valid "
                              f"but mixes thread counts, so no rerun at one count reproduces it bit for bit")
        elif st is not None:
            why = "configuration" if st.get("fingerprint") != fingerprint else "architecture (parameter layout)"
            warnings.warn(f"{state_path}: resume state belongs to another {why}; training from scratch")

    name = (getattr(model, "config", None) or {}).get("name", type(model).__name__)
    epochs_bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=f"train {name}",
                      disable=not cfg.progress, unit="epoch")
    pin = device.type == "cuda"
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.patience is not None and history and epoch - best_epoch >= cfg.patience:
            break  # early stop: no improvement of the validation loss for `patience` epochs
        if world_size > 1:  # this rank's slice of every global batch (unetq.train.distributed)
            loader = distributed.shard_loader(splits["train"], cfg.batch_size,
                                              epoch_order(len(splits["train"]), cfg.seed, epoch), cfg.num_workers, pin)
        else:
            loader = epoch_loader(splits["train"], cfg.batch_size, cfg.seed, epoch, cfg.num_workers, pin)
        with PeakMemory(device) as mem:
            tr = train_epoch(trained, loader, optimizer, scaler, device, cfg.amp, cfg.grad_clip,
                             cfg.progress and distributed.is_main(), f"epoch {epoch + 1}/{cfg.epochs}", on_batch,
                             epoch)
        if world_size > 1:
            tr = dict(tr, loss=distributed.mean_over_ranks(tr["loss"]),
                      n=int(round(distributed.mean_over_ranks(tr["n"]) * world_size)))
        t0 = time.perf_counter()
        if cfg.bn_recalibration:
            recalibrate_batchnorm(model, splits["train"], eval_bs, device, cfg.amp)
        val = evaluate(model, splits["val"], batch_size=eval_bs, device=device, amp=cfg.amp)
        val_time = time.perf_counter() - t0
        bad = nonfinite_tensors(model.state_dict())
        if bad:
            raise NonFiniteError(f"epoch {epoch + 1}: weights hold NaN/Inf after the epoch ({', '.join(bad[:5])}): "
                                 f"training diverged at lr={optimizer.param_groups[0]['lr']:g}")
        if not math.isfinite(val["loss"]):
            _raise_nonfinite(f"epoch {epoch + 1}, validation", val["loss"], splits["val"],
                             range(len(splits["val"])), float(optimizer.param_groups[0]["lr"]))
        elapsed += tr["time_s"] + val_time
        row = dict(epoch=epoch + 1, train_loss=tr["loss"], val_loss=val["loss"], val_iou=val["iou"],
                   val_dice=val["dice"], val_iou_img=val["iou_img"], val_dice_img=val["dice_img"],
                   lr=float(optimizer.param_groups[0]["lr"]), epoch_time_s=tr["time_s"],
                   val_time_s=val_time, images_per_s=tr["n"] / tr["time_s"],
                   peak_mem_mb=mem.peak_mb, peak_mem_kind=mem.kind, **_zero_fractions(model))
        history.append(row)
        if scheduler is not None:
            scheduler.step(val["loss"] if math.isfinite(val["loss"]) else math.inf)
        if best_state is None or _sort_key(val["loss"]) < _sort_key(best_loss):
            best_loss, best_epoch, best_state = val["loss"], epoch + 1, _cpu_state(model)
            if distributed.is_main():  # rank 0 writes; every rank keeps the same best state
                write_checkpoint(ckpt_path, model_config=getattr(model, "config", None), state_dict=best_state,
                                 train_config=cfg.to_dict(), history=history, best_epoch=best_epoch,
                                 best_val_loss=best_loss, meta=meta or {})
        if distributed.is_main():
            save_torch(dict(fingerprint=fingerprint, epoch=epoch + 1, model=_cpu_state(model),
                            optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                            scheduler=scheduler.state_dict() if scheduler is not None else None,
                            rng=_rng_state(), history=history, best_val_loss=best_loss,
                            best_epoch=best_epoch, best_state=best_state, elapsed_s=elapsed,
                            torch_threads=torch.get_num_threads()),
                       state_path)
        distributed.barrier()
        if on_epoch is not None:
            on_epoch(epoch + 1)
        epochs_bar.update(1)
        epochs_bar.set_postfix(train=f"{tr['loss']:.4f}", val=f"{val['loss']:.4f}",
                               dice=f"{val['dice']:.3f}")
    epochs_bar.close()

    model.load_state_dict(best_state)
    model.eval()
    distributed.barrier()
    if not keep_state and state_path.exists() and distributed.is_main():
        state_path.unlink()
    return TrainResult(history=pd.DataFrame(history, columns=HISTORY_COLUMNS),
                       best_val_loss=float(best_loss), best_epoch=int(best_epoch),
                       total_time_s=float(elapsed), ckpt_path=ckpt_path, device=str(device),
                       resumed_from_epoch=start_epoch, extra=dict(records=history))
