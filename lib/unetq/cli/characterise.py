"""Seed 003's characterisation: ``python -m unetq.cli.characterise`` (``make characterise``).

Every architecture x engine x precision available here, timed over batch sizes and image sizes
(``benchmark_grid.csv``), and mixed-precision training against float32 over batch sizes
(``amp.csv``); the report's "Throughput over batch size and image size" and "AMP training over
batch size" sections draw them (``unetq.studies.characterise``). It times the preset's trained
models, so run the preset's main job first, and run it on a quiet machine: every number is a
timing. About an hour on a 2-core CPU at the cpu-study preset; ``--batch-sizes``,
``--image-sizes`` and ``--archs`` make it smaller. Like the main job it writes the committed
``reports/`` (``unetq.paths.publish``).

    python -m unetq.cli.characterise --preset cpu-study
    python -m unetq.cli.characterise --preset quick --archs unet,mbu_unet --image-sizes 128 --no-amp
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import get_preset
from ..paths import publish
from ..studies import characterise as ch
from ..studies.benchmark import ARCHS


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.characterise", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data", default=None, metavar="PATH", help="a real dataset's root (default: the generator)")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    ap.add_argument("--batch-sizes", default=",".join(map(str, ch.BATCH_SIZES)))
    ap.add_argument("--image-sizes", default=",".join(map(str, ch.IMAGE_SIZES)), help="multiples of 16")
    ap.add_argument("--amp-batch-sizes", default=None, help="batch sizes of the AMP comparison (default: --batch-sizes)")
    ap.add_argument("--no-grid", action="store_true", help="skip the inference grid")
    ap.add_argument("--no-amp", action="store_true", help="skip the AMP comparison")
    ap.add_argument("--max-call-s", type=float, default=None,
                    help="a call slower than this is timed once and bigger batches are skipped (default: the grid preset's)")
    ap.add_argument("--time-cap-s", type=float, default=None,
                    help="seconds of timing per format and group at most (default: the grid preset's)")
    a = ap.parse_args(argv)
    archs = [v.strip() for v in a.archs.split(",") if v.strip()]
    unknown = sorted(set(archs) - set(ARCHS))
    if unknown:
        ap.error(f"unknown architectures {unknown}; choose from {list(ARCHS)}")
    publish()
    data = str(Path(a.data).expanduser().resolve()) if a.data else None
    cfg = get_preset(a.preset, source=data)
    if not a.no_grid:
        s = ch.grid_settings(cfg, _ints(a.batch_sizes), _ints(a.image_sizes), archs, max_call_s=a.max_call_s,
                             time_cap_s=a.time_cap_s)
        df = ch.run_grid(cfg, s)
        counts = df["status"].value_counts().to_dict() if not df.empty else {}
        print(f"benchmark_grid.csv: {len(df)} rows ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    if not a.no_amp:
        amp = ch.amp_over_batch(cfg, archs, _ints(a.amp_batch_sizes or a.batch_sizes))
        cols = ["arch", "amp", "batch_size", "epoch_time_s", "speedup_vs_off", "mem_reduction_vs_off"]
        print(amp[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
