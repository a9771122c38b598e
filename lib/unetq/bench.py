"""Latency, throughput, memory, model-size and energy measurement (seed 003 Tables 6-9, seed 000
Figures 5-6).

Measurement rules, applied by every function here:

- **warm-up** calls first (not timed), then **adaptive repeats**: at least ``repeats`` timed calls,
  continued until the distribution-free 95 % confidence interval of the median is within ``rel_ci``
  of the median, or ``max_repeats`` / the ``time_cap_s`` is reached (never below ``min_repeats``);
- the **median** is reported with its spread (p10/p90, IQR) and the CI; every timed call is followed
  by ``sync`` (``torch.cuda.synchronize`` for CUDA; runners that return numpy arrays are synchronous);
- configurations that are compared as ratios are **interleaved** call by call
  (:func:`measure_interleaved`), so background load hits all of them alike;
- threads are **pinned** (:func:`pin_threads`: torch and ONNX Runtime use all cores of the affinity
  mask);
- **peak memory**: CUDA ``max_memory_allocated`` increase (PyTorch), NVML device-memory increase
  (other CUDA backends), the engine's device memory when a TensorRT runner exposes it, and on the
  CPU the peak increase of the process RSS sampled by a psutil thread while the runner is called
  (stated as such in ``mem_method``);
- **energy per image** only from a counter the hardware exposes (NVML total energy on GPUs, RAPL /
  powercap on CPUs); otherwise the string ``"not available"``.

The suite (:func:`run_benchmark`) measures every architecture x backend x precision that
``unetq.deploy.available_runners()`` allows, with ratios to the FP32 PyTorch baseline.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

NOT_AVAILABLE = "not available"
NOT_MEASURED = "not measured on this machine"


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def median_ci(samples, conf: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics
    (normal approximation of the binomial; exact enough for n >= 5)."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    if n < 3:
        return float(x[0]), float(x[-1])
    z = {0.90: 1.645, 0.95: 1.96, 0.99: 2.576}.get(conf, 1.96)
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)) - 1)
    return float(x[lo]), float(x[max(hi, lo)])


def summarize(samples) -> dict:
    """Median, mean, spread and the relative half-width of the median's 95 % CI (seconds)."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("summarize needs at least one sample")
    med = float(np.median(x))
    lo, hi = median_ci(x)
    q1, q3 = np.percentile(x, [25, 75])
    return dict(
        n=int(x.size), median_s=med, mean_s=float(x.mean()), std_s=float(x.std()),
        min_s=float(x.min()), max_s=float(x.max()),
        p10_s=float(np.percentile(x, 10)), p90_s=float(np.percentile(x, 90)),
        q1_s=float(q1), q3_s=float(q3), iqr_s=float(q3 - q1),
        ci_lo_s=lo, ci_hi_s=hi, ci_rel=float((hi - lo) / (2 * med)) if med > 0 else float("inf"),
    )


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------
def _stop_reason(times, repeats, min_repeats, max_repeats, rel_ci, elapsed, time_cap_s):
    n = len(times)
    if n >= max_repeats:
        return "max_repeats"
    if n >= repeats and summarize(times)["ci_rel"] <= rel_ci:
        return "converged"
    if time_cap_s is not None and elapsed >= time_cap_s and n >= min_repeats:
        return "time_cap"
    return None


