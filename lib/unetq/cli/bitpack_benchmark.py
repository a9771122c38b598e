"""Speed of the bit-packed engine: ``python -m unetq.cli.bitpack_benchmark``.

1. one binary 3x3 conv layer (default 256 -> 256 channels at 64x64, batch 1) in the packed
   engine (binary; masked with one popcount; masked with the paper's two popcounts) against the
   same layer in PyTorch FP32 and OpenVINO's ``BinaryConvolution``, same thread count, and the
   binary MACs per second it reaches against this CPU's XOR+popcount ceiling
   (``unetq.bench.popcount_ceiling``);
2. per ``--image-size``, the whole MBU-Net (cost-aware masking of ``--masked`` layers; the
   engine's static row split and its dynamic one) against the U-Net of the same width in PyTorch
   FP32 / BF16 / compiled, ONNX Runtime FP32 and INT8, OpenVINO INT8 (NNCF), and against the
   MBU-Net's own backbone in full precision quantized to INT8 by ONNX Runtime and by OpenVINO +
   NNCF (the peers of the goal "2x the fastest INT8 U-Net of the same backbone width"); then, at
   the first size, the packed engine and those peers again while another process spins on one
   core (a machine with other load);
3. model sizes; 4. on a CUDA machine with Triton, the Triton engine against PyTorch FP16/FP32;
5. the accuracy gap from ``mbu_accuracy.csv`` when notebook 05 has written it.

Seed 001's network is width 64: ``--width 64 --image-size 256,512``.

Every comparison is timed in interleaved blocks (``unetq.bench.speed_table``: per round, a few
consecutive calls of each case, the order rotating), so background load hits all cases alike
while each runtime runs in its steady state; the ratios are the result, absolute times depend
on the machine and its load.
Untrained weights are used: the run time of these kernels does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import subprocess
import sys

import pandas as pd
import torch
import torch.nn.functional as F

from .. import paths, results
from ..bench import measure_interleaved, speed_table
from ..bench.popcount_ceiling import xor_popcount_peak
from ..bench.goals import Goal, load_note, verdict
from ..bitpack import PackedConv3x3, Segments, new_buffer, pack_activations, pack_mbu
from ..bitpack import triton_kernels as tk
from ..bitpack.kernels import popcount_instruction
from ..deploy import TorchRunner, make_runner, runner_unavailable_reason
from ..deploy.openvino_engine import binary_conv3x3, openvino_reason
from ..deploy.quantize import calibration_batch
from ..io import write_csv
from ..machine import busy_cores, pin_threads
from ..models import create_model, weight_bytes
from ..models.binary_layers import BNSign, QuantConv2d, make_weight_quantizer
from ..studies.mbu import DEFAULT_STEM, speed_cases


def _fmt(df: pd.DataFrame, ref: str | None = None, ref2: str | None = None) -> str:
    d = df[["case", "median_ms", "q1_ms", "q3_ms", "repeats"]].copy()
    if ref is not None:
        d[f"x vs {ref}"] = float(df.set_index("case").loc[ref, "median_ms"]) / df["median_ms"]
    if ref2 is not None and ref2 in set(df["case"]):
        d[f"x vs {ref2}"] = float(df.set_index("case").loc[ref2, "median_ms"]) / df["median_ms"]
    return d.to_string(index=False, float_format=lambda v: f"{v:.3f}")


OV_BINARY = "conv3x3 OpenVINO BinaryConvolution"
#: ``create_model("mbu_unet", ...)`` keywords of the MBU-Net's own backbone in full precision
#: (float convs, ReLU, float stem): the U-Net of the same backbone and width, the packed
#: engine's INT8 peers are quantized from it.
BACKBONE_FP = dict(base="fp", activation="relu", stem="float")
PEER_ORT = "U-Net (MBU-Net backbone) ONNX Runtime INT8"
PEER_OV = "U-Net (MBU-Net backbone) OpenVINO INT8 (NNCF)"
#: Rows per chunk of the dynamic schedule (``pack_mbu(chunk_rows=...)``).
DYNAMIC_CHUNK_ROWS = 2
def layer_benchmark(channels: int = 256, size: int = 64, repeats: int = 20, warmup: int = 3,
                    threads: int | None = None) -> pd.DataFrame:
    """Single 3x3 conv layer: PyTorch FP32 vs packed binary / masked (both encodings)."""
    torch.manual_seed(0)
    x = torch.where(torch.rand(1, channels, size, size) > 0.5, 1.0, -1.0)
    cases = {}
    w = torch.randn(channels, channels, 3, 3).sign()

    def torch_fp32(_):
        with torch.inference_mode():
            return F.conv2d(x, w, padding=1)

    cases["conv3x3 torch FP32"] = torch_fp32
    inp = pack_activations(x.numpy())
    for kind, form, name in [("binary", "xor_and", "conv3x3 packed binary"),
                             ("masked", "xor_and", "conv3x3 packed masked (1 popcount)"),
                             ("masked", "subtractive", "conv3x3 packed masked (2 popcounts, paper)")]:
        conv = QuantConv2d(channels, channels, 3, padding=1, weight_quantizer=make_weight_quantizer(kind),
                           pad_value=1.0, integer_inputs=True).eval()
        layer = PackedConv3x3.from_torch(conv, BNSign(channels).eval(), masked_form=form)
        out = new_buffer(1, size, size, Segments([channels]))
        cases[name] = (lambda _, layer=layer, out=out: layer(inp, out))
    if openvino_reason("fp32") is None:  # OpenVINO's own xnor-popcount convolution, same shape and padding
        ov_conv = binary_conv3x3(w.numpy(), size, size, threads, pad_value=1.0)
        x_pm1 = x.numpy()
        cases[OV_BINARY] = (lambda _: ov_conv(x_pm1))
    df = speed_table(cases, image_size=size, repeats=repeats, warmup=warmup, threads=threads)
    df.insert(1, "what", f"layer {channels}->{channels}, {size}x{size}, batch 1")
    return df


def network_benchmark(width: int = 16, image_size: int = 256, batch_size: int = 1, masked: int = 4,
                      repeats: int = 20, warmup: int = 3, threads: int | None = None,
                      with_ort: bool = True, stem: str = DEFAULT_STEM,
                      with_compile: bool = True) -> tuple[pd.DataFrame, dict, dict, dict]:
    """End-to-end: packed MBU-Net vs the U-Net of the same width (PyTorch FP32, BF16 with bf16
    weights channels-last where the CPU runs it, ``torch.compile`` FP32 unless ``with_compile``
    is False, ORT FP32/INT8, and OpenVINO INT8 from NNCF where installed), and the MBU-Net's own
    backbone in full precision quantized to INT8 by ONNX Runtime and by OpenVINO + NNCF. Returns
    ``(rows, sizes, notes, cases)``."""
    torch.manual_seed(0)
    mbu = create_model("mbu_unet", width=width, masked=masked, stem=stem).eval()
    unet = create_model("unet", width=width).eval()
    packed = {f"MBU-Net bitpack (k={masked})": pack_mbu(mbu),
              f"MBU-Net bitpack (k={masked}, dynamic rows)": pack_mbu(mbu, chunk_rows=DYNAMIC_CHUNK_ROWS),
              f"MBU-Net bitpack (k={masked}, 2-popcount masked)": pack_mbu(mbu, masked_form="subtractive")}
    calib = calibration_batch(image_size)  # every INT8 case of this size calibrates on the same images
    cases, sizes, notes = speed_cases(packed, unet, image_size, calib_data=calib, calib_images=len(calib),
                                      with_ort=with_ort)
    if with_ort:  # the MBU-Net's own backbone in full precision, quantized to INT8 by both engines
        peer = create_model("mbu_unet", width=width, **BACKBONE_FP).eval()
        for name, backend, why in ((PEER_ORT, "onnxruntime", runner_unavailable_reason("onnxruntime", "int8")),
                                   (PEER_OV, "openvino_nncf", openvino_reason("int8", nncf=True))):
            if why is not None:
                notes[name] = f"not measured on this machine: {why}"
                continue
            r = make_runner(backend, "int8", model=peer, image_size=image_size, calib_data=calib,
                            workdir=paths.models_dir() / f"bitpack_bench_peer_{width}_{image_size}")
            cases[name], sizes[name] = r, r.model_size_bytes
    cases[f"MBU-Net torch FP32 (k={masked}, fake quant)"] = TorchRunner(mbu, "fp32", device="cpu")
    sizes[f"MBU-Net torch FP32 (k={masked}, fake quant)"] = weight_bytes(mbu)
    if runner_unavailable_reason("torch", "bf16") is None:
        cases["U-Net torch BF16 (channels-last)"] = TorchRunner(unet, "bf16", device="cpu")
        sizes["U-Net torch BF16 (channels-last)"] = cases["U-Net torch BF16 (channels-last)"].model_size_bytes
    why = runner_unavailable_reason("torch_compile", "fp32")
    if with_compile and why is None:
        cases["U-Net torch.compile FP32"] = TorchRunner(unet, "fp32", device="cpu", compile=True)
        sizes["U-Net torch.compile FP32"] = weight_bytes(unet)
    elif with_compile:
        notes["U-Net torch.compile FP32"] = f"not measured on this machine: {why}"
    if with_ort and openvino_reason("int8", nncf=True) is None:
        ov = make_runner("openvino_nncf", "int8", model=unet, image_size=image_size, calib_data=calib)
        cases["U-Net OpenVINO INT8 (NNCF)"], sizes["U-Net OpenVINO INT8 (NNCF)"] = ov, ov.model_size_bytes
    df = speed_table(cases, image_size=image_size, batch_size=batch_size, repeats=repeats, warmup=warmup,
                       threads=threads)
    df["model_size_bytes"] = df["case"].map(sizes)
    df.insert(1, "what", f"network width {width}, {image_size}x{image_size}, batch {batch_size}")
    return df, sizes, notes, cases


def cuda_benchmark(width: int, image_size: int, batch_size: int, masked: int, repeats: int, warmup: int,
                   stem: str = DEFAULT_STEM):
    """Triton engine vs PyTorch FP16 / FP32 on the GPU (None when unavailable, with the reason)."""
    why = tk.unavailable_reason()
    if why is not None or not torch.cuda.is_available():
        return None, why or "no CUDA device"
    mbu = create_model("mbu_unet", width=width, masked=masked, stem=stem).eval()
    unet = create_model("unet", width=width).eval().cuda()
    unet16 = create_model("unet", width=width).eval().cuda().half()
    gpu = tk.PackedMBUCuda(pack_mbu(mbu))
    x = torch.rand(batch_size, 3, image_size, image_size, device="cuda")
    x16 = x.half()

    def fp32(_):
        with torch.inference_mode():
            return unet(x)

    def fp16(_):
        with torch.inference_mode():
            return unet16(x16)

    stats = measure_interleaved({"MBU-Net Triton bitpack": (lambda _: gpu.run(x), lambda: None),
                                 "U-Net torch FP32 (CUDA)": (fp32, lambda: None),
                                 "U-Net torch FP16 (CUDA)": (fp16, lambda: None)},
                                warmup=warmup, repeats=repeats, sync=torch.cuda.synchronize)
    rows = [dict(case=k, median_ms=1e3 * s["median_s"], q1_ms=1e3 * s["q1_s"], q3_ms=1e3 * s["q3_s"],
                 repeats=s["n"]) for k, s in stats.items()]
    return pd.DataFrame(rows), ""


def accuracy_gap() -> tuple[str, dict]:
    """``(text, {preset: gap})``: per preset of ``mbu_accuracy.csv``, the test Dice of the
    full-precision U-Net minus the MBU-Net's (means over training seeds)."""
    loaded = results.read(results.MBU_ACCURACY)
    if loaded.df is None:
        return f"{loaded.message}: run notebooks/05_mbu_net.ipynb for the accuracy comparison", {}
    acc = loaded.df
    lines, gaps = [], {}
    for preset, d in acc.groupby("preset"):
        by = d.groupby("config")
        if {"fp", "mbu"} <= set(by.groups):
            fp, mbu = (float(pd.to_numeric(by.get_group(c)["test_dice"]).mean()) for c in ("fp", "mbu"))
            n = {c: len(by.get_group(c)) for c in ("fp", "mbu")}
            gaps[str(preset)] = fp - mbu
            lines.append(f"preset {preset}: test Dice full-precision U-Net {fp:.4f} ({n['fp']} run(s)), MBU-Net "
                         f"{mbu:.4f} ({n['mbu']} run(s)), gap {fp - mbu:+.4f} (target <= 0.03)")
    return "\n".join(lines) or "mbu_accuracy.csv: no preset with both 'fp' and 'mbu' rows", gaps


