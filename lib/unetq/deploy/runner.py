"""The runner interface every (backend, precision) implements: a :class:`Runner` is called on a
float32 NCHW numpy array and returns float32 logits NCHW (numpy). Engines subclass it
(``runners.py``, ``tensorrt_engine.py``); nothing here knows any engine.

Non-finite input: every runner rejects a batch holding NaN or Inf with a ``ValueError`` naming
the count and the first image, at :meth:`Runner.__call__` (before any engine runs), so no engine
gives its own answer to an undefined input (the engines differ there: a float model propagates
NaN, an integer stem casts it to an undefined value). The check is one float32 summation of the
batch (the element-wise test only when the sum is not finite), part of every timed call."""
from __future__ import annotations

import tempfile

import numpy as np


class RunnerUnavailable(RuntimeError):
    """The requested (backend, precision) cannot run on this machine."""


class Runner:
    backend: str = ""
    precision: str = ""
    device: str = "cpu"
    model_size_bytes: int | None = None

    def __init__(self):
        self.details: dict = {}
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits of ``x`` (float32 ``[N, C, H, W]``); ``ValueError`` for another shape or for
        NaN / Inf in ``x`` (see the module docstring)."""
        x = _check_input(x)
        return np.ascontiguousarray(self._run(x), dtype=np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}"

    def describe(self) -> dict:
        return dict(backend=self.backend, precision=self.precision, device=self.device,
                    size_bytes=self.model_size_bytes, **{k: v for k, v in self.details.items()
                                                          if isinstance(v, (str, int, float, bool))})

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __repr__(self) -> str:
        return f"<Runner {self.name} on {self.device}, {self.model_size_bytes} bytes>"


def _check_input(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"runner input must be a numpy array [N, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"runner input must be [N, C, H, W], got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_finite(x)
    return x


def check_finite(x: np.ndarray, who: str = "runner") -> None:
    """``ValueError`` naming the count and the first image when the NCHW batch ``x`` holds NaN
    or Inf. Fast path: a finite float32 sum proves every value finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        if x.size == 0 or np.isfinite(np.sum(x, dtype=np.float32)):
            return
    bad = ~np.isfinite(x)
    if not bad.any():  # the sum overflowed, every value is finite
        return
    first = int(np.argmax(bad.reshape(x.shape[0], -1).any(axis=1)))
    raise ValueError(f"{who} input holds {int(bad.sum())} NaN/Inf value(s) (first in image {first} of the "
                     f"batch of {x.shape[0]}); non-finite input is rejected by every runner")
