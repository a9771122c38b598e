"""MBU-Net variants trained from scratch: seed 001's Table 1 and the masking-order ablation
(``python -m unetq.cli.mbu_ablation``).

Notebook 05 fine-tunes its variants from the trained MBU-Net (one epoch each) to stay inside the
main job's budget. Here every variant is trained **from scratch with the procedure every
architecture gets**: its own learning rate chosen on the validation split from the same grid
(``unetq.studies.tuning.LR_GRID``, training seed 0), then the preset's training seeds at that
rate, each until early stopping ends it (the preset's epoch cap, schedule and BatchNorm
re-estimation). Experiments:

- ``table1``: full-precision weights (binary activations kept: seed 001's Table 1 varies the
  weights), INT8 and INT4 weights, MBU-Net (cost-aware k = 4) and pure binary;
- ``order``: k masked layers chosen in cost order (cheapest first, the study's rule), in the
  reverse order (most expensive first) and at random (``random_draws`` draws), the same k for
  all; what makes "uniform sensitivity, so mask the cheap layers" testable on a CPU budget;
- ``pareto``: k = 0 .. 12 layers masked in cost order (seed 001's Figure 7); :func:`pareto`
  joins its Dice with the packed engine's measured frames per second (``--frontier`` writes that
  join to ``mbu_ablation_frontier.csv``).

Every run is a cached checkpoint; rows go to ``mbu_ablation.csv`` (one per configuration,
learning rate and seed, with ``chosen`` marking the rate the seeds were trained at), and
:func:`summary` gives mean ± std over seeds at the chosen rates.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import results
from ..bench import speed_table
from ..bench.goals import load_note
from ..bitpack import pack_mbu
from ..config import StudyConfig
from ..data import run_columns, splits_from_preset
from ..machine import busy_cores
from ..models import create_model
from ..models.mbu_unet import LAYER_NAMES, cost_aware_order
from ..train import NonFiniteError, load_or_train
from .figures import draw_dice_fps_frontier
from .mbu import DEFAULT_STEM
from .tuning import LR_GRID, lr_at_grid_edge

EXPERIMENTS = ("table1", "order", "pareto")


def _stem_kw(stem: str) -> dict:
    return {} if stem == "binary" else dict(stem=stem)


def table1_configs(k: int = 4, stem: str = DEFAULT_STEM) -> dict[str, dict]:
    """``label -> create_model("mbu_unet", ...) keywords`` of seed 001's Table 1 rows; the
    ``"mbu"`` row is notebook 05's main MBU-Net, spelled the same so its checkpoints are shared."""
    s = _stem_kw(stem)
    own_c2 = stem in ("binary", "thermo")
    return {
        "fp-weights": dict(base="fp", layers={"input_c2": "fp"} if own_c2 else {}, **s),
        "int8": dict(base="int8", layers={"input_c2": "int8"} if own_c2 else {}, **s),
        "int4": dict(base="int4", layers={"input_c2": "int4"} if own_c2 else {}, **s),
        "mbu": dict(masked=int(k), **s),
        "binary": dict(masked=0, **s),
    }


def order_configs(k: int = 4, random_draws: int = 2, stem: str = DEFAULT_STEM, seed: int = 0) -> dict[str, dict]:
    """``label -> keywords`` of the masking-order ablation: the k cheapest layers (the study's
    rule, as ``masked=k`` so notebook 05's checkpoints are shared), the k most expensive, and
    ``random_draws`` random sets of k (numpy ``default_rng(seed + draw)``)."""
    if not 0 < k < len(LAYER_NAMES):
        raise ValueError(f"k must be between 1 and {len(LAYER_NAMES) - 1}, got {k}")
    s = _stem_kw(stem)
    order = cost_aware_order()
    out = {"cost-aware": dict(masked=int(k), **s), "reverse": dict(masked=sorted(order[::-1][:k]), **s)}
    for d in range(random_draws):
        pick = np.random.default_rng(seed + d).permutation(len(LAYER_NAMES))[:k]
        out[f"random-{d}"] = dict(masked=sorted(LAYER_NAMES[i] for i in pick), **s)
    return out


def pareto_configs(stem: str = DEFAULT_STEM) -> dict[str, dict]:
    """``"k=0" .. "k=12"``: the k cheapest layers masked (cost order), the rest binary, seed 001's
    Figure 7 (``k=4`` is notebook 05's main MBU-Net, ``k=0`` Table 1's pure binary row: their
    checkpoints are shared)."""
    s = _stem_kw(stem)
    return {f"k={k}": dict(masked=k, **s) for k in range(len(LAYER_NAMES) + 1)}


