"""Benchmark harness: statistics on fake callables with known times, memory/energy probes, the
suite's table logic on fake runners, atomic CSV upserts."""
import time
import types

import numpy as np
import pandas as pd
import pytest
import torch

from unetq import bench, io, machine, results
from unetq.deploy import format_applies
from unetq.studies import benchmark as suite


class FakeClock:
    """A clock that a fake workload advances by known durations."""

    def __init__(self, durations):
        self.t, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self):
        return self.t

    def work(self, x):
        self.t += self.durations[self.calls % len(self.durations)]
        self.calls += 1


# --------------------------------------------------------------------------- statistics
def test_summarize_known_values():
    s = bench.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["n"] == 5 and s["median_s"] == 3.0 and s["min_s"] == 1.0 and s["max_s"] == 100.0
    assert s["p10_s"] <= s["q1_s"] <= s["median_s"] <= s["q3_s"] <= s["p90_s"]
    assert s["iqr_s"] == pytest.approx(s["q3_s"] - s["q1_s"])
    with pytest.raises(ValueError):
        bench.summarize([])


def test_median_ci_brackets_median():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 0.3, 200)
    lo, hi = bench.median_ci(x)
    assert lo <= np.median(x) <= hi
    lo2, hi2 = bench.median_ci(x[:20])
    assert hi2 - lo2 >= hi - lo  # fewer samples, wider interval
    assert bench.median_ci([5.0]) == (5.0, 5.0)


def test_measure_constant_times_converges_at_repeats():
    clk = FakeClock([0.010])
    r = bench.measure(clk.work, lambda: None, warmup=2, repeats=7, clock=clk)
    assert r["n"] == 7 and r["stop_reason"] == "converged" and r["converged"]
    assert r["median_s"] == pytest.approx(0.010) and r["ci_rel"] == pytest.approx(0.0)
    assert clk.calls == 2 + 7  # warm-up calls happen but are not timed


def test_measure_noisy_times_runs_longer_until_cap():
    clk = FakeClock([0.01, 0.03, 0.02, 0.05, 0.015])  # alternating: CI never tight
    r = bench.measure(clk.work, lambda: None, warmup=0, repeats=5, max_repeats=40, rel_ci=1e-6,
                      time_cap_s=None, clock=clk)
    assert r["n"] == 40 and r["stop_reason"] == "max_repeats" and not r["converged"]
    assert r["min_s"] == pytest.approx(0.01) and r["max_s"] == pytest.approx(0.05)
    assert r["median_s"] == pytest.approx(0.02)
    clk2 = FakeClock([0.5, 1.5])
    r2 = bench.measure(clk2.work, lambda: None, warmup=0, repeats=10, rel_ci=1e-6, time_cap_s=2.0,
                       min_repeats=3, clock=clk2)
    assert r2["stop_reason"] == "time_cap" and 3 <= r2["n"] < 10


def test_measure_real_sleep_sanity():
    r = bench.measure(lambda x: time.sleep(x), lambda: 0.002, warmup=1, repeats=5, time_cap_s=2.0)
    assert r["n"] >= 5
    assert r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["median_s"] >= 0.002 * 0.9  # sleep never returns (much) early


def test_measure_interleaved_round_robin_and_sync():
    order, syncs = [], []
    cases = {"a": (lambda x: order.append("a"), lambda: 1), "b": (lambda x: order.append("b"), lambda: 2)}
    res = bench.measure_interleaved(cases, warmup=1, repeats=3, sync=lambda: syncs.append(1),
                                    rel_ci=10.0)
    assert order[:2] == ["a", "b"]  # warm-up
    rounds = [order[i:i + 2] for i in range(2, 8, 2)]
    assert rounds == [["a", "b"], ["b", "a"], ["a", "b"]]  # one call of each per round, rotating
    assert len(syncs) == len(order)
    assert set(res) == {"a", "b"} and res["a"]["n"] == 3
    with pytest.raises(ValueError):
        bench.measure_interleaved(cases, repeats=0)


def test_measure_interleaved_blocks_prime_each_block():
    order = []
    cases = {"a": (lambda x: order.append("a"), lambda: 1), "b": (lambda x: order.append("b"), lambda: 2)}
    res = bench.measure_interleaved(cases, warmup=0, repeats=4, min_repeats=4, max_repeats=4, rel_ci=0.0,
                                    block=2, settle_s=0.001)
    # per round and case: one untimed priming call, then a block of 2 timed calls; order rotates
    assert order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert res["a"]["n"] == 4 and len(res["b"]["times_s"]) == 4
    with pytest.raises(ValueError, match="block"):
        bench.measure_interleaved(cases, block=0)


