"""Every representation of every training seed: ``python -m unetq.cli.deploy_seeds`` (``make deploy-seeds``).

Exports each training seed's model of U-Net, Ghost U-Net and Squeeze U-Net (at the chosen
learning rate) to every representation this machine runs and scores it on the test split
(``unetq.studies.deploy_seeds``): ``accuracy_by_format_seeds.csv``, from which the report checks
whether its recommendation holds for every seed. Needs the preset's trained checkpoints (a
missing one is trained first). No timing: it may run beside other work. Like the main job it
writes the committed ``reports/`` (``unetq.paths.publish``).

    python -m unetq.cli.deploy_seeds --preset cpu-study
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import get_preset
from ..paths import publish
from ..studies import deploy_seeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.deploy_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--archs", default=",".join(deploy_seeds.ARCHS))
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the preset's)")
    a = ap.parse_args(argv)
    archs = [v.strip() for v in a.archs.split(",") if v.strip()]
    bad = sorted(set(archs) - set(deploy_seeds.ARCHS))
    if bad:
        ap.error(f"unknown architectures {bad}; choose from {list(deploy_seeds.ARCHS)}")
    publish()
    data = str(Path(a.data).expanduser().resolve()) if a.data else None
    cfg = get_preset(a.preset, source=data)
    seeds = [int(v) for v in a.seeds.split(",")] if a.seeds else None
    df = deploy_seeds.run(cfg, archs, seeds)
    print(deploy_seeds.summary(df).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
