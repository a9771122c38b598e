"""The machine a run measures on: its description, its cores and how many threads to use, the
load other processes put on it, and peak memory while code runs. Each of these exists here once.

- description: :func:`machine_info` (CPU model, ISA features that matter for the kernels, cores,
  GPU, library versions: the columns every timed results row carries), :func:`cuda_available`;
- threads: :func:`available_cores`, :func:`choose_threads` (requested, ``$UNETQ_BENCH_THREADS``,
  or every core other processes leave free), :func:`pin_threads` (torch, OpenMP, numba),
  :func:`ort_session_options` (ONNX Runtime sessions with the same thread count and no
  spinning on the CPU, :data:`CPU_SPINNING`);
- load: :func:`load_average`, :func:`busy_cores`, :func:`busy_warning`;
- memory: :class:`PeakSampler` (a thread sampling any byte counter), :func:`rss_bytes`,
  :func:`malloc_trim`, and :class:`PeakMemory`, the peak memory of a code region on CUDA
  (allocated tensors) or on the CPU (RSS increase).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import platform
import threading
from pathlib import Path
from typing import Callable

MIB = 2**20

#: CPU flags recorded with every timed row: the kernels' speed depends on them (VNNI and AMX for
#: INT8, BF16/FP16 arithmetic, VPOPCNTDQ for the bit-packed engine).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512_vpopcntdq",
             "amx_int8", "amx_bf16")


# ----------------------------------------------------------------------------------------------
# description
# ----------------------------------------------------------------------------------------------
def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The :data:`ISA_FLAGS` this CPU has, space-separated (empty where /proc/cpuinfo is absent)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return " ".join(f for f in ISA_FLAGS if f in flags)


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA device."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def machine_info() -> dict:
    """CPU model and ISA features, core count, torch threads, GPU (if any) and library versions:
    the columns of every results row that holds a timing."""
    import torch

    info = {
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda_available() else "none",
    }
    for mod in ("onnxruntime", "onnx", "numba", "tensorrt"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed here
            info[mod] = "not installed"
    return info


# ----------------------------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------------------------
def available_cores() -> int:
    """Cores in this process's affinity mask (all cores where the OS has no such mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """Threads for a measurement and why: ``requested`` if given, else ``$UNETQ_BENCH_THREADS``,
    else every core that other processes leave free (``busy``: cores they use, see
    :func:`busy_cores`; at least one). Intra-op threads that wait on a core another process holds
    slow PyTorch down by 10-100x, so a busy core is not used."""
    cores = available_cores()
    if requested:
        return int(requested), "requested"
    env = os.environ.get("UNETQ_BENCH_THREADS")
    if env:
        return int(env), "UNETQ_BENCH_THREADS"
    if busy is None or busy < 0.5:
        return cores, "all cores"
    free = max(1, min(cores, int(round(cores - busy))))
    return free, f"{free} of {cores} cores: other processes used {busy:.1f} cores when the benchmark started"


def pin_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default :func:`choose_threads` without a load sample: the requested
    count or every core) in torch and numba, and export ``OMP_NUM_THREADS`` so ONNX Runtime
    sessions created afterwards use as many. Returns the number used (recorded in results rows)."""
    import numba
    import torch

    n = max(1, int(n if n is not None else choose_threads()[0]))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


#: Environment the study's long jobs (the main job's and sweeps' notebook kernels, ``make all``,
#: ``make lr-sweep``, ``make test``) start with, unless the caller set the variable. OpenMP's
#: default wait policy lets an idle PyTorch thread spin for its whole time slice; on a 2-core
#: machine shared with another CPU-bound job, each process's spinning threads then hold the
#: cores the other's working threads need, and a training step becomes several times slower for
#: both (a side-by-side check of one training step of the width-16 U-Net beside a running
#: training job: ``python -m unetq.cli.oversubscription``). Passive waiting costs an idle thread a
#: wake-up instead. Benchmarks (``make bench``) keep OpenMP's default: they are meant for a quiet
#: machine and warn when it is not.
LONG_JOB_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def long_job_env(env: dict | None = None) -> dict:
    """``env`` plus :data:`LONG_JOB_ENV` for every variable neither ``env`` nor the current
    environment sets (the environment of a notebook kernel of the main job or a sweep)."""
    out = {k: v for k, v in LONG_JOB_ENV.items() if k not in os.environ}
    out.update(env or {})
    return out


