"""Helpers of notebook 05 (configurations, exactness report, tables)."""
import pandas as pd
import pytest
import torch

from unetq.bench import speed_table
from unetq.studies import mbu as study
from unetq.bitpack.kernels import popcount_instruction
from unetq.models import create_model


def test_resolve_masked_and_configurations():
    assert study.resolve_masked("cost-aware-top-k", 4) == 4
    assert study.resolve_masked(["up_ct4"], 9) == ["up_ct4"]
    with pytest.raises(ValueError):
        study.resolve_masked("all", 4)
    for stem in ("binary", "thermo", "float", "int8"):
        v = study.configurations(4, pareto_k=(0, 4, 8, 12), stem=stem)
        assert set(v) == {"mbu", "binary", "int8", "int4", "k8", "k12"}
        extra = {} if stem == "binary" else dict(stem=stem)
        assert v["binary"] == dict(masked=0, **extra) and v["k12"] == dict(masked=12, **extra)
        layout = set(create_model("mbu_unet", width=2, **extra).state_dict())
        for kw in v.values():  # every variant can be built (and shares the parameter layout)
            assert set(create_model("mbu_unet", width=2, **kw).state_dict()) == layout
    assert study.configurations(4)["mbu"] == dict(masked=4, stem=study.DEFAULT_STEM)


def test_exactness_report_on_a_random_model():
    torch.manual_seed(0)
    model = create_model("mbu_unet", width=4, masked=4)
    model.train()
    with torch.no_grad():  # a few training-mode passes give non-trivial BatchNorm statistics
        for _ in range(3):
            model(torch.rand(4, 3, 32, 32))
    data = [(torch.rand(3, 32, 32), torch.zeros(1, 32, 32)) for _ in range(3)]
    r = study.exactness_report(model.eval(), data, n=3)
    assert r["maps"] == 22 and r["identical"] and r["logits_close"], r


def test_pareto_table_joins_accuracy_and_speed():
    acc = pd.DataFrame(dict(preset="ci", config=["mbu", "binary"], masked_layers=[4, 0], masked=["a", ""],
                            test_dice=[0.5, 0.4], test_iou=[0.3, 0.2], packed_dice=[0.5, 0.4]))
    speed = speed_table({"p4": lambda x: x.sum(), "p0": lambda x: x.mean()}, image_size=16, repeats=3,
                                warmup=1, threads=1)
    assert {"median_ms", "q1_ms", "q3_ms", "fps", "cpu", "torch"} <= set(speed.columns)
    p = study.pareto_table(acc, speed, {"mbu": "p4", "binary": "p0"})
    assert list(p["config"]) == ["binary", "mbu"] and (p["fps"] > 0).all()


def test_popcount_instruction_is_reported():
    assert "popc" in popcount_instruction()


def test_zeros_study_records_sparsity_per_epoch_and_layer_and_summarises(tmp_path, monkeypatch):
    """python -m unetq.cli.mbu_zeros: both ternary rules trained by the study's procedure; rows per
    epoch and masked layer; the summary compares the mean zero fraction with seed 001's 80 %."""
    from unetq import results
    from unetq.cli import mbu_zeros
    from unetq.config import get_preset
    from unetq.studies import zeros

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    cfg = get_preset("ci")
    assert zeros.model_kw("ratio", 4) == study.configurations(4)["mbu"]  # shares notebook 05's checkpoints
    assert zeros.model_kw("emergent", 12, "classic") == dict(masked=12, stem="thermo", zeros="emergent", backbone="classic")
    with pytest.raises(ValueError, match="rule"):
        zeros.model_kw("learned", 4)
    df = zeros.run(cfg, rules=("emergent", "ratio"), masked=(4,), seeds=1)
    layers = {"input_c2", "up_ct1", "up_ct2", "up_ct3", "up_ct4"}
    for rule, g in df.groupby("rule"):
        assert set(g["layer"]) == layers and sorted(g["epoch"].unique()) == list(range(0, cfg.epochs + 1))
        assert g["zero_fraction"].between(0, 1).all() and g["is_best_epoch"].sum() == len(layers)
    assert set(df["rule"]) == {"emergent", "ratio"}
    summ = zeros.summary(df)
    assert list(summ["rule"]) == ["emergent", "ratio"] and (summ["seeds"] == 1).all()
    at_init = summ.set_index("rule")["at_init_mean"]  # epoch 0: the model training started from
    assert 0.4 < at_init["emergent"] < 0.6 and 0.3 < at_init["ratio"] < 0.5
    text = zeros.verdict(summ)
    assert "emergent rule" in text and "seed 001's 80%" in text and "at initialisation" in text
    fig = zeros.plot(df)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "epoch (0: initialisation)"
    assert zeros.verdict(pd.DataFrame()).startswith("not run yet")
    stored = results.read(results.MBU_ZEROS, root=tmp_path / "results").df
    assert len(stored) == len(df)
    # the command: cached runs, same rows
    assert mbu_zeros.main(["--preset", "ci", "--rules", "emergent", "--seeds", "1"]) == 0
    assert len(results.read(results.MBU_ZEROS, root=tmp_path / "results").df) == len(df)


