"""unetq.train on a tiny stand-in model and random data (fast, CPU): learning, determinism,
resume after an in-process failure and after a real SIGKILL, checkpoints, AMP."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from unetq.models.registry import MODELS, register_model
from unetq.config import get_preset
from unetq.studies.architectures import record_amp, record_training
from unetq.train import (HISTORY_COLUMNS, CheckpointError, PeakMemory, TrainConfig, amp_comparison, checkpoint_path, epoch_order, evaluate, fit, load_checkpoint, load_or_train, predict, resume_state_path, sample_predictions)

REPO = Path(__file__).resolve().parents[1]

if "tiny_test" not in MODELS:
    @register_model("tiny_test")
    def _tiny(in_channels=3, classes=1, width=4, **kw):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                             nn.ReLU(), nn.Conv2d(width, classes, 1))


def tiny_model(seed=0, width=4):
    from unetq.models.registry import create_model

    torch.manual_seed(seed)
    return create_model("tiny_test", width=width)


def tiny_splits(n=(20, 6, 6), size=16, seed=0):
    """Crack = pixels whose red channel is bright: learnable by a 3x3 conv in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, k in zip(("train", "val", "test"), n):
        x = torch.rand(k, 3, size, size, generator=g)
        y = (x[:, :1] > 0.7).float()
        out[name] = TensorDataset(x, y)
    return out


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and a second OpenMP thread on a loaded 2-core
    machine makes every step ~10x slower (spin-waiting); restore the count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETQ_CHECKPOINTS_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def cfg_fast(**kw):
    base = dict(lr=1e-2, epochs=3, batch_size=4, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------------------------
def test_train_config_from_preset_and_validation():
    c = TrainConfig.from_preset(get_preset("quick"), lr=None, amp="bf16")
    assert (c.lr, c.epochs, c.batch_size, c.amp, c.optimizer) == (1e-3, 20, 8, "bf16", "adam")
    assert TrainConfig.from_preset(get_preset("ci", lr=0.1)).lr == 0.1
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="int8")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(TypeError, match="unknown"):
        TrainConfig.from_preset({}, learning_rate=1)


def test_history_records_the_zero_fraction_of_masked_layers_per_epoch(tmp_path):
    from unetq.models.registry import create_model
    torch.manual_seed(0)
    model = create_model("mbu_unet", width=4, masked=4, zeros="emergent")
    res = fit(model, tiny_splits(), cfg_fast(epochs=2), tmp_path / "m.pt")
    z = res.history["zero_fraction"]
    assert len(z) == 2 and ((z > 0) & (z < 1)).all()
    ckpt = torch.load(tmp_path / "m.pt", weights_only=False)
    by_layer = ckpt["history"][-1]["zeros_by_layer"]
    assert set(by_layer) == {"input_c2", "up_ct1", "up_ct2", "up_ct3", "up_ct4"}
    # every epoch's record keeps the per-layer fractions (load_or_train writes them into its checkpoint)
    assert [set(r["zeros_by_layer"]) for r in res.extra["records"]] == [set(by_layer)] * 2
    best = res.history.loc[res.history["epoch"] == res.best_epoch, "zero_fraction"].item()
    assert best == pytest.approx(sum(by_layer.values()) / len(by_layer))  # mean over layers
    # a model without masked layers: NaN, not a made-up number
    assert fit(tiny_model(), tiny_splits(), cfg_fast(epochs=1), tmp_path / "u.pt").history["zero_fraction"].isna().all()


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_order(50, 3, 1)
    assert sorted(a) == list(range(50))
    assert a == epoch_order(50, 3, 1)
    assert a != epoch_order(50, 3, 2) and a != epoch_order(50, 4, 1)


def test_loss_decreases_and_history(tmp_path):
    model = tiny_model()
    res = fit(model, tiny_splits(), cfg_fast(epochs=5), tmp_path / "m.pt")
    h = res.history
    assert list(h.columns) == HISTORY_COLUMNS and len(h) == 5
    assert h["train_loss"].iloc[-1] < 0.8 * h["train_loss"].iloc[0]
    assert h["val_loss"].min() < h["val_loss"].iloc[0]
    assert res.best_epoch == int(h.loc[h["val_loss"].idxmin(), "epoch"])
    assert (h["peak_mem_kind"] == "cpu_peak_rss_increase").all()
    assert (h["epoch_time_s"] > 0).all() and not model.training
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["best_epoch"] == res.best_epoch
    assert same_weights(ckpt["state_dict"], model.state_dict())  # best weights loaded at the end
    assert not resume_state_path(tmp_path / "m.pt").exists()  # cleaned up after success


