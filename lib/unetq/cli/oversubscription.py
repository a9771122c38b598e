"""Two training jobs on one small machine: ``python -m unetq.cli.oversubscription``.

Times one training step of a U-Net (width 16, 96x96, batch 8 by default: the ``quick`` and
``cpu-study`` presets' setting) in a fresh process, alone and beside a second process that trains
the same model without pause, under OpenMP's default wait policy and under
``OMP_WAIT_POLICY=PASSIVE`` (the one the study's long jobs use, ``unetq.machine.LONG_JOB_ENV``).
Every case runs in its own processes, one after the other, so the table compares the policies
side by side in one run. Run it on an otherwise quiet machine: the competitor is the only load
it means to measure.

    python -m unetq.cli.oversubscription
    python -m unetq.cli.oversubscription --seconds 30 --out reports/results/oversubscription.csv
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ..io import write_csv
from ..machine import available_cores, machine_info

#: (case, probe's wait policy, competitor's wait policy or None: no competitor)
CASES = (
    ("alone, default policy", None, "none"),
    ("alone, passive", "PASSIVE", "none"),
    ("beside a training job, both default", None, None),
    ("beside a training job, both passive", "PASSIVE", "PASSIVE"),
)

_STEP = """
import json, sys, time, torch
from unetq.models import create_model
width, size, batch, seconds = {width}, {size}, {batch}, {seconds}
torch.manual_seed(0)
m = create_model("unet", width=width)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.rand(batch, 3, size, size)
y = (torch.rand(batch, 1, size, size) > 0.9).float()
def step():
    opt.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(m(x), y).backward()
    opt.step()
step(); step()
t0, n = time.perf_counter(), 0
while time.perf_counter() - t0 < seconds:
    step(); n += 1
print(json.dumps(dict(steps=n, s_per_step=(time.perf_counter() - t0) / n, threads=torch.get_num_threads())))
"""


def _env(policy: str | None) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


def run(seconds: float = 20.0, width: int = 16, size: int = 96, batch: int = 8,
        settle_s: float = 5.0) -> pd.DataFrame:
    """One row per :data:`CASES` entry: ``case, probe_policy, competitor, s_per_step, steps,
    threads, x_vs_alone_default`` (the probe's time per step over the first case's); each
    competitor gets ``settle_s`` seconds to reach its training loop before the probe starts."""
    probe = _STEP.format(width=width, size=size, batch=batch, seconds=seconds)
    forever = _STEP.format(width=width, size=size, batch=batch, seconds=10 * seconds + 600)
    rows = []
    for case, policy, competitor in CASES:
        rival = None
        if competitor != "none":
            rival = subprocess.Popen([sys.executable, "-c", forever], env=_env(competitor),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(settle_s)
        try:
            out = subprocess.run([sys.executable, "-c", probe], env=_env(policy), capture_output=True, text=True,
                                 check=True, timeout=seconds * 20 + 300)
        finally:
            if rival is not None:
                rival.kill()
                rival.wait()
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(dict(case=case, probe_policy=policy or "default",
                         competitor="none" if competitor == "none" else (competitor or "default"), **r))
    df = pd.DataFrame(rows)
    df["x_vs_alone_default"] = df["s_per_step"] / df["s_per_step"].iloc[0]
    df["width"], df["image_size"], df["batch_size"], df["cores"] = width, size, batch, available_cores()
    for k, v in machine_info().items():
        df[k] = v
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.oversubscription", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per case (default 20)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=None, help="write the table to this CSV (atomically)")
    a = ap.parse_args(argv)
    df = run(a.seconds, a.width, a.image_size, a.batch)
    print(df[["case", "s_per_step", "steps", "x_vs_alone_default"]].to_string(
        index=False, float_format=lambda v: f"{v:.3f}"))
    if a.out:
        write_csv(df, Path(a.out), index=False)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
