"""Training: a resumable, seeded trainer with mixed precision, evaluation, checkpoints.

- :class:`TrainConfig` (``config``)   hyper-parameters, ``TrainConfig.from_preset(cfg)``
- :func:`fit` (``loop``)              train with best-val checkpoint + per-epoch resume state
- :func:`evaluate`, :func:`predict`, :func:`sample_predictions` (``loop``)
- :func:`load_or_train`, :func:`load_checkpoint`, :func:`checkpoint_path` (``checkpoint``)
- :func:`amp_comparison`, :func:`amp_modes` (``amp``)  AMP vs float32 time and memory
- :class:`PeakMemory` (``memory``)   what "peak memory" means on CUDA and on CPU
- :func:`record_training`, :func:`record_amp`, :func:`record_params`, :func:`record_profile`
  (``results``)  the CSV tables of the architecture notebooks
"""
from .amp import amp_comparison, amp_modes
from .checkpoint import (CheckpointError, checkpoint_path, load_checkpoint, load_or_train,
                         read_checkpoint, run_identity)
from .config import AMP_MODES, OPTIMIZERS, TrainConfig, resolve_device
from .loop import (HISTORY_COLUMNS, TrainResult, autocast_context, epoch_order, evaluate, fit, recalibrate_batchnorm,
                   predict, resume_state_path, sample_predictions)
from .memory import PeakMemory
from .results import record_amp, record_params, record_profile, record_training, training_row

__all__ = [
    "recalibrate_batchnorm",
    "AMP_MODES", "OPTIMIZERS", "HISTORY_COLUMNS", "TrainConfig", "TrainResult", "CheckpointError",
    "PeakMemory", "fit", "evaluate", "predict", "sample_predictions", "load_or_train",
    "load_checkpoint", "read_checkpoint", "checkpoint_path", "run_identity", "resume_state_path",
    "amp_comparison", "amp_modes", "autocast_context", "epoch_order", "resolve_device",
    "record_training", "record_amp", "record_params", "record_profile", "training_row",
]
