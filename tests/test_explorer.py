"""Explorer logic without a browser: checkpoint listing, prediction cache, overlays, Dice,
table-plot specs, and the widget callbacks called directly."""
import numpy as np
import pandas as pd
import pytest
import torch

from unetq.metrics import error_classes, mask_scores
from unetq.studies import explorer
from unetq.studies.figures import error_image


def test_arch_of_and_list_checkpoints(tmp_path):
    for name in ("unet_ci.pt", "mbu_unet_ci.pt", "squeeze_unet_quick.pt", "unet_ci.resume.pt",
                 "ghost_unet_ci_lr0.01_ab12.pt", "notes.pt"):
        (tmp_path / name).write_bytes(b"")
    assert explorer.arch_of("mbu_unet_ci") == "mbu_unet" and explorer.arch_of("unet_ci") == "unet"
    assert explorer.arch_of("resnet_ci") is None
    ci = explorer.list_checkpoints("ci", tmp_path)
    assert sorted(ci["name"]) == ["ghost_unet_ci_lr0.01_ab12", "mbu_unet_ci", "unet_ci"]
    assert dict(zip(ci["name"], ci["arch"]))["mbu_unet_ci"] == "mbu_unet"
    assert len(explorer.list_checkpoints(None, tmp_path)) == 4
    assert explorer.list_checkpoints("paper", tmp_path).empty


def test_representations_filters_unavailable_and_bitpack():
    avail = pd.DataFrame([
        dict(backend="onnxruntime", precision="int8", available=True, reason=""),
        dict(backend="torch", precision="fp32", available=True, reason=""),
        dict(backend="tensorrt", precision="fp16", available=False, reason="no GPU"),
        dict(backend="bitpack", precision="binary", available=True, reason=""),
    ])
    assert explorer.representations("unet", avail) == ["torch/fp32", "onnxruntime/int8"]
    # the MBU-Net runs in PyTorch (fake quantization) and in the packed engine, not through ONNX
    assert explorer.representations("mbu_unet", avail) == ["torch/fp32", "bitpack/binary"]