# --------------------------------------------------------------------------- memory and energy
def test_peak_sampler_with_fake_reader():
    vals = iter([100] + [150, 400, 120] + [110] * 10000)
    with machine.PeakSampler(lambda: next(vals), interval_s=0.0005) as s:
        time.sleep(0.02)
    assert s.baseline == 100 and s.peak == 400 and s.increase == 300


def test_cpu_peak_memory_sees_allocation():
    def fn(x):
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.03)
        return a.sum()

    mem, how = bench.measure_peak_memory(fn, None, "cpu", calls=1)
    assert "RSS" in how and "steady-state" in how
    assert mem > 32 * 2**20


def test_footprint_counts_loading_and_releases():
    def create():
        weights = np.ones(48 * 2**20 // 8)  # 48 MiB of "weights", held by the runner

        def run(x):
            time.sleep(0.02)
            return weights.sum()
        return run

    mem, how = bench.measure_footprint(create, None, "cpu")
    assert mem > 40 * 2**20 and "loading the representation" in how


def test_energy_counter_from_fake_powercap(tmp_path):
    assert bench.EnergyCounter.detect("cpu", tmp_path / "none") is None
    z = tmp_path / "intel-rapl:0"
    z.mkdir()
    (z / "energy_uj").write_text("5000000\n")
    (z / "max_energy_range_uj").write_text("10000000\n")
    sub = tmp_path / "intel-rapl:0:0"  # sub-zones are not added twice
    sub.mkdir()
    (sub / "energy_uj").write_text("1\n")
    c = bench.EnergyCounter.detect("cpu", tmp_path)
    assert c is not None and c.read_j() == pytest.approx(5.0) and "RAPL" in c.method
    assert c.delta_j(9.0, 1.0) == pytest.approx(2.0)  # counter wrapped at 10 J
    e, how = bench.measure_energy(lambda x: None, None, None, 4)
    assert e == bench.NOT_AVAILABLE and "no readable energy counter" in how


def test_energy_per_image_with_fake_counter():
    state = {"j": 0.0}

    def work(x):
        state["j"] += 2.0  # 2 J per call

    c = bench.EnergyCounter(lambda: state["j"], "fake")
    e, how = bench.measure_energy(work, None, c, images_per_call=4, min_s=0.0)
    assert e == pytest.approx(0.5) and how == "fake"


# --------------------------------------------------------------------------- runners
class TorchRunner:
    backend, precision, device = "torch", "fp32", "cpu"

    def __init__(self, model):
        self.model = model
        self.model_size_bytes = sum(p.numel() * 4 for p in model.parameters())

    def __call__(self, x):
        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy()


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def test_reported_device_memory():
    r = types.SimpleNamespace(details={"engine_device_memory_bytes": 5 * 2**20})
    assert bench.reported_device_memory(r) == 5 * 2**20
    assert bench.reported_device_memory(object()) is None


def test_benchmark_runner_row():
    r = bench.benchmark_runner(TorchRunner(tiny_model()), batch_size=2, image_size=16, warmup=1, repeats=3,
                               time_cap_s=1.0, energy_min_s=0.0)
    assert r["backend"] == "torch" and r["batch_size"] == 2 and r["n_repeats"] >= 3
    assert r["latency_ms_p10"] <= r["latency_ms"] <= r["latency_ms_p90"]
    assert r["latency_ms_per_image"] == pytest.approx(r["latency_ms"] / 2)
    assert r["throughput_ips"] == pytest.approx(2000.0 / r["latency_ms"])
    assert r["model_size_mb"] == pytest.approx((3 * 4 * 9 + 4 + 4 + 1) * 4 / 2**20)
    assert r["peak_mem_mb"] >= 0 and "RSS" in r["mem_method"] and np.isnan(r["engine_mem_mb"])
    assert r["energy_j_per_image"] == bench.NOT_AVAILABLE or isinstance(r["energy_j_per_image"], float)


def test_time_dataset_counts_images():
    ds = [(np.zeros((3, 16, 16), np.float32), np.zeros((1, 16, 16), np.float32))] * 5
    seen = []
    t = bench.time_dataset(lambda x: seen.append(x.shape[0]), ds, batch_size=2)
    assert seen == [2, 2, 1] and t["n_images"] == 5
    assert t["seconds_total"] >= t["infer_s"] and "JPEG" in t["timing_scope"]
    with pytest.raises(ValueError, match="empty"):
        bench.time_dataset(lambda x: x, [], 2)


def test_add_ratios_against_fp32_torch():
    base = dict(preset="ci", arch="unet", width=4, batch_size=1, image_size=32, status="measured")
    df = pd.DataFrame([
        dict(base, backend="torch", precision="fp32", latency_ms=10.0, throughput_ips=100.0, peak_mem_mb=8.0,
             model_size_mb=4.0),
        dict(base, backend="onnxruntime", precision="int8", latency_ms=5.0, throughput_ips=200.0,
             peak_mem_mb=2.0, model_size_mb=1.0),
        dict(base, backend="tensorrt", precision="fp16", status="not measured on this machine"),
        dict(base, arch="ghost_unet", backend="onnxruntime", precision="fp32", latency_ms=1.0,
             throughput_ips=1000.0, peak_mem_mb=1.0, model_size_mb=1.0),  # no baseline
    ])
    out = bench.add_ratios(df)
    assert out.loc[0, "speedup"] == 1.0
    assert out.loc[1, "speedup"] == 2.0 and out.loc[1, "throughput_if"] == 2.0
    assert out.loc[1, "memory_reduction"] == 4.0 and out.loc[1, "size_reduction"] == 4.0
    assert np.isnan(out.loc[2, "speedup"]) and np.isnan(out.loc[3, "speedup"])


def test_bench_settings():
    from unetq.config import get_preset

    s = suite.bench_settings(get_preset("ci"))
    assert s["bench_preset"] == "ci" and s["image_sizes"] == [32] and s["batch_sizes"] == [1, 2]
    assert s["repeats"] == 3 and s["warmup"] == 1
    q = suite.bench_settings(get_preset("quick"), "quick", batch_sizes=[8, 1, 8], repeats=None)
    assert q["batch_sizes"] == [1, 8] and 96 in q["image_sizes"] and q["repeats"] == 20
    with pytest.raises(ValueError, match="divisible by 16"):
        suite.bench_settings(get_preset("ci"), image_sizes=[30])
    with pytest.raises(ValueError, match="unknown benchmark preset"):
        suite.bench_settings(get_preset("ci"), "nope")


def test_busy_warning(monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (100.0, 100.0, 100.0))
    assert "busy" in machine.busy_warning(2) and machine.load_average() == 100.0
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert machine.busy_warning(2) == ""


def test_choose_threads(monkeypatch):
    monkeypatch.delenv("UNETQ_BENCH_THREADS", raising=False)
    monkeypatch.setattr(machine, "available_cores", lambda: 4)
    assert machine.choose_threads(3, 2.0) == (3, "requested")
    assert machine.choose_threads(None, 0.1) == (4, "all cores")
    n, why = machine.choose_threads(None, 2.6)
    assert n == 1 and "other processes used 2.6 cores" in why
    assert machine.choose_threads(None, 9.0)[0] == 1  # never below one thread
    monkeypatch.setenv("UNETQ_BENCH_THREADS", "2")
    assert machine.choose_threads(None, 3.0) == (2, "UNETQ_BENCH_THREADS")
    assert "busy" in machine.busy_warning(1, busy=2.6) and machine.busy_warning(4, busy=0.1) == ""


def test_format_applies():
    assert format_applies("mbu_unet", "bitpack", "binary")
    assert not format_applies("unet", "bitpack", "binary")
    assert format_applies("unet", "onnxruntime", "int8")
    assert format_applies("mbu_unet", "torch", "fp32")
    assert not format_applies("mbu_unet", "onnxruntime", "fp32")
    assert not format_applies("mbu_unet", "tensorrt", "int8")


# --------------------------------------------------------------------------- the suite, on fakes
class FakeRunner(TorchRunner):
    def __init__(self, model, backend, precision, fail=False):
        super().__init__(model)
        self.backend, self.precision, self.fail = backend, precision, fail

    def __call__(self, x):
        if self.fail:
            raise RuntimeError("kernel not implemented for this shape")
        return super().__call__(x)


class SlowRunner(FakeRunner):
    """0.3 s per image: slower than the test's max_call_s of 0.2 s."""

    def __call__(self, x):
        time.sleep(0.3 * x.shape[0])
        return super().__call__(x)


class FirstCallSlowRunner(FakeRunner):
    """Slow only on its first call (a JIT compilation), fast afterwards."""

    def __call__(self, x):
        if not getattr(self, "warm", False):
            self.warm = True
            time.sleep(0.3)
        return super().__call__(x)


@pytest.fixture
def fake_stack(monkeypatch, tmp_path):
    """Fake engines (which runners exist, how they are made, how models load) injected into the
    suite, so the suite's own logic is tested alone."""
    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(tmp_path / "results"))
    avail = pd.DataFrame([
        dict(backend="torch", precision="fp32", available=True, reason=""),
        dict(backend="torch", precision="fp16", available=True, reason=""),
        dict(backend="onnxruntime", precision="fp32", available=True, reason=""),
        dict(backend="onnxruntime", precision="int8", available=True, reason=""),
        dict(backend="tensorrt", precision="fp16", available=False, reason="no CUDA device"),
        dict(backend="bitpack", precision="binary", available=True, reason=""),
    ])
    made = []

    def make_runner(backend, precision, model=None, onnx_path=None, image_size=None, threads=None,
                    calib_data=None, **kw):
        made.append((backend, precision, image_size, getattr(calib_data, "shape", None)))
        if precision == "fp16":
            return SlowRunner(model, backend, precision)
        if backend == "bitpack":
            return FirstCallSlowRunner(model, backend, precision)
        return FakeRunner(model, backend, precision, fail=(precision == "int8"))

    def load_model(arch, cfg, splits=None, **model_kw):
        made.append(("model", arch, model_kw))
        return tiny_model(), {}

    ds = [(np.zeros((3, 32, 32), np.float32), np.zeros((1, 32, 32), np.float32))] * 3
    deps = suite.SuiteDeps(available_runners=lambda: avail, make_runner=make_runner, load_model=load_model,
                           splits=lambda cfg: {"train": ds, "test": ds}, list_models=lambda: ["unet", "mbu_unet"],
                           export_onnx=None)
    return made, deps


