"""Checkpoints: load one, or train-if-missing (``load_or_train``) so any notebook runs alone.

A checkpoint is a dict saved with ``torch.save`` holding only plain Python values and tensors
(loadable with ``weights_only=True``)::

    model_config   create_model(**model_config) rebuilds the architecture
    state_dict     weights with the lowest validation loss
    train_config   TrainConfig.to_dict()
    data_config    source, n_images, source_size, image_size, seed, threshold, augment
    identity       what the weights depend on (model/train/data); compared on reuse
    history        one record per epoch (see unetq.train.loop.HISTORY_COLUMNS)
    test_metrics   evaluate() on the test split
    best_epoch, best_val_loss, total_time_s, device, machine, split_sizes, n_params, arch, preset
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from .. import paths
from ..io import machine_info, save_torch
from ..presets import get_preset
from .config import TrainConfig, resolve_device
from .loop import autocast_context, evaluate, fit, resume_state_path

REQUIRED_KEYS = ("model_config", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or inconsistent (the message names the file)."""


def _create_model(**config):
    import unetq.models as models  # imported late: registers every architecture

    create = getattr(models, "create_model", None)
    if create is None:
        from unetq.models.registry import create_model as create
    return create(**config)


def _normalise(obj):
    """JSON round trip, so tuples/lists and int/float spellings compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def data_config(cfg: dict) -> dict:
    return dict(source=cfg.get("source", "synthetic"), n_images=cfg.get("n_images"),
                source_size=cfg.get("source_size"), image_size=cfg.get("image_size"),
                seed=cfg.get("seed", 0), threshold=cfg.get("threshold", 100),
                augment=bool(cfg.get("augment", False)))


def run_identity(arch: str, cfg: dict, **model_kw) -> dict:
    """Everything the trained weights depend on: architecture, training and data settings."""
    return _normalise(dict(model=dict(name=arch, width=cfg.get("width", 64), **model_kw),
                           train=TrainConfig.from_preset(cfg).identity(),
                           data=data_config(cfg)))


def checkpoint_path(arch: str, cfg: dict, tag: str | None = None, **model_kw) -> Path:
    """``checkpoints_dir()/<arch>_<preset>.pt`` for the preset's own settings; any other
    settings (an lr of a sweep, another width, ``model_kw``) get ``_lr<lr>`` when the lr differs
    and a short hash of the settings, so they never overwrite the main checkpoint. ``tag`` adds a
    readable ``_<tag>``."""
    preset = cfg.get("preset")
    if not preset:
        raise ValueError("cfg has no 'preset' key: build it with unetq.presets.get_preset")
    ident = run_identity(arch, cfg, **model_kw)
    ref = run_identity(arch, get_preset(preset))
    name = f"{arch}_{preset}"
    if tag:
        name += f"_{tag}"
    if ident != ref:
        if ident["train"]["lr"] != ref["train"]["lr"]:
            name += f"_lr{ident['train']['lr']:g}"
        name += "_" + hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return paths.checkpoints_dir() / f"{name}.pt"


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at ``path``; :class:`CheckpointError` naming the file if it is
    missing, unreadable or lacks the required keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any failure here means the file is unusable
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. "
                              "The file is corrupt or not a unetq checkpoint; delete it to retrain.") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing or not isinstance(ckpt.get("model_config"), dict):
        raise CheckpointError(f"checkpoint {path} lacks {missing or ['a model_config dict']}; "
                              "delete it to retrain")
    return ckpt


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """``(model, ckpt)``: the model rebuilt from ``ckpt["model_config"]`` with the stored weights,
    in eval mode on ``device``."""
    ckpt = read_checkpoint(path)
    try:
        model = _create_model(**ckpt["model_config"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model from its model_config "
                              f"{ckpt['model_config']}: {type(e).__name__}: {e}") from e
    return model.to(device).eval(), ckpt


def _matches(ckpt: dict, identity: dict) -> tuple[bool, str]:
    if "test_metrics" not in ckpt:
        return False, "it is incomplete (no test metrics: training was interrupted)"
    if _normalise(ckpt.get("identity")) != identity:
        stored = _normalise(ckpt.get("identity")) or {}
        diff = [k for k in identity if stored.get(k) != identity[k]]
        return False, f"its {', '.join(diff) or 'identity'} settings differ"
    return True, ""


def load_or_train(arch: str, cfg: dict, *, tag: str | None = None, splits: dict | None = None,
                  force: bool = False, progress: bool | None = None, verbose: bool = True,
                  **model_kw):
    """``(model, ckpt)`` for ``arch`` trained with the preset dict ``cfg``.

    Loads :func:`checkpoint_path` if it exists and was trained with the same model, training and
    data settings; otherwise trains (``fit``, resuming an interrupted run) on
    ``unetq.data.splits_from_preset(cfg)`` (or ``splits``), evaluates the test split and writes
    the checkpoint. ``model_kw`` goes to ``create_model`` (e.g. MBU-Net's layer configuration).
    A corrupt checkpoint raises :class:`CheckpointError` naming the file. The model is returned
    in eval mode on the configured device."""
    tcfg = TrainConfig.from_preset(cfg)
    if progress is not None:
        tcfg.progress = progress
    path = checkpoint_path(arch, cfg, tag=tag, **model_kw)
    identity = run_identity(arch, cfg, **model_kw)
    device = resolve_device(tcfg.device)
    if path.exists() and not force:
        ckpt = read_checkpoint(path)
        ok, why = _matches(ckpt, identity)
        if ok:
            model, ckpt = load_checkpoint(path, device=device)
            if verbose:
                print(f"loaded {path.name} (trained {len(ckpt['history'])} epochs; "
                      f"best epoch {ckpt['best_epoch']})")
            return model, ckpt
        if verbose:
            print(f"retraining: {path.name} does not match this run: {why}")

    autocast_context(device, tcfg.amp)  # an impossible precision fails before any work
    if splits is None:
        from unetq.data import splits_from_preset

        splits = splits_from_preset(cfg)
    torch.manual_seed(tcfg.seed)
    model = _create_model(name=arch, width=cfg.get("width", 64), **model_kw)
    result = fit(model, splits, tcfg, path, keep_state=True,
                 meta=dict(identity=identity, arch=arch, preset=cfg.get("preset")))
    test = evaluate(model, splits["test"], batch_size=tcfg.eval_batch_size or tcfg.batch_size,
                    device=device, amp=tcfg.amp) if "test" in splits and len(splits["test"]) else {}
    best = result.history.loc[result.history["epoch"] == result.best_epoch].iloc[0].to_dict()
    ckpt = dict(
        arch=arch, preset=cfg.get("preset"), checkpoint_name=path.name, model_config=model.config,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        train_config=tcfg.to_dict(), data_config=data_config(cfg), identity=identity,
        history=result.history.to_dict("records"), best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss, best_val=dict(
            loss=float(best["val_loss"]), iou=float(best["val_iou"]), dice=float(best["val_dice"])),
        test_metrics={k: (int(v) if k in ("n", "tp", "fp", "fn") else float(v)) for k, v in test.items()},
        total_time_s=result.total_time_s, device=result.device,
        split_sizes={k: len(v) for k, v in splits.items()},
        n_params=int(sum(p.numel() for p in model.parameters())),
        machine=machine_info(), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    ckpt = _normalise_ckpt(ckpt)
    save_torch(ckpt, path)
    state = resume_state_path(path)
    if state.exists():
        state.unlink()
    return model.eval(), ckpt


def _normalise_ckpt(ckpt: dict) -> dict:
    """Plain Python values everywhere except the tensors, so ``weights_only=True`` loads it."""
    out = {}
    for k, v in ckpt.items():
        out[k] = v if k == "state_dict" else _normalise(v)
    return out
