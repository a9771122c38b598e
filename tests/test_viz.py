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