def measure(
    fn: Callable[[Any], Any],
    make_input: Callable[[], Any],
    warmup: int = 3,
    repeats: int = 20,
    sync: Callable[[], None] | None = None,
    *,
    min_repeats: int = 3,
    max_repeats: int | None = None,
    rel_ci: float = 0.05,
    time_cap_s: float | None = 30.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Time ``fn(make_input())`` with warm-up and adaptive repeats; see the module docstring.

    ``make_input`` is called once (outside the timed region); ``sync`` after every call, inside it.
    Returns :func:`summarize`'s dict plus ``converged`` (CI reached), ``stop_reason``, ``warmup``,
    ``times_s`` (every sample) and ``wall_s`` (timed loop, wall clock)."""
    return measure_interleaved(
        {"_": (fn, make_input)}, warmup=warmup, repeats=repeats, sync=sync, min_repeats=min_repeats,
        max_repeats=max_repeats, rel_ci=rel_ci, time_cap_s=time_cap_s, clock=clock,
    )["_"]


def measure_interleaved(
    cases: Mapping[str, tuple[Callable[[Any], Any], Callable[[], Any]]],
    warmup: int = 3,
    repeats: int = 20,
    sync: Callable[[], None] | None = None,
    *,
    min_repeats: int = 3,
    max_repeats: int | None = None,
    rel_ci: float = 0.05,
    time_cap_s: float | None = 30.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict]:
    """Time several ``name -> (fn, make_input)`` cases round-robin (one call of each per round, the
    order rotating from round to round), so that ratios between them are not skewed by load that
    changes over time or by a fixed position in the round.

    Each case stops on its own rule (see :func:`measure`); ``time_cap_s`` caps the whole group.
    Returns ``name -> stats`` as :func:`measure` does."""
    if not cases:
        return {}
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got repeats={repeats}, warmup={warmup})")
    max_repeats = max(repeats, max_repeats if max_repeats is not None else 10 * repeats)
    min_repeats = max(1, min(min_repeats, repeats))
    sync = sync or (lambda: None)
    inputs = {k: make() for k, (_, make) in cases.items()}
    for _ in range(warmup):
        for k, (fn, _) in cases.items():
            fn(inputs[k])
            sync()
    times: dict[str, list[float]] = {k: [] for k in cases}
    done: dict[str, str] = {}
    names = list(cases)
    start = clock()
    rnd = 0
    while len(done) < len(cases):
        order = names[rnd % len(names):] + names[:rnd % len(names)]  # rotate: no fixed position
        rnd += 1
        for k in order:
            if k in done:
                continue
            fn = cases[k][0]
            x = inputs[k]
            t0 = clock()
            fn(x)
            sync()
            times[k].append(clock() - t0)
        elapsed = clock() - start
        for k in cases:
            if k not in done:
                why = _stop_reason(times[k], repeats, min_repeats, max_repeats, rel_ci, elapsed, time_cap_s)
                if why:
                    done[k] = why
    wall = clock() - start
    out = {}
    for k in cases:
        s = summarize(times[k])
        s.update(converged=done[k] == "converged" or s["ci_rel"] <= rel_ci, stop_reason=done[k],
                 warmup=warmup, times_s=list(times[k]), wall_s=wall)
        out[k] = s
    return out


def pin_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default: ``$UNETQ_BENCH_THREADS`` if set, else every core in this
    process's affinity mask) in torch, and export ``OMP_NUM_THREADS`` so ONNX Runtime sessions
    created afterwards use as many. Returns the number used (recorded in every results row)."""
    import torch

    if n is None and os.environ.get("UNETQ_BENCH_THREADS"):
        n = int(os.environ["UNETQ_BENCH_THREADS"])
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    n = max(1, int(n))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return n


def cuda_sync(device: str | None) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` when ``device`` is a CUDA device, else ``None``."""
    if device and "cuda" in str(device):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    return None


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the next RSS peak is not hidden by reuse."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakSampler:
    """Context manager sampling ``read()`` (bytes) every ``interval_s`` in a thread; ``peak`` and
    ``baseline`` (value at entry) in bytes, ``increase`` = peak - baseline."""

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
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())
        return False

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _nvml_used_reader(index: int = 0) -> Callable[[], int] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    except Exception:
        return None


def reported_device_memory(runner: Any) -> int | None:
    """Device memory a runner reports itself (TensorRT: the engine's activation/workspace memory),
    from an attribute or its ``details`` dict; ``None`` if it reports none."""
    details = getattr(runner, "details", None) or {}
    for attr in ("engine_device_memory_bytes", "device_memory_bytes"):
        v = getattr(runner, attr, None)
        v = v if v is not None else details.get(attr) if isinstance(details, dict) else None
        if isinstance(v, (int, np.integer)) and v > 0:
            return int(v)
    return None


def _peak_during(work: Callable[[], Any], device: str, backend: str) -> tuple[float, str]:
    """Peak memory increase (bytes) while ``work()`` runs, and the method used."""
    dev = str(device or "cpu")
    if "cuda" in dev:
        import torch

        if backend in ("torch", "torch_compile") and torch.cuda.is_available():
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            work()
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - before), "CUDA max_memory_allocated increase (PyTorch)"
        read = _nvml_used_reader()
        if read is None:
            return float("nan"), "not measured: NVML not available (pip install nvidia-ml-py)"
        with PeakSampler(read) as s:
            work()
        return float(s.increase), "NVML device memory used, peak increase (device-wide, sampled 1 ms)"
    _malloc_trim()
    with PeakSampler(rss_bytes) as s:
        work()
    return float(s.increase), "CPU: peak process RSS increase (psutil, sampled 1 ms)"


def measure_peak_memory(fn: Callable[[Any], Any], x: Any, device: str = "cpu", backend: str = "",
                        calls: int = 1) -> tuple[float, str]:
    """Steady-state peak memory (bytes) of ``calls`` calls of an already warm ``fn(x)``: the
    activations and workspace of one inference, not the weights. See :func:`measure_footprint`."""
    def work():
        for _ in range(calls):
            fn(x)

    mem, how = _peak_during(work, device, backend)
    return mem, f"{how}: steady-state inference (weights and pools allocated before not counted)"


def measure_footprint(create: Callable[[], Any], x: Any, device: str = "cpu", backend: str = "",
                      calls: int = 1) -> tuple[float, str]:
    """Peak memory (bytes) of loading a representation afresh (``create()``, e.g. a runner built
    from its ONNX file or weights) and running ``calls`` inferences on ``x``: weights + runtime
    pools + activations, the analogue of the per-format memory of seed 000 Figure 6."""
    box = []

    def work():
        r = create()
        box.append(r)
        for _ in range(calls):
            r(x)

    try:
        mem, how = _peak_during(work, device, backend)
    finally:
        for r in box:
            with contextlib.suppress(Exception):
                r.close()
        box.clear()
        gc.collect(0)  # young cycles only: a full collection costs ~0.5 s in a big process
    return mem, f"{how}: loading the representation + {calls} inference(s)"


# ----------------------------------------------------------------------------------------------
# energy
# ----------------------------------------------------------------------------------------------
class EnergyCounter:
    """A cumulative hardware energy counter, read in joules. :meth:`detect` returns ``None`` when
    the machine exposes none (then energy is reported as ``"not available"``)."""

    def __init__(self, read_j: Callable[[], float], method: str, wrap_j: float | None = None):
        self.read_j, self.method, self.wrap_j = read_j, method, wrap_j

    def delta_j(self, start: float, end: float) -> float:
        d = end - start
        if d < 0 and self.wrap_j:
            d += self.wrap_j
        return d

    @classmethod
    def detect(cls, device: str = "cpu", powercap_root: str | os.PathLike = "/sys/class/powercap"):
        if "cuda" in str(device):
            try:
                import pynvml

                pynvml.nvmlInit()
                h = pynvml.nvmlDeviceGetHandleByIndex(0)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                return cls(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0,
                           "NVML total energy counter (whole GPU board)")
            except Exception:
                return None
        root = Path(powercap_root)
        zones = sorted(p for p in root.glob("*rapl:*") if p.name.count(":") == 1) if root.exists() else []
        files = []
        wrap = 0.0
        for z in zones:
            f = z / "energy_uj"
            try:
                int(f.read_text())
            except (OSError, ValueError):
                continue
            files.append(f)
            with contextlib.suppress(OSError, ValueError):
                wrap += int((z / "max_energy_range_uj").read_text()) / 1e6
        if not files:
            return None
        return cls(lambda: sum(int(f.read_text()) for f in files) / 1e6,
                   f"RAPL powercap counter, {len(files)} CPU package(s), includes other processes",
                   wrap_j=wrap or None)


def measure_energy(fn: Callable[[Any], Any], x: Any, counter: EnergyCounter | None, images_per_call: int,
                   min_s: float = 1.0, max_calls: int = 1000) -> tuple[Any, str]:
    """Energy per image (J) from ``counter`` over at least ``min_s`` seconds of calls, or
    ``("not available", reason)``."""
    if counter is None:
        return NOT_AVAILABLE, "no readable energy counter (NVML / RAPL powercap) on this machine"
    e0, t0, n = counter.read_j(), time.perf_counter(), 0
    while n < max_calls and (time.perf_counter() - t0 < min_s or n == 0):
        fn(x)
        n += 1
    e = counter.delta_j(e0, counter.read_j())
    return float(e / (n * images_per_call)), counter.method


# ----------------------------------------------------------------------------------------------
# runners
# ----------------------------------------------------------------------------------------------
def random_batch(batch_size: int, image_size: int, seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch in [0, 1) (timing does not depend on the pixel values)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, 3, image_size, image_size), dtype=np.float32)


def benchmark_runners(
    runners: Mapping[str, Any],
    batch_size: int,
    image_size: int,
    warmup: int = 3,
    repeats: int = 20,
    *,
    rel_ci: float = 0.05,
    time_cap_s: float | None = 30.0,
    max_repeats: int | None = None,
    memory: bool = True,
    factories: Mapping[str, Callable[[], Any]] | None = None,
    energy: bool = True,
    energy_min_s: float = 1.0,
    seed: int = 0,
) -> dict[str, dict]:
    """Benchmark several runners at one batch and image size, interleaved; ``name -> row``.

    A runner is any callable on a float32 NCHW numpy batch; ``backend``, ``precision``, ``device``
    and ``model_size_bytes`` attributes are used when present. Row columns: ``latency_ms`` (median
    per batch) with ``latency_ms_p10/p90/iqr``, ``latency_ci_rel``, ``latency_ms_per_image``,
    ``throughput_ips`` (images/s), ``n_repeats``, ``converged``, ``peak_mem_mb`` + ``mem_method``,
    ``model_size_mb``, ``energy_j_per_image`` (or ``"not available"``) + ``energy_method``.

    Memory: with ``factories[name]`` (a function building a fresh copy of that runner) the
    footprint of loading it and running one batch (:func:`measure_footprint`); otherwise the
    steady-state peak of one call (:func:`measure_peak_memory`). A device memory figure the runner
    reports itself (TensorRT engines) goes to ``engine_mem_mb``."""
    x = random_batch(batch_size, image_size, seed)
    devices = {str(getattr(r, "device", "cpu")) for r in runners.values()}
    sync = next((s for s in (cuda_sync(d) for d in devices) if s), None)
    stats = measure_interleaved(
        {k: (r, lambda: x) for k, r in runners.items()}, warmup=warmup, repeats=repeats, sync=sync,
        rel_ci=rel_ci, time_cap_s=time_cap_s, max_repeats=max_repeats,
    )
    rows = {}
    for k, r in runners.items():
        s = stats[k]
        med = s["median_s"]
        size = getattr(r, "model_size_bytes", None)
        row = dict(
            backend=getattr(r, "backend", k), precision=getattr(r, "precision", ""),
            device=str(getattr(r, "device", "cpu")), batch_size=batch_size, image_size=image_size,
            latency_ms=1e3 * med, latency_ms_p10=1e3 * s["p10_s"], latency_ms_p90=1e3 * s["p90_s"],
            latency_ms_iqr=1e3 * s["iqr_s"], latency_ci_rel=s["ci_rel"],
            latency_ms_per_image=1e3 * med / batch_size, throughput_ips=batch_size / med,
            n_repeats=s["n"], warmup=warmup, converged=bool(s["converged"]), stop_reason=s["stop_reason"],
            model_size_mb=(size / 2**20) if isinstance(size, (int, np.integer)) else float("nan"),
        )
        eng = reported_device_memory(r)
        row["engine_mem_mb"] = eng / 2**20 if eng else float("nan")
        if memory:
            make = (factories or {}).get(k)
            if make is not None:
                mem, how = measure_footprint(make, x, row["device"], row["backend"])
            else:
                mem, how = measure_peak_memory(r, x, row["device"], row["backend"])
            row.update(peak_mem_mb=mem / 2**20, mem_method=how)
        else:
            row.update(peak_mem_mb=float("nan"), mem_method="not measured (memory=False)")
        if energy:
            e, how = measure_energy(r, x, EnergyCounter.detect(row["device"]), batch_size, energy_min_s)
            row.update(energy_j_per_image=e, energy_method=how)
        else:
            row.update(energy_j_per_image=NOT_AVAILABLE, energy_method="not measured (energy=False)")
        rows[k] = row
    return rows


def benchmark_runner(runner: Any, batch_size: int, image_size: int, warmup: int = 3, repeats: int = 20,
                     **kw) -> dict:
    """:func:`benchmark_runners` for a single runner (one results row)."""
    return benchmark_runners({"runner": runner}, batch_size, image_size, warmup, repeats, **kw)["runner"]


def time_dataset(runner: Callable[[np.ndarray], Any], dataset, batch_size: int,
                 progress: bool = False, desc: str = "test split") -> dict:
    """Seconds to run ``runner`` over a whole dataset as seed 000 does: image reading (JPEG decode),
    preprocessing and batching are *included* (``data_s`` and ``infer_s`` give the split).

    ``dataset[i]`` must return ``(image [3,S,S], mask)`` (torch tensors or numpy arrays)."""
    from tqdm.auto import tqdm

    n = len(dataset)
    if n == 0:
        raise ValueError("time_dataset: the dataset is empty")
    sync = cuda_sync(str(getattr(runner, "device", "cpu")))
    data_s = infer_s = 0.0
    t_start = time.perf_counter()
    for i in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        t0 = time.perf_counter()
        imgs = [np.asarray(dataset[j][0], dtype=np.float32) for j in range(i, min(n, i + batch_size))]
        x = np.ascontiguousarray(np.stack(imgs))
        t1 = time.perf_counter()
        runner(x)
        if sync:
            sync()
        t2 = time.perf_counter()
        data_s += t1 - t0
        infer_s += t2 - t1
    total = time.perf_counter() - t_start
    return dict(n_images=n, batch_size=batch_size, seconds_total=total, data_s=data_s, infer_s=infer_s,
                images_per_s=n / total, timing_scope="JPEG read + preprocessing + inference, one pass")


# ----------------------------------------------------------------------------------------------
# the suite: every architecture x backend x precision that available_runners() allows
# ----------------------------------------------------------------------------------------------
ARCHS = ("unet", "ghost_unet", "squeeze_unet", "mbu_unet")
BASELINE = ("torch", "fp32")
KEY = ["preset", "arch", "width", "backend", "precision", "batch_size", "image_size"]
DATASET_KEY = ["preset", "arch", "width", "backend", "precision", "batch_size", "image_size"]

#: Benchmark settings per preset. ``image_sizes``: extra sizes of the image-size sweep (the
#: preset's own ``image_size`` is always measured); ``sweep_formats``: the formats swept over
#: image size (the FP32 PyTorch baseline is always added so ratios exist); ``skip``: formats left
#: out under this preset, as ``"backend/precision"`` glob patterns, with ``skip_reason``;
#: ``max_call_s``: a format whose call takes longer is timed with one warm call at that batch
#: size and skipped (with the reason) where it would be slower still (e.g. FP16 on CPUs without
#: native FP16 arithmetic); ``threads``: torch / ONNX Runtime threads (default all cores; ``ci`` uses one so that its smoke
#: test is not slowed 100x by OpenMP threads waiting on each other on a loaded machine).
BENCH_PRESETS: dict[str, dict] = {
    "ci": dict(batch_sizes=[1, 2], image_sizes=[], sweep_formats=[], sweep_batch=1, rel_ci=0.25,
               time_cap_s=1.0, max_call_s=2.0, dataset_batch=4, energy_min_s=0.05, threads=1,
               skip=["torch_compile/*"], skip_reason="skipped under the ci preset (compile time)"),
    "quick": dict(batch_sizes=[1, 8], image_sizes=[64, 256], sweep_formats=["onnxruntime/int8"],
                  sweep_batch=1, rel_ci=0.05, time_cap_s=4.0, max_call_s=1.0, dataset_batch=8,
                  energy_min_s=0.5, skip=["torch_compile/*"],
                  skip_reason="skipped under the quick preset: inductor compiles each model and batch shape "
                              "for about a minute on a 2-core CPU, over the notebook's budget (the gpu "
                              "preset measures it)"),
    "gpu": dict(batch_sizes=[1, 8, 16, 32, 64], image_sizes=[128, 448], sweep_formats=[
                    "tensorrt/fp16", "tensorrt/int8", "onnxruntime_cuda/fp32"],
                sweep_batch=8, rel_ci=0.02, time_cap_s=20.0, max_call_s=10.0, dataset_batch=16,
                energy_min_s=2.0, warmup=10, repeats=50, skip=[], skip_reason=""),
}


def bench_settings(cfg: dict, bench_preset: str | None = None, **overrides) -> dict:
    """Benchmark settings for the study preset ``cfg``: ``bench_preset`` (``"ci"``, ``"quick"``,
    ``"gpu"``) or, when ``None``, ``"gpu"`` if CUDA is available and the preset is not ``ci``,
    else the study preset's own name (``paper`` on a CPU falls back to ``quick``).
    ``warmup``/``repeats`` default to the preset's ``bench_warmup``/``bench_repeats``;
    ``None`` overrides are ignored."""
    import torch

    study = cfg.get("preset", "quick")
    if bench_preset is None:
        if torch.cuda.is_available() and study != "ci":
            bench_preset = "gpu"
        else:
            bench_preset = study if study in BENCH_PRESETS else "quick"
    if bench_preset not in BENCH_PRESETS:
        raise ValueError(f"unknown benchmark preset {bench_preset!r}; choose one of {sorted(BENCH_PRESETS)}")
    s = dict(BENCH_PRESETS[bench_preset])
    s.setdefault("warmup", cfg.get("bench_warmup", 3))
    s.setdefault("repeats", cfg.get("bench_repeats", 20))
    s["bench_preset"] = bench_preset
    s["archs"] = list(ARCHS)
    s.update({k: v for k, v in overrides.items() if v is not None})
    size = int(cfg["image_size"])
    s["image_size"] = size
    s["image_sizes"] = sorted({int(v) for v in s["image_sizes"]} | {size})
    bad = [v for v in s["image_sizes"] if v % 16]
    if bad:
        raise ValueError(f"image sizes must be divisible by 16 (U-Net with 4 poolings), got {bad}")
    s["batch_sizes"] = sorted({int(b) for b in s["batch_sizes"]})
    return s


def format_applies(arch: str, backend: str, precision: str) -> bool:
    """Whether a backend/precision is meaningful for an architecture: the bit-packed engine runs
    only the MBU-Net (its own binary/ternary mix), and ``binary`` exists only there."""
    packed = backend == "bitpack" or precision == "binary"
    return (arch == "mbu_unet") if packed else True


def _fmt(backend: str, precision: str) -> str:
    return f"{backend}/{precision}"


def _skipped(fmt: str, patterns) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(fmt, p) for p in patterns or [])


def _call_supported(fn: Callable, *args, **kw):
    """Call ``fn`` with only the keyword arguments its signature names explicitly."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kw)
    return fn(*args, **{k: v for k, v in kw.items() if k in params})


def _machine_columns(threads: int) -> dict:
    from .io import machine_info

    m = machine_info()
    m["threads_pinned"] = threads
    return m


def load_average() -> float:
    """1-minute load average (NaN where the OS has none): a busy machine makes timings unreliable,
    so every measured row records it."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


def busy_warning(threads: int) -> str:
    """A warning when other processes compete for the cores being measured, else ``""``."""
    load, cores = load_average(), os.cpu_count() or 1
    if load == load and load > cores * 0.75:
        return (f"WARNING: this machine is busy (load average {load:.1f} on {cores} cores): other processes "
                f"compete with the {threads} measured thread(s); absolute timings are unreliable, "
                "ratios measured side by side less so. Re-run on a quiet machine for final numbers.")
    return ""


def _device_slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def add_ratios(df, baseline: tuple[str, str] = BASELINE):
    """Add seed 003's ratios to the FP32 PyTorch baseline of the same arch, batch and image size
    (rows measured in the same interleaved group): ``speedup`` (latency), ``throughput_if``
    (throughput improvement factor), ``memory_reduction`` and ``size_reduction``."""
    import pandas as pd

    df = df.copy()
    for c in ("speedup", "throughput_if", "memory_reduction", "size_reduction"):
        df[c] = float("nan")
    if df.empty:
        return df
    grp = ["preset", "arch", "width", "batch_size", "image_size"]
    ok = df["status"] == "measured"
    base = df[ok & (df["backend"] == baseline[0]) & (df["precision"] == baseline[1])]
    base = base.set_index(grp)[["latency_ms", "throughput_ips", "peak_mem_mb", "model_size_mb"]]
    for i, row in df[ok].iterrows():
        k = tuple(row[g] for g in grp)
        if k not in base.index:
            continue
        b = base.loc[k]
        if isinstance(b, pd.DataFrame):
            b = b.iloc[0]
        df.at[i, "speedup"] = b["latency_ms"] / row["latency_ms"]
        df.at[i, "throughput_if"] = row["throughput_ips"] / b["throughput_ips"]
        with np.errstate(divide="ignore", invalid="ignore"):
            df.at[i, "memory_reduction"] = (b["peak_mem_mb"] / row["peak_mem_mb"]
                                            if row["peak_mem_mb"] > 0 else float("nan"))
            df.at[i, "size_reduction"] = (b["model_size_mb"] / row["model_size_mb"]
                                          if row["model_size_mb"] > 0 else float("nan"))
    return df


def _status_row(base: dict, status: str, reason: str) -> dict:
    return dict(base, status=status, reason=reason)


def _fresh_dataset(ds):
    """The same samples as a dataset that decodes every JPEG on access (no cache), so that the
    timing includes reading and preprocessing as in seed 000."""
    try:
        return type(ds)(ds.samples, size=ds.size, threshold=ds.threshold, cache=False, progress=False)
    except Exception:
        return ds


class _Suite:
    """State of one :func:`run_benchmark` call (kept small: models, runners, rows)."""

    def __init__(self, cfg, settings, avail, threads, progress, calib=None):
        self.cfg, self.s, self.avail, self.threads, self.progress = cfg, settings, avail, threads, progress
        self.calib = calib
        self.arch = ""
        self._onnx: dict = {}
        self._calib: dict = {}
        self.bar = None
        self.rows: list[dict] = []
        self.dataset_rows: list[dict] = []
        self.machine = _machine_columns(threads)

    def base(self, arch, width, backend, precision, batch, size):
        return dict(preset=self.cfg["preset"], bench_preset=self.s["bench_preset"], arch=arch, width=width,
                    backend=backend, precision=precision, batch_size=batch, image_size=size)

    def _trt_kw(self, backend: str, batches) -> dict:
        """TensorRT engines: one per format and size, built for the largest batch measured and
        optimised for the median one (TensorRT would otherwise split bigger batches)."""
        if backend != "tensorrt":
            return {}
        b = sorted(batches)
        return dict(max_batch=b[-1], opt_batch=b[len(b) // 2])

    def make_runner(self, model, backend, precision, size, batches=(1,)):
        from . import deploy
        from .paths import models_dir

        workdir = models_dir() / "bench" / f"{self.arch}_{self.cfg['preset']}_{size}px"
        onnx_path = None
        if backend not in ("torch", "torch_compile", "bitpack") and hasattr(deploy, "export_onnx"):
            onnx_path = self._onnx.get((self.arch, size))
            if onnx_path is None:  # export once per architecture and size, shared by the ONNX formats
                onnx_path = deploy.export_onnx(model, workdir / "model_fp32.onnx", size)
                self._onnx[(self.arch, size)] = onnx_path
        return _call_supported(
            deploy.make_runner, backend, precision, model=None if onnx_path else model, onnx_path=onnx_path,
            image_size=size, calib_data=self.calib_at(size), calib_images=self.cfg.get("calib_images"),
            threads=self.threads, workdir=workdir, **self._trt_kw(backend, batches),
        )

    def calib_at(self, size: int):
        """Calibration images at ``size`` px: the training split itself at the study's size, else
        ``calib_images`` of its images resized (bilinear), for the image-size sweep."""
        if self.calib is None or size == self.s["image_size"]:
            return self.calib
        if size not in self._calib:
            import torch
            import torch.nn.functional as F

            n = min(len(self.calib), int(self.cfg.get("calib_images") or 32))
            idx = np.random.default_rng(0).choice(len(self.calib), size=n, replace=False)
            x = torch.stack([torch.as_tensor(np.asarray(self.calib[int(i)][0], np.float32)) for i in idx])
            self._calib[size] = F.interpolate(x, size=(size, size), mode="bilinear",
                                              align_corners=False).clamp(0, 1).numpy()
        return self._calib[size]

    def factory(self, runner, model, backend, precision, size, batches):
        """A function that loads the same representation afresh from what the first build left
        (its ONNX file, or the weights), for :func:`measure_footprint`; ``None`` for TensorRT
        (the engine reports its device memory itself)."""
        from . import deploy

        if backend == "tensorrt":
            return None
        path = getattr(runner, "onnx_path", None)
        if path is not None:
            return lambda: _call_supported(deploy.make_runner, backend, precision, onnx_path=path,
                                           threads=self.threads)
        return lambda: _call_supported(deploy.make_runner, backend, precision, model=model, image_size=size,
                                       threads=self.threads)


def run_benchmark(cfg: dict, settings: dict | None = None, *, progress: bool = True,
                  write: bool = True) -> "tuple[Any, Any]":
    """Benchmark every architecture x backend x precision that ``available_runners()`` allows.

    Models come from :func:`unetq.train.load_or_train` (trained if their checkpoint is missing).
    For each architecture and image size, the formats are measured interleaved at every batch size
    of the settings; unavailable formats get rows with status ``"not measured on this machine"`` and
    the reason; formats that fail get ``"error"``. Also times the whole test split (seed 000).

    Returns ``(benchmark, dataset_timing)`` DataFrames; with ``write``, upserts them into
    ``results_dir()/benchmark.csv`` and ``benchmark_dataset.csv`` (plus
    ``benchmark_<gpu-name>.csv`` when measured on a GPU). Torch's thread count is restored."""
    import torch

    s = settings or bench_settings(cfg)
    threads_before = torch.get_num_threads()
    try:
        threads = pin_threads(s.get("threads"))
        return _run_benchmark(cfg, s, threads, progress, write)
    finally:
        torch.set_num_threads(threads_before)


def _run_benchmark(cfg, s, threads, progress, write):
    import pandas as pd
    from tqdm.auto import tqdm

    from . import deploy
    from .models import create_model  # noqa: F401  (registers the architectures)
    from .models.registry import list_models
    from .train import load_or_train

    from .data import splits_from_preset

    avail = deploy.available_runners()
    splits = splits_from_preset(cfg)
    suite = _Suite(cfg, s, avail, threads, progress, calib=splits.get("train"))
    archs = [a for a in s["archs"] if a in list_models()]
    missing = [a for a in s["archs"] if a not in archs]
    test_ds = splits["test"] if s.get("dataset_batch") else None

    warn = busy_warning(threads)
    if warn:
        print(warn)
    steps = len(archs) * sum(len(s["batch_sizes"]) if z == s["image_size"] else 1 for z in s["image_sizes"])
    suite.bar = tqdm(total=steps, desc="benchmark", unit="group", disable=not progress)
    for arch in archs:
        suite.bar.set_postfix_str(f"{arch}: loading")
        model, _ = _call_supported(load_or_train, arch, cfg, splits=splits)
        model = model.eval().cpu()
        suite.arch = arch
        _benchmark_arch(suite, arch, model, test_ds)
    suite.bar.close()
    for arch in missing:
        for _, f in avail.iterrows():
            if format_applies(arch, f["backend"], f["precision"]):
                suite.rows.append(_status_row(
                    suite.base(arch, cfg.get("width"), f["backend"], f["precision"], s["batch_sizes"][0],
                               s["image_size"]), "error", f"architecture {arch!r} is not registered"))

    bench = add_ratios(pd.DataFrame(suite.rows))
    data = pd.DataFrame(suite.dataset_rows)
    if write:
        write_benchmark(bench, data)
    return bench, data


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def _benchmark_arch(suite: _Suite, arch: str, model, test_ds) -> None:
    """All formats of one architecture: per image size, build the runners, then per batch size a
    smoke call (the first warm-up call; formats that fail or are too slow drop out here) and the
    interleaved measurement of the rest; finally the whole-test-split timing."""
    s, cfg = suite.s, suite.cfg
    width = getattr(model, "config", {}).get("width", cfg.get("width"))
    formats = [(f["backend"], f["precision"], bool(f["available"]), str(f.get("reason", "")))
               for _, f in suite.avail.iterrows() if format_applies(arch, f["backend"], f["precision"])]
    main = s["image_size"]
    sweep = set(s.get("sweep_formats") or [])
    max_call = s.get("max_call_s")

    def row(fmt, b, size, status, reason):
        return _status_row(suite.base(arch, width, *fmt.split("/"), b, size), status, reason)

    for size in s["image_sizes"]:
        batches = s["batch_sizes"] if size == main else [s["sweep_batch"]]
        runners: dict[str, Any] = {}
        factories: dict[str, Any] = {}
        for backend, precision, ok, reason in formats:
            fmt = _fmt(backend, precision)
            if size != main and fmt != _fmt(*BASELINE) and fmt not in sweep:
                continue
            if not ok:
                suite.rows += [row(fmt, b, size, NOT_MEASURED, reason or "backend not available") for b in batches]
            elif _skipped(fmt, s.get("skip")):
                suite.rows += [row(fmt, b, size, "skipped", s.get("skip_reason") or "skipped by preset")
                               for b in batches]
            else:
                try:
                    runners[fmt] = suite.make_runner(model, backend, precision, size, batches)
                    factories[fmt] = suite.factory(runners[fmt], model, backend, precision, size, batches)
                except Exception as e:  # a broken format must not stop the others
                    suite.rows += [row(fmt, b, size, "error", _err(e)) for b in batches]
        broken: dict[str, str] = {}
        per_image_s: dict[str, float] = {}  # seconds per image of the last call, to predict slow calls
        for b in batches:
            if suite.bar is not None:
                suite.bar.set_postfix_str(f"{arch} {size}px batch {b}")
            group, slow = {}, {}
            for fmt, r in runners.items():
                if fmt in broken:
                    suite.rows.append(row(fmt, b, size, broken[fmt].split(":")[0], broken[fmt]))
                    continue
                if max_call and fmt in per_image_s and per_image_s[fmt] * b > max_call:
                    suite.rows.append(row(fmt, b, size, "skipped", _too_slow(per_image_s[fmt], b, max_call)))
                    continue
                try:  # smoke call (the first warm-up call): a failing format fails here, not mid-group
                    t0 = time.perf_counter()
                    r(random_batch(b, size))
                    dt = time.perf_counter() - t0
                except Exception as e:
                    broken[fmt] = f"error: {_err(e)}"
                    suite.rows.append(row(fmt, b, size, "error", _err(e)))
                    continue
                per_image_s[fmt] = dt / b
                (slow if max_call and dt > max_call else group)[fmt] = r
            measured = {}
            if group:
                measured.update(benchmark_runners(
                    group, b, size, warmup=max(0, s["warmup"] - 1), repeats=s["repeats"], rel_ci=s["rel_ci"],
                    time_cap_s=s["time_cap_s"], energy_min_s=s["energy_min_s"], factories=factories,
                ))
            for fmt, r in slow.items():  # one warm sample only; no memory or energy pass
                res = benchmark_runners({fmt: r}, b, size, warmup=0, repeats=1, max_repeats=1, memory=False,
                                        energy=False, time_cap_s=None)[fmt]
                res.update(stop_reason="slow format: one warm call (smoke call took longer than max_call_s)",
                           mem_method=f"not measured: calls take over {max_call} s here",
                           energy_method=f"not measured: calls take over {max_call} s here")
                per_image_s[fmt] = res["latency_ms_per_image"] / 1e3
                measured[fmt] = res
            for fmt, res in measured.items():
                out = suite.base(arch, width, *fmt.split("/"), b, size)
                out.update({k: v for k, v in res.items() if k not in out})
                out.update(warmup=s["warmup"], status="measured", reason="", load_avg_1min=load_average(),
                           **suite.machine)
                suite.rows.append(out)
            if suite.bar is not None:
                suite.bar.update(1)
        if size == main and test_ds is not None:
            _time_split(suite, arch, width, size, runners, broken, per_image_s, test_ds)


def _too_slow(per_image: float, batch: int, cap: float) -> str:
    return (f"too slow on this machine: ~{per_image * batch:.1f} s per call of {batch} images "
            f"(> max_call_s {cap} s of this preset)")


def _time_split(suite: _Suite, arch, width, size, runners, broken, per_image_s, test_ds) -> None:
    s = suite.s
    b = s["dataset_batch"]
    max_call = s.get("max_call_s")
    for fmt, r in runners.items():
        base = suite.base(arch, width, *fmt.split("/"), b, size)
        if fmt in broken:
            t = dict(status="error", reason=broken[fmt])
        elif max_call and per_image_s.get(fmt, 0) * b > max_call:
            t = dict(status="skipped", reason=_too_slow(per_image_s[fmt], b, max_call))
        else:
            try:
                t = time_dataset(r, _fresh_dataset(test_ds), b)
                t.update(status="measured", reason="")
            except Exception as e:
                t = dict(status="error", reason=_err(e))
        base.update(t)
        base.update(device=str(getattr(r, "device", "cpu")), load_avg_1min=load_average(), **suite.machine)
        suite.dataset_rows.append(base)


def write_benchmark(bench, dataset=None) -> list[Path]:
    """Upsert the benchmark tables into ``results_dir()`` (atomic; rows with the same key are
    replaced). Tables measured on a GPU are also written as ``benchmark_<device-name>.csv``."""
    from .io import upsert_csv
    from .paths import results_dir

    out = []
    if bench is not None and len(bench):
        p = results_dir() / "benchmark.csv"
        upsert_csv(bench, p, KEY)
        out.append(p)
        gpu = bench.get("gpu")
        cuda = bench["device"].astype(str).str.contains("cuda") if "device" in bench else None
        if gpu is not None and cuda is not None and cuda.any():
            name = str(bench.loc[cuda, "gpu"].iloc[0])
            p2 = results_dir() / f"benchmark_{_device_slug(name)}.csv"
            upsert_csv(bench, p2, KEY)
            out.append(p2)
    if dataset is not None and len(dataset):
        p = results_dir() / "benchmark_dataset.csv"
        upsert_csv(dataset, p, DATASET_KEY)
        out.append(p)
    return out
