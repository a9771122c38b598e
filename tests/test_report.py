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


def test_every_section_survives_missing_tables(results, monkeypatch):
    monkeypatch.setattr(report.machine, "cuda_available", lambda: False)
    secs = report.build_report("quick")
    assert len(secs) == 17 and secs[0].title == "The answer"
    assert all(not s.ok for s in secs)
    st = report.section_status(secs)
    assert (st["shown"] == "no").all()


def test_missing_sections_say_not_run_yet_with_the_command(results, monkeypatch):
    """"Not measured on this machine" only for absent hardware; work that could run here is
    "not run yet" with the command, its preset included."""
    monkeypatch.setattr(report.machine, "cuda_available", lambda: False)
    secs = {s.title: s for s in report.build_report("quick")}
    gpu = secs.pop("Benchmarks on GPUs")
    assert gpu.message.startswith(report.NOT_MEASURED) and "CUDA" in gpu.message
    for s in secs.values():
        assert s.message.startswith(report.NOT_RUN_YET), s.message
        assert report.NOT_MEASURED not in s.message, s.message
        assert any(f"`make {c} PRESET=quick`" in s.message for c in ("all", "lr-sweep", "characterise", "deploy-seeds", "mbu-pareto")), \
            s.message
    st = report.section_status(report.build_report("quick")).set_index("section")
    assert st.loc["Benchmarks on GPUs", "status"] == report.NOT_MEASURED
    assert st.loc["Latency by format", "status"] == report.NOT_RUN_YET
    assert "make all PRESET=quick" in st.loc["Latency by format", "reason"]
    # a machine with a GPU that has not run the GPU benchmark: not run yet
    monkeypatch.setattr(report.machine, "cuda_available", lambda: True)
    assert report.gpu_tables("paper").message.startswith(report.NOT_RUN_YET)
    assert "make all PRESET=paper" in report.gpu_tables("paper").message
    # benchmark rows that exist only as "not measured on this machine" (TensorRT absent): said so
    rows = _bench_rows()
    rows[rows.backend == "tensorrt"].to_csv(results / "benchmark.csv", index=False)
    lat = report.latency_by_format("quick")
    assert lat.message.startswith(report.NOT_MEASURED) and "tensorrt not installed" in lat.message
    # the learning-rate sweep names its own command
    pd.DataFrame([dict(preset="quick", arch="unet", lr=1e-3, test_dice=0.5)]).to_csv(results / "training.csv",
                                                                                     index=False)
    assert "`make lr-sweep PRESET=quick`" in report.lr_sweep("quick").message


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
    assert none.loc["best accuracy within a latency budget", "value"] == report.NO_CANDIDATE


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


