"""How to train: the :class:`TrainConfig` dataclass (built from a study configuration) and the
device choice."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import StudyConfig

AMP_MODES = ("off", "fp16", "bf16")
OPTIMIZERS = ("adam", "rmsprop")
LR_SCHEDULES = ("constant", "plateau")


@dataclass
class TrainConfig:
    """How to train (the data and the architecture are configured elsewhere).

    ``amp``: ``"off"`` (float32), ``"bf16"`` (bfloat16 autocast, CPU or CUDA, no loss scaling) or
    ``"fp16"`` (float16 autocast + ``torch.amp.GradScaler``; CUDA only -- requesting it on a CPU
    raises a ``ValueError`` rather than silently training in another precision).
    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    ``optimizer``: ``"adam"`` (seed 000, seed 001's quantized training) or ``"rmsprop"`` (seed
    001's full-precision baseline). ``eval_batch_size`` defaults to ``batch_size``.
    ``patience``: stop when the validation loss has not improved for that many epochs
    (``epochs`` is then the cap; None: always train ``epochs``). ``lr_schedule``: ``"constant"``
    or ``"plateau"`` (learning rate x 0.1 when the validation loss has not improved for
    ``max(1, patience // 2)`` epochs, 2 without a patience). ``bn_recalibration``: re-estimate
    BatchNorm statistics after every epoch (:func:`unetq.train.recalibrate_batchnorm`).
    """

    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adam"
    weight_decay: float = 0.0
    amp: str = "off"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    grad_clip: float | None = None
    eval_batch_size: int | None = None
    progress: bool = True
    bn_recalibration: bool = False
    patience: int | None = None
    lr_schedule: str = "constant"

    # The fields that change the trained weights (device, workers and progress bars do not).
    IDENTITY_FIELDS = ("lr", "epochs", "batch_size", "optimizer", "weight_decay", "amp", "seed",
                       "grad_clip")

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"patience must be an integer >= 1 or None, got {self.patience!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        self.lr = float(self.lr)
        self.weight_decay = float(self.weight_decay)

    @classmethod
    def from_preset(cls, cfg: StudyConfig | dict, **overrides) -> "TrainConfig":
        """Take the fields this class knows from a :class:`unetq.config.StudyConfig` (or a dict
        of settings), then ``overrides`` (``None`` values ignored, as in ``get_preset``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = cfg.to_dict() if isinstance(cfg, StudyConfig) else dict(cfg)
        if "train_seed" in values:  # the study's data seed is not the training seed
            values["seed"] = values.pop("train_seed")
        kw = {k: v for k, v in values.items() if k in names and v is not None}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        out = {k: getattr(self, k) for k in self.IDENTITY_FIELDS}
        if self.bn_recalibration:  # only when on, so earlier checkpoints keep their identity
            out["bn_recalibration"] = True
        if self.patience is not None:
            out["patience"] = self.patience
        if self.lr_schedule != "constant":
            out["lr_schedule"] = self.lr_schedule
        return out


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; a CUDA request without CUDA is an error."""
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "auto"):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(device)!r}: use 'auto', 'cpu' or 'cuda'")
    return dev