def test_training_is_deterministic(tmp_path):
    m1, m2 = tiny_model(), tiny_model()
    fit(m1, tiny_splits(), cfg_fast(), tmp_path / "a.pt")
    fit(m2, tiny_splits(), cfg_fast(), tmp_path / "b.pt")
    assert same_weights(m1.state_dict(), m2.state_dict())


def test_rmsprop_and_grad_clip_run(tmp_path):
    res = fit(tiny_model(), tiny_splits(), cfg_fast(optimizer="rmsprop", lr=1e-3, grad_clip=1.0,
                                                     epochs=2), tmp_path / "r.pt")
    assert res.history["train_loss"].notna().all()


class Killed(Exception):
    pass


def test_resume_after_failure_mid_epoch_matches_uninterrupted(tmp_path):
    splits, cfg = tiny_splits(), cfg_fast(epochs=4)
    ref = tiny_model()
    ref_res = fit(ref, splits, cfg, tmp_path / "ref.pt")

    def kill(epoch, batch):
        if epoch == 2 and batch == 2:
            raise Killed

    ck = tmp_path / "run.pt"
    with pytest.raises(Killed):
        fit(tiny_model(), splits, cfg, ck, on_batch=kill)
    assert resume_state_path(ck).exists()
    # a fresh process would build a freshly initialised model: use other weights on purpose
    resumed = tiny_model(seed=123)
    res = fit(resumed, splits, cfg, ck)
    assert res.resumed_from_epoch == 2
    assert same_weights(ref.state_dict(), resumed.state_dict())
    cols = ["epoch", "train_loss", "val_loss", "val_iou", "val_dice"]
    pd.testing.assert_frame_equal(ref_res.history[cols], res.history[cols])
    assert res.best_epoch == ref_res.best_epoch


SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    import test_train as T
    from unetq.train import fit
    kill_at = int(sys.argv[2])
    def hook(epoch, batch):
        if epoch == kill_at and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    model = T.tiny_model()
    fit(model, T.tiny_splits(), T.cfg_fast(epochs=3), sys.argv[1], on_batch=hook)
    torch.save(model.state_dict(), sys.argv[1] + ".final")
