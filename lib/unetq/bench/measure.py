"""Measurement primitives of :mod:`unetq.bench`: statistics, adaptive and interleaved timing,
memory probes, energy counters, runner benchmarks, whole-split timing and seed 003's ratios.
Threads, load and the RSS sampler come from :mod:`unetq.machine`."""
from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..machine import PeakSampler, machine_info, malloc_trim, pin_threads, rss_bytes

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
    block: int = 1,
    settle_s: float = 0.0,
) -> dict[str, dict]:
    """Time several ``name -> (fn, make_input)`` cases round-robin (``block`` timed calls of each
    per round, the order rotating from round to round), so that ratios between them are not skewed
    by load that changes over time or by a fixed position in the round.

    ``block > 1`` with ``settle_s > 0`` measures each case in its steady state: before its block a
    case waits ``settle_s`` and makes one untimed call. ONNX Runtime, PyTorch and OpenMP keep idle
    workers busy-waiting for a while after each call; alternating two runtimes call by call on a
    small machine makes each pay for the other's spinning (measured on the 2-core CPU: the packed
    MBU-Net 7 ms instead of 4 ms next to ONNX Runtime; ORT INT8 vs FP32 2.6x instead of 3.6x with
    ORT's default spinning), which no single deployed model would see.

    Each case stops on its own rule (see :func:`measure`); ``time_cap_s`` caps the whole group.
    Returns ``name -> stats`` as :func:`measure` does."""
    if not cases:
        return {}
    if repeats < 1 or warmup < 0 or block < 1 or settle_s < 0:
        raise ValueError(f"repeats and block must be >= 1, warmup and settle_s >= 0 (got repeats={repeats}, "
                         f"warmup={warmup}, block={block}, settle_s={settle_s})")
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
            if settle_s > 0:
                time.sleep(settle_s)
                fn(x)
                sync()
            for _ in range(block):
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


