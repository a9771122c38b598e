"""unetq.viz: figures come back (never shown), axes carry labels, the error map is right."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from unetq.metrics import error_classes  # noqa: E402
from unetq.studies import architectures as viz  # noqa: E402
from unetq.studies.figures import ERROR_COLOURS  # noqa: E402


def _history(losses=(1.2, 0.9, 0.95)):
    n = len(losses)
    return pd.DataFrame(dict(epoch=range(1, n + 1), train_loss=np.linspace(1.5, 0.8, n),
                             val_loss=losses, val_iou=np.linspace(0.1, 0.4, n),
                             val_dice=np.linspace(0.2, 0.6, n)))


def test_plot_history_labels_and_best_epoch():
    fig = viz.plot_history(_history())
    ax_loss, ax_m = fig.axes
    assert "loss" in ax_loss.get_ylabel() and ax_loss.get_xlabel() == "epoch"
    assert "(0-1)" in ax_m.get_ylabel()
    assert any("best (epoch 2)" in t.get_text() for t in ax_loss.get_legend().get_texts())
    assert ax_loss.get_yscale() == "linear"
    plt.close(fig)
    # a diverging run (lr 1e-1 in seed 000 reaches 1e40) gets a log axis; records work too
    fig = viz.plot_history(_history((1.0, 1e6, np.nan)).to_dict("records"))
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    with pytest.raises(ValueError, match="val_dice"):
        viz.plot_history(pd.DataFrame(dict(epoch=[1], train_loss=[1.0], val_loss=[1.0])))


def test_error_map_classes():
    mask = np.array([[[1, 1, 0, 0]]], np.float32)
    prob = np.array([[[0.9, 0.1, 0.8, 0.2]]], np.float32)
    assert error_classes(mask[0] >= 0.5, prob[0] > 0.5).tolist() == [[1, 3, 2, 0]]  # TP, FN, FP, TN


def test_plot_predictions_layout():
    rng = np.random.default_rng(0)
    imgs = rng.random((3, 3, 16, 16)).astype(np.float32)
    masks = (rng.random((3, 1, 16, 16)) > 0.8).astype(np.float32)
    probs = rng.random((3, 1, 16, 16)).astype(np.float32)
    fig = viz.plot_predictions(imgs, masks, probs, n=4)  # only 3 available
    image_axes = [a for a in fig.axes if a.images and a.get_label() != "<colorbar>"]
    assert len(image_axes) == 12
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(ERROR_COLOURS)
    plt.close(fig)
    with pytest.raises(ValueError, match="differ in length"):
        viz.plot_predictions(imgs, masks[:2], probs)


def test_plot_amp_units_and_factors():
    df = pd.DataFrame(dict(amp=["off", "bf16"], autocast_dtype=["float32", "bfloat16"],
                           device=["cpu", "cpu"], epoch_time_s=[10.0, 8.0], peak_mem_mb=[200.0, 120.0],
                           peak_mem_kind=["cpu_peak_rss_increase"] * 2,
                           speedup_vs_off=[1.0, 1.25], mem_reduction_vs_off=[1.0, 200 / 120]))
    fig = viz.plot_amp(df)
    ax_t, ax_m = fig.axes
    assert "(s)" in ax_t.get_ylabel() and "(MiB)" in ax_m.get_ylabel() and "RSS" in ax_m.get_ylabel()
    labels = [t.get_text() for t in ax_t.texts]
    assert labels == ["1.00x", "1.25x"]
    assert [t.get_text() for t in ax_m.texts] == ["1.00x", "1.67x"]
    plt.close(fig)
    with pytest.raises(ValueError, match="peak_mem_mb"):
        viz.plot_amp(df.drop(columns="peak_mem_mb"))


def test_one_palette_for_formats_and_engines():
    """A representation has one colour wherever it is named: in the report's ``format`` labels,
    the explorer's ``backend/precision`` and notebook 05's engine cases."""
    from matplotlib.colors import to_hex

    from unetq.studies import mbu
    from unetq.studies.figures import FORMAT_COLOURS, format_colour, format_key, format_palette

    assert format_key("onnxruntime int8") == format_key("U-Net ONNX Runtime INT8") == "onnxruntime int8"
    assert format_key("torch/fp32") == format_key("U-Net torch FP32") == "torch fp32"
    assert format_key("MBU-Net bitpack (k=4)") == "bitpack binary" and format_key("data loading") is None
    pal = format_palette(["onnxruntime int8 (percentile)", "onnxruntime int8", "torch fp32"])
    assert pal["onnxruntime int8"] == FORMAT_COLOURS["onnxruntime int8"]
    assert len(set(pal.values())) == 3  # a variant gets a shade of its format's colour, never the same
    speed = pd.DataFrame(dict(case=["MBU-Net bitpack (k=4)", "U-Net torch FP32", "U-Net ONNX Runtime INT8"],
                              median_ms=[1.0, 10.0, 3.0], q1_ms=[0.9, 9.0, 2.8], q3_ms=[1.1, 11.0, 3.2],
                              batch_size=1))
    fig = mbu.plot_speed(speed)
    ax = fig.axes[0]
    bars = {t.get_text(): to_hex(p.get_facecolor()) for t, p in zip(ax.get_yticklabels(), ax.patches)}
    assert bars == {c: format_colour(c) for c in speed.sort_values("median_ms")["case"]}
    # the legend sits outside the bars
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert not ax.get_legend().get_window_extent(r).overlaps(ax.get_window_extent(r))
    plt.close(fig)
    # a training precision (notebooks 02-04's AMP figure) has the colour of PyTorch in that precision
    amp = pd.DataFrame(dict(amp=["off", "bf16"], epoch_time_s=[10.0, 8.0], peak_mem_mb=[200.0, 120.0]))
    fig = viz.plot_amp(amp)
    assert [to_hex(p.get_facecolor()) for p in fig.axes[0].patches] == [FORMAT_COLOURS["torch fp32"],
                                                                        FORMAT_COLOURS["torch bf16"]]
    plt.close(fig)
