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
- threads are **pinned** (:func:`unetq.machine.pin_threads`: torch, numba and ONNX Runtime use
  the same number): all cores of the affinity mask, except cores other processes keep busy when
  the benchmark starts (:func:`unetq.machine.choose_threads`; intra-op threads waiting on a descheduled sibling slow PyTorch down
  10-100x), recorded with the reason in every row (``threads_pinned``, ``threads_reason``,
  ``busy_cores_at_start``, ``load_avg_1min``);
- **peak memory**: CUDA ``max_memory_allocated`` increase (PyTorch), NVML device-memory increase
  (other CUDA backends), the engine's device memory when a TensorRT runner exposes it, and on the
  CPU the peak increase of the process RSS sampled by a psutil thread while the runner is called
  (stated as such in ``mem_method``);
- **energy per image** only from a counter the hardware exposes (NVML total energy on GPUs, RAPL /
  powercap on CPUs); otherwise the string ``"not available"``.

The package owns measuring; what a notebook measures lives in ``unetq.studies.benchmark``
(notebook 07's suite: every architecture x backend x precision, with these rules).
"""
from .measure import (BASELINE, NOT_AVAILABLE, NOT_MEASURED, EnergyCounter, add_ratios, benchmark_runner,
                      benchmark_runners, cuda_sync, interleaved_timings, measure, measure_blocks, measure_energy,
                      measure_footprint, measure_interleaved, measure_peak_memory, median_ci, random_batch,
                      reported_device_memory, speed_table, summarize, time_dataset, timing_row, variant_summary)

__all__ = [
    "BASELINE", "NOT_AVAILABLE", "NOT_MEASURED", "EnergyCounter", "add_ratios", "benchmark_runner",
    "benchmark_runners", "cuda_sync", "interleaved_timings", "measure", "measure_blocks", "measure_energy",
    "measure_footprint", "measure_interleaved", "measure_peak_memory", "median_ci", "random_batch",
    "reported_device_memory", "speed_table", "summarize", "time_dataset", "timing_row", "variant_summary",
]
