"""ONNX Runtime INT8 vs FP32 on this CPU: ``python -m unetq.cli.deploy_benchmark``.

Default: full-width U-Net (width 64, random weights: speed does not depend on them), 256x256,
batch 1, calibrated on synthetic crack images (``unetq.data``). Variants are timed
**interleaved** in blocks (each round: per variant a short pause, one untimed call, then
``--block`` timed calls; the order rotates), so background load hits all alike while each
session runs in its steady state; the table gives median, p25-p75 and min per variant, the
speed-up over FP32 and the size on disk. Sessions use the CPU runners' default of no spinning
(``--spinning on,off`` compares). Timings taken on a busy machine are only good as ratios
measured side by side.

Variants: ``fp32`` (exported graph), ``fp32-rewrite`` (ConvTranspose rewritten: exact, same
maths), ``int8`` (default INT8: u8 activations / s8 per-channel weights, QDQ, ConvTranspose
rewritten in the NHWC-friendly "transpose" form), ``int8-norewrite`` (ConvTranspose left float),
``int8-dcr`` (rewritten with a DepthToSpace node), and ``int8-qoperator``, ``int8-s8s8`` (int8
activations), ``int8-pertensor``, ``int8-reducerange``, ``int8-sharedconcat`` (one scale per
Concat); and, where OpenVINO is installed (default), ``openvino-fp32`` (f32 inference precision),
``openvino-int8`` (the study's ``int8`` QDQ file run by OpenVINO) and ``openvino-nncf-int8``
(NNCF post-training INT8 from the same calibration images). The goals printed at the end include
"the study's fastest INT8 path is at least as fast as OpenVINO + NNCF" and "within 2x of the INT8
floor": the model's multiply-accumulates at the rate of a large INT8 GEMM measured right after the
variants, on as many threads (``unetq.bench.int8_floor``; ``--no-floor`` skips it).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import torch

from ..bench import interleaved_timings, variant_summary
from ..bench.goals import Goal, load_note, verdict
from ..bench.int8_floor import floor_seconds, gemm_peak, model_macs
from ..data import prepare_splits
from ..deploy import (OrtRunner, QuantConfig, calibration_images, export_onnx, prepare_model,
                      quantize_int8)
from ..deploy.openvino_engine import OpenVinoRunner, ir_bytes, nncf_quantize, openvino_reason
from ..io import write_csv
from ..machine import available_cores, busy_cores, machine_info
from ..models import create_model

VARIANTS: dict[str, dict | None] = {
    "fp32": None,
    "fp32-rewrite": None,
    "int8": {},
    "int8-norewrite": dict(rewrite_convtranspose=False),
    "int8-dcr": dict(rewrite_mode="DCR"),
    "int8-sharedconcat": dict(shared_concat_scale=True),
    "int8-qoperator": dict(quant_format="qoperator"),
    "int8-s8s8": dict(activation_type="int8"),
    "int8-pertensor": dict(per_channel=False),
    "int8-reducerange": dict(reduce_range=True),
    # OpenVINO (CPU): the float model with f32 inference precision, the study's INT8 QDQ file
    # ("int8" above) as OpenVINO runs it, and NNCF's post-training INT8 of the float model.
    "openvino-fp32": None,
    "openvino-int8": None,
    "openvino-nncf-int8": None,
}
DEFAULT_VARIANTS = ("fp32", "int8", "int8-dcr", "int8-norewrite") + (
    ("openvino-fp32", "openvino-int8", "openvino-nncf-int8") if openvino_reason("int8", nncf=True) is None else ())


def crack_calibration_images(n: int, image_size: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic crack images (the training split of a small generated set) at ``image_size``."""
    splits = prepare_splits(source="synthetic", n=max(int(n * 1.25) + 2, 10), source_size=448,
                            image_size=image_size, seed=seed)
    return calibration_images(splits["train"], n, seed)


def build_variants(model, image_size: int, calib: np.ndarray, workdir: Path, variants=DEFAULT_VARIANTS,
                   method: str = "minmax") -> dict[str, Path]:
    """ONNX files for each variant name (see ``VARIANTS``) in ``workdir``."""
    fp32 = export_onnx(model, workdir / "fp32.onnx", image_size)
    paths = {}
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose from {list(VARIANTS)}")
        if name in ("fp32", "openvino-fp32"):
            paths[name] = fp32
        elif name == "openvino-int8":
            paths[name] = quantize_int8(fp32, workdir / "int8.onnx", calib, QuantConfig(method=method),
                                        cache_dir=workdir / "calib")
        elif name == "openvino-nncf-int8":
            paths[name] = nncf_quantize(fp32, workdir / "nncf_int8.xml", calib)
        elif name == "fp32-rewrite":
            prepare_model(fp32, workdir / "fp32_rewrite.onnx", rewrite=True)
            paths[name] = workdir / "fp32_rewrite.onnx"
        else:
            cfg = QuantConfig(method=method, **VARIANTS[name])
            paths[name] = quantize_int8(fp32, workdir / f"{name}.onnx", calib, cfg, cache_dir=workdir / "calib")
    return paths