def test_frontier_from_scratch_section(results):
    s = report.mbu_frontier_from_scratch("quick")
    assert not s.ok and "`make mbu-pareto PRESET=quick`" in s.message
    rows = pd.DataFrame(dict(preset="quick", dataset="synthetic-v3", config=["k=0", "k=4", "k=8"], width=8,
                             image_size=64, masked_layers=[0, 4, 8], lr=1e-2, seeds=3,
                             test_dice_mean=[0.80, 0.83, 0.82], test_dice_std=[0.01, 0.02, 0.01],
                             fps=[300.0, 250.0, 200.0], median_ms=[3.3, 4.0, 5.0], threads=2, cpu="AMD EPYC",
                             on_frontier=[True, True, False], load_note=["", "", ""]))
    rows.to_csv(results / "mbu_ablation_frontier.csv", index=False)
    s = report.mbu_frontier_from_scratch("quick")
    assert s.ok and list(s.table["masked_layers"]) == [0, 4, 8]
    assert "3 of 13 masked-layer counts recorded (k = 0, 4, 8)" in s.text and "64 px" in s.text
    ax = s.figure.axes[0]
    assert "frames per second" in ax.get_xlabel() and "mean ± std" in ax.get_ylabel()
    # the frontier line joins k=0 and k=4 only (k=8 is slower and less accurate than k=4)
    line = [l for l in ax.get_lines() if l.get_label() == "Pareto frontier"][0]
    assert sorted(line.get_xdata()) == [250.0, 300.0]
    # with the timing's quartile spread, horizontal bars span it (as frame rates)
    rows.assign(iqr_ms=[1.0, 1.0, 1.0]).to_csv(results / "mbu_ablation_frontier.csv", index=False)
    ax = report.mbu_frontier_from_scratch("quick").figure.axes[0]
    bars = ax.containers[0]
    assert bars.has_xerr and "interquartile range of the timing" in bars.get_label()
    segs = bars[2][0].get_segments()  # the x error bars, one segment per point: k=0 first
    assert min(x for x, _ in segs[0]) == pytest.approx(1e3 / 3.8) and max(x for x, _ in segs[0]) == pytest.approx(1e3 / 2.8)
    # a timing taken under load says so
    rows.assign(load_note="other processes used 1.0 core(s)").to_csv(results / "mbu_ablation_frontier.csv",
                                                                    index=False)
    assert "other processes used 1.0 core(s)" in report.mbu_frontier_from_scratch("quick").text
    # frame rates not told apart by the timing: said so
    rows.assign(speed_note="the frame rates of all k lie within 3 %").to_csv(results / "mbu_ablation_frontier.csv",
                                                                             index=False)
    assert "Note: the frame rates of all k lie within 3 %." in report.mbu_frontier_from_scratch("quick").text


def test_amp_section(results):
    pd.DataFrame([dict(preset="quick", arch="unet", amp=m, device="cpu", batch_size=8, epoch_time_s=t, peak_mem_mb=pm,
                       speedup_vs_off=s, mem_reduction_vs_off=r)
                  for m, t, pm, s, r in (("off", 10, 100, 1.0, 1.0), ("bf16", 8, 70, 1.25, 1.43))]
                 ).to_csv(results / "amp.csv", index=False)
    s = report.amp_training("quick")
    assert s.ok and "speed-up" in s.figure.axes[0].get_ylabel()
    assert not report.amp_over_batch("quick").ok and "make characterise PRESET=quick" in \
        report.amp_over_batch("quick").message


def test_amp_over_batch_never_averages_batch_sizes(results):
    """amp.csv with a batch sweep: the AMP bars show the preset's own batch size (not a silent
    mean over batch sizes), the sweep gets its own lines over batch size."""
    rows = [dict(preset="quick", dataset="d", arch=a, amp=m, device="cpu", batch_size=b, epoch_time_s=10 / s,
                 peak_mem_mb=100 / s, speedup_vs_off=s, mem_reduction_vs_off=s)
            for a in ("unet", "ghost_unet") for b in (1, 8, 32)
            for m, s in (("off", 1.0), ("bf16", 1.0 + b / 100))]
    pd.DataFrame(rows).to_csv(results / "amp.csv", index=False)
    bars = report.amp_training("quick")
    assert bars.ok and set(bars.table["batch_size"]) == {8} and "batch 8" in bars.text  # quick trains at batch 8
    assert bars.table.loc[bars.table["amp"] == "bf16", "speedup_vs_off"].tolist() == [1.08, 1.08]
    sweep = report.amp_over_batch("quick")
    assert sweep.ok and sorted(sweep.table["batch_size"].unique()) == [1, 8, 32]
    assert set(sweep.table["amp"]) == {"bf16"} and "batch size" in sweep.figure.axes[0].get_xlabel()