def test_ablations_from_scratch_choose_a_rate_per_configuration_and_summarise(tmp_path, monkeypatch):
    """python -m unetq.cli.mbu_ablation: every configuration trained from scratch at every rate
    of the grid (seed 0), the seeds at its own chosen rate; the order experiment masks the same
    number of layers in cost order, in reverse and at random."""
    from unetq import results
    from unetq.cli import mbu_ablation
    from unetq.config import get_preset
    from unetq.models.mbu_unet import cost_aware_order
    from unetq.studies import ablations

    order = ablations.order_configs(4, random_draws=2)
    assert order["cost-aware"] == study.configurations(4)["mbu"]  # notebook 05's main MBU-Net
    assert order["reverse"]["masked"] == sorted(cost_aware_order()[-4:])
    assert all(len(v["masked"]) == 4 for c, v in order.items() if c != "cost-aware")
    assert order["random-0"] != order["random-1"] and order == ablations.order_configs(4, random_draws=2)
    t1 = ablations.table1_configs()
    assert set(t1) == {"fp-weights", "int8", "int4", "mbu", "binary"} and t1["mbu"] == study.configurations(4)["mbu"]
    for kw in t1.values():
        create_model("mbu_unet", width=2, **kw)
    with pytest.raises(ValueError, match="experiment"):
        ablations.configs("everything")
    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    cfg = get_preset("ci", seeds=2)
    df = ablations.run(cfg, "order", k=2, random_draws=1, lrs=(1e-3, 1e-2), only=["cost-aware", "reverse"])
    assert len(df) == 2 * (2 + 1)  # per configuration: two rates at seed 0, one more seed at the chosen one
    assert (df["torch_threads"] == torch.get_num_threads()).all()  # read from each run's checkpoint
    for c, g in df.groupby("config"):
        chosen = g[g["chosen"]]
        assert chosen["lr"].nunique() == 1 and sorted(chosen["train_seed"]) == [0, 1]
        assert chosen["lr"].iloc[0] == g[g["train_seed"] == 0].sort_values("val_loss")["lr"].iloc[0]
    summ = ablations.summary(df)
    assert set(summ["config"]) == {"cost-aware", "reverse"} and (summ["seeds"] == 2).all()
    # runs ended by the epoch cap (not by early stopping) are counted among the chosen-rate seeds only
    base = dict(experiment="order", masked="", test_dice=0.8, test_iou=0.7, val_loss=0.2, note="")
    runs = pd.DataFrame([dict(base, config=c, lr=lr, train_seed=sd, epochs_trained=ep, chosen=ch)
                         for c, lr, sd, ep, ch in (("a", 1e-3, 0, 60, False), ("a", 1e-2, 0, 60, True),
                                                   ("a", 1e-2, 1, 41, True), ("b", 1e-3, 0, 33, True),
                                                   ("b", 1e-3, 1, 45, True), ("b", 1e-2, 0, 60, False))])
    capped = ablations.summary(runs, epoch_cap=60).set_index("config")
    assert capped["seeds_at_epoch_cap"].to_dict() == {"a": 1, "b": 0} and "seeds_at_epoch_cap" not in summ
    fig = ablations.plot(summ, "order")
    assert "mean ± std" in fig.axes[0].get_xlabel() and len(fig.axes[0].get_yticklabels()) == 2
    # the Pareto experiment: k = 0 .. 12 in cost order, frames per second from the packed engine
    pc = ablations.pareto_configs()
    assert list(pc) == [f"k={k}" for k in range(13)] and pc["k=4"] == study.configurations(4)["mbu"]
    fake = pd.DataFrame([dict(experiment="pareto", config=f"k={k}", test_dice_mean=0.8 + k / 100,
                              test_dice_std=0.01, seeds=2) for k in (0, 12)])
    front = ablations.pareto(cfg, fake, repeats=2, warmup=1)
    assert list(front["masked_layers"]) == [0, 12] and (front["fps"] > 0).all()
    assert front["on_frontier"].any()
    assert "frames per second" in ablations.plot_pareto(front).axes[0].get_xlabel()
    assert len(results.read(results.MBU_ABLATION, root=tmp_path / "results").df) == len(df)
    assert mbu_ablation.main(["--experiment", "order", "--preset", "ci", "--k", "2", "--random-draws", "1",
                              "--lrs", "1e-3,1e-2", "--seeds", "2", "--only", "cost-aware,reverse"]) == 0