#: ``session.intra_op.allow_spinning`` of CPU ONNX Runtime sessions unless a caller says
#: otherwise. ONNX Runtime's own default (spin) keeps idle intra-op threads busy-waiting after
#: each call; on a small machine shared with PyTorch, numba or a second session that steals the
#: cores the next kernel needs (``python -m unetq.cli.deploy_benchmark --spinning on,off``
#: measures the difference side by side).
CPU_SPINNING = False


def ort_session_options(threads: int | None = None, spinning: bool | None = None,
                        execution_mode: str = "sequential", optimized_model_path: str | None = None):
    """ONNX Runtime session options for every ORT session of the study: intra-op threads
    ``threads`` (default :func:`available_cores`), graph optimisation level ALL, sequential
    execution; ``spinning`` sets ``session.intra_op.allow_spinning`` (None keeps ORT's default,
    which spins)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or available_cores())
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if execution_mode == "sequential"
                         else ort.ExecutionMode.ORT_PARALLEL)
    if spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if optimized_model_path:
        so.optimized_model_filepath = str(optimized_model_path)
    so.log_severity_level = 3
    return so


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------
def load_average() -> float:
    """1-minute load average (NaN where the OS has none): a busy machine makes timings unreliable,
    so every measured row records it."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


def busy_cores(interval: float = 1.0) -> float:
    """How many cores' worth of CPU the rest of the machine uses, sampled over ``interval``
    seconds while this process waits (psutil)."""
    import psutil

    return psutil.cpu_percent(interval=interval) / 100.0 * (psutil.cpu_count() or 1)


def busy_warning(threads: int, busy: float | None = None) -> str:
    """A warning when other processes compete for the cores being measured, else ``""``."""
    cores = available_cores()
    load = load_average()
    if busy is not None and busy >= 0.5:
        what = f"other processes used {busy:.1f} of {cores} cores"
    elif busy is None and load == load and load > cores * 0.75:
        what = f"load average {load:.1f} on {cores} cores"
    else:
        return ""
    return (f"WARNING: this machine is busy ({what}; {threads} thread(s) measured): absolute timings are "
            "unreliable, ratios measured side by side less so. Re-run on a quiet machine for final numbers.")


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the next RSS peak is not hidden by reuse."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakSampler:
    """Context manager sampling ``read()`` (bytes) every ``interval_s`` in a thread; ``peak`` and
    ``baseline`` (value at entry) in bytes, ``increase`` = peak - baseline. Allocations shorter
    than the interval can be missed."""

    def __init__(self, read: Callable[[], int], interval_s: float = 0.001):
        self.read, self.interval_s = read, interval_s
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self):
        while not self._stop.is_set():
            v = self.read()
            if v > self.peak:
                self.peak = v
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.baseline = self.peak = self.read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="unetq-peak-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.read())
        return False

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)


class PeakMemory:
    """Peak memory of a code region: ``with PeakMemory(device) as m: ...`` then ``m.peak_mb`` and
    ``m.kind``.

    - CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start of
      the region: the peak of memory held by tensors (weights, gradients, optimizer state and
      activations), in MiB. Kind ``"cuda_peak_allocated"``.
    - CPU: PyTorch has no peak counter for host memory, so :class:`PeakSampler` samples the
      process's resident set size every ``interval_s`` and the **peak increase of RSS over its
      value at the start of the region** is reported, in MiB. Kind ``"cpu_peak_rss_increase"``.
      Before the baseline is taken, freed heap memory is handed back to the OS (``gc.collect`` +
      :func:`malloc_trim`) so memory cached from an earlier region is not reused invisibly. It
      thus measures what the region newly allocates, not the weights already resident.
    """

    def __init__(self, device="cpu", interval_s: float = 0.005):
        import torch

        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_mb: float = float("nan")
        self.kind = "cuda_peak_allocated" if self.device.type == "cuda" else "cpu_peak_rss_increase"
        self._sampler: PeakSampler | None = None

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        gc.collect()
        malloc_trim()
        self._sampler = PeakSampler(rss_bytes, self.interval_s).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MIB
            return
        self._sampler.__exit__(*exc)
        self.peak_mb = (self._sampler.peak - self._sampler.baseline) / MIB
