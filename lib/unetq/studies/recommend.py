"""The study's answer (notebook ``08_report``): which architecture and representation to deploy
for which priority, computed from the result tables.

- :func:`candidates`       one row per (architecture, representation): latency, throughput,
  memory, size and test Dice/IoU (mean over training seeds, or one seed's)
- :func:`recommendations`  for each priority the pick, with the candidates tied with it within the
  seed spread (:func:`seed_spread`, :data:`TIE_STDS`)
- :func:`seed_stability`   the accuracy-dependent picks recomputed from each training seed alone
- :func:`answer`           the picks in a few sentences, with the conditions they hold for
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import results
from ..results import Loaded
from ..results import read as load_table
from .notice import not_run_yet
from .sections import (Section, accuracy_rows, bench_rows, int8_rank, load_or_missing, missing, numeric,
                       with_format)
from .tuning import chosen_lrs

# ----------------------------------------------------------------------------------------------
# the answer: which model and representation for which priority
# ----------------------------------------------------------------------------------------------
def candidates(preset: str | None = None, image_size: int | None = None, *, dataset: str | None = None,
               train_seed: int | None = None) -> Loaded:
    """One row per (architecture, representation): latency per image at batch 1, best
    throughput, peak memory, model size (from ``benchmark.csv``) joined with the test Dice/IoU
    (``accuracy_by_format.csv``; the FP32 PyTorch Dice falls back on ``training.csv``, means
    over seeds). With ``train_seed``, the accuracies are those of that training seed alone
    (``accuracy_by_format_seeds.csv``, ``training.csv`` and ``mbu_accuracy.csv`` rows of that seed)."""
    df, msg, size = bench_rows(preset, image_size, dataset)
    if df is None:
        return Loaded(None, msg)
    one_seed = (lambda d: d[pd.to_numeric(d["train_seed"], errors="coerce") == train_seed]
                if train_seed is not None and "train_seed" in d else d)
    sub = df[df["image_size"] == size]
    keys = ["arch", "backend", "precision", "format"]
    b1 = sub[sub["batch_size"] == sub["batch_size"].min()].groupby(keys)[["latency_ms_per_image"]].min()
    agg = sub.groupby(keys).agg(throughput_ips=("throughput_ips", "max"), peak_mem_mb=("peak_mem_mb", "max"),
                                model_size_mb=("model_size_mb", "max"))
    out = b1.join(agg, how="outer").reset_index()
    out["accuracy_source"] = ""
    per_seed = _seed_accuracy(preset, dataset, train_seed)  # every seed deployed (make deploy-seeds)
    acc = per_seed if (per_seed.df is not None or train_seed is not None) else accuracy_rows(preset, dataset)
    for m in ("dice", "iou"):
        out[m] = np.nan
    if acc.df is not None:
        a = acc.df[acc.df["is_default"]].dropna(subset=[m for m in ("dice", "iou") if m in acc.df], how="all")
        a = a.groupby(["arch", "backend", "precision"])[[m for m in ("dice", "iou") if m in acc.df]].first()
        for i, r in out.iterrows():
            k = (r["arch"], r["backend"], r["precision"])
            if k in a.index:
                for m in a.columns:
                    out.at[i, m] = a.loc[k, m]
                out.at[i, "accuracy_source"] = (
                    f"accuracy_by_format_seeds.csv (seed {train_seed})" if train_seed is not None
                    else "accuracy_by_format_seeds.csv (mean over training seeds)" if per_seed.df is not None
                    else "accuracy_by_format.csv")
    tr = load_table(results.TRAINING, preset, dataset=dataset)
    if tr.df is not None and {"arch", "test_dice"} <= set(tr.df.columns):
        best = numeric(tr.df, "test_dice", "test_iou", "val_loss", "lr")
        if "lr" in best.columns:  # the runs at each architecture's chosen learning rate
            lrs = chosen_lrs(best)
            best = best[np.isclose(best["lr"], best["arch"].map(lrs))]
        best = one_seed(best)
        best = best.groupby("arch")[[c for c in ("test_dice", "test_iou") if c in best]].mean()  # over seeds
        for i, r in out.iterrows():
            if np.isnan(r["dice"]) and (r["backend"], r["precision"]) == ("torch", "fp32") and r["arch"] in best.index:
                out.at[i, "dice"] = best.loc[r["arch"], "test_dice"]
                out.at[i, "iou"] = best.loc[r["arch"], "test_iou"] if "test_iou" in best else np.nan
                out.at[i, "accuracy_source"] = "training.csv (PyTorch FP32 test split)"
    mbu = load_table(results.MBU_ACCURACY, preset, dataset=dataset)
    if mbu.df is not None and {"config", "test_dice"} <= set(mbu.df.columns):
        m = numeric(mbu.df, "test_dice", "test_iou", "packed_dice", "packed_iou")
        m = one_seed(m[m["config"].astype(str) == "mbu"])  # notebook 05's main MBU-Net configuration
        if len(m):
            r = m[[c for c in ("test_dice", "test_iou", "packed_dice", "packed_iou") if c in m]].mean()  # over seeds
            for i, c in out.iterrows():
                if c["arch"] != "mbu_unet" or not np.isnan(c["dice"]):
                    continue
                packed = c["backend"] == "bitpack" and pd.notna(r.get("packed_dice"))
                out.at[i, "dice"] = r["packed_dice"] if packed else r["test_dice"]
                out.at[i, "iou"] = r.get("packed_iou" if packed else "test_iou", np.nan)
                out.at[i, "accuracy_source"] = "mbu_accuracy.csv (config mbu)"
    out["image_size"] = size
    return Loaded(out, f"{len(out)} candidates at {size}x{size} px")


def _seed_accuracy(preset, dataset, train_seed: int | None) -> Loaded:
    """``accuracy_by_format_seeds.csv`` shaped as :func:`accuracy_rows` shapes
    ``accuracy_by_format.csv``: the rows of ``train_seed``, or (``None``) the mean over the seeds
    of every representation scored at all of them; ``is_default`` marks the INT8 configuration
    that stands for INT8 (notebook 06's chosen one, else the default)."""
    where = dict(train_seed=train_seed) if train_seed is not None else None
    t = load_table(results.ACCURACY_SEEDS, preset, dataset=dataset, where=where)
    if t.df is None:
        return t
    df = numeric(t.df, "dice", "iou", "train_seed")
    df = df[df["status"].astype(str) == "ok"] if "status" in df else df
    df = df.assign(int8_name=df["int8_name"].fillna("").astype(str) if "int8_name" in df else "")
    keys = ["arch", "backend", "precision", "int8_name"]
    if train_seed is None:  # a representation collapsed at some seed has no mean: it is not a candidate
        n = df["train_seed"].nunique()
        g = df.groupby(keys)
        df = g[["dice", "iou"]].mean()[g.size() == n].reset_index()
    rank = int8_rank(df["int8_name"])
    best = rank.groupby([df[k] for k in keys[:3]]).transform("min")
    return Loaded(with_format(df.assign(is_default=rank == best)), t.message)


def deploy_seeds_command(preset: str | None) -> str:
    return f"make deploy-seeds PRESET={preset or 'quick'}"


def seed_stability(preset: str | None = None, *, dataset: str | None = None, dice_tolerance: float = 0.01,
                   **budgets) -> Section:
    """Does the recommendation hold for every training seed? The accuracy-dependent priorities
    of :func:`recommendations` recomputed from each seed's accuracies alone
    (``accuracy_by_format_seeds.csv``), next to the pick from the means, and whether that pick
    still qualifies at every seed: for the accuracy priorities, its Dice at that seed within
    ``TIE_STDS`` seed standard deviations of the seed's own pick (a tie, as the recommendation
    counts ties); for "fastest at (near) best accuracy", its Dice at that seed within
    ``dice_tolerance`` of the seed's best. ``budgets``: :func:`recommendations`'
    ``latency_budget_ms`` / ``size_budget_mb``, so the recommendation checked is the one shown."""
    title = "Stability across training seeds"
    t = load_or_missing(results.ACCURACY_SEEDS, preset, dataset, deploy_seeds_command(preset))
    if t.df is None:
        return missing(title, t.message)
    seeds = sorted(int(v) for v in pd.to_numeric(t.df["train_seed"], errors="coerce").dropna().unique())
    spread = seed_spread(preset, dataset=dataset)  # read once, shared by every seed's recommendation
    main = recommendations(preset, dataset=dataset, dice_tolerance=dice_tolerance, spread=spread, **budgets)
    if not main.ok:
        return missing(title, main.message)
    noise = spread[0]
    keep = ["best accuracy", "best accuracy within a latency budget", "best accuracy within a size budget",
            "fastest at (near) best accuracy"]
    picks = main.table.set_index("priority").loc[lambda d: d.index.isin(keep)]
    out = pd.DataFrame({"from the means": picks["arch"] + " " + picks["representation"]})
    holds = pd.DataFrame(True, index=out.index, columns=seeds)
    same_arch = pd.Series(True, index=out.index)
    for sd in seeds:
        c = candidates(preset, dataset=dataset, train_seed=sd)
        r = recommendations(preset, dataset=dataset, dice_tolerance=dice_tolerance, train_seed=sd, cands=c,
                            spread=spread, **budgets)
        if not r.ok or c.df is None:
            holds[sd] = False
            continue
        rs = r.table.set_index("priority")
        dice = c.df.set_index(["arch", "format"])["dice"]
        col = []
        for prio in out.index:
            pa, pr = picks.loc[prio, "arch"], picks.loc[prio, "representation"]
            sa, srep, sdice = rs.loc[prio, "arch"], rs.loc[prio, "representation"], rs.loc[prio, "dice"]
            mine = dice.get((pa, pr), np.nan)
            if prio == "fastest at (near) best accuracy":
                ok = mine >= dice.max() - dice_tolerance
            else:
                ok = (noise == noise) and (sdice - mine) <= TIE_STDS * noise
            holds.loc[prio, sd] = bool(ok)
            same_arch[prio] &= sa == pa
            col.append(f"{sa} {srep} ({sdice:.4f}); mean pick {mine:.4f}")
        out[f"seed {sd}"] = col
    out["mean pick qualifies at every seed"] = np.where(holds.all(axis=1), "yes", "no")
    out["same architecture at every seed"] = np.where(same_arch, "yes", "no")
    n_hold = int(holds.all(axis=1).sum())
    text = (f"The recommendation recomputed from one training seed at a time ({len(seeds)} seeds; every "
            f"representation of each seed's model scored on the test split; latency, memory and size from the "
            f"same benchmark rows). For {n_hold} of {len(out)} accuracy-dependent priorities the pick from the means "
            f"still qualifies at every seed (accuracy priorities: within {TIE_STDS:g} x {noise:.4f} Dice of that "
            f"seed's own pick; fastest at near-best: within {dice_tolerance} of that seed's best Dice). Each seed "
            "column shows that seed's own pick with its Dice, and the Dice of the pick from the means at that seed.")
    return Section(title, text, out.reset_index())


#: What a priority of the recommendation shows when no measured candidate meets its criterion
#: (a budget too tight, a column nobody measured): neither missing hardware nor missing work.
NO_CANDIDATE = "no measured candidate meets this criterion"

#: Two accuracies closer than this many seed standard deviations are reported as a tie.
TIE_STDS = 2.0


def seed_spread(preset: str | None = None, *, dataset: str | None = None) -> tuple[float, int, pd.DataFrame | None]:
    """``(noise, seeds, summary)``: the largest standard deviation over training seeds of any
    architecture's test Dice (``training.csv``; NaN with fewer than two seeds), the fewest seeds
    of an architecture, and the per-architecture mean/std table."""
    t = load_table(results.TRAINING, preset, dataset=dataset)
    if t.df is None or "test_dice" not in t.df:
        return float("nan"), 0, None
    df = numeric(t.df, "test_dice", "test_iou", "lr")
    if "lr" in df:  # the runs at each architecture's chosen learning rate (not the other sweep points)
        df = df[np.isclose(df["lr"], df["arch"].map(chosen_lrs(df)))]
    s = results.seed_summary(df, ["arch"], ["test_dice", "test_iou"])
    if s.empty:
        return float("nan"), 0, None
    return float(s["test_dice_std"].max()), int(s["seeds"].min()), s


def recommendations(preset: str | None = None, latency_budget_ms: float | None = None,
                    size_budget_mb: float | None = None, dice_tolerance: float = 0.01,
                    image_size: int | None = None, *, dataset: str | None = None,
                    train_seed: int | None = None, cands: Loaded | None = None,
                    spread: tuple | None = None) -> Section:
    """The study's answer: for each priority, the architecture and representation to deploy,
    computed from the measured tables. Budgets default to twice the fastest latency and a quarter
    of the largest model; ``dice_tolerance`` defines "as accurate as the best". ``cands`` and
    ``spread``: the :func:`candidates` and :func:`seed_spread` of these arguments when the caller
    has them already."""
    title = "Which model and representation to deploy"
    c = cands if cands is not None else candidates(preset, image_size, dataset=dataset, train_seed=train_seed)
    if c.df is None:
        return missing(title, c.message)
    df = c.df
    rows = []

    def pick(priority, pool, col, best="min", criterion=""):
        pool = pool.dropna(subset=[col])
        if pool.empty:
            rows.append(dict(priority=priority, criterion=criterion, arch="-", representation="-",
                             value=NO_CANDIDATE, dice=np.nan))
            return
        # ties: the more accurate, then the faster candidate wins
        tie = [c for c in ("dice", "latency_ms_per_image") if c != col]
        r = pool.sort_values([col, *tie], ascending=[best == "min", *(c != "dice" for c in tie)],
                             na_position="last").iloc[0]
        rows.append(dict(priority=priority, criterion=criterion, arch=r["arch"], representation=r["format"],
                         value=f"{r[col]:.4g} {UNITS.get(col, '')}".strip(), dice=r["dice"]))

    noise, n_seeds, _ = spread if spread is not None else seed_spread(preset, dataset=dataset)

    def ties(pool, row):
        """Other candidates whose Dice is within TIE_STDS seed standard deviations of the pick."""
        if not (noise == noise) or row["arch"] == "-" or not np.isfinite(row["dice"]):
            return ""
        near = pool.dropna(subset=["dice"])
        near = near[(near["dice"] - row["dice"]).abs() <= TIE_STDS * noise]
        return ", ".join(f"{r.arch} {r.format}" for r in near.itertuples()
                         if (r.arch, r.format) != (row["arch"], row["representation"]))

    pick("lowest latency", df, "latency_ms_per_image", "min", "median ms per image at the smallest batch")
    pick("highest throughput", df, "throughput_ips", "max", "images/s at the best batch size")
    pick("smallest model", df, "model_size_mb", "min", "size on disk")
    pick("lowest inference memory", df, "peak_mem_mb", "min", "peak memory at the largest batch")
    pick("best accuracy", df, "dice", "max", "test Dice")
    has = df.dropna(subset=["dice"])
    if not has.empty:
        lat = latency_budget_ms if latency_budget_ms is not None else 2 * df["latency_ms_per_image"].min()
        pick("best accuracy within a latency budget", has[has["latency_ms_per_image"] <= lat], "dice", "max",
             f"test Dice with latency <= {lat:.3g} ms/image")
        size = size_budget_mb if size_budget_mb is not None else df["model_size_mb"].max() / 4
        pick("best accuracy within a size budget", has[has["model_size_mb"] <= size], "dice", "max",
             f"test Dice with model <= {size:.3g} MiB")
        near = has[has["dice"] >= has["dice"].max() - dice_tolerance]
        pick("fastest at (near) best accuracy", near, "latency_ms_per_image", "min",
             f"lowest latency with Dice within {dice_tolerance} of the best")
    else:
        rows.append(dict(priority="accuracy-aware choices", criterion="", arch="-", representation="-",
                         value=not_run_yet("no accuracy per representation (notebook 06)", preset), dice=np.nan))
    table = pd.DataFrame(rows)
    pools = {"best accuracy": df}
    if not has.empty:
        pools.update({"best accuracy within a latency budget": has[has["latency_ms_per_image"] <= lat],
                      "best accuracy within a size budget": has[has["model_size_mb"] <= size]})
    table["ties within the seed spread"] = [ties(pools[r["priority"]], r) if r["priority"] in pools else ""
                                            for _, r in table.iterrows()]
    text = (f"Computed from {c.message}; latency and memory from benchmark.csv, accuracy from "
            f"{', '.join(sorted(set(df['accuracy_source']) - {''})) or 'no accuracy table'}.")
    if noise == noise:
        note = (f"Accuracy differences under {TIE_STDS:g} x {noise:.4f} (the largest standard deviation of test Dice "
                f"over {n_seeds} training seeds) are ties: the candidates listed are as accurate as the pick "
                "within the noise of training.")
    else:
        note = ("Accuracy from one training seed: differences between models cannot be told from the noise of "
                "training here (run a preset with seeds >= 3).")
    return Section(title, text, table, notes=[note, "Timings depend on the machine in the benchmark rows; "
                                                    "compare representations, not absolute numbers."])


def answer(preset: str | None = None, *, dataset: str | None = None) -> Section:
    """The study's answer in a few sentences, with the conditions it holds for (data, image size,
    width, epochs, seeds, machine), from :func:`recommendations` and ``training.csv``."""
    title = "The answer"
    rec = recommendations(preset, dataset=dataset)
    if not rec.ok:
        return missing(title, rec.message)
    r = rec.table.set_index("priority")
    noise, n_seeds, spread = seed_spread(preset, dataset=dataset)
    tr = load_table(results.TRAINING, preset, dataset=dataset).df
    bench = load_table(results.BENCHMARK, preset, dataset=dataset).df
    cond = []
    if tr is not None:
        first = tr.iloc[0]
        cond.append(f"dataset {first.get('dataset', '?')}, {int(first['image_size'])}x{int(first['image_size'])} px "
                    f"inputs, width {int(first['width'])}, up to {int(first['epochs'])} epochs"
                    + (f" with early stopping (patience {int(first['patience'])})"
                       if "patience" in tr and pd.notna(first.get("patience")) else "")
                    + f", {n_seeds} training seed{'s' if n_seeds != 1 else ''}")
    if bench is not None and "cpu" in bench and "status" in bench:
        bench = bench[bench["status"] == "measured"].dropna(subset=["cpu"])
    if bench is not None and "cpu" in bench and len(bench):
        b = bench.iloc[0]
        cond.append(f"timed on {b['cpu']} ({int(b['threads_pinned']) if 'threads_pinned' in b and pd.notna(b['threads_pinned']) else '?'} "
                    f"threads, GPU: {b.get('gpu', 'none')})")
    lines = []

    def say(priority, what):
        if priority in r.index and r.loc[priority, "arch"] != "-":
            row = r.loc[priority]
            tie = row.get("ties within the seed spread", "")
            lines.append(f"- **{what}**: {row['arch']} as {row['representation']} ({row['value']})"
                         + (f"; as accurate within the seed spread: {tie}" if tie else ""))

    say("best accuracy", "Most accurate")
    say("fastest at (near) best accuracy", "Fastest at (near) the best accuracy")
    say("lowest latency", "Lowest latency")
    say("smallest model", "Smallest model")
    if spread is not None:
        parts = [f"{s.arch} {s.test_dice_mean:.3f}" + (f" ± {s.test_dice_std:.3f}" if s.seeds > 1 else "")
                 for s in spread.sort_values("test_dice_mean", ascending=False).itertuples()]
        lines.append(f"- Test Dice in PyTorch FP32 (mean ± std over seeds): {', '.join(parts)}.")
    text = ("Under these conditions: " + "; ".join(cond) + ".\n\n" if cond else "") + "\n".join(lines)
    notes = rec.notes[:1]
    return Section(title, text, notes=notes)


UNITS = {"latency_ms_per_image": "ms/image", "throughput_ips": "images/s", "model_size_mb": "MiB",
          "peak_mem_mb": "MiB", "dice": ""}


