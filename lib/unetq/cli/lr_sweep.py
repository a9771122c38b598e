"""The learning-rate sweep every architecture gets: ``python -m unetq.cli.lr_sweep``.

Trains each architecture at every learning rate of the grid (default
``unetq.studies.tuning.LR_GRID``) with training seed 0 and the preset's procedure (epoch cap,
early stopping, schedule, BatchNorm re-estimation), records every run in ``training.csv`` and
prints, per architecture, the validation loss per learning rate and the one chosen (lowest
validation loss; the test split plays no part), with a warning when the choice is at an end of
the grid. Like the main job, it writes the committed ``reports/`` (``unetq.paths.publish``). The notebooks then train and evaluate every
architecture at its chosen rate (``unetq.studies.tuning.tuned``). Checkpoints are cached, so a
re-run only trains what is missing.

    python -m unetq.cli.lr_sweep --preset quick
    python -m unetq.cli.lr_sweep --preset quick --data /path/to/dataset --lrs 1e-4,3e-4,1e-3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..config import get_preset
from ..paths import publish
from ..data import splits_from_preset
from ..studies.architectures import record_training
from ..studies.benchmark import ARCHS, MODEL_KW
from ..studies.mbu import train_main
from ..studies.tuning import LR_GRID, chosen_lr, lr_at_grid_edge, sweep_rows
from ..train import NonFiniteError, load_or_train


def run(preset: str = "quick", data: str | None = None, lrs=LR_GRID, archs=ARCHS, progress: bool = True) -> pd.DataFrame:
    """Train every ``archs`` x ``lrs`` (seed 0) and return ``arch, lr, val_loss, val_dice, runs,
    chosen, note``; a learning rate whose training diverged (non-finite loss, ``NonFiniteError``)
    gets a row with ``note="diverged: ..."`` and no metrics, and is never chosen."""
    cfg = get_preset(preset, source=data)
    splits = splits_from_preset(cfg)
    out, diverged = [], []
    for arch in tqdm(list(archs), desc="learning-rate sweep", disable=not progress, unit="arch"):
        for lr in lrs:
            run_cfg = cfg.replace(lr=float(lr), train_seed=0)
            kw = MODEL_KW.get(arch, {})
            try:
                if arch == "mbu_unet":
                    model, ckpt = train_main(run_cfg, kw, splits)
                else:
                    model, ckpt = load_or_train(arch, run_cfg, splits=splits, **kw)
            except NonFiniteError as e:  # this learning rate diverged: say so, keep sweeping
                diverged.append(dict(arch=arch, lr=float(lr), val_loss=float("nan"), val_dice=float("nan"), runs=0,
                                     chosen=False, note=f"diverged: {e}"))
                continue
            record_training(arch, run_cfg, ckpt)
        rows = sweep_rows(arch, cfg)
        lr_best, _ = chosen_lr(arch, cfg, rows)
        for lr, g in (rows.groupby("lr") if not rows.empty else []):
            out.append(dict(arch=arch, lr=float(lr), val_loss=float(g["val_loss"].mean()),
                            val_dice=float(g["val_dice"].mean()), runs=len(g), chosen=bool(float(lr) == lr_best),
                            note=""))
        out += [d for d in diverged if d["arch"] == arch]
    return pd.DataFrame(out)


def at_grid_edge(table: pd.DataFrame) -> list[str]:
    """The architectures whose chosen learning rate is the smallest or largest of those swept
    (the optimum may lie outside the grid)."""
    out = []
    for arch, g in table.groupby("arch", sort=False):
        chosen = g.loc[g["chosen"], "lr"]
        if len(chosen) and lr_at_grid_edge(chosen.iloc[0], g["lr"]):
            out.append(str(arch))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.lr_sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--lrs", default=",".join(f"{v:g}" for v in LR_GRID), help="comma-separated learning rates")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    a = ap.parse_args(argv)
    # the sweep chooses the learning rates of the main job: it writes the committed training.csv
    publish()
    data = str(Path(a.data).expanduser().resolve()) if a.data else None
    table = run(a.preset, data, [float(v) for v in a.lrs.split(",") if v.strip()],
                [v.strip() for v in a.archs.split(",") if v.strip()])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for arch in at_grid_edge(table):
        print(f"warning: {arch}'s chosen learning rate is at the edge of the grid; widen --lrs past it",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
