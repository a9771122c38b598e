"""The checkpoint file: its one schema, its one writer and its reader.

A checkpoint is a dict saved with ``torch.save`` holding only plain Python values and tensors
(loadable with ``weights_only=True``)::

    model_config   create_model(**model_config) rebuilds the architecture
    state_dict     weights with the lowest validation loss
    train_config   TrainConfig.to_dict()
    history        one record per epoch (see unetq.train.loop.HISTORY_COLUMNS)
    best_epoch, best_val_loss
    ...            what the caller adds: ``meta`` while training runs; when a run is complete
                   (``unetq.train.runs.load_or_train``) identity, data_config, test_metrics,
                   best_val, total_time_s, device, machine, split_sizes, n_params, arch, preset,
                   checkpoint_name, created (and ``start`` for a run initialised from another)

A checkpoint without ``test_metrics`` belongs to a run that has not finished. Weights holding
NaN or Inf are never written (:class:`NonFiniteError`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io import save_torch
from ..models import create_model

REQUIRED_KEYS = ("model_config", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or inconsistent (the message names the file)."""


class NonFiniteError(RuntimeError):
    """Training met NaN or Inf: a non-finite loss (a diverging learning rate, or a NaN/Inf pixel
    in an image or mask, named in the message with its epoch), or weights that are no longer
    finite. Such weights are never saved as a checkpoint."""


def nonfinite_tensors(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold NaN or Inf."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def parameter_layout(state_dict: dict) -> dict[str, tuple]:
    """``{name: shape}`` of a state dict: what must agree for a checkpoint or a resume state to
    load into a model (a library default that changes an architecture, e.g. MBU-Net's backbone,
    changes it without changing a run's settings)."""
    return {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}


def normalise(obj):
    """JSON round trip, so tuples/lists and int/float spellings compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def write_checkpoint(path: str | Path, *, model_config: dict | None, state_dict: dict, train_config: dict,
                     history: list[dict], best_epoch: int, best_val_loss: float, **extra) -> dict:
    """Write a checkpoint atomically and return it: the weights as CPU tensors, every other
    value as plain JSON-like Python (so ``weights_only=True`` loads it). Raises
    :class:`NonFiniteError` (writing nothing) when a weight holds NaN or Inf."""
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise NonFiniteError(f"refusing to write checkpoint {path}: {len(bad)} weight tensor(s) hold NaN/Inf "
                             f"({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''})")
    ckpt = dict(model_config=model_config, train_config=train_config, history=history,
                best_epoch=int(best_epoch), best_val_loss=float(best_val_loss), **extra)
    ckpt = {k: normalise(v) for k, v in ckpt.items()}
    ckpt["state_dict"] = {k: v.detach().cpu() for k, v in state_dict.items()}
    save_torch(ckpt, path)
    return ckpt


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
        model = create_model(**ckpt["model_config"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model from its model_config "
                              f"{ckpt['model_config']}: {type(e).__name__}: {e}") from e
    return model.to(device).eval(), ckpt
