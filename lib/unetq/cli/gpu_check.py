"""Every CUDA path of the study in one short run: ``make gpu-check`` (``python -m unetq.cli.gpu_check``).

Meant for a GPU lent for a few minutes: it explores nothing, runs one fixed plan and writes one
table, ``reports/results/gpu_check_<gpu>.csv`` (``--out`` moves it), one row per measurement,
with the machine columns. The plan, sized to finish in well under 8 minutes on one H200:

1. **AMP training** (seed 003, Eqs. 17-18): one epoch of each architecture (U-Net, Ghost U-Net,
   Squeeze U-Net at width 64, 256x256) in float32, fp16 (with a gradient scaler) and bf16
   autocast, at batch sizes 8, 16 and 32: epoch time, images/s, peak allocated memory, and the
   speed-up and memory-reduction factor over float32 of the same batch size.
2. **Inference**: each architecture in PyTorch FP32, FP16 and BF16 (weights in that dtype),
   eager and ``torch.compile`` with CUDA graphs (``mode="reduce-overhead"``), at batch 1 and 8,
   timed in interleaved blocks (a runner call: host array in, host array out, as every runner of
   the study); speed-up over eager FP32 of the same architecture and batch.
3. **Triton MBU-Net kernel**: the packed MBU-Net (width 16, k = 4) on the GPU compared bit for
   bit with the CPU packed engine on the same images (``max_abs_diff``), and timed against the
   U-Net in PyTorch FP16 / FP32 on the GPU.

TensorRT and onnxruntime-gpu are not part of it (they cannot be installed on the lent machine);
their rows in the main benchmark keep saying why.

``--dry-run`` runs the same plan on the CPU at toy sizes (width 4, 32x32, a few calls): the test
command uses it so the script is known to work before a GPU is spent on it; CUDA-only rows then
say "not measured on this machine" with the reason.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..bench import speed_table
from ..bitpack import pack_mbu
from ..bitpack import triton_kernels as tk
from ..config import get_preset
from ..data import splits_from_preset
from ..deploy import TorchRunner, runner_unavailable_reason
from ..io import write_csv
from ..machine import cuda_available, machine_info
from ..models import create_model
from ..paths import published_dir
from ..train.amp import amp_comparison, amp_modes

ARCHS = ("unet", "ghost_unet", "squeeze_unet")
FULL = dict(archs=ARCHS, width=64, image_size=256, train_batches=(8, 16, 32), infer_batches=(1, 8), repeats=30, warmup=5,
            mbu_width=16, mbu_image_size=256)
DRY = dict(archs=("unet",), width=4, image_size=32, train_batches=(4,), infer_batches=(1,), repeats=2, warmup=1,
           mbu_width=4, mbu_image_size=32)


def gpu_slug() -> str:
    """``nvidia-h200`` from the CUDA device name; ``cpu`` without CUDA."""
    if not cuda_available():
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def amp_rows(plan: dict, preset: str, device: str, progress: bool) -> pd.DataFrame:
    cfg = get_preset(preset).replace(width=plan["width"], image_size=plan["image_size"])
    splits = splits_from_preset(cfg)
    frames = []
    for arch in plan["archs"]:
        for bs in plan["train_batches"]:
            df = amp_comparison(arch, cfg.replace(batch_size=bs), amp_modes(device), epochs=1, device=device,
                                splits=splits, progress=progress)
            frames.append(df.assign(step="amp training", case=df["amp"].map(lambda m: f"train {m}")))
    return pd.concat(frames, ignore_index=True)


def inference_rows(plan: dict, device: str) -> pd.DataFrame:
    frames = []
    for arch in plan["archs"]:
        torch.manual_seed(0)
        model = create_model(arch, width=plan["width"]).eval()
        for bs in plan["infer_batches"]:
            cases, skipped = {}, []
            for prec in ("fp32", "fp16", "bf16"):
                for compiled in (False, True):
                    name = f"{arch} torch{' compile' if compiled else ''} {prec}"
                    backend = "torch_compile" if compiled else "torch"
                    why = runner_unavailable_reason(backend, prec)
                    if device == "cpu" and (prec == "fp16" or compiled):
                        why = why or "dry run on the CPU: CUDA path only"
                    if why:
                        skipped.append(dict(case=name, status=f"not measured on this machine: {why}"))
                        continue
                    cases[name] = TorchRunner(model, prec, device=device, compile=compiled,
                                              compile_mode="reduce-overhead" if compiled and device == "cuda" else None)
            df = speed_table(cases, image_size=plan["image_size"], batch_size=bs, repeats=plan["repeats"],
                             warmup=plan["warmup"])
            base = df.loc[df["case"] == f"{arch} torch fp32", "median_ms"]
            df["speedup_vs_eager_fp32"] = float(base.iloc[0]) / df["median_ms"] if len(base) else np.nan
            frames.append(df.assign(step="inference", arch=arch, status="ok"))
            frames.append(pd.DataFrame(skipped).assign(step="inference", arch=arch, batch_size=bs,
                                                       image_size=plan["image_size"]))
    return pd.concat(frames, ignore_index=True)


def triton_rows(plan: dict) -> pd.DataFrame:
    why = tk.unavailable_reason()
    if why is not None or not cuda_available():
        return pd.DataFrame([dict(step="triton", case="MBU-Net Triton bitpack",
                                  status=f"not measured on this machine: {why or 'no CUDA device'}")])
    torch.manual_seed(0)
    w, size = plan["mbu_width"], plan["mbu_image_size"]
    mbu = create_model("mbu_unet", width=w, masked=4).eval()
    packed = pack_mbu(mbu)
    gpu = tk.PackedMBUCuda(packed)
    x = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    cpu_out = np.asarray(packed(x), dtype=np.float32)
    gpu_out = gpu.run(torch.from_numpy(x).cuda()).float().cpu().numpy()
    diff = float(np.abs(cpu_out - gpu_out).max())
    unet = create_model("unet", width=w).eval()
    cases = {"MBU-Net Triton bitpack": lambda a: gpu.run(torch.from_numpy(a).cuda()).cpu(),
             "U-Net torch FP32 (CUDA)": TorchRunner(unet, "fp32", device="cuda"),
             "U-Net torch FP16 (CUDA)": TorchRunner(unet, "fp16", device="cuda")}
    df = speed_table(cases, image_size=size, batch_size=1, repeats=plan["repeats"], warmup=plan["warmup"])
    fp16 = float(df.loc[df["case"] == "U-Net torch FP16 (CUDA)", "median_ms"].iloc[0])
    return df.assign(step="triton", status="ok", max_abs_diff_vs_cpu_engine=diff,
                     speedup_vs_unet_fp16=fp16 / df["median_ms"])


def run(dry_run: bool = False, progress: bool = True) -> pd.DataFrame:
    """The whole plan (see the module docstring); one tidy frame."""
    device = "cuda" if cuda_available() and not dry_run else "cpu"
    plan = DRY if dry_run else FULL
    t0 = time.perf_counter()
    parts = [amp_rows(plan, "ci" if dry_run else "quick", device, progress), inference_rows(plan, device),
             triton_rows(plan)]
    out = pd.concat(parts, ignore_index=True)
    info = machine_info()
    for k, v in info.items():
        if k not in out:
            out[k] = v
    return out.assign(dry_run=dry_run, gpu_check_seconds=round(time.perf_counter() - t0, 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="the same plan on the CPU at toy sizes (tests)")
    ap.add_argument("--out", default=None, help="CSV to write (default reports/results/gpu_check_<gpu>.csv)")
    a = ap.parse_args(argv)
    if not a.dry_run and not cuda_available():
        print("error: no CUDA device here; run `make gpu-check` on a GPU machine (or --dry-run)", file=sys.stderr)
        return 2
    df = run(a.dry_run)
    out = Path(a.out) if a.out else published_dir() / "results" / f"gpu_check_{gpu_slug()}.csv"
    write_csv(df, out)
    show = [c for c in ("step", "arch", "case", "batch_size", "median_ms", "epoch_time_s", "peak_mem_mb",
                        "speedup_vs_off", "mem_reduction_vs_off", "speedup_vs_eager_fp32", "speedup_vs_unet_fp16",
                        "max_abs_diff_vs_cpu_engine", "status") if c in df]
    print(df[show].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {out} ({df['gpu_check_seconds'].iloc[0]:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