def run(arch: str = "unet", width: int = 64, image_size: int = 256, batch: int = 1, repeats: int = 10,
        warmup: int = 2, calib_images: int = 16, threads=None, spinning="off",
        variants=DEFAULT_VARIANTS, seed: int = 0, progress: bool = True, block: int = 5,
        settle_s: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build, time and summarize; returns ``(summary, raw timings)``. ``threads`` and ``spinning``
    (``"off"``: the runners' CPU default; ``"on"``: ONNX Runtime's own default) may be lists:
    every variant then runs once per (threads, spinning) session setting, all interleaved in the
    same rounds (names ``variant@<threads>t`` / ``@spin-off``). Timing: :func:`interleaved_timings`
    with ``block`` calls per variant and round."""
    torch.manual_seed(seed)
    model = create_model(arch, width=width).eval()
    calib = crack_calibration_images(calib_images, image_size, seed)
    x = calib[:1].repeat(batch, axis=0) if batch > 1 else calib[:1]
    thread_list = list(threads) if isinstance(threads, (list, tuple)) else [threads]
    spin_list = list(spinning) if isinstance(spinning, (list, tuple)) else [spinning]
    settings = [(t, sp) for t in thread_list for sp in spin_list]
    with tempfile.TemporaryDirectory(prefix="unetq-bench-") as d:
        paths = build_variants(model, image_size, calib, Path(d), variants)
        runners, files, nthreads, spins = {}, {}, {}, {}
        for t, sp in settings:
            suffix = ("" if len(thread_list) == 1 else f"@{t or available_cores()}t") + \
                     ("" if len(spin_list) == 1 else f"@spin-{sp}")
            for k, p in paths.items():
                prec = "int8" if "int8" in k else "fp32"
                if k.startswith("openvino"):  # no spinning setting: OpenVINO's own thread pool
                    r = OpenVinoRunner(p, prec, threads=t or available_cores(), nncf="nncf" in k)
                else:
                    r = OrtRunner(p, prec, threads=t, spinning={"on": True, "off": False}[sp])
                runners[k + suffix], files[k + suffix] = r, p
                nthreads[k + suffix], spins[k + suffix] = r.details["threads"], sp
        times = interleaved_timings({k: (lambda r=r: r(x)) for k, r in runners.items()}, repeats, warmup, progress,
                                    block=block, settle_s=settle_s)
        summary = variant_summary(times)
        summary["size_bytes"] = [ir_bytes(files[k]) for k in summary.index]
        summary["size_vs_fp32"] = np.nan
        for k in summary.index:  # ratios against the FP32 run with the same session settings
            base = "fp32" + k[len(k.split("@")[0]):]
            if base in summary.index:
                summary.loc[k, "speedup_vs_fp32"] = summary.loc[base, "median_s"] / summary.loc[k, "median_s"]
                summary.loc[k, "size_vs_fp32"] = summary.loc[k, "size_bytes"] / summary.loc[base, "size_bytes"]
        summary["threads"] = [nthreads[k] for k in summary.index]
        summary["spinning"] = [spins[k] for k in summary.index]
    return summary, times


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(prog="python -m unetq.cli.deploy_benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="unet", choices=["unet", "ghost_unet", "squeeze_unet"])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--threads", default=None,
                   help="ORT intra-op threads (default: all cores); a comma list compares settings, e.g. 1,2")
    p.add_argument("--spinning", default="off",
                   help="session.intra_op.allow_spinning: off (the CPU runners' default) or on (ONNX Runtime's "
                        "own default); a comma list compares them")
    p.add_argument("--block", type=int, default=5,
                   help="timed calls per variant in a row in each interleaved round (1: call by call)")
    p.add_argument("--settle", type=float, default=0.05,
                   help="seconds of pause (then one untimed call) before each block")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, from {','.join(VARIANTS)}")
    p.add_argument("--no-floor", action="store_true", help="skip the INT8 GEMM floor (a few seconds)")
    p.add_argument("--floor-size", type=int, default=1024, help="side of the square INT8 GEMM of the floor")
    p.add_argument("--csv", default=None, help="also write the summary (with machine columns) here")
    a = p.parse_args(argv)
    threads = [int(t) if t.strip() not in ("", "all") else None for t in a.threads.split(",")] \
        if a.threads else None
    if isinstance(threads, list) and len(threads) == 1:
        threads = threads[0]
    spinning = [v.strip() for v in a.spinning.split(",")]
    for v in spinning:
        if v not in ("on", "off"):
            p.error(f"--spinning: {v!r} is not one of on, off")
    busy_before = busy_cores(1.0)
    summary, _ = run(a.arch, a.width, a.image_size, a.batch, a.repeats, a.warmup, a.calib_images, threads,
                     spinning if len(spinning) > 1 else spinning[0],
                     tuple(v.strip() for v in a.variants.split(",") if v.strip()), block=a.block, settle_s=a.settle)
    floor = None
    if not a.no_floor:
        peak = gemm_peak(a.floor_size, int(summary["threads"].max()), seconds=2.0 if a.floor_size >= 512 else 0.2)
        macs = model_macs(create_model(a.arch, width=a.width).eval(), a.image_size, a.batch)
        floor = floor_seconds(macs, peak)
        summary["int8_floor_s"], summary["gemm_int8_macs_per_s"] = floor, peak["macs_per_s"]
        summary["vs_int8_floor"] = summary["median_s"] / floor
    pd.set_option("display.width", 200)
    print(f"{a.arch} width {a.width}, {a.image_size}x{a.image_size}, batch {a.batch}, "
          f"{a.repeats} timed calls per variant in interleaved blocks of {a.block}, ONNX Runtime {onnxruntime.__version__} CPU, "
          f"{available_cores()} cores")
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    s = summary
    for k in s.index:
        if k.split("@")[0] == "int8":
            base = "fp32" + k[len("int8"):]
            if base in s.index:
                print(f"\n{k} vs {base}: {s.loc[base, 'median_s'] / s.loc[k, 'median_s']:.2f}x faster (medians), "
                      f"{s.loc[base, 'min_s'] / s.loc[k, 'min_s']:.2f}x (minima); size "
                      f"{s.loc[k, 'size_bytes'] / s.loc[base, 'size_bytes']:.3f} of FP32 "
                      f"(1/{s.loc[base, 'size_bytes'] / s.loc[k, 'size_bytes']:.2f})")
    for sfx in ("", "@spin-off", "@spin-on"):  # the runners' default session settings first
        i8, f32 = "int8" + sfx, "fp32" + sfx
        if i8 in s.index and f32 in s.index:
            print(f"\n== goals (ratios from this run{', ' + sfx[1:] if sfx else ''}) ==")
            goals = [Goal("ONNX Runtime INT8 vs FP32, medians", s.loc[f32, "median_s"] / s.loc[i8, "median_s"], 3.5),
                     Goal("INT8 model size as a fraction of FP32",
                          s.loc[i8, "size_bytes"] / s.loc[f32, "size_bytes"], 1 / 3.5, at_least=False, unit="")]
            nncf = "openvino-nncf-int8" + sfx
            if nncf in s.index:  # the study's best INT8 path must be at least as fast as OpenVINO + NNCF
                best = min((k for k in s.index if k.split("@")[0] in ("int8", "openvino-int8") and k.endswith(sfx)),
                           key=lambda k: s.loc[k, "median_s"])
                goals.append(Goal(f"the study's fastest INT8 path ({best}) vs OpenVINO + NNCF INT8",
                                  s.loc[nncf, "median_s"] / s.loc[best, "median_s"], 1.0))
            if floor is not None:
                best = min((k for k in s.index if "int8" in k and k.endswith(sfx)), key=lambda k: s.loc[k, "median_s"])
                print(f"INT8 floor: {floor * 1e3:.2f} ms = {macs / 1e9:.2f} G multiply-accumulates at "
                      f"{peak['macs_per_s'] / 1e9:.0f} G/s (a {peak['size']}^3 INT8 GEMM, MatMulInteger, "
                      f"{peak['threads']} threads)")
                goals.append(Goal(f"fastest INT8 path ({best}) over the INT8 floor", s.loc[best, "median_s"] / floor,
                                  2.0, at_least=False))
            print(verdict(goals))
            break
    note = load_note(int(summary["threads"].max()), busy_before, busy_cores(1.0))
    if note:
        print(note)
    if a.csv:
        out = summary.reset_index().assign(arch=a.arch, width=a.width, image_size=a.image_size, batch=a.batch,
                                           **machine_info())
        write_csv(out, a.csv)
    return summary


if __name__ == "__main__":
    main()