""")


def test_resume_after_real_sigkill(tmp_path):
    script = tmp_path / "train_kill.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))

    def run(ck, kill_at):
        return subprocess.run([sys.executable, str(script), str(ck), str(kill_at)], env=env,
                              capture_output=True, text=True, timeout=240)

    ck = tmp_path / "killed.pt"
    p = run(ck, 1)  # SIGKILL in the middle of the second epoch
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert resume_state_path(ck).exists() and not Path(str(ck) + ".final").exists()
    assert torch.load(resume_state_path(ck), weights_only=False)["epoch"] == 1
    p = run(ck, -1)
    assert p.returncode == 0, p.stderr[-2000:]
    # reference: the same uninterrupted run in this process (1 thread, as in the subprocess)
    assert torch.get_num_threads() == 1
    ref = tiny_model()
    fit(ref, tiny_splits(), cfg_fast(epochs=3), tmp_path / "ref.pt")
    assert same_weights(ref.state_dict(), torch.load(str(ck) + ".final"))


def test_evaluate_predict_and_samples():
    model = tiny_model()
    sp = tiny_splits()
    r = evaluate(model, sp["test"], batch_size=4, device="cpu")
    assert set(r) >= {"loss", "iou", "dice", "iou_img", "dice_img", "n"} and r["n"] == 6
    x = sp["test"].tensors[0]
    p = predict(model, x.numpy(), batch_size=4, device="cpu")
    assert p.shape == (6, 1, 16, 16) and p.dtype == "float32" and 0 <= p.min() and p.max() <= 1
    imgs, masks, probs = sample_predictions(model, sp["test"], n=3, device="cpu")
    assert imgs.shape == (3, 3, 16, 16) and masks.shape == probs.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, TensorDataset(torch.zeros(0, 3, 4, 4), torch.zeros(0, 1, 4, 4)))


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused(tmp_path):
    res = fit(tiny_model(), tiny_splits(), cfg_fast(amp="bf16", epochs=2), tmp_path / "bf.pt")
    assert res.history["train_loss"].notna().all()
    assert torch.isfinite(torch.tensor(res.history["val_loss"].to_numpy())).all()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            fit(tiny_model(), tiny_splits(), cfg_fast(amp="fp16"), tmp_path / "fp16.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: fp16 "
                    "autocast + GradScaler and CUDA peak memory are CUDA-only paths")
def test_fp16_amp_on_cuda(tmp_path):
    res = fit(tiny_model(), tiny_splits(), cfg_fast(amp="fp16", device="cuda", epochs=2), tmp_path / "c.pt")
    assert (res.history["peak_mem_kind"] == "cuda_peak_allocated").all()
    assert (res.history["peak_mem_mb"] > 0).all()


def test_peak_memory_cpu_sees_an_allocation():
    import time

    with PeakMemory("cpu", interval_s=0.002) as m:
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        time.sleep(0.05)
        del t
    assert m.kind == "cpu_peak_rss_increase" and 48 < m.peak_mb < 512


# --------------------------------------------------------------------------------------------
def ci_cfg(**kw):
    return get_preset("ci", epochs=2, **kw)


def test_checkpoint_path_naming(dirs):
    assert checkpoint_path("unet", get_preset("quick")).name == "unet_quick.pt"
    assert checkpoint_path("unet", get_preset("quick", amp="off", device="cpu")).name == "unet_quick.pt"
    other = checkpoint_path("unet", get_preset("quick", lr=1e-4))
    assert other.name.startswith("unet_quick_lr0.0001_") and other != checkpoint_path("unet", get_preset("quick"))
    assert other == checkpoint_path("unet", get_preset("quick", lr=1e-4))
    w = checkpoint_path("unet", get_preset("quick", width=8))
    assert w.name.startswith("unet_quick_") and "lr" not in w.name
    assert checkpoint_path("mbu_unet", get_preset("quick"), layers="a") != \
        checkpoint_path("mbu_unet", get_preset("quick"), layers="b")


def test_load_or_train_reuses_and_retrains(dirs, capsys):
    cfg = ci_cfg()
    model, ckpt = load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    path = checkpoint_path("tiny_test", cfg)
    assert path.name == "tiny_test_ci.pt" and path.exists() and not model.training
    assert len(ckpt["history"]) == 2 and set(ckpt["test_metrics"]) >= {"loss", "iou", "dice"}
    assert not resume_state_path(path).exists()
    mtime = path.stat().st_mtime_ns
    # matching: loaded, not retrained (no splits needed: nothing is trained)
    model2, ckpt2 = load_or_train("tiny_test", cfg, splits={}, progress=False)
    assert "loaded" in capsys.readouterr().out and path.stat().st_mtime_ns == mtime
    assert same_weights(model.state_dict(), model2.state_dict())
    # mismatch at the same path (the stored data settings differ): retrained
    stored = torch.load(path, weights_only=True)
    stored["identity"]["data"]["seed"] = 99
    torch.save(stored, path)
    _, ckpt3 = load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    assert "retraining" in capsys.readouterr().out
    assert torch.load(path, weights_only=True)["identity"]["data"]["seed"] == cfg.seed
    # the training.csv row
    table = record_training("tiny_test", cfg, ckpt3)
    assert len(table) == 1 and table["test_dice"].iloc[0] == ckpt3["test_metrics"]["dice"]
    assert {"cpu", "torch"} <= set(table.columns)
    # an lr sweep run gets its own checkpoint and its own row
    _, ck_lr = load_or_train("tiny_test", ci_cfg(lr=1e-2), splits=tiny_splits(), progress=False)
    assert path.exists() and len(list(path.parent.glob("tiny_test_ci*.pt"))) == 2
    table = record_training("tiny_test", ci_cfg(lr=1e-2), ck_lr)
    assert sorted(table["lr"]) == [1e-3, 1e-2]


def test_a_checkpoint_from_another_thread_count_is_reused_with_a_note(dirs, capsys):
    """The thread count is not part of a run's identity (both counts give valid runs), but only
    the recorded count retrains it bit for bit: loading such a checkpoint says so."""
    from unetq.train.runs import thread_note

    cfg = ci_cfg()
    _, ckpt = load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    here = torch.get_num_threads()
    assert ckpt["machine"]["torch_threads"] == here and thread_note(ckpt) == ""
    path = checkpoint_path("tiny_test", cfg)
    stored = torch.load(path, weights_only=True)
    stored["machine"]["torch_threads"] = here + 3
    torch.save(stored, path)
    capsys.readouterr()
    load_or_train("tiny_test", cfg, splits={}, progress=False)
    out = capsys.readouterr().out
    assert "loaded" in out and f"trained with {here + 3} torch thread(s)" in out and "bit for bit" in out
    assert thread_note({"machine": {}}) == "" and thread_note({"machine": {"torch_threads": 2}}, threads=1)


def test_resuming_with_another_thread_count_warns(tmp_path):
    splits, cfg = tiny_splits(), cfg_fast(epochs=3)

    def kill(epoch, batch):
        if epoch == 1 and batch == 1:
            raise Killed

    ck = tmp_path / "run.pt"
    with pytest.raises(Killed):
        fit(tiny_model(), splits, cfg, ck, on_batch=kill)
    state = torch.load(resume_state_path(ck), weights_only=False)
    assert state["torch_threads"] == torch.get_num_threads()
    state["torch_threads"] = torch.get_num_threads() + 1
    torch.save(state, resume_state_path(ck))
    with pytest.warns(UserWarning, match="mixes thread counts"):
        res = fit(tiny_model(), splits, cfg, ck)
    assert res.resumed_from_epoch == 1


def test_a_checkpoint_of_an_older_architecture_is_retrained_not_loaded(dirs, capsys, monkeypatch):
    """A library default that changes an architecture (MBU-Net's backbone did) leaves the run's
    settings, hence its checkpoint name and identity, unchanged: the parameter layout decides,
    for the checkpoint and for an interrupted run's resume state."""
    import unetq.models.registry as registry

    cfg = ci_cfg()
    load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    path = checkpoint_path("tiny_test", cfg)
    old_builder = registry.MODELS["tiny_test"]
    monkeypatch.setitem(registry.MODELS, "tiny_test", lambda in_channels=3, classes=1, width=4, **kw:
                        old_builder(in_channels, classes, width + 2, **kw))  # "a new default"
    resume_state_path(path).write_bytes(b"")  # (and a resume state it cannot use)
    torch.save(dict(fingerprint=None, model=torch.load(path, weights_only=True)["state_dict"]), resume_state_path(path))
    with pytest.warns(UserWarning, match="another configuration"):
        model, ckpt = load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    out = capsys.readouterr().out
    assert "retraining" in out and "parameter layout" in out, out
    assert model[0].weight.shape[0] == 6 and torch.load(path, weights_only=True)["state_dict"]["0.weight"].shape[0] == 6


def test_corrupt_or_missing_checkpoint_is_a_clear_error(dirs):
    cfg = ci_cfg()
    path = checkpoint_path("tiny_test", cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_or_train("tiny_test", cfg, splits=tiny_splits(), progress=False)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(path.with_name("absent.pt"))
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path)


def test_amp_comparison_columns(dirs):
    cfg = ci_cfg()
    df = amp_comparison("tiny_test", cfg, modes=("off", "bf16"), splits=tiny_splits(), progress=False,
                        device="cpu")
    assert list(df["amp"]) == ["off", "bf16"]
    for col in ["arch", "preset", "width", "image_size", "batch_size", "autocast_dtype", "device",
                "epoch_time_s", "images_per_s", "peak_mem_mb", "peak_mem_kind", "speedup_vs_off",
                "mem_reduction_vs_off", "train_loss", "cpu", "cores", "torch"]:
        assert col in df.columns, col
    assert df.loc[0, "speedup_vs_off"] == 1.0 and (df["epoch_time_s"] > 0).all()
    assert list(df["autocast_dtype"]) == ["float32", "bfloat16"] and (df["device"] == "cpu").all()
    assert len(record_amp(df)) == 2 and len(record_amp(df)) == 2  # upsert, not append
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            amp_comparison("tiny_test", cfg, modes=("fp16",), splits=tiny_splits(), device="cpu")


def test_params_and_profile_tables_upsert(dirs):
    from unetq import paths
    from unetq.studies.architectures import record_params, record_profile

    t = pd.DataFrame(dict(block=["A", "Total"], output_shape=["[4, 8, 8]", "[1, 8, 8]"],
                          params=[10, 10], macs=[100, 100]))
    record_params("tiny_test", {(64, 256): t, (4, 32): t})
    out = record_params("tiny_test", {(4, 32): t.assign(params=[11, 11])})
    assert len(out) == 4 and sorted(out.loc[out["width"] == 4, "params"]) == [11, 11]
    assert (paths.results_dir() / "params_tiny_test.csv").exists()
    prof = pd.DataFrame(dict(block=["A"], time_ms=[1.5], share_percent=[100.0]))
    out = record_profile("tiny_test", get_preset("ci"), prof, device="cpu")
    out = record_profile("tiny_test", get_preset("ci"), prof.assign(time_ms=2.0), device="cpu")
    assert len(out) == 1 and out["time_ms"].iloc[0] == 2.0
    assert {"arch", "preset", "width", "image_size", "device", "cpu", "torch"} <= set(out.columns)


def test_recalibrate_batchnorm_sets_stats_of_current_weights_and_keeps_rng():
    import torch.nn as nn

    from unetq.train import recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    data = [(torch.randn(3, 5, 5) * 2 + 1, torch.zeros(1, 5, 5)) for _ in range(6)]
    state = torch.get_rng_state()
    assert recalibrate_batchnorm(model, data, batch_size=3) == 1
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    bn = model[1]
    with torch.no_grad():
        feats = [model[0](torch.stack([x for x, _ in data[i:i + 3]])) for i in (0, 3)]
    want = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)  # cumulative average of batch means
    torch.testing.assert_close(bn.running_mean, want)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2