def configs(experiment: str, k: int = 4, random_draws: int = 2, stem: str = DEFAULT_STEM) -> dict[str, dict]:
    if experiment == "table1":
        return table1_configs(k, stem)
    if experiment == "order":
        return order_configs(k, random_draws, stem)
    if experiment == "pareto":
        return pareto_configs(stem)
    raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")


def _row(experiment: str, label: str, kw: dict, cfg: StudyConfig, ckpt: dict | None, note: str = "") -> dict:
    ckpt = ckpt or {}  # a diverged run has no checkpoint: its row says so in ``note``
    t = ckpt.get("test_metrics", {})
    best = ckpt.get("best_val", {})
    masked = kw.get("masked")
    masked_txt = (" ".join(cost_aware_order()[:masked]) if isinstance(masked, int) else " ".join(masked or []))
    return dict(**run_columns(cfg), experiment=experiment, config=label, width=cfg.width, image_size=cfg.image_size,
                lr=cfg.lr, train_seed=cfg.train_seed, masked=masked_txt, base=kw.get("base", "binary"),
                epochs_trained=len(ckpt.get("history", [])), best_epoch=ckpt.get("best_epoch"),
                val_loss=best.get("loss", float("nan")), val_dice=best.get("dice", float("nan")),
                test_loss=t.get("loss", float("nan")), test_iou=t.get("iou", float("nan")),
                test_dice=t.get("dice", float("nan")), note=note,
                checkpoint=ckpt.get("checkpoint_name", ""),
                # the torch threads the run was trained with: one thread and two give different
                # (equally valid) runs; the same count reproduces a run bit for bit on the same CPU
                torch_threads=(ckpt.get("machine") or {}).get("torch_threads"))


def _train(cfg: StudyConfig, kw: dict, splits) -> tuple[dict | None, str]:
    try:
        return load_or_train("mbu_unet", cfg, splits=splits, verbose=False, **kw)[1], ""
    except NonFiniteError as e:  # a diverging learning rate: a row that says so, never chosen
        return None, f"diverged: {e}"


def run(cfg: StudyConfig, experiment: str = "table1", k: int = 4, random_draws: int = 2, lrs=LR_GRID,
        seeds: int | None = None, stem: str = DEFAULT_STEM, only: list[str] | None = None,
        record: bool = True) -> pd.DataFrame:
    """Every configuration of ``experiment``: seed 0 at every learning rate of ``lrs``, the one
    with the lowest validation loss ``chosen``, then seeds 1 .. ``seeds`` - 1 at it. Returns the
    rows, upserted into ``mbu_ablation.csv`` when ``record`` configuration by configuration as
    each finishes (so a killed run loses only the configuration it was in; its checkpoints are
    cached, so a re-run resumes there)."""
    splits = splits_from_preset(cfg)
    todo = configs(experiment, k, random_draws, stem)
    if only:
        todo = {c: v for c, v in todo.items() if c in only}
    rows = []
    for label, kw in tqdm(list(todo.items()), desc=f"{experiment}: configurations", unit="config"):
        sweep = []
        for lr in lrs:
            run_cfg = cfg.replace(lr=float(lr), train_seed=0)
            ck, note = _train(run_cfg, kw, splits)
            sweep.append(_row(experiment, label, kw, run_cfg, ck, note))
        ok = [r for r in sweep if not r["note"]]
        best_lr = min(ok, key=lambda r: r["val_loss"])["lr"] if ok else None
        for r in sweep:
            r["chosen"] = r["lr"] == best_lr
        done = sweep
        if best_lr is not None:
            for s in range(1, seeds or cfg.seeds):
                run_cfg = cfg.replace(lr=best_lr, train_seed=s)
                ck, note = _train(run_cfg, kw, splits)
                done.append(dict(_row(experiment, label, kw, run_cfg, ck, note), chosen=True))
        rows += done
        if record:  # each configuration as it finishes: a killed run keeps what it did
            results.write(results.MBU_ABLATION, pd.DataFrame(done))
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, epoch_cap: int | None = None) -> pd.DataFrame:
    """Mean ± std over seeds of the chosen-rate runs, per experiment and configuration, with
    the chosen learning rate and whether it lies at an end of the grid swept; with the preset's
    ``epoch_cap``, how many of those seeds were ended by the cap rather than by early stopping
    (``seeds_at_epoch_cap``: runs that may still have been improving)."""
    no_note = df["note"].isna() | df["note"].astype(str).eq("")  # "" reads back from the CSV as NaN
    chosen = df[df["chosen"].astype(bool) & no_note]
    if chosen.empty:
        return pd.DataFrame()
    by = ["experiment", "config", "masked", "lr"]
    out = results.seed_summary(chosen, by, ["test_dice", "test_iou", "val_loss", "epochs_trained"])
    if epoch_cap is not None:
        capped = chosen.assign(at_cap=pd.to_numeric(chosen["epochs_trained"], errors="coerce") >= epoch_cap)
        n = capped.groupby(by, sort=False, dropna=False)["at_cap"].sum().rename("seeds_at_epoch_cap")
        out = out.merge(n.astype(int).reset_index(), on=by, how="left")
    swept = df.groupby(["experiment", "config"])["lr"].agg(list)
    out["lr_at_grid_edge"] = [lr_at_grid_edge(lr, swept[(e, c)])
                              for e, c, lr in zip(out["experiment"], out["config"], out["lr"])]
    return out


