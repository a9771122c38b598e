"""The benchmark notebook (``07_benchmark``): every architecture x backend x precision that
``unetq.deploy.available_runners()`` allows, measured with :mod:`unetq.bench`, with ratios to the
FP32 PyTorch baseline, written to ``benchmark.csv`` (and ``benchmark_dataset.csv``,
``benchmark_<gpu>.csv``) through :mod:`unetq.results`.

The engines it uses are injected (:class:`SuiteDeps`: which runners exist, how a runner is made,
how a model is loaded), so its own logic is tested on fakes.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import deploy, paths, results
from ..bench import (BASELINE, NOT_AVAILABLE, NOT_MEASURED, add_ratios, benchmark_runners, random_batch, summarize,
                     time_dataset, timing_row)
from ..config import StudyConfig
from ..data import dataset_identity, run_tag, splits_from_preset
from ..deploy import format_applies
from ..machine import (busy_cores, busy_warning, choose_threads, cuda_available, load_average, machine_info,
                       pin_threads)
from ..models import list_models
from ..train import load_or_train
from .mbu import DEFAULT_STEM, train_main
from .tuning import tuned

# ----------------------------------------------------------------------------------------------
# the suite: every architecture x backend x precision that available_runners() allows
# ----------------------------------------------------------------------------------------------
ARCHS = ("unet", "ghost_unet", "squeeze_unet", "mbu_unet")
KEY = results.BENCHMARK.key_columns

#: ``create_model`` keywords of the benchmarked models: the MBU-Net is notebook 05's main one
#: (cost-aware masking of the k = 4 cheapest layers, the study's stem), so its checkpoint is
#: shared, not retrained.
MODEL_KW: dict[str, dict] = {"mbu_unet": {"masked": 4} if DEFAULT_STEM == "binary" else
                             {"masked": 4, "stem": DEFAULT_STEM}}


def load_model(arch: str, cfg: StudyConfig, splits, **model_kw):
    """``(model, ckpt)`` of an architecture as the notebooks train it (training seed 0, its
    learning rate chosen on validation): the MBU-Net by :func:`unetq.studies.mbu.train_main`
    (cached there), the others by :func:`unetq.train.load_or_train`."""
    cfg = tuned(arch, cfg)
    if arch == "mbu_unet":
        return train_main(cfg, model_kw, splits)
    return load_or_train(arch, cfg, splits=splits, **model_kw)


@dataclass(frozen=True)
class SuiteDeps:
    """The engines the suite uses: ``available_runners() -> DataFrame[backend, precision,
    available, reason]``, ``make_runner(backend, precision, **kw)``, ``load_model(arch, cfg,
    splits, **model_kw) -> (model, ckpt)``, ``splits(cfg) -> {"train", "test", ...}``,
    ``list_models()``, and ``export_onnx(model, path, size)`` for one shared FP32 ONNX file per
    architecture and size (``None``: each ONNX runner exports its own)."""

    available_runners: Callable = deploy.available_runners
    make_runner: Callable = deploy.make_runner
    load_model: Callable = load_model
    splits: Callable = splits_from_preset
    list_models: Callable = list_models
    export_onnx: Callable | None = deploy.export_onnx


#: Benchmark settings per preset. ``image_sizes``: extra sizes of the image-size sweep (the
#: preset's own ``image_size`` is always measured); ``sweep_formats``: the formats swept over
#: image size (the FP32 PyTorch baseline is always added so ratios exist); ``skip``: formats left
#: out under this preset, as ``"backend/precision"`` glob patterns, with ``skip_reason``;
#: ``max_call_s``: a format whose call takes longer is timed with one warm call at that batch
#: size and skipped (with the reason) where it would be slower still (e.g. FP16 on CPUs without
#: native FP16 arithmetic); ``threads``: torch / ONNX Runtime threads (default all cores; ``ci`` uses one so that its smoke
#: test is not slowed 100x by OpenMP threads waiting on each other on a loaded machine).
#: ``grid``: every format at every batch size and image size (exactly ``image_sizes``, the
#: study's own size not added), written to ``benchmark_grid.csv`` instead of ``benchmark.csv``
#: (seed 003's characterisation, ``python -m unetq.cli.characterise``); no whole-split timing.
BENCH_PRESETS: dict[str, dict] = {
    "ci": dict(batch_sizes=[1, 2], image_sizes=[], sweep_formats=[], sweep_batch=1, rel_ci=0.25,
               time_cap_s=1.0, max_call_s=2.0, dataset_batch=4, energy_min_s=0.05, threads=1,
               skip=["torch_compile/*"], skip_reason="skipped under the ci preset (compile time)"),
    "quick": dict(batch_sizes=[1, 8], image_sizes=[64, 256], sweep_formats=["onnxruntime/int8", "bitpack/binary"],
                  sweep_batch=1, rel_ci=0.05, time_cap_s=4.0, max_call_s=1.0, dataset_batch=8,
                  energy_min_s=0.5, skip=["torch_compile/*"],
                  skip_reason="skipped under the quick preset: inductor compiles each model and batch shape "
                              "for about a minute on a 2-core CPU, over the notebook's budget (the gpu "
                              "preset measures it)"),
    "grid": dict(batch_sizes=[1, 2, 4, 8, 16, 32], image_sizes=[128, 256, 512], grid=True, sweep_formats=[],
                 sweep_batch=1, rel_ci=0.05, time_cap_s=2.0, max_call_s=4.0, dataset_batch=0, energy_min_s=0.5,
                 skip=["torch_compile/*"],
                 skip_reason="skipped in the grid: inductor compiles each model and shape (18 per architecture) "
                             "for about a minute each on a 2-core CPU; make bench measures it"),
    "gpu": dict(batch_sizes=[1, 8, 16, 32, 64], image_sizes=[128, 448], sweep_formats=[
                    "tensorrt/fp16", "tensorrt/int8", "onnxruntime_cuda/fp32"],
                sweep_batch=8, rel_ci=0.02, time_cap_s=20.0, max_call_s=10.0, dataset_batch=16,
                energy_min_s=2.0, warmup=10, repeats=50, skip=[], skip_reason=""),
}


def bench_settings(cfg: StudyConfig, bench_preset: str | None = None, **overrides) -> dict:
    """Benchmark settings for the study preset ``cfg``: ``bench_preset`` (``"ci"``, ``"quick"``,
    ``"gpu"``) or, when ``None``, ``"gpu"`` if CUDA is available and the preset is not ``ci``,
    else the study preset's own name (``paper`` on a CPU falls back to ``quick``).
    ``warmup``/``repeats`` default to the preset's ``bench_warmup``/``bench_repeats``;
    ``None`` overrides are ignored."""
    study = cfg.preset
    if bench_preset is None:
        if cuda_available() and study != "ci":
            bench_preset = "gpu"
        else:
            bench_preset = study if study in BENCH_PRESETS else "quick"
    if bench_preset not in BENCH_PRESETS:
        raise ValueError(f"unknown benchmark preset {bench_preset!r}; choose one of {sorted(BENCH_PRESETS)}")
    s = dict(BENCH_PRESETS[bench_preset])
    s.setdefault("warmup", cfg.bench_warmup)
    s.setdefault("repeats", cfg.bench_repeats)
    s["bench_preset"] = bench_preset
    s["archs"] = list(ARCHS)
    s["model_kw"] = {k: dict(v) for k, v in MODEL_KW.items()}
    s.update({k: v for k, v in overrides.items() if v is not None})
    size = int(cfg.image_size)
    s["image_size"] = size
    s["image_sizes"] = sorted({int(v) for v in s["image_sizes"]} | (set() if s.get("grid") else {size}))
    if not s["image_sizes"]:
        raise ValueError("no image size to measure")
    bad = [v for v in s["image_sizes"] if v % 16]
    if bad:
        raise ValueError(f"image sizes must be divisible by 16 (U-Net with 4 poolings), got {bad}")
    s["batch_sizes"] = sorted({int(b) for b in s["batch_sizes"]})
    return s


def _fmt(backend: str, precision: str) -> str:
    return f"{backend}/{precision}"


def _skipped(fmt: str, patterns) -> bool:
    return any(fnmatch.fnmatch(fmt, p) for p in patterns or [])


def _run_columns(s: dict) -> dict:
    busy = s.get("busy_cores")
    return dict(threads_reason=s.get("threads_reason", ""),
                busy_cores_at_start=round(busy, 2) if busy is not None else float("nan"))


def _device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _status_row(base: dict, status: str, reason: str) -> dict:
    return dict(base, status=status, reason=reason)


def _fresh_dataset(ds):
    """The same samples as a dataset that decodes every JPEG on access (no cache), so that the
    timing includes reading and preprocessing as in seed 000."""
    try:
        return type(ds)(ds.samples, size=ds.size, threshold=ds.threshold, cache=False, progress=False,
                        resize=getattr(ds, "resize", "pad"))
    except Exception:
        return ds


class _Suite:
    """State of one :func:`run_benchmark` call (kept small: models, runners, rows)."""

    def __init__(self, cfg, settings, avail, threads, progress, deps: SuiteDeps, calib=None):
        self.cfg, self.s, self.avail, self.threads, self.progress = cfg, settings, avail, threads, progress
        self.deps = deps
        self.calib = calib
        self.arch = ""
        self._onnx: dict = {}
        self._calib: dict = {}
        self.bar = None
        self.rows: list[dict] = []
        self.dataset_rows: list[dict] = []
        self.machine = dict(machine_info(), threads_pinned=threads, **_run_columns(settings))

    def base(self, arch, width, backend, precision, batch, size):
        kw = self.s.get("model_kw", {}).get(arch) or {}
        return dict(preset=self.cfg.preset, dataset=dataset_identity(self.cfg.source), bench_preset=self.s["bench_preset"], arch=arch, width=width,
                    model_kw=json.dumps(kw, sort_keys=True) if kw else "", backend=backend, precision=precision,
                    batch_size=batch, image_size=size)

    def _trt_kw(self, backend: str, batches) -> dict:
        """TensorRT engines: one per format and size, built for the largest batch measured and
        optimised for the median one (TensorRT would otherwise split bigger batches)."""
        if backend != "tensorrt":
            return {}
        b = sorted(batches)
        return dict(max_batch=b[-1], opt_batch=b[len(b) // 2])

    def make_runner(self, model, backend, precision, size, batches=(1,)):
        workdir = paths.models_dir() / "bench" / f"{self.arch}_{run_tag(self.cfg)}_{size}px"
        onnx_path = None
        if backend not in ("torch", "torch_compile", "bitpack") and self.deps.export_onnx is not None:
            onnx_path = self._onnx.get((self.arch, size))
            if onnx_path is None:  # export once per architecture and size, shared by the ONNX formats
                onnx_path = self.deps.export_onnx(model, workdir / "model_fp32.onnx", size)
                self._onnx[(self.arch, size)] = onnx_path
        return self.deps.make_runner(
            backend, precision, model=None if onnx_path else model, onnx_path=onnx_path,
            image_size=size, calib_data=self.calib_at(size), calib_images=self.cfg.calib_images,
            threads=self.threads, workdir=workdir, **self._trt_kw(backend, batches),
        )

    def calib_at(self, size: int):
        """Calibration images at ``size`` px: the training split itself at the study's size, else
        ``calib_images`` of its images resized (bilinear), for the image-size sweep."""
        if self.calib is None or size == self.s["image_size"]:
            return self.calib
        if size not in self._calib:
            n = min(len(self.calib), int(self.cfg.calib_images or 32))
            idx = np.random.default_rng(0).choice(len(self.calib), size=n, replace=False)
            x = torch.stack([torch.as_tensor(np.asarray(self.calib[int(i)][0], np.float32)) for i in idx])
            self._calib[size] = F.interpolate(x, size=(size, size), mode="bilinear",
                                              align_corners=False).clamp(0, 1).numpy()
        return self._calib[size]

    def factory(self, runner, model, backend, precision, size, batches):
        """A function that loads the same representation afresh from what the first build left
        (its ONNX file, or the weights), for :func:`measure_footprint`; ``None`` for TensorRT
        (the engine reports its device memory itself)."""
        if backend == "tensorrt":
            return None
        path = getattr(runner, "onnx_path", None) or getattr(runner, "model_path", None)
        if path is not None:
            return lambda: self.deps.make_runner(backend, precision, onnx_path=path, threads=self.threads)
        return lambda: self.deps.make_runner(backend, precision, model=model, image_size=size, threads=self.threads)


def run_benchmark(cfg: StudyConfig, settings: dict | None = None, *, progress: bool = True,
                  write: bool = True, deps: SuiteDeps | None = None) -> "tuple[pd.DataFrame, pd.DataFrame]":
    """Benchmark every architecture x backend x precision that ``available_runners()`` allows.

    Models come from ``deps.load_model`` (default :func:`load_model`: trained if their
    checkpoint is missing).
    For each architecture and image size, the formats are measured interleaved at every batch size
    of the settings; unavailable formats get rows with status ``"not measured on this machine"`` and
    the reason; formats that fail get ``"error"``. Also times the whole test split (seed 000).

    Returns ``(benchmark, dataset_timing)`` DataFrames; with ``write``, upserts them into
    ``results_dir()/benchmark.csv`` and ``benchmark_dataset.csv`` (plus
    ``benchmark_<gpu-name>.csv`` when measured on a GPU). Torch's thread count is restored."""
    s = settings or bench_settings(cfg)
    threads_before = torch.get_num_threads()
    try:
        busy = busy_cores() if not (s.get("threads") or os.environ.get("UNETQ_BENCH_THREADS")) else None
        n, why = choose_threads(s.get("threads"), busy)
        threads = pin_threads(n)
        s = dict(s, threads_reason=why, busy_cores=busy)
        return _run_benchmark(cfg, s, threads, progress, write, deps or SuiteDeps())
    finally:
        torch.set_num_threads(threads_before)


