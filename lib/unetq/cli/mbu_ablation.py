"""MBU-Net variants from scratch: ``python -m unetq.cli.mbu_ablation`` (``unetq.studies.ablations``).

``--experiment table1``: seed 001's Table 1 (full-precision, INT8 and INT4 weights, MBU-Net,
pure binary); ``--experiment order``: k layers masked in cost order, in reverse and at random;
``--experiment pareto``: k = 0 .. 12 layers masked in cost order (seed 001's Figure 7; notebook
05 joins it with the packed engine's frames per second; ``--frontier`` trains nothing and writes
that join for the configurations recorded so far to ``mbu_ablation_frontier.csv``: time it on a
quiet machine, the table's ``load_note`` says when it was not).
Each configuration gets its own learning rate from the grid (seed 0, lowest validation loss),
then the preset's seeds at it, every run to early stopping. Writes ``mbu_ablation.csv`` and prints
mean ± std over seeds. Checkpoints are cached: a re-run only trains what is missing, and
``--only`` restricts it to some configurations. Like the main job it writes the committed
``reports/`` (``unetq.paths.publish``).

    python -m unetq.cli.mbu_ablation --experiment order --preset cpu-study
    python -m unetq.cli.mbu_ablation --experiment table1 --preset cpu-study --only int8,int4
    python -m unetq.cli.mbu_ablation --experiment pareto --preset cpu-study --lrs 3e-3,1e-2,3e-2
    python -m unetq.cli.mbu_ablation --experiment pareto --preset cpu-study --frontier
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import results
from ..config import get_preset
from ..paths import publish
from ..studies import ablations
from ..studies.tuning import LR_GRID


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.mbu_ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", default="table1", choices=ablations.EXPERIMENTS)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--k", type=int, default=4, help="masked layers (MBU-Net row; every row of --experiment order)")
    ap.add_argument("--random-draws", type=int, default=2, help="random masking sets (--experiment order)")
    ap.add_argument("--lrs", default=",".join(f"{v:g}" for v in LR_GRID), help="comma-separated learning rates")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds (default: the preset's)")
    ap.add_argument("--only", default=None, help="comma-separated configurations to run")
    ap.add_argument("--frontier", action="store_true",
                    help="--experiment pareto: train nothing; time the packed engine for every recorded k and "
                         "write Dice against frames per second to mbu_ablation_frontier.csv")
    ap.add_argument("--repeats", type=int, default=20, help="timed repeats per configuration (--frontier)")
    a = ap.parse_args(argv)
    if a.frontier and a.experiment != "pareto":
        ap.error("--frontier goes with --experiment pareto")
    publish()
    data = str(Path(a.data).expanduser().resolve()) if a.data else None
    cfg = get_preset(a.preset, source=data)
    if a.frontier:
        return _frontier(cfg, a.repeats)
    df = ablations.run(cfg, a.experiment, a.k, a.random_draws, [float(v) for v in a.lrs.split(",") if v.strip()],
                       a.seeds, only=[c.strip() for c in a.only.split(",")] if a.only else None)
    summ = ablations.summary(df, epoch_cap=cfg.epochs)
    if summ.empty:
        print("no run finished")
        return 1
    print(summ.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _, r in summ[summ["lr_at_grid_edge"]].iterrows():
        print(f"warning: {r['config']}'s chosen learning rate {r['lr']:g} is at the edge of the grid; widen --lrs",
              file=sys.stderr)
    for _, r in summ[summ["seeds_at_epoch_cap"] > 0].iterrows():
        print(f"note: {r['config']}: {int(r['seeds_at_epoch_cap'])} of {int(r['seeds'])} seeds ended at the "
              f"{cfg.epochs}-epoch cap, not by early stopping (they may still have been improving)", file=sys.stderr)
    return 0


def _frontier(cfg, repeats: int) -> int:
    summ, note = ablations.recorded(cfg, "pareto")
    print(note)
    if summ.empty:
        return 1
    front = ablations.pareto(cfg, summ, repeats=repeats)
    results.write(results.MBU_ABLATION_FRONTIER, front)
    cols = ["config", "masked_layers", "lr", "seeds", "test_dice_mean", "test_dice_std", "fps", "median_ms",
            "on_frontier"]
    print(front[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"packed engine, batch 1, {cfg.image_size} px, width {cfg.width}, {int(front['threads'].iloc[0])} "
          f"thread(s), {front['cpu'].iloc[0]}")
    if front["speed_note"].iloc[0]:
        print(f"note: {front['speed_note'].iloc[0]}")
    if front["load_note"].iloc[0]:
        print(front["load_note"].iloc[0], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