def recorded(cfg: StudyConfig, experiment: str) -> tuple[pd.DataFrame, str]:
    """``(summary, note)`` of this preset's and dataset's rows of ``mbu_ablation.csv`` for
    ``experiment``; the note names the command for the configurations with no row yet (all of
    them when none are there)."""
    df = results.read(results.MBU_ABLATION, **run_columns(cfg), where=dict(experiment=experiment)).df
    if df is None:
        return pd.DataFrame(), (f"not run yet: no {experiment} rows for preset {cfg.preset}; run `python -m "
                                f"unetq.cli.mbu_ablation --experiment {experiment} --preset {cfg.preset}`")
    s = summary(df, epoch_cap=cfg.epochs)
    spread = "mean ± std over seeds at each configuration's own chosen learning rate"
    text = f"{experiment}: {len(s)} configurations, {spread}"
    todo = [c for c in configs(experiment) if c not in set(df["config"].astype(str))]
    if todo:  # the default configurations (k = 4, two random draws) with no row yet
        text += (f"; not run yet: {', '.join(todo)} (`python -m unetq.cli.mbu_ablation --experiment {experiment} "
                 f"--preset {cfg.preset} --only {','.join(todo)}`)")
    return s, text


def plot(summ: pd.DataFrame, experiment: str):
    """Test Dice (mean ± std over seeds) of each configuration of ``experiment`` in
    :func:`summary`'s table, with its masked layers and chosen learning rate in the label."""
    import matplotlib.pyplot as plt

    d = summ[summ["experiment"] == experiment].sort_values("test_dice_mean")
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(d) + 1.4))
    y = np.arange(len(d))
    ax.errorbar(d["test_dice_mean"], y, xerr=d["test_dice_std"].fillna(0), fmt="o", capsize=3, color="C0")
    ax.set_yticks(y, [f"{r.config} (lr {r.lr:g}, {int(r.seeds)} seeds)" for r in d.itertuples()])
    ax.set(xlabel="test Dice, mean ± std over seeds", title=f"{experiment}: each configuration trained from scratch")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def speed_note(fps: pd.Series, median_ms: pd.Series, iqr_ms: pd.Series) -> str:
    """"" when the configurations' frame rates differ by more than one timing's own spread;
    otherwise a sentence saying that they do not (range of the frame rates over their median,
    against the median interquartile range over the median latency): then which k is faster is
    not resolved by the timing and the frontier is decided by Dice."""
    fps, med, iqr = (pd.to_numeric(v, errors="coerce") for v in (fps, median_ms, iqr_ms))
    if fps.notna().sum() < 2:
        return ""
    spread = float((iqr / med).median())
    span = float((fps.max() - fps.min()) / fps.median())
    if span > spread:
        return ""
    return (f"the frame rates of all k lie within {100 * span:.0f} % of each other, less than the spread of one "
            f"timing (median interquartile range {100 * spread:.0f} % of the latency): the masked layers' extra "
            f"cost is not resolved at this width and image size, and which point is on the frontier is decided "
            f"by Dice, not by speed")


