"""Report sections from synthetic result tables, and with tables missing."""
import numpy as np
import pandas as pd
import pytest

from unetq.studies import report


@pytest.fixture
def results(tmp_path, monkeypatch):
    d = tmp_path / "results"
    d.mkdir()
    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(d))
    return d


def _bench_rows():
    rows = []
    lat = {("torch", "fp32"): 10.0, ("onnxruntime", "fp32"): 6.0, ("onnxruntime", "int8"): 4.0}
    size = {("torch", "fp32"): 4.0, ("onnxruntime", "fp32"): 4.0, ("onnxruntime", "int8"): 1.0}
    for arch, f in (("unet", 1.0), ("ghost_unet", 0.5)):
        for (b, p), l in lat.items():
            for bs in (1, 8):
                ms = l * f * bs * (0.8 if bs > 1 else 1)
                rows.append(dict(preset="quick", arch=arch, width=16, backend=b, precision=p, batch_size=bs,
                                 image_size=128, status="measured", latency_ms=ms, latency_ms_per_image=ms / bs,
                                 throughput_ips=1000 * bs / ms, peak_mem_mb=size[(b, p)] * 3 * f,
                                 model_size_mb=size[(b, p)] * f, mem_method="RSS", cpu="X", cores=2,
                                 threads_pinned=2, gpu="none"))
        rows.append(dict(preset="quick", arch=arch, width=16, backend="torch", precision="fp32", batch_size=1,
                         image_size=64, status="measured", latency_ms=2.0 * f, latency_ms_per_image=2.0 * f,
                         throughput_ips=500 / f, peak_mem_mb=1, model_size_mb=4 * f))
        rows.append(dict(preset="quick", arch=arch, width=16, backend="tensorrt", precision="int8", batch_size=1,
                         image_size=128, status="not measured on this machine", reason="tensorrt not installed"))
    from unetq.bench import add_ratios

    return add_ratios(pd.DataFrame(rows))


def _accuracy_rows():
    d = {("unet", "torch", "fp32"): 0.66, ("unet", "onnxruntime", "fp32"): 0.66, ("unet", "onnxruntime", "int8"): 0.65,
         ("ghost_unet", "torch", "fp32"): 0.67, ("ghost_unet", "onnxruntime", "fp32"): 0.67,
         ("ghost_unet", "onnxruntime", "int8"): 0.32}
    return pd.DataFrame([dict(preset="quick", arch=a, backend=b, precision=p, loss=1 - v, iou=v * 0.75, dice=v)
                         for (a, b, p), v in d.items()])


def test_load_table_missing_corrupt_and_preset(results):
    t = report.load_table("benchmark")
    assert t.df is None and report.NOT_RUN in t.message and "benchmark.csv" in t.message
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    assert len(report.load_table("benchmark", "quick").df) == 16
    t = report.load_table("benchmark", "paper")
    assert t.df is None and "quick" in t.message
    (results / "amp.csv").write_bytes(b"\x00\x01garbage\n\"unclosed")
    t = report.load_table("amp")
    assert t.df is None and "amp.csv" in t.message
    pd.DataFrame({"a": [1]}).to_csv(results / "mbu_a.csv", index=False)
    pd.DataFrame({"a": [2]}).to_csv(results / "mbu_b.csv", index=False)
    g = report.load_table("mbu_*").df
    assert list(g["table"]) == ["mbu_a", "mbu_b"]


def test_every_section_survives_missing_tables(results):
    secs = report.build_report("quick")
    assert len(secs) == 13 and secs[0].title == "The answer"
    assert all(not s.ok and report.NOT_RUN in s.message for s in secs)
    st = report.section_status(secs)
    assert (st["shown"] == "no").all()


