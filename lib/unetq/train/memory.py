"""Peak memory of a code region (one training epoch), on CUDA or CPU.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start of
  the region: the peak of memory held by tensors (weights, gradients, optimizer state and
  activations), in MiB. Kind ``"cuda_peak_allocated"``.
- CPU: PyTorch has no peak counter for host memory, so a background thread samples the process's
  resident set size (RSS, ``psutil``) every ``interval_s`` and reports the **peak increase of RSS
  over its value at the start of the region**, in MiB. Kind ``"cpu_peak_rss_increase"``. Before
  the baseline is taken, freed heap memory is handed back to the OS (``gc.collect`` + glibc
  ``malloc_trim(0)``) so memory cached from an earlier region is not reused invisibly. It thus
  measures what the region newly allocates (activations, gradients, autocast weight copies,
  optimizer state on the first step), not the weights already resident; allocations shorter than
  the sampling interval can be missed.
"""
from __future__ import annotations

import ctypes
import gc
import threading

import psutil
import torch

MIB = 2**20


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb`` and ``m.kind``."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_mb: float = float("nan")
        self.kind = "cuda_peak_allocated" if self.device.type == "cuda" else "cpu_peak_rss_increase"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        gc.collect()
        _malloc_trim()
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="unetq-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            if rss > self._peak:
                self._peak = rss
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._base) / MIB