def test_run_benchmark_table(fake_stack, tmp_path):
    made, deps = fake_stack
    from unetq.config import get_preset

    cfg = get_preset("ci")
    s = suite.bench_settings(cfg, archs=["unet", "mbu_unet", "squeeze_unet"], time_cap_s=0.2, max_call_s=0.2,
                             energy_min_s=0.0, image_sizes=[16], sweep_formats=["onnxruntime/fp32"])
    df, data = suite.run_benchmark(cfg, s, progress=False, deps=deps)
    key = df.set_index(["arch", "backend", "precision", "batch_size", "image_size"])["status"]
    assert key[("unet", "torch", "fp32", 1, 32)] == "measured"
    assert key[("unet", "onnxruntime", "fp32", 2, 32)] == "measured"
    assert key[("unet", "tensorrt", "fp16", 1, 32)] == bench.NOT_MEASURED
    assert key[("unet", "onnxruntime", "int8", 1, 32)] == "error"
    assert key[("unet", "onnxruntime", "fp32", 1, 16)] == "measured"  # image-size sweep
    assert ("unet", "bitpack", "binary", 1, 32) not in key.index  # bitpack is for MBU-Net only
    assert key[("mbu_unet", "bitpack", "binary", 1, 32)] == "measured"
    packed = df[(df.backend == "bitpack") & (df.status == "measured")]  # a slow first call is not "slow"
    assert sorted(packed["batch_size"]) == [1, 2] and (packed["n_repeats"] >= 3).all()
    assert (key.loc["squeeze_unet"] == "error").all()  # not registered in the fake stack
    tr = df[(df.backend == "tensorrt") & (df.arch != "squeeze_unet")]
    assert tr["reason"].str.contains("no CUDA device").all() and tr["latency_ms"].isna().all()
    err = df[(df.precision == "int8") & (df.arch != "squeeze_unet")]
    assert err["reason"].str.contains("kernel not implemented").all()
    # a format slower than max_call_s: one warm call at batch 1, skipped (with the reason) beyond
    slow = df[(df.arch == "unet") & (df.backend == "torch") & (df.precision == "fp16")].set_index("batch_size")
    assert slow.loc[1, "status"] == "measured" and slow.loc[1, "n_repeats"] == 1
    assert slow.loc[1, "latency_ms"] >= 300 * 0.9 and "slow format" in slow.loc[1, "stop_reason"]
    assert np.isnan(slow.loc[1, "peak_mem_mb"]) and slow.loc[1, "energy_j_per_image"] == bench.NOT_AVAILABLE
    assert slow.loc[2, "status"] == "skipped" and "too slow on this machine" in slow.loc[2, "reason"]
    base = df[(df.backend == "torch") & (df.precision == "fp32") & (df.status == "measured")]
    assert (base["speedup"] == 1.0).all()
    measured = df[df.status == "measured"]
    assert measured["cpu"].notna().all() and measured["threads_pinned"].ge(1).all()  # machine columns
    normal = measured[measured["n_repeats"] > 1]
    assert normal["mem_method"].str.contains("loading the representation").all()  # fresh-runner footprint
    assert measured.loc[measured["n_repeats"] == 1, "mem_method"].str.contains("not measured").all()
    assert len([m for m in made if m[0] != "model"]) > len(measured.groupby(
        ["arch", "backend", "precision", "image_size"]))  # runners rebuilt for the memory footprint
    # calibration images follow the image size of the sweep (resized), the split itself otherwise
    assert {m[3] for m in made if m[0] != "model" and m[2] == 16 and m[3] is not None} == {(3, 3, 16, 16)}
    assert ("model", "mbu_unet", suite.MODEL_KW["mbu_unet"]) in made  # notebook 05's main MBU-Net
    assert ("model", "unet", {}) in made
    assert measured["load_avg_1min"].notna().all() and (measured["threads_reason"] == "requested").all()
    d = data.set_index(["arch", "backend", "precision"])
    assert d.loc[("unet", "onnxruntime", "int8"), "status"] == "error"
    assert d.loc[("unet", "torch", "fp16"), "status"] == "skipped"
    ok = data[~data.precision.isin(["int8", "fp16"])]
    assert set(ok["status"]) == {"measured"} and (ok["n_images"] == 3).all()
    # written, and a re-run replaces rows with the same key instead of appending
    p = tmp_path / "results" / "benchmark.csv"
    n = len(pd.read_csv(p))
    suite.run_benchmark(cfg, s, progress=False, deps=deps)
    assert len(pd.read_csv(p)) == n
    assert (tmp_path / "results" / "benchmark_dataset.csv").exists()


