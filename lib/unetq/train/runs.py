"""Training runs by identity: train-if-missing (:func:`load_or_train`), so any notebook runs alone,
and the checkpoint name of a run (:func:`checkpoint_path`).

A run's identity is everything its weights depend on: the architecture and its keywords, the
training settings that change the weights, the data, and (for a run initialised from another
model, ``start=``) that model's identity. A checkpoint is reused only when its identity matches
and it is complete; otherwise the run is trained (resuming an interrupted one) and the checkpoint
written by :func:`unetq.train.checkpoint.write_checkpoint`.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from .. import paths
from ..config import StudyConfig
from ..data import SYNTHETIC, dataset_identity, splits_from_preset
from ..machine import machine_info
from ..models import create_model
from . import distributed
from .checkpoint import (CheckpointError, load_checkpoint, normalise, parameter_layout, read_checkpoint,
                         write_checkpoint)
from .config import TrainConfig, resolve_device
from ..metrics import best_threshold
from .loop import autocast_context, evaluate, fit, predict, resume_state_path

#: Boundary tolerance (pixels) of the precision / recall / F1 every finished run reports.
TOLERANCE_PX = 2


def data_config(cfg: StudyConfig) -> dict:
    """The data settings a run's weights depend on, with the dataset's identity
    (``unetq.data.dataset_identity``: layout + content hash of a real dataset)."""
    return dict(source=cfg.source, dataset=dataset_identity(cfg.source), n_images=cfg.n_images,
                source_size=cfg.source_size, image_size=cfg.image_size, resize=cfg.resize,
                split_file=cfg.split_file, seed=cfg.seed, threshold=cfg.threshold, augment=bool(cfg.augment))


def run_identity(arch: str, cfg: StudyConfig, start: dict | None = None, **model_kw) -> dict:
    """Everything the trained weights depend on: architecture, training and data settings, and
    the identity of the model a run starts from (``start``, see :func:`load_or_train`)."""
    ident = dict(model=dict(name=arch, width=cfg.width, **model_kw), train=TrainConfig.from_preset(cfg).identity(),
                 data=data_config(cfg))
    if start is not None:
        ident["start"] = start
    if cfg.processes > 1:  # a DDP run's weights differ slightly from one process's (distributed.py)
        ident["processes"] = cfg.processes
    return normalise(ident)


def checkpoint_path(arch: str, cfg: StudyConfig, tag: str | None = None, start: dict | None = None,
                    **model_kw) -> Path:
    """``checkpoints_dir()/<arch>_<preset>.pt`` for the preset's own settings on the built-in
    data; a real dataset adds ``_<dataset identity>``; any other settings (an lr of a sweep,
    another width, ``model_kw``, a start model) get ``_lr<lr>`` when the lr differs and a short
    hash of the settings, so they never overwrite the main checkpoint. ``tag`` adds a readable
    ``_<tag>``."""
    if not isinstance(cfg, StudyConfig):
        raise TypeError("cfg must be a unetq.config.StudyConfig (build it with unetq.config.get_preset)")
    ident = run_identity(arch, cfg, start, **model_kw)
    ref = run_identity(arch, cfg.baseline())
    name = f"{arch}_{cfg.preset}"
    if ident["data"]["dataset"] != SYNTHETIC:
        name += f"_{ident['data']['dataset']}"
    if tag:
        name += f"_{tag}"
    if ident != ref:
        if ident["train"]["lr"] != ref["train"]["lr"]:
            name += f"_lr{ident['train']['lr']:g}"
        name += "_" + hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return paths.checkpoints_dir() / f"{name}.pt"


def _matches(ckpt: dict, identity: dict, layout: dict | None = None) -> tuple[bool, str]:
    if "test_metrics" not in ckpt:
        return False, "it is incomplete (no test metrics: training was interrupted)"
    if normalise(ckpt.get("identity")) != identity:
        stored = normalise(ckpt.get("identity")) or {}
        diff = [k for k in identity if stored.get(k) != identity[k]]
        return False, f"its {', '.join(diff) or 'identity'} settings differ"
    if layout is not None:
        stored = parameter_layout(ckpt.get("state_dict") or {})
        if stored != layout:
            diff = sorted(set(stored) ^ set(layout)) or [k for k in layout if stored[k] != layout[k]]
            return False, (f"its parameter layout is not this model's (the architecture changed since: "
                           f"{', '.join(diff[:3])}{' ...' if len(diff) > 3 else ''})")
    return True, ""


def start_identity(ckpt: dict) -> dict:
    """What a run initialised from the model of ``ckpt`` records about it."""
    return normalise(dict(identity=ckpt.get("identity"), best_val_loss=ckpt.get("best_val_loss"),
                          checkpoint=ckpt.get("checkpoint_name")))


def _plain(metrics: dict) -> dict:
    return {k: (int(v) if k in ("n", "tp", "fp", "fn", "tolerance_px") else float(v)) for k, v in metrics.items()}


def test_metrics(model, splits: dict, tcfg: TrainConfig, device) -> tuple[dict, dict, float | None]:
    """``(test at 0.5, test at the validation threshold, that threshold)``: the decision
    threshold with the best validation Dice (``unetq.metrics.best_threshold``), and the test
    split scored at 0.5 and at it, both with the boundary-tolerance precision / recall / F1
    (:data:`TOLERANCE_PX`). Empty dicts and None where a split is missing."""
    if "test" not in splits or not len(splits["test"]):
        return {}, {}, None
    bs = tcfg.eval_batch_size or tcfg.batch_size
    test = evaluate(model, splits["test"], batch_size=bs, device=device, amp=tcfg.amp, tolerance=TOLERANCE_PX)
    if "val" not in splits or not len(splits["val"]):
        return _plain(test), {}, None
    val = splits["val"]
    images = torch.stack([torch.as_tensor(val[i][0]) for i in range(len(val))])
    masks = torch.stack([torch.as_tensor(val[i][1]) for i in range(len(val))])
    threshold, _ = best_threshold(predict(model, images, batch_size=bs, device=device, amp=tcfg.amp), masks)
    at = evaluate(model, splits["test"], batch_size=bs, device=device, amp=tcfg.amp, threshold=threshold,
                  tolerance=TOLERANCE_PX)
    return _plain(test), _plain(at), float(threshold)


def thread_note(ckpt: dict, threads: int | None = None) -> str:
    """A sentence when ``ckpt`` was trained with another torch thread count than ``threads``
    (default: this process's), else "". A run's identity leaves the thread count out, so such a
    checkpoint is still reused; but training is bit-for-bit reproducible only at the same thread
    count, so retraining it here would give other weights."""
    trained = (ckpt.get("machine") or {}).get("torch_threads")
    threads = torch.get_num_threads() if threads is None else threads
    if trained is None or int(trained) == int(threads):
        return ""
    return (f"trained with {int(trained)} torch thread(s), reused by this process with {int(threads)}; "
            f"retraining it at {int(threads)} would not give the same weights bit for bit")


def load_or_train(arch: str, cfg: StudyConfig, *, tag: str | None = None, splits: dict | None = None,
                  start=None, force: bool = False, progress: bool | None = None, verbose: bool = True,
                  **model_kw):
    """``(model, ckpt)`` for ``arch`` trained with ``cfg``.

    Loads :func:`checkpoint_path` if it exists and was trained with the same identity; otherwise
    trains (``fit``, resuming an interrupted run) on ``unetq.data.splits_from_preset(cfg)`` (or
    ``splits``), evaluates the test split and writes the checkpoint. ``model_kw`` goes to
    ``create_model`` (e.g. MBU-Net's layer configuration). ``start=(model, ckpt)`` initialises
    the weights from another trained model of the same parameter layout (fine-tuning; its
    identity becomes part of this run's). A corrupt checkpoint raises
    :class:`~unetq.train.checkpoint.CheckpointError` naming the file. The model is returned in
    eval mode on the configured device."""
    tcfg = TrainConfig.from_preset(cfg)
    if progress is not None:
        tcfg.progress = progress
    start_id = start_identity(start[1]) if start is not None else None
    path = checkpoint_path(arch, cfg, tag=tag, start=start_id, **model_kw)
    identity = run_identity(arch, cfg, start_id, **model_kw)
    device = resolve_device(tcfg.device)
    if path.exists() and not force:
        ckpt = read_checkpoint(path)
        layout = parameter_layout(create_model(name=arch, width=cfg.width, **model_kw).state_dict())
        ok, why = _matches(ckpt, identity, layout)
        if ok:
            model, ckpt = load_checkpoint(path, device=device)
            if verbose:
                print(f"loaded {path.name} (trained {len(ckpt['history'])} epochs; "
                      f"best epoch {ckpt['best_epoch']})")
                note = thread_note(ckpt)
                if note:
                    print(f"note: {path.name}: {note}")
            return model, ckpt
        if verbose:
            print(f"retraining: {path.name} does not match this run: {why}")

    autocast_context(device, tcfg.amp)  # an impossible precision fails before any work
    if cfg.processes > 1 and distributed.world()[0] == 1:
        return _train_with_torchrun(arch, cfg, path, identity, tag, start, device, model_kw)
    if splits is None:
        splits = splits_from_preset(cfg)
    torch.manual_seed(tcfg.seed)
    model = create_model(name=arch, width=cfg.width, **model_kw)
    if start is not None:
        model.load_state_dict(start[0].state_dict(), strict=True)  # same parameters, other quantizers
    result = fit(model, splits, tcfg, path, keep_state=True,
                 meta=dict(identity=identity, arch=arch, preset=cfg.preset))
    test, test_at, threshold = test_metrics(model, splits, tcfg, device)
    best = result.history.loc[result.history["epoch"] == result.best_epoch].iloc[0].to_dict()
    if not distributed.is_main():  # under torchrun only rank 0 writes the checkpoint
        distributed.barrier()
        return model.eval(), read_checkpoint(path)
    ckpt = write_checkpoint(
        path, model_config=model.config, state_dict=model.state_dict(), train_config=tcfg.to_dict(),
        # every epoch's record, with what only some models report (MBU-Net: zeros_by_layer)
        history=result.extra.get("records") or result.history.to_dict("records"), best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        arch=arch, preset=cfg.preset, checkpoint_name=path.name, data_config=data_config(cfg), identity=identity,
        best_val=dict(loss=float(best["val_loss"]), iou=float(best["val_iou"]), dice=float(best["val_dice"])),
        test_metrics=test, val_threshold=threshold, test_metrics_at_val_threshold=test_at,
        total_time_s=result.total_time_s, device=result.device,
        split_sizes={k: len(v) for k, v in splits.items()},
        n_params=int(sum(p.numel() for p in model.parameters())),
        machine=machine_info(), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"start": start_id} if start_id is not None else {}),
    )
    state = resume_state_path(path)
    if state.exists():
        state.unlink()
    distributed.barrier()
    return model.eval(), ckpt


def _train_with_torchrun(arch: str, cfg: StudyConfig, path: Path, identity: dict, tag, start, device, model_kw):
    """Train this run with ``cfg.processes`` processes under ``torchrun`` (:mod:`.torchrun_main`)
    and load the checkpoint rank 0 wrote. The data (and its split) is prepared here first, so the
    processes only read it."""
    if start is not None:
        raise ValueError("fine-tuning from another model (start=) runs in one process; set processes=1")
    splits_from_preset(cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cfg.processes}",
           "-m", "unetq.train.torchrun_main", "--arch", arch, "--config", json.dumps(cfg.to_dict()),
           "--model-kw", json.dumps(model_kw)] + (["--tag", tag] if tag else [])
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                                                    // cfg.processes))))
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun training of {arch} with {cfg.processes} processes failed (exit "
                           f"{proc.returncode}); the same call resumes it after its last finished epoch")
    ckpt = read_checkpoint(path)
    ok, why = _matches(ckpt, identity)
    if not ok:
        raise CheckpointError(f"{path}: the checkpoint torchrun wrote does not match this run: {why}")
    return load_checkpoint(path, device=device)