def test_notebook_05_reads_the_from_scratch_tables_or_names_their_commands(tmp_path, monkeypatch):
    from unetq import results
    from unetq.config import get_preset
    from unetq.studies import ablations, zeros

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("UNETQ_PUBLISHED_DIR", str(tmp_path))
    cfg = get_preset("ci")
    s, text = zeros.recorded(cfg)
    assert s.empty and text == "not run yet: no rows for preset ci; run `python -m unetq.cli.mbu_zeros --preset ci`"
    s, text = ablations.recorded(cfg, "order")
    assert s.empty and "--experiment order --preset ci" in text
    row = dict(preset="ci", dataset="synthetic-v3", experiment="order", config="reverse", width=4, image_size=32,
               lr=1e-3, train_seed=0, masked="a b", test_dice=0.5, test_iou=0.4, val_loss=0.3, epochs_trained=2,
               chosen=True, note="")
    results.write(results.MBU_ABLATION, pd.DataFrame([row, dict(row, train_seed=1, test_dice=0.7)]))
    s, text = ablations.recorded(cfg, "order")
    assert len(s) == 1 and s["test_dice_mean"].iloc[0] == pytest.approx(0.6) and s["seeds"].iloc[0] == 2
    # a partly run experiment says which configurations are missing and how to run just those
    assert text.endswith("not run yet: cost-aware, random-0, random-1 (`python -m unetq.cli.mbu_ablation "
                         "--experiment order --preset ci --only cost-aware,random-0,random-1`)")
    assert ablations.recorded(cfg, "table1")[0].empty