# --------------------------------------------------------------------------- atomic CSV upserts
def test_upsert_replaces_by_key(tmp_path):
    p = tmp_path / "t.csv"
    table = results.Table("t", {"k": "int"})
    results.write(table, pd.DataFrame({"k": [1, 2], "v": [10, 20]}), root=tmp_path)
    results.write(table, pd.DataFrame({"k": [2, 3], "v": [21, 30]}), root=tmp_path)
    t = pd.read_csv(p).sort_values("k")
    assert t["k"].tolist() == [1, 2, 3] and t["v"].tolist() == [10, 21, 30]


def _upsert_rows(root, start, n):
    table = results.Table("t", {"k": "int"})
    for k in range(start, start + n):
        results.write(table, pd.DataFrame({"k": [k], "v": [k]}), root=root)


def test_concurrent_upserts_keep_every_row(tmp_path):
    """Parallel sweeps write the same table: without the file lock each process renames its own
    read-merge-write over the file and rows of the other are lost (this test fails then)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_upsert_rows, args=(tmp_path, i * 1000, 25)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ks = sorted(pd.read_csv(tmp_path / "t.csv")["k"])
    assert ks == sorted(i * 1000 + j for i in range(4) for j in range(25))
    assert list(tmp_path.glob(".t.csv.*.tmp")) == []


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "benchmark.csv"
    io.write_csv(pd.DataFrame({"k": [1], "v": [1]}), p)
    before = p.read_text()
    real = pd.DataFrame.to_csv

    def crashing(self, path, *a, **kw):
        real(self.head(0), path, *a, **kw)  # half-written temp file ...
        raise KeyboardInterrupt("killed mid-write")  # ... then the process is interrupted

    monkeypatch.setattr(pd.DataFrame, "to_csv", crashing)
    with pytest.raises(KeyboardInterrupt):
        suite.write_benchmark(pd.DataFrame([dict(preset="ci", dataset="synthetic-v3", arch="unet", width=4, backend="torch",
                                                 precision="fp32", batch_size=1, image_size=32,
                                                 device="cpu", gpu="none", status="measured")]))
    assert p.read_text() == before
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_cuda_memory_energy_and_sync():
    model = tiny_model().cuda()

    class CudaRunner(TorchRunner):
        device = "cuda"

        def __call__(self, x):
            with torch.no_grad():
                return self.model(torch.from_numpy(x).cuda()).cpu().numpy()

    mem, how = bench.measure_footprint(lambda: CudaRunner(model), bench.random_batch(4, 64), "cuda", "torch")
    assert mem > 0 and "max_memory_allocated" in how
    assert bench.cuda_sync("cuda") is torch.cuda.synchronize
    counter = bench.EnergyCounter.detect("cuda")
    if counter is not None:  # NVML energy counter (Volta and newer, nvidia-ml-py installed)
        e, how = bench.measure_energy(CudaRunner(model), bench.random_batch(4, 64), counter, 4, min_s=0.5)
        assert isinstance(e, float) and e >= 0 and "NVML" in how


def test_grid_preset_measures_every_format_at_every_batch_and_size(fake_stack, tmp_path):
    """The characterisation grid (seed 003): every format at every batch and image size (not only
    the study's size), rows in benchmark_grid.csv, the main job's benchmark.csv untouched."""
    made, deps = fake_stack
    from unetq.config import get_preset
    from unetq.studies import characterise as ch

    cfg = get_preset("ci")
    s = ch.grid_settings(cfg, batch_sizes=[1, 2], image_sizes=[16, 48], archs=["unet"], time_cap_s=0.1,
                         max_call_s=0.2, energy_min_s=0.0)
    assert s["image_sizes"] == [16, 48] and s["grid"]  # the study's own 32 px is not added
    df = ch.run_grid(cfg, s, progress=False, deps=deps)
    got = df.groupby(["backend", "precision"])[["batch_size", "image_size"]].apply(
        lambda g: sorted(zip(g["batch_size"], g["image_size"])))
    assert all(v == [(1, 16), (1, 48), (2, 16), (2, 48)] for v in got), got
    key = df.set_index(["backend", "precision", "batch_size", "image_size"])["status"]
    assert key[("onnxruntime", "fp32", 2, 48)] == "measured" and key[("onnxruntime", "int8", 1, 16)] == "error"
    assert key[("torch", "fp16", 2, 48)] == "skipped"  # slower than max_call_s: bigger batches skipped
    assert (tmp_path / "results" / "benchmark_grid.csv").exists()
    assert not (tmp_path / "results" / "benchmark.csv").exists()
    with pytest.raises(ValueError, match="no image size"):
        ch.grid_settings(cfg, image_sizes=[])


def test_characterise_command_and_amp_over_batch(tmp_path, monkeypatch, capsys):
    """python -m unetq.cli.characterise: the grid with the command's sizes, then AMP training at
    every batch size (real, at the ci preset), rows in amp.csv per batch size."""
    from unetq.cli import characterise as cli
    from unetq.studies import characterise as ch

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("UNETQ_PUBLISHED_DIR", str(tmp_path))
    seen = {}

    def fake_grid(cfg, s, **kw):
        seen.update(s)
        return pd.DataFrame([dict(status="measured")])

    monkeypatch.setattr(ch, "run_grid", fake_grid)
    assert cli.main(["--preset", "ci", "--archs", "unet", "--batch-sizes", "1,2", "--image-sizes", "32,64",
                     "--max-call-s", "3", "--time-cap-s", "0.5"]) == 0
    assert seen["batch_sizes"] == [1, 2] and seen["image_sizes"] == [32, 64] and seen["archs"] == ["unet"]
    assert seen["max_call_s"] == 3.0 and seen["time_cap_s"] == 0.5 and seen["grid"]
    amp = pd.read_csv(tmp_path / "results" / "amp.csv")
    assert sorted(amp["batch_size"].unique()) == [1, 2] and set(amp["amp"]) == {"off", "bf16"}
    assert (amp.loc[amp["amp"] == "off", "speedup_vs_off"] == 1.0).all()
    assert "benchmark_grid.csv: 1 rows (1 measured)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--archs", "resnet"])