def test_sections_from_tables(results):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    _accuracy_rows().to_csv(results / "accuracy_by_format.csv", index=False)
    lat = report.latency_by_format("quick")
    assert lat.ok and lat.figure is not None
    assert lat.table.loc["onnxruntime int8", "ghost_unet"] == pytest.approx(2.0)
    ax = lat.figure.axes[0]
    assert "ms" in ax.get_ylabel() and ax.get_xlabel()
    mem = report.memory_by_format("quick")
    assert mem.ok and all(a.get_ylabel() for a in mem.figure.axes)
    acc = report.accuracy_by_format("quick")
    assert acc.ok and acc.table.loc[("ghost_unet", "onnxruntime int8"), "dice"] == pytest.approx(0.32)
    thr = report.throughput_vs_batch("quick")
    assert thr.ok and thr.figure.axes[0].get_ylabel() == "throughput (images/s)"
    sp = report.speedup_table("quick")
    assert sp.table.loc[("unet", 1), "onnxruntime int8"] == pytest.approx(2.5)
    assert sp.table.loc[("unet", 1), "torch fp32"] == pytest.approx(1.0)
    sweep = report.image_size_sweep("quick")
    assert sweep.ok and list(sweep.table.columns) == [64, 128]
    assert not report.amp_training("quick").ok  # no amp.csv
    # the tensorrt row (not measured) never shows up as a measurement
    assert "tensorrt int8" not in lat.table.index


def test_recommendations_answers_from_tables(results):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    _accuracy_rows().to_csv(results / "accuracy_by_format.csv", index=False)
    rec = report.recommendations("quick").table.set_index("priority")
    assert (rec.loc["lowest latency", "arch"], rec.loc["lowest latency", "representation"]) == \
        ("ghost_unet", "onnxruntime int8")
    assert rec.loc["smallest model", "representation"] == "onnxruntime int8"
    assert (rec.loc["best accuracy", "arch"], rec.loc["best accuracy", "dice"]) == ("ghost_unet", 0.67)
    # fastest with Dice within 0.01 of 0.67: Ghost INT8 collapsed (0.32); unet INT8 (0.65) too far;
    # ghost onnxruntime fp32 (3 ms) is the answer
    near = rec.loc["fastest at (near) best accuracy"]
    assert (near["arch"], near["representation"]) == ("ghost_unet", "onnxruntime fp32")
    tight = report.recommendations("quick", latency_budget_ms=2.5).table.set_index("priority")
    within = tight.loc["best accuracy within a latency budget"]
    assert (within["arch"], within["representation"]) == ("ghost_unet", "onnxruntime int8")
    none = report.recommendations("quick", latency_budget_ms=0.1).table.set_index("priority")
    assert none.loc["best accuracy within a latency budget", "value"] == report.NOT_RUN


def test_accuracy_schema_of_the_quantization_notebook(results):
    """accuracy_by_format.csv as unetq.deploy.study writes it: status ok / not measured, split,
    several INT8 configurations named by int8_name."""
    acc = _accuracy_rows().assign(split="test", status="ok", int8_name="")
    acc.loc[acc.precision == "int8", "int8_name"] = "default"
    extra = acc[acc.precision == "int8"].assign(int8_name="percentile", dice=0.1)
    na = pd.DataFrame([dict(preset="quick", arch="unet", backend="tensorrt", precision="int8", split="test",
                            status="not measured on this machine: tensorrt not installed")])
    val = acc.assign(split="val", dice=0.99)
    pd.concat([acc, extra, na, val]).to_csv(results / "accuracy_by_format.csv", index=False)
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    s = report.accuracy_by_format("quick")
    assert s.ok and ("unet", "onnxruntime int8 (percentile)") in s.table.index
    assert s.table.loc[("unet", "onnxruntime int8"), "dice"] == pytest.approx(0.65)  # test split only
    assert not any("tensorrt" in f for _, f in s.table.index)
    c = report.candidates("quick").df.set_index(["arch", "backend", "precision"])
    assert c.loc[("unet", "onnxruntime", "int8"), "dice"] == pytest.approx(0.65)  # the default INT8


def test_recommendations_fall_back_on_training_dice(results):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    pd.DataFrame([dict(preset="quick", arch="unet", lr=1e-3, val_loss=0.3, test_dice=0.61, test_iou=0.45),
                  dict(preset="quick", arch="unet", lr=1e-2, val_loss=0.2, test_dice=0.55, test_iou=0.4)]
                 ).to_csv(results / "training.csv", index=False)
    c = report.candidates("quick").df.set_index(["arch", "backend", "precision"])
    assert c.loc[("unet", "torch", "fp32"), "dice"] == pytest.approx(0.55)  # the lr chosen on validation (1e-2)
    assert np.isnan(c.loc[("unet", "onnxruntime", "int8"), "dice"])
    lr = report.lr_sweep("quick")
    assert lr.ok and list(lr.table.index) == [1e-2, 1e-3]