def test_frontier_times_the_recorded_pareto_points_and_writes_them(tmp_path, monkeypatch, capsys):
    """``--frontier`` trains nothing: it joins the recorded k's Dice with the packed engine's frames
    per second, marks the frontier and records the machine and the load it was timed under."""
    from unetq import results
    from unetq.cli import mbu_ablation

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("UNETQ_PUBLISHED_DIR", str(tmp_path))
    with pytest.raises(SystemExit):
        mbu_ablation.main(["--experiment", "order", "--preset", "ci", "--frontier"])
    assert mbu_ablation.main(["--experiment", "pareto", "--preset", "ci", "--frontier"]) == 1  # nothing recorded
    assert "not run yet" in capsys.readouterr().out
    row = dict(preset="ci", dataset="synthetic-v3", experiment="pareto", width=4, image_size=32, lr=1e-2,
               masked="", test_iou=0.4, val_loss=0.3, epochs_trained=2, chosen=True, note="")
    rows = [dict(row, config=f"k={k}", train_seed=s, test_dice=d)
            for k, dice in ((0, (0.70, 0.72)), (12, (0.60, 0.62))) for s, d in enumerate(dice)]
    results.write(results.MBU_ABLATION, pd.DataFrame(rows))
    assert mbu_ablation.main(["--experiment", "pareto", "--preset", "ci", "--frontier", "--repeats", "2"]) == 0
    front = results.read(results.MBU_ABLATION_FRONTIER, root=tmp_path / "results").df.set_index("config")
    assert list(front.index) == ["k=0", "k=12"] and (front["fps"] > 0).all()
    assert front["test_dice_mean"].to_dict() == pytest.approx({"k=0": 0.71, "k=12": 0.61})
    assert front["masked_layers"].to_dict() == {"k=0": 0, "k=12": 12} and front["cpu"].notna().all()
    # k=0 is the most accurate, so it is on the frontier whatever the timings say
    assert bool(front.loc["k=0", "on_frontier"])
    assert bool(front.loc["k=12", "on_frontier"]) == bool(front.loc["k=12", "fps"] > front.loc["k=0", "fps"])
    # the notebook shows that recorded timing while it belongs to these Dice values ...
    from unetq.config import get_preset
    from unetq.studies import ablations

    cfg = get_preset("ci")
    summ, _ = ablations.recorded(cfg, "pareto")
    shown, how = ablations.frontier(cfg, summ, repeats=2)
    n = int(front["repeats"].iloc[0])  # --repeats 2, rounded up to whole timing blocks
    assert how.startswith(f"frame rates: the recorded timing (mbu_ablation_frontier.csv, {n} calls per configuration")
    assert shown.set_index("config")["fps"].to_dict() == front["fps"].to_dict()
    assert shown["on_frontier"].dtype == bool and list(shown["config"]) == ["k=0", "k=12"]
    # ... and times the points itself once a point was retrained (its Dice changed) since
    results.write(results.MBU_ABLATION, pd.DataFrame([dict(rows[0], test_dice=0.80)]))
    summ, _ = ablations.recorded(cfg, "pareto")
    shown, how = ablations.frontier(cfg, summ, repeats=2)
    assert how.startswith("frame rates: timed here") and "other configurations or other Dice values" in how
    assert shown.set_index("config")["test_dice_mean"].to_dict() == pytest.approx({"k=0": 0.76, "k=12": 0.61})


def test_ablation_records_each_configuration_as_it_finishes(tmp_path, monkeypatch):
    """A study killed in its second configuration keeps the first one's rows (issue #14's rule
    for sweeps: results appended as they finish, never only at the end)."""
    from unetq import results
    from unetq.config import get_preset
    from unetq.studies import ablations

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    calls = []

    def fake_train(cfg, kw, splits):
        calls.append(kw)
        if len(calls) > 3:  # second configuration: killed mid-way
            raise KeyboardInterrupt
        return dict(history=[{}] * 3, best_epoch=2, best_val=dict(loss=cfg.lr), test_metrics=dict(dice=0.5)), ""

    monkeypatch.setattr(ablations, "_train", fake_train)
    monkeypatch.setattr(ablations, "splits_from_preset", lambda cfg: None)
    with pytest.raises(KeyboardInterrupt):
        ablations.run(get_preset("ci", seeds=2), "order", k=2, random_draws=1, lrs=(1e-3, 1e-2),
                      only=["cost-aware", "reverse"])
    kept = results.read(results.MBU_ABLATION, root=tmp_path / "results").df
    assert set(kept["config"]) == {"cost-aware"} and len(kept) == 3


def test_speed_note_says_when_the_frame_rates_are_not_told_apart():
    import pandas as pd
    from unetq.studies.ablations import speed_note

    med = pd.Series([1.00, 1.02, 0.98])
    close = speed_note(1e3 / med, med, pd.Series([0.3, 0.3, 0.3]))
    assert "not resolved" in close and "30 %" in close
    # a 2x range against a 5 % timing spread: resolved, no note
    med = pd.Series([1.0, 1.5, 2.0])
    assert speed_note(1e3 / med, med, med * 0.05) == ""
    assert speed_note(pd.Series([1.0]), pd.Series([1.0]), pd.Series([0.1])) == ""