def test_batch_image_grid_section(results):
    from unetq.bench import add_ratios

    rows = []
    for arch in ("unet", "mbu_unet"):
        for size in (128, 256):
            for b in (1, 2, 4):
                for backend, precision, ms in (("torch", "fp32", 10.0), ("onnxruntime", "int8", 4.0)):
                    t = ms * b * (size / 128) ** 2
                    rows.append(dict(preset="quick", dataset="d", arch=arch, width=16, backend=backend,
                                     precision=precision, batch_size=b, image_size=size, status="measured",
                                     latency_ms=t, latency_ms_per_image=t / b, throughput_ips=1000 * b / t,
                                     peak_mem_mb=10.0, model_size_mb=1.0))
    rows.append(dict(rows[-1], batch_size=8, status="skipped", reason="too slow on this machine"))
    assert not report.batch_image_grid("quick").ok  # no grid table: the command
    add_ratios(pd.DataFrame(rows)).to_csv(results / "benchmark_grid.csv", index=False)
    s = report.batch_image_grid("quick")
    assert s.ok and len(s.figure.axes) == 4  # image sizes x architectures
    assert {ax.get_title() for ax in s.figure.axes} == {"unet, 128x128 px", "unet, 256x256 px",
                                                        "mbu_unet, 128x128 px", "mbu_unet, 256x256 px"}
    colours = {t.get_text(): h.get_color() for h, t in zip(s.figure.legends[0].legend_handles,
                                                            s.figure.legends[0].get_texts())}
    assert colours == report.format_palette(list(colours))  # the study's one colour per representation
    assert len(s.table) == 12 and "1 combinations not measured" in s.text


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


def _mbu_rows():
    return pd.DataFrame([dict(preset="quick", config="mbu", train_seed=s, test_loss=0.3, test_iou=0.5 + 0.01 * s,
                              test_dice=0.6 + 0.01 * s, packed_dice=0.6 + 0.01 * s, packed_iou=0.5 + 0.01 * s)
                         for s in range(2)] + [dict(preset="quick", config="binary", test_dice=0.1, test_iou=0.05)])


def _amp_rows():
    return pd.DataFrame([dict(preset="quick", arch=a, amp=m, device="cpu", batch_size=8, epoch_time_s=t, peak_mem_mb=pm,
                              speedup_vs_off=s, mem_reduction_vs_off=r)
                         for a in ("unet", "ghost_unet")
                         for m, t, pm, s, r in (("off", 10, 100, 1.0, 1.0), ("bf16", 8, 70, 1.25, 1.43))])


def _all_tables(results):
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    _accuracy_rows().to_csv(results / "accuracy_by_format.csv", index=False)
    _mbu_rows().to_csv(results / "mbu_accuracy.csv", index=False)
    _amp_rows().to_csv(results / "amp.csv", index=False)
    pd.DataFrame(dict(preset="quick", masked_layers=[0, 4, 8], fps=[10.0, 9.0, 6.0],
                      test_dice=[0.40, 0.55, 0.54])).to_csv(results / "mbu_pareto.csv", index=False)


def _legend_colours(fig):
    """{label: hex colour} of every legend entry of ``fig`` (figure and axes legends)."""
    from matplotlib.colors import to_hex

    out = {}
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for leg in legends:
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            c = h.get_facecolor() if hasattr(h, "get_facecolor") else None
            if c is None or (hasattr(c, "__len__") and len(c) == 0) or getattr(h, "get_color", None):
                c = h.get_color() if hasattr(h, "get_color") else c
            out[t.get_text()] = to_hex(c[0] if hasattr(c, "ndim") and c.ndim == 2 else c)
    return out


