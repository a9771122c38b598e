"""The learning rate of each architecture is chosen on validation from the sweep rows."""
import pandas as pd
import pytest

from unetq.config import get_preset
from unetq.data import dataset_identity
from unetq.studies import tuning


def _rows(cfg, arch, lr_val):
    return [dict(arch=arch, preset=cfg.preset, dataset=dataset_identity(cfg.source), width=cfg.width,
                 image_size=cfg.image_size, epochs=cfg.epochs, amp=cfg.amp, lr=lr, train_seed=s, val_loss=v + 0.01 * s,
                 test_dice=0.9 - v)  # test Dice favours another lr: it must play no part
            for lr, v in lr_val.items() for s in range(2)]


def test_chosen_lr_is_the_lowest_validation_loss():
    cfg = get_preset("quick")
    t = pd.DataFrame(_rows(cfg, "unet", {3e-4: 0.40, 1e-3: 0.30, 3e-3: 0.35})
                     + _rows(cfg, "ghost_unet", {3e-4: 0.20, 1e-3: 0.30})
                     + _rows(cfg.replace(width=8), "unet", {3e-3: 0.01}))  # other settings: not counted
    lr, why = tuning.chosen_lr("unet", cfg, t)
    assert lr == 1e-3 and "sweep" in why
    assert tuning.chosen_lr("ghost_unet", cfg, t)[0] == 3e-4
    assert tuning.tuned("ghost_unet", cfg, t).lr == 3e-4
    lr, why = tuning.chosen_lr("squeeze_unet", cfg, t)  # never swept: the preset's rate, and it says so
    assert lr == cfg.lr and "preset" in why
    assert tuning.chosen_lrs(t[t.width == cfg.width]) == {"ghost_unet": 3e-4, "unet": 1e-3}


def test_lr_sweep_flags_a_choice_at_the_edge_of_the_grid():
    from unetq.cli.lr_sweep import at_grid_edge
    t = pd.DataFrame(dict(arch=["a"] * 3 + ["b"] * 3, lr=[1e-3, 3e-3, 1e-2] * 2,
                          chosen=[False, False, True, False, True, False]))
    assert at_grid_edge(t) == ["a"]


def test_lr_sweep_records_a_diverged_learning_rate_and_goes_on(monkeypatch, tmp_path):
    from unetq.cli import lr_sweep
    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(tmp_path))  # no rows of other tests' runs
    from unetq.train import NonFiniteError
    tried = []

    def diverge(arch, cfg, **kw):
        tried.append(cfg.lr)
        raise NonFiniteError(f"epoch 1: training loss is nan (lr {cfg.lr:g})")

    monkeypatch.setattr(lr_sweep, "load_or_train", diverge)
    monkeypatch.setattr(lr_sweep, "splits_from_preset", lambda cfg: {})
    t = lr_sweep.run("ci", lrs=[0.1, 1.0], archs=["unet"], progress=False)
    assert tried == [0.1, 1.0]  # the first divergence did not stop the sweep
    assert list(t["lr"]) == [0.1, 1.0] and not t["chosen"].any()
    assert t["note"].str.startswith("diverged: epoch 1").all()


def test_training_summary_says_which_runs_hit_the_epoch_cap(monkeypatch, tmp_path):
    from unetq import results
    from unetq.cli import training_summary
    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(tmp_path))
    base = dict(preset="ci", dataset="synthetic-v3", width=4, image_size=32, epochs=10, amp="off", best_epoch=5)
    rows = [dict(base, arch="unet", lr=1e-3, train_seed=0, epochs_trained=10, val_loss=0.5, val_dice=0.5, test_dice=0.5),
            dict(base, arch="unet", lr=3e-3, train_seed=0, epochs_trained=7, val_loss=0.4, val_dice=0.6, test_dice=0.6),
            dict(base, arch="unet", lr=3e-3, train_seed=1, epochs_trained=10, val_loss=0.45, val_dice=0.6, test_dice=0.7)]
    results.write(results.TRAINING, pd.DataFrame(rows))
    sweep, chosen = training_summary.summary("ci")
    assert len(sweep) == 2
    r = chosen.iloc[0]
    assert r["lr"] == 3e-3 and r["seeds"] == 2 and r["runs_at_cap"] == 1 and r["test_dice_mean"] == pytest.approx(0.65)
    assert bool(r["lr_at_grid_edge"])
    # one learning rate only (no sweep): not "at the edge" of a grid that does not exist
    results.write(results.TRAINING, pd.DataFrame([dict(base, arch="ghost_unet", lr=1e-3, train_seed=0, epochs_trained=7,
                                                       val_loss=0.4, val_dice=0.6, test_dice=0.6)]))
    _, chosen = training_summary.summary("ci")
    assert not bool(chosen.set_index("arch").loc["ghost_unet", "lr_at_grid_edge"])
