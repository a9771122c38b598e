"""Training: a resumable, seeded trainer with mixed precision, evaluation, checkpoints. The
package owns how weights are trained and stored; which runs a notebook makes and the tables it
writes live in ``unetq.studies``.

- :class:`TrainConfig` (``config``)   hyper-parameters, ``TrainConfig.from_preset(cfg)``
- :func:`fit` (``loop``)              train with best-val checkpoint + per-epoch resume state
- :func:`evaluate`, :func:`predict`, :func:`sample_predictions` (``loop``)
- :func:`write_checkpoint`, :func:`read_checkpoint`, :func:`load_checkpoint` (``checkpoint``)
  the checkpoint file, one schema and one writer; :class:`NonFiniteError`: a NaN/Inf loss or
  weights stop training (naming the epoch and the bad file) and are never saved
- :func:`load_or_train`, :func:`checkpoint_path`, :func:`run_identity` (``runs``)
  train-if-missing by identity, fine-tuning from another model with ``start=``
- :func:`amp_comparison`, :func:`amp_modes` (``amp``)  AMP vs float32 time and memory
- ``distributed``: torchrun / DistributedDataParallel (same global batches, SyncBatchNorm,
  rank-0 checkpoints)
"""
from ..machine import PeakMemory
from . import distributed
from .amp import amp_comparison, amp_modes
from .checkpoint import CheckpointError, NonFiniteError, load_checkpoint, read_checkpoint, write_checkpoint
from .config import AMP_MODES, OPTIMIZERS, TrainConfig, resolve_device
from .loop import (HISTORY_COLUMNS, TrainResult, autocast_context, epoch_order, evaluate, fit, recalibrate_batchnorm,
                   predict, resume_state_path, sample_predictions)
from .runs import checkpoint_path, load_or_train, run_identity

__all__ = [
    "distributed", "recalibrate_batchnorm",
    "AMP_MODES", "OPTIMIZERS", "HISTORY_COLUMNS", "TrainConfig", "TrainResult", "CheckpointError", "NonFiniteError",
    "PeakMemory", "fit", "evaluate", "predict", "sample_predictions", "load_or_train",
    "load_checkpoint", "read_checkpoint", "write_checkpoint", "checkpoint_path", "run_identity",
    "resume_state_path", "amp_comparison", "amp_modes", "autocast_context", "epoch_order", "resolve_device",
]