def _run_benchmark(cfg, s, threads, progress, write, deps: SuiteDeps):
    avail = deps.available_runners()
    splits = deps.splits(cfg)
    suite = _Suite(cfg, s, avail, threads, progress, deps, calib=splits.get("train"))
    archs = [a for a in s["archs"] if a in deps.list_models()]
    missing = [a for a in s["archs"] if a not in archs]
    test_ds = splits["test"] if s.get("dataset_batch") else None

    warn = busy_warning(threads, s.get("busy_cores"))
    if warn:
        print(warn)
    steps = len(archs) * sum(len(_batches(s, z)) for z in s["image_sizes"])
    suite.bar = tqdm(total=steps, desc="benchmark", unit="group", disable=not progress)
    for arch in archs:
        suite.bar.set_postfix_str(f"{arch}: loading")
        kw = s.get("model_kw", MODEL_KW).get(arch, {})
        model, _ = deps.load_model(arch, cfg, splits, **kw)
        model = model.eval().cpu()
        suite.arch = arch
        done = len(suite.rows)
        _benchmark_arch(suite, arch, model, test_ds)
        if write and s.get("grid"):  # the grid takes long: each architecture's rows as it finishes
            results.write(results.BENCHMARK_GRID, add_ratios(pd.DataFrame(suite.rows[done:])))
    suite.bar.close()
    written = len(suite.rows) if s.get("grid") else 0
    for arch in missing:
        for _, f in avail.iterrows():
            if format_applies(arch, f["backend"], f["precision"]):
                suite.rows.append(_status_row(
                    suite.base(arch, cfg.width, f["backend"], f["precision"], s["batch_sizes"][0],
                               s["image_size"]), "error", f"architecture {arch!r} is not registered"))

    bench = add_ratios(pd.DataFrame(suite.rows))
    data = pd.DataFrame(suite.dataset_rows)
    if write and s.get("grid"):
        if len(suite.rows) > written:  # rows of architectures that are not registered
            results.write(results.BENCHMARK_GRID, add_ratios(pd.DataFrame(suite.rows[written:])))
    elif write:
        write_benchmark(bench, data)
    return bench, data