def test_one_colour_per_format_in_every_figure_and_mbu_in_accuracy(results):
    from unetq.deploy.availability import SUPPORTED
    from unetq.studies.figures import FORMAT_COLOURS

    # every representation of the study has its own colour
    keys = [f"{b} {p}" for b, ps in SUPPORTED.items() for p in ps]
    assert set(keys) <= set(FORMAT_COLOURS) and len(set(FORMAT_COLOURS.values())) == len(FORMAT_COLOURS)
    _all_tables(results)
    figs = {name: f("quick").figure for name, f in (("latency", report.latency_by_format),
                                                     ("memory", report.memory_by_format),
                                                     ("accuracy", report.accuracy_by_format),
                                                     ("throughput", report.throughput_vs_batch))}
    for name, fig in figs.items():
        colours = _legend_colours(fig)
        assert colours, name
        for label, colour in colours.items():
            assert colour == FORMAT_COLOURS[label], (name, label, colour)
    # the MBU-Net (notebook 05's mbu_accuracy.csv) is a panel of the accuracy figure
    acc = report.accuracy_by_format("quick")
    assert "mbu_unet" in [ax.get_title() for ax in acc.figure.axes]
    assert acc.table.loc[("mbu_unet", "bitpack binary"), "dice"] == pytest.approx(0.605)
    assert any("mbu_accuracy.csv" in n for n in acc.notes)


def test_figures_have_sentence_titles_legends_outside_and_no_overlapping_labels(results):
    _all_tables(results)
    secs = [s for s in report.build_report("quick") if s.figure is not None]
    assert len(secs) >= 6
    for s in secs:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = s.figure
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        title = fig._suptitle.get_text() if fig._suptitle else ""
        assert " " in title and ".csv" not in title, (s.title, title)
        assert not any(".csv" in ax.get_title() for ax in fig.axes), s.title
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for leg in legends:
            lb = leg.get_window_extent(renderer)
            assert not any(lb.overlaps(b) for b in boxes), f"{s.title}: legend over the data"
            if fig._suptitle:
                assert not lb.overlaps(fig._suptitle.get_window_extent(renderer)), f"{s.title}: legend over the title"
        for ax in fig.axes:
            labels = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:]), \
                f"{s.title}: x tick labels overlap"


def test_section_tables_have_units_and_no_index_column(results):
    from unetq.cli.pipeline import check_page

    _all_tables(results)
    shown = [s for s in report.build_report("quick") if s.ok and s.table is not None]
    assert len(shown) >= 6
    for s in shown:
        page = f"<html><head><title>{s.title}</title></head><body>{s.table_html()}</body></html>"
        assert check_page(page, index=True, units=True) == [], s.title
    # what the sections showed before: the DataFrame as pandas renders it (index column, no units)
    lat = report.latency_by_format("quick")
    old = f"<html><head><title>x y</title></head><body>{lat.table.reset_index(drop=True)._repr_html_()}</body></html>"
    problems = check_page(old, index=True, units=True)
    assert any("index column" in p for p in problems) and any("no unit" in p for p in problems)