@contextlib.contextmanager
def busy_neighbour(cores: int = 1):
    """``cores`` other processes spinning on the CPU while the block runs (a machine with other
    load), stopped afterwards."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(cores)]
    try:
        yield
    finally:
        for q in procs:
            q.kill()
            q.wait()


def fastest_peer(t: pd.Series) -> tuple[str | None, float]:
    """``(case, ms)`` of the fastest INT8 U-Net of the MBU-Net's backbone among the engines
    measured (``PEER_ORT``, ``PEER_OV``)."""
    got = {k: float(t[k]) for k in (PEER_ORT, PEER_OV) if k in t}
    if not got:
        return None, float("nan")
    k = min(got, key=got.get)
    return k, got[k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.bitpack_benchmark", description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16, help="MBU-Net and U-Net width (default 16, the quick preset; "
                    "seed 001's network is width 64)")
    ap.add_argument("--image-size", default="256", help="comma-separated image sides, e.g. 256,512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--masked", type=int, default=4, help="cost-aware masked layers k (default 4)")
    ap.add_argument("--stem", default=DEFAULT_STEM, choices=["binary", "thermo", "float", "int8"],
                    help=f"MBU-Net stem (default {DEFAULT_STEM!r}, the study's)")
    ap.add_argument("--layer-channels", type=int, default=256)
    ap.add_argument("--layer-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="threads for torch, ORT and numba (default: all cores)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime and OpenVINO runners")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (about a minute to compile on 2 cores)")
    ap.add_argument("--no-load", action="store_true",
                    help="skip the run with another process spinning on one core")
    ap.add_argument("--csv", default=None, help="also write the timing rows to this CSV")
    a = ap.parse_args(argv)
    sizes_px = [int(v) for v in str(a.image_size).split(",") if v.strip()]

    busy_before = busy_cores(1.0)
    threads = pin_threads(a.threads)
    print(f"threads: {threads} (torch, ONNX Runtime, numba); popcount compiles to: {popcount_instruction()}\n")
    lay = layer_benchmark(a.layer_channels, a.layer_size, a.repeats, a.warmup, threads)
    print(f"== single binary 3x3 conv, {a.layer_channels}->{a.layer_channels} channels, "
          f"{a.layer_size}x{a.layer_size}, batch 1 (ms; x = speed-up over the reference) ==")
    print(_fmt(lay, "conv3x3 torch FP32"))
    t_lay = lay.set_index("case")["median_ms"]
    print(f"masked, 1 popcount vs 2 popcounts: "
          f"{t_lay['conv3x3 packed masked (2 popcounts, paper)'] / t_lay['conv3x3 packed masked (1 popcount)']:.2f}x")
    peak = xor_popcount_peak(threads)
    bmacs = a.layer_channels ** 2 * 9 * a.layer_size ** 2
    achieved = bmacs / (t_lay["conv3x3 packed binary"] / 1e3)
    print(f"binary MACs per second: packed layer {achieved:.3g}, XOR+popcount ceiling of this CPU "
          f"{peak['bmacs_per_s']:.3g} ({threads} thread(s), 64-bit words in L1): "
          f"{achieved / peak['bmacs_per_s']:.0%} of the ceiling\n")

    goals = [Goal("one packed binary 3x3 conv vs the same layer in PyTorch FP32",
                  t_lay["conv3x3 torch FP32"] / t_lay["conv3x3 packed binary"], 12),
             Goal("one packed binary 3x3 conv vs OpenVINO's BinaryConvolution of the same shape",
                  t_lay[OV_BINARY] / t_lay["conv3x3 packed binary"] if OV_BINARY in t_lay else float("nan"), 1.5)]
    main_case = f"MBU-Net bitpack (k={a.masked})"
    dyn_case = f"MBU-Net bitpack (k={a.masked}, dynamic rows)"
    nets, sizes = [], {}
    for size in sizes_px:
        net, sizes, notes, cases = network_benchmark(a.width, size, a.batch, a.masked, a.repeats, a.warmup, threads,
                                              with_ort=not a.no_ort, stem=a.stem, with_compile=not a.no_compile)
        net["load"] = "quiet"
        nets.append(net)
        print(f"== end to end, width {a.width}, {size}x{size}, batch {a.batch}, MBU-Net stem {a.stem!r} (ms) ==")
        ref = "U-Net ONNX Runtime INT8" if "U-Net ONNX Runtime INT8" in set(net["case"]) else "U-Net torch FP32"
        print(_fmt(net, ref, "U-Net torch FP32"))
        for k, v in notes.items():
            print(f"{k}: {v}")
        t = net.set_index("case")["median_ms"]
        peer, peer_ms = fastest_peer(t)
        best = min(t[main_case], t[dyn_case])
        goals += [Goal(f"MBU-Net bitpack (k={a.masked}, faster schedule) vs the fastest INT8 U-Net of its backbone and "
                       f"width {a.width} ({peer or 'none measured'}), {size} px", peer_ms / best, 2.0),
                  Goal(f"MBU-Net bitpack vs the ONNX Runtime INT8 U-Net (classic backbone) of width {a.width}, {size} px",
                       t["U-Net ONNX Runtime INT8"] / best if "U-Net ONNX Runtime INT8" in t else float("nan"), 1.5)]
        if not a.no_load and peer is not None and size == sizes_px[0]:
            keep = [main_case, dyn_case, PEER_ORT, PEER_OV, "U-Net ONNX Runtime INT8"]
            cases_load = {k: v for k, v in cases.items() if k in keep}
            with busy_neighbour(1):
                busy = speed_table(cases_load, image_size=size, batch_size=a.batch, repeats=a.repeats,
                                   warmup=a.warmup, threads=threads)
            busy.insert(1, "what", f"network width {a.width}, {size}x{size}, batch {a.batch}, one core busy")
            busy["load"] = "one other process spinning"
            nets.append(busy)
            print("== the same with another process spinning on one core (ms) ==")
            print(_fmt(busy, peer))
            tb = busy.set_index("case")["median_ms"]
            print(f"static vs dynamic rows under load: {tb[main_case] / tb[dyn_case]:.2f}x")
            _, peer_busy = fastest_peer(tb)
            goals.append(Goal(f"MBU-Net bitpack (dynamic rows) vs the fastest INT8 U-Net of its backbone, "
                              f"one core busy, {size} px", peer_busy / tb[dyn_case], 1.0))
            del cases_load
        del cases  # every engine of this size freed before the next size's are built (memory)
        gc.collect()
        print()
    print("== model sizes (bytes) ==")
    fp32_mbu = sizes[f"MBU-Net torch FP32 (k={a.masked}, fake quant)"]
    for k, v in sizes.items():
        print(f"{k:52s} {int(v):>12,d}")
    print(f"packed MBU-Net vs its FP32 weights: {fp32_mbu / sizes[main_case]:.1f}x smaller; "
          f"vs the FP32 U-Net: {sizes['U-Net torch FP32'] / sizes[main_case]:.1f}x\n")
    goals.append(Goal("packed MBU-Net weights vs their FP32 weights, times smaller", fp32_mbu / sizes[main_case], 12))

    cuda, why = cuda_benchmark(a.width, sizes_px[0], a.batch, a.masked, a.repeats, a.warmup, a.stem)
    print("== CUDA (Triton) ==")
    print(_fmt(cuda, "U-Net torch FP16 (CUDA)") if cuda is not None else f"not measured on this machine: {why}")
    print()
    print("== accuracy (notebook 05) ==")
    text, gaps = accuracy_gap()
    print(text)
    goals += [Goal(f"test Dice gap, full-precision U-Net minus MBU-Net (preset {p})", g, 0.03, at_least=False,
                   unit="") for p, g in gaps.items()]
    print("\n== goals (ratios from this run) ==")
    print(verdict(goals))
    note = load_note(threads, busy_before, busy_cores(1.0))
    if note:
        print(note)
    if a.csv:
        write_csv(pd.concat([lay, *nets], ignore_index=True), a.csv)
        print(f"\nwrote {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