def _batches(s: dict, size: int) -> list[int]:
    """The batch sizes measured at ``size``: all of them at the study's size (or everywhere in a
    ``grid``), the sweep's one batch size elsewhere."""
    return list(s["batch_sizes"]) if (size == s["image_size"] or s.get("grid")) else [s["sweep_batch"]]


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def _benchmark_arch(suite: _Suite, arch: str, model, test_ds) -> None:
    """All formats of one architecture: per image size, build the runners, then per batch size a
    smoke call (the first warm-up call; formats that fail or are too slow drop out here) and the
    interleaved measurement of the rest; finally the whole-test-split timing."""
    s, cfg = suite.s, suite.cfg
    width = getattr(model, "config", {}).get("width", cfg.width)
    formats = [(f["backend"], f["precision"], bool(f["available"]), str(f.get("reason", "")))
               for _, f in suite.avail.iterrows() if format_applies(arch, f["backend"], f["precision"])]
    main = s["image_size"]
    sweep = set(s.get("sweep_formats") or [])
    max_call = s.get("max_call_s")

    def row(fmt, b, size, status, reason):
        return _status_row(suite.base(arch, width, *fmt.split("/"), b, size), status, reason)

    for size in s["image_sizes"]:
        batches = _batches(s, size)
        runners: dict[str, Any] = {}
        factories: dict[str, Any] = {}
        for backend, precision, ok, reason in formats:
            fmt = _fmt(backend, precision)
            if not s.get("grid") and size != main and fmt != _fmt(*BASELINE) and fmt not in sweep:
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
                    x = random_batch(b, size)
                    dt = _timed(r, x)
                    if max_call and dt > max_call:  # maybe only the first call was slow (JIT, caches)
                        dt = _timed(r, x)
                except Exception as e:
                    broken[fmt] = f"error: {_err(e)}"
                    suite.rows.append(row(fmt, b, size, "error", _err(e)))
                    continue
                per_image_s[fmt] = dt / b
                (slow if max_call and dt > max_call else group)[fmt] = (r, dt)
            measured = {}
            if group:
                measured.update(benchmark_runners(
                    {f: r for f, (r, _) in group.items()}, b, size, warmup=max(0, s["warmup"] - 1),
                    repeats=s["repeats"], rel_ci=s["rel_ci"], time_cap_s=s["time_cap_s"],
                    energy_min_s=s["energy_min_s"], factories=factories,
                ))
            for fmt, (r, dt) in slow.items():  # the warm smoke call is the only sample: no more calls
                st = summarize([dt])
                st.update(converged=False, stop_reason="slow format: one warm call (over max_call_s)")
                res = timing_row(r, fmt, st, b, size, warmup=1)
                res.update(peak_mem_mb=float("nan"), mem_method=f"not measured: calls take over {max_call} s here",
                           energy_j_per_image=NOT_AVAILABLE,
                           energy_method=f"not measured: calls take over {max_call} s here")
                measured[fmt] = res
            for fmt, res in measured.items():  # predict the next (bigger) batch from warm timings
                per_image_s[fmt] = res["latency_ms_per_image"] / 1e3
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


def _timed(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


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


def write_benchmark(bench: pd.DataFrame | None, dataset: pd.DataFrame | None = None) -> list[Path]:
    """Upsert the benchmark tables (atomic; rows with the same key are replaced). Tables measured
    on a GPU are also written as ``benchmark_<device-name>.csv``."""
    out = []
    if bench is not None and len(bench):
        results.write(results.BENCHMARK, bench)
        out.append(results.BENCHMARK.path())
        gpu = bench.get("gpu")
        cuda = bench["device"].astype(str).str.contains("cuda") if "device" in bench else None
        if gpu is not None and cuda is not None and cuda.any():
            slug = _device_slug(str(bench.loc[cuda, "gpu"].iloc[0]))
            results.write(results.BENCHMARK_DEVICE, bench, device=slug)
            out.append(results.BENCHMARK_DEVICE.path(device=slug))
    if dataset is not None and len(dataset):
        results.write(results.BENCHMARK_DATASET, dataset)
        out.append(results.BENCHMARK_DATASET.path())
    return out