def test_report_notebook_displays_every_section(results):
    """The section-status table lists every section of build_report as shown or not: the report
    notebook must display each of them."""
    import re
    from pathlib import Path

    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "08_report.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    displayed = set(re.findall(r'by_title\["([^"]+)"\]', code))
    titles = {s.title for s in report.build_report("quick")}
    assert titles == displayed, f"computed but not displayed: {titles - displayed}; unknown: {displayed - titles}"


def test_choose_preset_falls_back_to_the_committed_study(results):
    shown, why = report.choose_preset("ci")
    assert shown == "ci" and "`make all`" in why  # nothing anywhere: the first step
    _all_tables(results)
    shown, why = report.choose_preset("ci")
    assert shown == "quick"
    assert "`ci`" in why and "`quick`" in why and "make all PRESET=ci" in why
    assert report.choose_preset("quick")[0] == "quick"
    # the larger study wins over a smoke test when the notebook's own preset has nothing
    pd.concat([_bench_rows(), _bench_rows().assign(preset="ci")]).to_csv(results / "benchmark.csv", index=False)
    assert report.choose_preset("paper")[0] == "quick"
    assert report.choose_preset("ci")[0] == "ci"
    # the notebook shows the chosen preset's sections
    assert report.latency_by_format(report.choose_preset("paper")[0]).ok


def test_smoke_test_notice_only_for_ci(capsys):
    from unetq.studies.notice import show_preset_notice, smoke_test_notice

    assert "Smoke-test output" in smoke_test_notice("ci") and "make all PRESET=quick" in smoke_test_notice("ci")
    assert smoke_test_notice("quick") == "" and smoke_test_notice("paper") == ""
    assert show_preset_notice("quick") is None and show_preset_notice("ci", "a `note`") is None


def test_every_notebook_labels_ci_output_as_a_smoke_test():
    """Each committed notebook calls the notice right after its configuration, and its stored
    (ci) outputs start with the smoke-test line."""
    from pathlib import Path

    import nbformat

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
        assert "show_preset_notice(" in first.source or "report.show_preset(" in first.source, path.name
        html_out = "".join(o.get("data", {}).get("text/html", "") for o in first.outputs[:1])
        assert "Smoke-test output" in html_out, path.name


def test_seed_stability_recomputes_the_picks_per_seed(results):
    """The recommendation recomputed from each training seed's accuracies: a pick the seeds agree
    on is stable, one that flips is said to be decided by the noise of training."""
    _bench_rows().to_csv(results / "benchmark.csv", index=False)
    _accuracy_rows().to_csv(results / "accuracy_by_format.csv", index=False)
    assert "make deploy-seeds PRESET=quick" in report.seed_stability("quick").message
    rows = []
    for seed, ghost in ((0, 0.70), (1, 0.60)):  # the most accurate architecture flips between seeds
        for (a, b, p), v in {("unet", "torch", "fp32"): 0.66, ("unet", "onnxruntime", "fp32"): 0.66,
                             ("unet", "onnxruntime", "int8"): 0.65, ("ghost_unet", "torch", "fp32"): ghost,
                             ("ghost_unet", "onnxruntime", "fp32"): ghost,
                             ("ghost_unet", "onnxruntime", "int8"): 0.3}.items():
            rows.append(dict(preset="quick", dataset="d", arch=a, split="test", backend=b, precision=p, config=p,
                             train_seed=seed, int8_name="default" if p == "int8" else "", status="ok", dice=v,
                             iou=0.75 * v))
    pd.DataFrame(rows).to_csv(results / "accuracy_by_format_seeds.csv", index=False)
    c0 = report.candidates("quick", train_seed=0).df.set_index(["arch", "format"])
    assert c0.loc[("ghost_unet", "torch fp32"), "dice"] == pytest.approx(0.70)
    assert "seed 0" in c0.loc[("ghost_unet", "torch fp32"), "accuracy_source"]
    pd.DataFrame([dict(preset="quick", dataset="d", arch="unet", lr=1e-3, train_seed=sd, val_loss=0.3, test_dice=v)
                  for sd, v in ((0, 0.65), (1, 0.67))]).to_csv(results / "training.csv", index=False)  # noise 0.014
    main = report.recommendations("quick").table.set_index("priority")
    assert main.loc["best accuracy", "arch"] == "unet"  # mean over seeds: unet 0.66 > ghost 0.65
    from unetq.studies import recommend

    spread_reads = []
    real_spread = recommend.seed_spread
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recommend, "seed_spread", lambda *a, **k: spread_reads.append(1) or real_spread(*a, **k))
        s = report.seed_stability("quick")
    assert len(spread_reads) == 1  # training.csv read once, not once per seed
    assert s.ok and {"seed 0", "seed 1", "mean pick qualifies at every seed"} <= set(s.table.columns)
    best = s.table.set_index("priority").loc["best accuracy"]
    assert best["seed 0"].startswith("ghost_unet") and best["seed 1"].startswith("unet")
    # at seed 0 the mean pick (0.66) is 0.04 below that seed's pick: more than 2 x 0.014, no tie
    assert best["mean pick qualifies at every seed"] == "no" and best["same architecture at every seed"] == "no"
    assert "still qualifies at every seed" in s.text