def test_early_stopping_and_plateau_schedule(tmp_path):
    # an lr far below float32 resolution: the weights never change, so the validation loss never
    # improves after epoch 1; patience 4 stops after epoch 5, the plateau schedule (wait 2) cut
    # the lr tenfold after epoch 4
    def frozen():  # no BatchNorm: nothing changes between epochs but the (negligible) weights
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))

    res = fit(frozen(), tiny_splits(), cfg_fast(epochs=12, lr=1e-12, patience=4, lr_schedule="plateau"),
              tmp_path / "p.pt")
    h = res.history
    assert len(h) == 5 and res.best_epoch == 1
    assert h["lr"].iloc[3] == pytest.approx(1e-12) and h["lr"].iloc[4] == pytest.approx(1e-13)
    full = fit(frozen(), tiny_splits(), cfg_fast(epochs=6, lr=1e-12), tmp_path / "c.pt")
    assert len(full.history) == 6  # no patience: the whole budget
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine")


# --------------------------------------------------------------------------------------------
# non-finite numbers: a NaN pixel, a NaN mask, a diverging learning rate
# --------------------------------------------------------------------------------------------
class NamedTensors(TensorDataset):
    """A TensorDataset whose items know their files, as a CrackDataset's do."""

    def __init__(self, x, y):
        from unetq.data import Sample

        super().__init__(x, y)
        self.samples = [Sample(f"s{i}", Path(f"img_{i}.png"), (Path(f"mask_{i}.png"),)) for i in range(len(x))]


