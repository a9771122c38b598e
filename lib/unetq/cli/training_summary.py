"""What ``training.csv`` says about one preset: ``python -m unetq.cli.training_summary --preset cpu-study``.

Per architecture: the learning rates swept (training seed 0) with their validation loss, the one
chosen (lowest validation loss), and at that rate, over the training seeds: test Dice mean and
standard deviation, epochs trained against the cap and how many runs stopped at the cap (not
converged) or early (converged by the patience rule). Only reads the committed table; the numbers
the reports README quotes for a preset come from this printout.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from .. import results
from ..studies.tuning import chosen_lrs, lr_at_grid_edge


def summary(preset: str, dataset: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(sweep, chosen)``: the learning-rate rows of seed 0, and the seed summary at the chosen rates."""
    loaded = results.read(results.TRAINING, preset, dataset=dataset)
    if loaded.df is None:
        raise SystemExit(loaded.message)
    t = loaded.df
    t = t[t["amp"].astype(str) == "off"]
    sweep = (t[t["train_seed"] == 0].sort_values(["arch", "lr"])
             [["arch", "lr", "epochs_trained", "epochs", "best_epoch", "val_loss", "val_dice", "test_dice"]])
    lrs = chosen_lrs(t)
    rows = []
    for arch, lr in lrs.items():
        g = t[(t["arch"] == arch) & (t["lr"].astype(float) == lr)]
        rows.append(dict(arch=arch, lr=lr, seeds=len(g), test_dice_mean=g["test_dice"].mean(),
                         test_dice_std=g["test_dice"].std(ddof=1) if len(g) > 1 else float("nan"),
                         epochs_trained_mean=g["epochs_trained"].mean(), epoch_cap=int(g["epochs"].max()),
                         runs_at_cap=int((g["epochs_trained"] >= g["epochs"]).sum()),
                         best_epoch_max=int(g["best_epoch"].max()),
                         lr_at_grid_edge=lr_at_grid_edge(lr, t[t["arch"] == arch]["lr"])))
    return sweep, pd.DataFrame(rows).sort_values("test_dice_mean", ascending=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.training_summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--dataset", default=None, help="dataset identity (default: every dataset)")
    a = ap.parse_args(argv)
    sweep, chosen = summary(a.preset, a.dataset)
    fmt = dict(index=False, float_format=lambda v: f"{v:.4g}")
    print(f"== learning-rate sweep, preset {a.preset}, training seed 0 (training.csv) ==")
    print(sweep.to_string(**fmt))
    print("\n== at the chosen learning rate, over training seeds ==")
    print(chosen.to_string(**fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