def pareto(cfg: StudyConfig, summ: pd.DataFrame, repeats: int = 20, warmup: int = 3) -> pd.DataFrame:
    """The ``pareto`` rows of :func:`summary` (Dice mean ± std over seeds per k) with the frames
    per second of each configuration in the packed engine (batch 1, the preset's width and image
    size, timed side by side in one run, untrained weights: the kernels' run time does not depend
    on the weight values), whether each point is on the Pareto frontier (no other k both faster
    and more accurate), the machine columns and ``load_note``: a warning when other processes
    used half a core or more just before or after the timing (then the frame rates are not final),
    and ``speed_note`` (:func:`speed_note`: when the frame rates of the k are not told apart)."""
    d = summ[summ["experiment"] == "pareto"].copy()
    if d.empty:
        return d
    kws = pareto_configs()
    cases = {c: pack_mbu(create_model("mbu_unet", width=cfg.width, **kws[c]).eval()) for c in d["config"]}
    busy_before = busy_cores(0.5)
    speed = speed_table(cases, image_size=cfg.image_size, repeats=repeats, warmup=warmup).set_index("case")
    busy_after = busy_cores(0.5)
    d = d.assign(**run_columns(cfg), width=cfg.width, image_size=cfg.image_size)
    d["masked_layers"] = [kws[c]["masked"] for c in d["config"]]
    for col in ("fps", "median_ms", "iqr_ms", "repeats", "threads", "cpu", "cpu_isa"):
        d[col] = d["config"].map(speed[col])
    d["on_frontier"] = [not ((d["fps"] > r.fps) & (d["test_dice_mean"] > r.test_dice_mean)).any()
                        for r in d.itertuples()]
    d["load_note"] = load_note(int(speed["threads"].iloc[0]), busy_before, busy_after)
    d["speed_note"] = speed_note(d["fps"], d["median_ms"], d["iqr_ms"])
    return d.sort_values("masked_layers").reset_index(drop=True)


def frontier(cfg: StudyConfig, summ: pd.DataFrame, repeats: int = 300) -> tuple[pd.DataFrame, str]:
    """``(table, how)``: :func:`pareto`'s table for the ``pareto`` rows of ``summ``. The timing
    recorded in ``mbu_ablation_frontier.csv`` (``--frontier``, meant for a quiet machine) is
    used when it was made for exactly these configurations and Dice values, so notebook and
    report show the same frame rates; otherwise (a configuration added or retrained since, or no
    recorded timing) the configurations are timed here with ``repeats`` calls each. ``how``
    says which, with the timing's repeats and CPU."""
    d = summ[summ["experiment"] == "pareto"]
    rec = results.read(results.MBU_ABLATION_FRONTIER, **run_columns(cfg),
                       where=dict(width=cfg.width, image_size=cfg.image_size)).df
    why = "no recorded timing"
    if rec is not None and not d.empty:
        mine = d.set_index("config")[["test_dice_mean", "seeds"]].astype(float).sort_index()
        theirs = rec.set_index("config")[["test_dice_mean", "seeds"]].astype(float).sort_index()
        if list(mine.index) == list(theirs.index) and np.allclose(mine.to_numpy(), theirs.to_numpy(), rtol=0,
                                                                    atol=1e-9):
            front = rec.copy()
            front["on_frontier"] = front["on_frontier"].astype(str).str.lower().eq("true")
            for col in ("load_note", "speed_note"):
                front[col] = front[col].fillna("").astype(str) if col in front else ""
            front = front.sort_values("masked_layers").reset_index(drop=True)
            return front, (f"frame rates: the recorded timing (mbu_ablation_frontier.csv, "
                           f"{int(front['repeats'].iloc[0])} calls per configuration, {front['cpu'].iloc[0]})")
        why = "the recorded timing is of other configurations or other Dice values"
    front = pareto(cfg, summ, repeats=repeats)
    if front.empty:
        return front, "no pareto rows"
    return front, (f"frame rates: timed here, {int(front['repeats'].iloc[0])} calls per configuration ({why}; "
                   f"`python -m unetq.cli.mbu_ablation --experiment pareto --preset {cfg.preset} --frontier` "
                   f"records one on a quiet machine)")


def plot_pareto(front: pd.DataFrame):
    """Seed 001's Figure 7 from scratch: test Dice (mean ± std over seeds) against the packed
    engine's frames per second, one point per k, the frontier joined
    (:func:`unetq.studies.figures.draw_dice_fps_frontier`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    draw_dice_fps_frontier(ax, front)
    ax.set_title("Masked layers in cost order, each trained from scratch")
    fig.tight_layout()
    return fig