def test_nonfinite_pixel_stops_training_naming_the_epoch_and_file(tmp_path):
    from unetq.train import NonFiniteError

    sp = tiny_splits()
    x, y = sp["train"].tensors
    x = x.clone()
    x[7, 1, 3, 3] = float("nan")
    sp["train"] = NamedTensors(x, y)
    ck = tmp_path / "nan_img.pt"
    with pytest.raises(NonFiniteError, match=r"epoch 1.*image of sample 7 \(img_7\.png\)"):
        fit(tiny_model(), sp, cfg_fast(), ck)
    assert not ck.exists()  # never saved as the best checkpoint
    # an Inf pixel in the validation split: named, after the first (finite) training epoch
    sp = tiny_splits()
    xv, yv = sp["val"].tensors
    xv = xv.clone()
    xv[2, 0, 0, 0] = float("inf")
    sp["val"] = NamedTensors(xv, yv)
    with pytest.raises(NonFiniteError, match=r"epoch 1, validation.*image of sample 2 \(img_2\.png\)"):
        fit(tiny_model(), sp, cfg_fast(), tmp_path / "inf_val.pt")
    assert not (tmp_path / "inf_val.pt").exists()


def test_nonfinite_mask_stops_training_and_is_rejected_by_the_metrics(tmp_path):
    from unetq.metrics import SegmentationMeter
    from unetq.train import NonFiniteError

    sp = tiny_splits()
    x, y = sp["train"].tensors
    y = y.clone()
    y[4, 0, 5, 5] = float("nan")
    sp["train"] = NamedTensors(x, y)
    with pytest.raises(NonFiniteError, match=r"epoch 1.*mask of sample 4 \(mask_4\.png\)"):
        fit(tiny_model(), sp, cfg_fast(), tmp_path / "nan_mask.pt")
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = float("nan")  # passed the [0, 1] range check before (NaN < 0 is False)
    with pytest.raises(ValueError, match="NaN"):
        SegmentationMeter().update(torch.zeros(1, 1, 4, 4), target)