def measure_blocks(cases: Mapping[str, tuple[Callable[[Any], Any], Callable[[], Any]]], repeats: int = 20,
                   warmup: int = 3, block: int = 5, settle_s: float = 0.05,
                   time_cap_s: float | None = None) -> dict[str, dict]:
    """:func:`measure_interleaved` with a fixed sample count: ``repeats`` timed calls per case,
    rounded up to whole blocks of ``block`` (each after a ``settle_s`` pause and one untimed
    call), no early stop on the confidence interval; ``time_cap_s`` may end it sooner, after at
    least one block. Returns ``name -> stats`` as :func:`measure_interleaved` does."""
    n = -(-int(repeats) // int(block)) * int(block)
    return measure_interleaved(cases, warmup=warmup, repeats=n, min_repeats=int(block), max_repeats=n, rel_ci=0.0,
                               time_cap_s=time_cap_s, block=block, settle_s=settle_s)


def cuda_sync(device: str | None) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` when ``device`` is a CUDA device, else ``None``."""
    if device and "cuda" in str(device):
        if torch.cuda.is_available():
            return torch.cuda.synchronize
    return None


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
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
    malloc_trim()
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
        row = timing_row(r, k, stats[k], batch_size, image_size, warmup)
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


def timing_row(runner: Any, name: str, stats: Mapping[str, Any], batch_size: int, image_size: int,
               warmup: int) -> dict:
    """The timing columns of a results row from :func:`measure`-style ``stats``."""
    med = stats["median_s"]
    size = getattr(runner, "model_size_bytes", None)
    eng = reported_device_memory(runner)
    return dict(
        backend=getattr(runner, "backend", name), precision=getattr(runner, "precision", ""),
        device=str(getattr(runner, "device", "cpu")), batch_size=batch_size, image_size=image_size,
        latency_ms=1e3 * med, latency_ms_p10=1e3 * stats["p10_s"], latency_ms_p90=1e3 * stats["p90_s"],
        latency_ms_iqr=1e3 * stats["iqr_s"], latency_ci_rel=stats["ci_rel"],
        latency_ms_per_image=1e3 * med / batch_size, throughput_ips=batch_size / med,
        n_repeats=stats["n"], warmup=warmup, converged=bool(stats.get("converged", False)),
        stop_reason=stats.get("stop_reason", ""),
        model_size_mb=(size / 2**20) if isinstance(size, (int, np.integer)) else float("nan"),
        engine_mem_mb=eng / 2**20 if eng else float("nan"),
    )


def benchmark_runner(runner: Any, batch_size: int, image_size: int, warmup: int = 3, repeats: int = 20,
                     **kw) -> dict:
    """:func:`benchmark_runners` for a single runner (one results row)."""
    return benchmark_runners({"runner": runner}, batch_size, image_size, warmup, repeats, **kw)["runner"]


def time_dataset(runner: Callable[[np.ndarray], Any], dataset, batch_size: int,
                 progress: bool = False, desc: str = "test split") -> dict:
    """Seconds to run ``runner`` over a whole dataset as seed 000 does: image reading (JPEG decode),
    preprocessing and batching are *included* (``data_s`` and ``infer_s`` give the split).

    ``dataset[i]`` must return ``(image [3,S,S], mask)`` (torch tensors or numpy arrays)."""
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
# tables of timings
# ----------------------------------------------------------------------------------------------
def interleaved_timings(fns: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2,
                        progress: bool = True, block: int = 1, settle_s: float = 0.0) -> pd.DataFrame:
    """Call every function ``warmup`` times, then rounds of ``block`` timed calls each, in a
    rotating order, until ``repeats`` samples per function (:func:`measure_blocks`; ``block > 1``
    with ``settle_s`` times each runtime in its steady state, see :func:`measure_interleaved`);
    returns the long table ``[variant, round, seconds]``."""
    n = -(-int(repeats) // int(block)) * int(block)  # the samples measure_blocks takes
    names = list(fns)
    bar = tqdm(total=(warmup + n + (n // block if settle_s > 0 else 0)) * len(names), desc="benchmark calls",
               disable=not progress, leave=False)

    def ticking(f):
        def call(_):
            f()
            bar.update(1)
        return call

    stats = measure_blocks({k: (ticking(f), lambda: None) for k, f in fns.items()}, repeats=repeats, warmup=warmup,
                           block=block, settle_s=settle_s)
    bar.close()
    rows = [dict(variant=k, round=i // block, seconds=t) for k in names for i, t in enumerate(stats[k]["times_s"])]
    return pd.DataFrame(rows)


def variant_summary(times: pd.DataFrame, baseline: str = "fp32") -> pd.DataFrame:
    """Per variant of an :func:`interleaved_timings` table: median, p25, p75, min, n and the
    speed-up of the median over ``baseline``'s."""
    g = times.groupby("variant", sort=False)["seconds"]
    out = pd.DataFrame({"median_s": g.median(), "p25_s": g.quantile(0.25), "p75_s": g.quantile(0.75),
                        "min_s": g.min(), "n": g.size()})
    if baseline in out.index:
        out["speedup_vs_fp32"] = out.loc[baseline, "median_s"] / out["median_s"]
    return out


def speed_table(cases: dict, image_size: int, batch_size: int = 1, repeats: int = 20, warmup: int = 3,
                time_cap_s: float = 120.0, seed: int = 0, threads: int | None = None,
                block: int = 5) -> pd.DataFrame:
    """Latency of ``name -> callable(x)`` on one random batch, timed in interleaved blocks
    (:func:`measure_blocks`: each case in its steady state, background load spread over all),
    with ``threads`` pinned (:func:`unetq.machine.pin_threads`). One row per case: median,
    spread, frames/s, plus the machine columns."""
    threads = pin_threads(threads)
    x = np.random.default_rng(seed).random((batch_size, 3, image_size, image_size), dtype=np.float32)
    stats = measure_blocks({k: (f, lambda: x) for k, f in cases.items()}, repeats=repeats, warmup=warmup,
                           block=block, time_cap_s=time_cap_s)
    rows = []
    info = machine_info()
    for name, s in stats.items():
        rows.append(dict(case=name, batch_size=batch_size, image_size=image_size, threads=threads,
                         median_ms=1e3 * s["median_s"], q1_ms=1e3 * s["q1_s"], q3_ms=1e3 * s["q3_s"],
                         iqr_ms=1e3 * s["iqr_s"], p10_ms=1e3 * s["p10_s"], p90_ms=1e3 * s["p90_s"],
                         repeats=s["n"], method=f"interleaved blocks of {block}",
                         fps=batch_size / s["median_s"], **info))
    return pd.DataFrame(rows)


#: The format every ratio of the benchmark tables is taken against.
BASELINE = ("torch", "fp32")


def add_ratios(df: pd.DataFrame, baseline: tuple[str, str] = BASELINE) -> pd.DataFrame:
    """Add seed 003's ratios to the FP32 PyTorch baseline of the same arch, batch and image size
    (rows measured in the same interleaved group): ``speedup`` (latency), ``throughput_if``
    (throughput improvement factor), ``memory_reduction`` and ``size_reduction``."""
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