def test_dice_iou_conventions():
    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [0, 0]], bool)
    assert mask_scores(a, b)["dice"] == pytest.approx(2 / 3)
    assert mask_scores(a, b)["iou"] == pytest.approx(1 / 2)
    z = np.zeros((2, 2), bool)
    assert mask_scores(z, z)["dice"] == 1.0 and mask_scores(a, z)["dice"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        mask_scores(a, np.zeros((3, 3)))


def test_overlay_and_error_map_colours():
    img = np.full((3, 2, 2), 0.5, np.float32)
    truth = np.array([[1, 1], [0, 0]], bool)
    pred = np.array([[1, 0], [1, 0]], bool)
    ov = explorer.overlay(img, truth, pred, alpha=1.0)
    assert ov.dtype == np.uint8 and ov.shape == (2, 2, 3)
    assert tuple(ov[0, 0]) == explorer.TP_RGB and tuple(ov[0, 1]) == explorer.FN_RGB
    assert tuple(ov[1, 0]) == explorer.FP_RGB and tuple(ov[1, 1]) == (127, 127, 127)
    em = error_image(error_classes(truth, pred))
    assert tuple(em[0, 0]) == (255, 255, 255) and tuple(em[1, 1]) == (0, 0, 0)
    with pytest.raises(ValueError, match="must match"):
        explorer.overlay(img, truth[:1], pred)


class ShiftRunner:
    """Logits = +5 where the red channel > 0.5, else -5: a known prediction."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return np.where(x[:, :1] > 0.5, 5.0, -5.0).astype(np.float32)


def _dataset():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(3):
        img = rng.random((3, 16, 16), dtype=np.float32)
        mask = (img[:1] > 0.5).astype(np.float32)
        mask[0, 0, :] = 1 - mask[0, 0, :]  # one wrong row, so Dice < 1
        items.append((img, mask))
    return items


def test_prediction_cache_builds_once_and_view_arrays():
    made = []
    runner = ShiftRunner()

    def factory(model, backend, precision, size, calib, workdir):
        made.append((model, backend, precision, size))
        return runner

    loads = []
    cache = explorer.PredictionCache(_dataset(), {"unet_ci": lambda: loads.append(1) or "MODEL"}, factory=factory,
                                     workdir="/tmp/unused")
    assert cache.image_size == 16
    v = explorer.view_arrays(cache, "unet_ci", "torch/fp32", 1)
    explorer.view_arrays(cache, "unet_ci", "torch/fp32", 1)
    assert made == [("MODEL", "torch", "fp32", 16)] and loads == [1] and runner.calls == 1
    img, mask = _dataset()[1]
    truth = mask[0] > 0.5
    pred = img[0] > 0.5
    assert v["dice"] == pytest.approx(mask_scores(pred, truth)["dice"]) and 0 < v["dice"] < 1
    assert v["overlay"].shape == (16, 16, 3) and v["prob"].min() >= 0 and v["prob"].max() <= 1
    with pytest.raises(IndexError, match="3 images"):
        explorer.view_arrays(cache, "unet_ci", "torch/fp32", 7)


def test_prediction_cache_remembers_failures():
    calls = []

    def factory(*a):
        calls.append(1)
        raise RuntimeError("no such engine")

    cache = explorer.PredictionCache(_dataset(), {"m": "M"}, factory=factory, workdir="/tmp/unused")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="no such engine"):
            cache.probability("m", "tensorrt/int8", 0)
    assert len(calls) == 1


def test_real_torch_runner_through_cache():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 1)
    cache = explorer.PredictionCache(_dataset(), {"unet_ci": model}, workdir="/tmp/unused")
    v = explorer.view_arrays(cache, "unet_ci", "torch/fp32", 0)
    with torch.no_grad():
        expect = torch.sigmoid(model(torch.from_numpy(_dataset()[0][0][None])))[0, 0].numpy()
    np.testing.assert_allclose(v["prob"], expect, rtol=1e-4, atol=1e-5)


def _table(tmp_path):
    df = pd.DataFrame(dict(arch=["unet", "unet", "ghost_unet"], format=["torch fp32", "onnxruntime int8", "torch fp32"],
                           latency_ms_per_image=[3.0, 1.0, 2.0], status=["measured"] * 3))
    df.to_csv(tmp_path / "benchmark.csv", index=False)
    return df


def test_table_plot_spec(tmp_path):
    df = _table(tmp_path)
    assert explorer.table_choices(tmp_path) == ["benchmark"]
    fig = explorer.plot_table(df, explorer.TablePlotSpec("benchmark", "format", "latency_ms_per_image", "arch"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "latency_ms_per_image (ms per image)" and ax.get_xlabel() == "format"
    with pytest.raises(ValueError, match="no column"):
        explorer.TablePlotSpec("benchmark", "nope", "latency_ms_per_image").validate(df)
    with pytest.raises(ValueError, match="numeric"):
        explorer.TablePlotSpec("benchmark", "arch", "status").validate(df)
    with pytest.raises(ValueError, match="kind"):
        explorer.TablePlotSpec("benchmark", "arch", "latency_ms_per_image", kind="pie").validate(df)


def test_explorer_widget_callbacks(tmp_path):
    _table(tmp_path)
    avail = pd.DataFrame([dict(backend="torch", precision="fp32", available=True, reason="")])
    cache = explorer.PredictionCache(_dataset(), {"unet_ci": "M"}, factory=lambda *a: ShiftRunner(),
                                     workdir="/tmp/unused")
    ex = explorer.Explorer(cache, avail, results=tmp_path)
    assert ex.fmt.options == (("torch fp32", "torch/fp32"),) and ex.fmt.value == "torch/fp32" and ex.index.max == 2
    assert ex.model.options == (("U-Net, preset ci", "unet_ci"),) and ex.model.value == "unet_ci"
    ex.index.value = 2  # the observer runs the callback
    assert ex.last_view["index"] == 2 and "Dice" in ex.status.value
    v = ex.on_image_change()
    assert v["dice"] == ex.last_view["dice"]
    assert ex.x.value == "format" and ex.y.value == "latency_ms_per_image" and ex.hue.value == "arch"
    assert ex.last_figure is not None
    ex.kind.value = "scatter"
    assert ex.spec().kind == "scatter"
    ex.y.value = None
    assert ex.on_plot_change() is None


def test_explorer_without_checkpoints(tmp_path):
    ex = explorer.Explorer(None, pd.DataFrame(columns=["backend", "precision", "available", "reason"]),
                           results=tmp_path, message="no checkpoint")
    assert ex.on_image_change() is None and "no checkpoint" in ex.status.value
    assert ex.table.value is None


def test_models_are_named_for_people_and_slow_formats_say_so(tmp_path):
    assert explorer.model_label("unet_quick") == "U-Net, preset quick"
    assert explorer.model_label("ghost_unet_quick_lr0.003_881214cd") == "Ghost U-Net, preset quick, lr 0.003, variant 881214cd"
    assert explorer.model_label("mbu_unet_ci_7deb9c11") == "MBU-Net, preset ci, variant 7deb9c11"
    (tmp_path / "unet_ci.pt").write_bytes(b"")
    assert list(explorer.list_checkpoints("ci", tmp_path)["label"]) == ["U-Net, preset ci"]
    # seconds per image: from the benchmark's measured latency, or its "too slow" estimate
    rows = [dict(preset="quick", arch="unet", backend="torch", precision="fp32", batch_size=1, image_size=96,
                 status="measured", latency_ms_per_image=12.0),
            dict(preset="quick", arch="unet", backend="torch", precision="bf16", batch_size=1, image_size=96,
                 status="measured", latency_ms_per_image=1500.0),
            dict(preset="quick", arch="unet", backend="torch", precision="fp16", batch_size=8, image_size=96,
                 status="skipped", reason="too slow on this machine: ~3.4 s per call of 8 images (> max_call_s 1.0 s)")]
    pd.DataFrame(rows).to_csv(tmp_path / "benchmark.csv", index=False)
    t = explorer.representation_timings("quick", root=tmp_path)
    assert t[("unet", "torch", "fp32")] == pytest.approx(0.012) and t[("unet", "torch", "fp16")] == pytest.approx(0.425)
    avail = pd.DataFrame([dict(backend="torch", precision=p, available=True, reason="") for p in ("fp32", "bf16", "fp16")])
    opts = dict((v, k) for k, v in explorer.format_options("unet", avail, t))
    assert opts["torch/fp32"] == "torch fp32"
    assert "slow" in opts["torch/bf16"] and "1.5 s per image" in opts["torch/bf16"]
    assert "slow" in opts["torch/fp16"] and "s per image" in opts["torch/fp16"]


def _two_presets(tmp_path):
    rows = [dict(preset=p, dataset="synthetic-v3", arch="unet", backend="torch", precision="fp32", batch_size=1,
                 image_size=s, status="measured", latency_ms_per_image=v)
            for p, s, v in (("quick", 96, 10.0), ("quick", 256, 80.0), ("ci", 32, 1.0))]
    rows.append(dict(rows[0], backend="onnxruntime", precision="int8", latency_ms_per_image=4.0))
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "benchmark.csv", index=False)
    return df


def test_table_plot_filters_instead_of_averaging(tmp_path):
    df = _two_presets(tmp_path)
    assert explorer.filter_choices(df) == {"preset": ["ci", "quick"], "image_size": [32, 96, 256],
                                           "format": ["onnxruntime int8", "torch fp32"]}
    filters = explorer.default_filters(df, preset="quick")
    assert filters["preset"] == "quick" and filters["image_size"] == 96
    spec = explorer.TablePlotSpec("benchmark", "format", "latency_ms_per_image", filters=filters)
    fig = explorer.plot_table(df, spec)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches if p.get_height() == p.get_height())
    assert heights == [4.0, 10.0]  # one preset, one image size: nothing averaged
    assert "preset quick" in fig.axes[0].get_title() and "image_size 96" in fig.axes[0].get_title()
    # every preset and size at once: the title says the points are means over them
    fig = explorer.plot_table(df, explorer.TablePlotSpec("benchmark", "format", "latency_ms_per_image",
                                                          filters={"preset": None, "image_size": None}))
    assert "mean over differing preset, image_size" in fig.axes[0].get_title()
    assert ".csv" not in fig._suptitle.get_text() and " by " in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="match the filters"):
        explorer.plot_table(df, explorer.TablePlotSpec("benchmark", "format", "latency_ms_per_image",
                                                        filters={"preset": "paper"}))


def test_explorer_table_tab_has_a_filter_per_varying_column(tmp_path):
    _two_presets(tmp_path)
    ex = explorer.Explorer(None, pd.DataFrame(columns=["backend", "precision", "available", "reason"]),
                           results=tmp_path, preset="quick")
    assert set(ex.filters) == {"preset", "image_size", "format"}
    assert ex.spec().filters["preset"] == "quick" and ex.last_figure is not None
    ex.filters["image_size"].value = 256
    assert "image_size 256" in ex.last_figure.axes[0].get_title()


def test_error_map_legend_matches_the_colours_drawn():
    """The legend of the error map is the colour each class is drawn in; true positives white."""
    from matplotlib.colors import to_hex

    from unetq.studies.figures import ERROR_COLOURS

    truth = np.array([[1, 1], [0, 0]], bool)
    pred = np.array([[1, 0], [1, 0]], bool)
    classes = error_classes(truth, pred)
    drawn = error_image(classes)
    for cls, name in enumerate(ERROR_COLOURS):
        (r, c), = np.argwhere(classes == cls)[:1]
        assert to_hex(drawn[r, c] / 255) == ERROR_COLOURS[name]
    assert ERROR_COLOURS["true positive"] == "#ffffff"
    v = dict(image=np.zeros((2, 2, 3), np.uint8), overlay=np.zeros((2, 2, 3), np.uint8), error=drawn, index=0,
             dice=0.5, iou=0.3, model="unet_ci", format="torch/fp32")
    fig = explorer.view_figure(v)
    legend = fig.legends[0]
    assert {t.get_text(): to_hex(h.get_facecolor()) for h, t in zip(legend.legend_handles, legend.get_texts())} \
        == ERROR_COLOURS
    assert "U-Net, preset ci" in fig._suptitle.get_text() and "unet_ci" not in fig._suptitle.get_text()


def test_notebook_text_names_the_error_map_colours_drawn():
    """Every notebook sentence that names the error-map colours names the ones drawn."""
    import re
    from pathlib import Path

    import nbformat

    from unetq.studies.figures import ERROR_COLOUR_NAMES

    said = {"crack found": "true positive", "correctly found crack": "true positive", "false alarm": "false positive",
            "crack missed": "false negative", "missed crack": "false negative"}
    seen = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            for colour, what in re.findall(r"(\w+)\s*[:=]\s*(" + "|".join(said) + ")", cell.source):
                seen += 1
                assert colour == ERROR_COLOUR_NAMES[said[what]], f"{path.name}: {colour!r} for {what!r}"
    assert seen >= 3


def test_static_view_without_a_model(tmp_path, monkeypatch):
    ex = explorer.Explorer(None, pd.DataFrame(columns=["backend", "precision", "available", "reason"]),
                           results=tmp_path, message="No trained model of preset 'ci' here")
    shown = []
    monkeypatch.setattr(explorer, "display", shown.append)
    assert explorer.show_static_view(ex) is None  # no value for the cell to print
    assert len(shown) == 1 and "No trained model" in shown[0].data


def test_a_missing_table_is_not_run_yet_not_absent_hardware(tmp_path):
    ex = explorer.Explorer(None, pd.DataFrame(columns=["backend", "precision", "available", "reason"]),
                           results=tmp_path, preset="quick")
    assert ex._table("benchmark") is None
    assert ex.last_error.startswith("not run yet") and "make all PRESET=quick" in ex.last_error
    assert "not measured on this machine" not in ex.last_error
