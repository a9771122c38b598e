"""Do the zeros emerge? ``python -m unetq.cli.mbu_zeros`` (seed 001's sparsity claim, Figure 3a).

Trains MBU-Nets from scratch under the ratio rule (TWN, the study's default) and the emergent
rule (fixed dead zone on the latent weights), by the main study's procedure and the MBU-Net's
chosen learning rate, for the preset's training seeds; writes ``mbu_zeros.csv`` (zero fraction
per epoch and masked layer, with each run's test Dice) and prints the summary
(``unetq.studies.zeros``). Checkpoints are cached: a re-run only trains what is missing. Like the
main job it writes the committed ``reports/`` (``unetq.paths.publish``).

    python -m unetq.cli.mbu_zeros --preset cpu-study
    python -m unetq.cli.mbu_zeros --preset quick --rules emergent --masked 4,12 --seeds 1
    python -m unetq.cli.mbu_zeros --preset cpu-study --rules emergent-torch-init
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import get_preset
from ..models.mbu_unet import BACKBONES, DEFAULT_BACKBONE
from ..paths import publish
from ..studies import zeros


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.mbu_zeros", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--rules", default="emergent,ratio",
                    help=f"comma-separated, of: {', '.join(zeros.RULES)}")
    ap.add_argument("--masked", default="4", help="comma-separated masked-layer counts (cost order), e.g. 4,12")
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES))
    ap.add_argument("--seeds", type=int, default=None, help="training seeds (default: the preset's)")
    a = ap.parse_args(argv)
    publish()
    data = str(Path(a.data).expanduser().resolve()) if a.data else None
    cfg = get_preset(a.preset, source=data)
    df = zeros.run(cfg, [r.strip() for r in a.rules.split(",") if r.strip()],
                   [int(k) for k in a.masked.split(",") if k.strip()], a.backbone, a.seeds)
    summ = zeros.summary(df) if not df.empty else df
    if not summ.empty:
        print(summ.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(zeros.verdict(summ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