def test_diverging_learning_rate_is_a_clear_error_without_checkpoint(tmp_path):
    from unetq.train import NonFiniteError

    ck = tmp_path / "diverged.pt"
    # an lr so large that the weights overflow float32 within a few Adam steps
    with pytest.raises(NonFiniteError, match=r"epoch 1, batch \d+: .*diverged at lr=1e\+37"):
        fit(tiny_model(), tiny_splits(), cfg_fast(lr=1e37), ck)
    assert not ck.exists()


def test_nonfinite_weights_never_become_the_best_checkpoint(tmp_path):
    from unetq.train import NonFiniteError, write_checkpoint

    model = tiny_model()

    def poison(epoch, batch):  # weights go NaN in the middle of the second epoch
        if epoch == 1 and batch == 1:
            with torch.no_grad():
                model[0].weight[0, 0, 0, 0] = float("nan")

    ck = tmp_path / "poisoned.pt"
    with pytest.raises(NonFiniteError, match="epoch 2"):
        fit(model, tiny_splits(), cfg_fast(epochs=3), ck, on_batch=poison)
    saved = torch.load(ck, weights_only=True)
    assert saved["best_epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["state_dict"].values()
                                            if v.is_floating_point())
    bad = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteError, match="0.weight"):
        write_checkpoint(tmp_path / "bad.pt", model_config=None, state_dict=bad, train_config={}, history=[],
                         best_epoch=1, best_val_loss=float("nan"))
    assert not (tmp_path / "bad.pt").exists()


def test_stale_temp_files_of_a_killed_write_are_cleaned(tmp_path):
    import time

    import psutil

    from unetq.io import clean_stale_temps
    from unetq.train import write_checkpoint

    ck = tmp_path / "m.pt"
    dead = max(psutil.pids()) + 10_000
    assert not psutil.pid_exists(dead)
    old = time.time() - 10 * 24 * 3600  # long before this process started
    names = {
        "dead": f".m.pt.{dead}-abc123de.tmp",        # a killed writer: removed
        "legacy": ".m.pt.k2j4h5g6.tmp",              # the older naming (mkstemp, no pid): removed
        "alive": f".m.pt.{os.getppid()}-zz11yy22.tmp",  # a running process may still write it: kept
        "other": f".m.pt.x.{dead}-abc123de.tmp",     # another target's temp file: kept
        "plain": "m.pt.bak",                          # not a temp file: kept
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"partial")
        os.utime(tmp_path / n, (old, old))
    fresh = tmp_path / f".m.pt.{dead + 1}-fresh000.tmp"  # written after this process started: kept
    fresh.write_bytes(b"partial")
    write_checkpoint(ck, model_config=None, state_dict=tiny_model().state_dict(), train_config={}, history=[],
                     best_epoch=1, best_val_loss=0.5)
    left = {p.name for p in tmp_path.iterdir()}
    assert names["dead"] not in left and names["legacy"] not in left
    assert {names["alive"], names["other"], names["plain"], fresh.name, "m.pt"} <= left
    assert clean_stale_temps(ck) == []  # nothing stale left