def test_pareto_front_and_mbu_section(results):
    df = pd.DataFrame(dict(config=list("abcde"), latency_ms=[1, 2, 3, 4, 5], test_dice=[0.5, 0.4, 0.7, 0.7, 0.9]))
    front = report.pareto_front(df, "latency_ms", "test_dice")
    assert list(front["config"]) == ["a", "c", "e"]
    fast = report.pareto_front(df.assign(fps=1000 / df["latency_ms"]), "fps", "test_dice", cost_higher_better=True)
    assert sorted(fast["config"]) == ["a", "c", "e"]
    df.assign(preset="quick").to_csv(results / "mbu_masking.csv", index=False)
    s = report.mbu_pareto("quick")
    assert s.ok and list(s.table["config"]) == ["a", "c", "e"]
    assert s.figure.axes[0].get_xlabel() == "latency_ms: latency (ms)"
    # a *pareto* table in E's layout (frames per second, test Dice, masked layers) is preferred
    pd.DataFrame(dict(preset="quick", masked_layers=[0, 4, 8, 12], fps=[10.0, 9.0, 6.0, 3.0],
                      test_dice=[0.40, 0.55, 0.54, 0.60])).to_csv(results / "mbu_pareto.csv", index=False)
    s = report.mbu_pareto("quick")
    assert "mbu_pareto" in s.text and list(s.table["masked_layers"]) == [0, 4, 12]


def test_amp_section(results):
    pd.DataFrame([dict(preset="quick", arch="unet", amp=m, device="cpu", batch_size=8, epoch_time_s=t, peak_mem_mb=pm,
                       speedup_vs_off=s, mem_reduction_vs_off=r)
                  for m, t, pm, s, r in (("off", 10, 100, 1.0, 1.0), ("bf16", 8, 70, 1.25, 1.43))]
                 ).to_csv(results / "amp.csv", index=False)
    s = report.amp_training("quick")
    assert s.ok and "speed-up" in s.figure.axes[0].get_ylabel()


def test_section_display_and_figure_save(results, tmp_path):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    s = report.latency_by_format("quick")
    p = s.save_figure(tmp_path / "figs")
    assert p.exists() and p.stat().st_size > 1000
    s._ipython_display_()  # plain-text fallbacks outside a notebook: must not raise
    report.Section("x", message="not run")._ipython_display_()


def test_mbu_accuracy_feeds_the_candidates(results):
    rows = _bench_rows()
    mbu = rows[(rows.arch == "unet") & (rows.backend == "torch") & (rows.precision == "fp32")].assign(arch="mbu_unet")
    packed = mbu.assign(backend="bitpack", precision="binary", latency_ms_per_image=0.5, model_size_mb=0.1)
    pd.concat([rows, mbu, packed]).to_csv(results / "benchmark.csv", index=False)
    pd.DataFrame([dict(preset="quick", config="mbu", test_dice=0.58, test_iou=0.41, packed_dice=0.57),
                  dict(preset="quick", config="binary", test_dice=0.30, test_iou=0.2)]
                 ).to_csv(results / "mbu_accuracy.csv", index=False)
    c = report.candidates("quick").df.set_index(["arch", "backend", "precision"])
    assert c.loc[("mbu_unet", "torch", "fp32"), "dice"] == pytest.approx(0.58)
    assert c.loc[("mbu_unet", "bitpack", "binary"), "dice"] == pytest.approx(0.57)
    assert "mbu_accuracy" in c.loc[("mbu_unet", "bitpack", "binary"), "accuracy_source"]


def test_answer_states_conditions_and_ties(results):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    _accuracy_rows().to_csv(results / "accuracy_by_format.csv", index=False)
    rows = [dict(preset="quick", dataset="synthetic-v3", arch=a, lr=1e-3, image_size=128, width=16, epochs=20,
                 patience=4, train_seed=s, test_dice=d + 0.004 * s, test_iou=0.5)
            for a, d in (("unet", 0.66), ("ghost_unet", 0.665)) for s in range(3)]
    pd.DataFrame(rows).to_csv(results / "training.csv", index=False)
    rec = report.recommendations("quick").table.set_index("priority")
    # ghost fp32 0.67 vs unet fp32 0.66: within 2 x the seed std (0.004): a tie, and said so
    assert "unet" in rec.loc["best accuracy", "ties within the seed spread"]
    ans = report.answer("quick")
    assert ans.ok and "3 training seeds" in ans.text and "128x128" in ans.text and "Most accurate" in ans.text
    assert "±" in ans.text
