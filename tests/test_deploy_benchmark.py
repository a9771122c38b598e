"""The benchmark CLI runs end to end on a tiny configuration (no timing is asserted)."""
import numpy as np
import pandas as pd

from unetq import bench
from unetq.cli import deploy_benchmark as benchmark


def test_benchmark_cli_tiny(capsys):
    summary = benchmark.main(["--width", "4", "--image-size", "32", "--repeats", "2", "--warmup", "1",
                              "--calib-images", "4", "--threads", "1", "--spinning", "on,off", "--block", "2",
                              "--variants", "fp32,int8,int8-norewrite", "--no-floor"])
    out = capsys.readouterr().out
    assert "int8@spin-on vs fp32@spin-on" in out and "faster (medians)" in out
    assert isinstance(summary, pd.DataFrame) and len(summary) == 6
    assert (summary["n"] == 2).all() and (summary["size_bytes"] > 0).all()
    assert summary.loc["int8@spin-off", "size_vs_fp32"] < 1


def test_interleaved_timings_order():
    calls = []
    t = bench.interleaved_timings({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                      repeats=3, warmup=1, progress=False)
    assert calls[:2] == ["a", "b"] and calls[2:] == ["a", "b", "b", "a", "a", "b"]
    s = bench.variant_summary(t.assign(variant=t.variant.map({"a": "fp32", "b": "int8"})))
    assert list(s.columns[:5]) == ["median_s", "p25_s", "p75_s", "min_s", "n"] and s.loc["fp32", "speedup_vs_fp32"] == 1


def test_goals_print_pass_fail_and_a_busy_machine_warning(monkeypatch):
    from unetq.bench import goals
    v = goals.verdict([goals.Goal("a", 4.0, 3.5), goals.Goal("b", 0.5, 1 / 3.5, at_least=False, unit=""),
                       goals.Goal("c", float("nan"), 1.5)])
    lines = v.splitlines()
    assert lines[0].startswith("PASS") and "4x (goal >= 3.5x)" in lines[0]
    assert lines[1].startswith("FAIL") and lines[2].startswith("NOT MEASURED") and lines[3] == "1 of 3 goals met"
    assert "busy" in goals.load_note(2, 0.1, 1.2) and goals.load_note(2, 0.0, 0.1) == ""


def test_benchmark_cli_prints_its_goals(capsys):
    benchmark.main(["--width", "4", "--image-size", "32", "--repeats", "2", "--warmup", "1", "--calib-images", "4",
                    "--threads", "1", "--block", "2", "--variants", "fp32,int8,openvino-int8,openvino-nncf-int8",
                    "--floor-size", "64"])
    out = capsys.readouterr().out
    assert "INT8 floor:" in out and "over the INT8 floor" in out
    assert "== goals" in out and "ONNX Runtime INT8 vs FP32" in out and "goals met" in out
    assert "vs OpenVINO + NNCF INT8" in out  # the study's INT8 path is compared with the engine a CPU user picks


def test_bitpack_benchmark_takes_its_documented_default_stem(capsys):
    from unetq.cli import bitpack_benchmark
    from unetq.studies.mbu import DEFAULT_STEM
    assert DEFAULT_STEM == "thermo"
    rc = bitpack_benchmark.main(["--width", "4", "--image-size", "32", "--repeats", "2", "--warmup", "1",
                                 "--layer-channels", "64", "--layer-size", "8", "--threads", "1",
                                 "--stem", "thermo", "--no-ort", "--no-compile"])
    out = capsys.readouterr().out
    assert rc == 0 and "stem 'thermo'" in out and "goals met" in out
    assert "NOT MEASURED  MBU-Net bitpack" in out  # --no-ort: that goal is not measured, not failed silently


def test_bitpack_benchmark_compares_with_the_int8_peers_of_its_own_backbone_quiet_and_under_load(capsys, tmp_path):
    """The packed engine's peers are the MBU-Net's backbone in full precision quantized by ONNX
    Runtime and OpenVINO + NNCF; at every image size; then again with one core busy; the packed
    layer's binary MACs per second are printed against the XOR+popcount ceiling."""
    from unetq.cli import bitpack_benchmark as bb
    from unetq.deploy.openvino_engine import openvino_reason

    csv = tmp_path / "bitpack.csv"
    rc = bb.main(["--width", "4", "--image-size", "32,64", "--repeats", "2", "--warmup", "1", "--layer-channels", "64",
                  "--layer-size", "8", "--threads", "1", "--no-compile", "--csv", str(csv)])
    out = capsys.readouterr().out
    assert rc == 0 and "of the ceiling" in out and "XOR+popcount ceiling" in out
    df = pd.read_csv(csv)
    quiet = df[df["load"] == "quiet"]
    assert set(quiet["image_size"]) == {32, 64} and "MBU-Net bitpack (k=4, dynamic rows)" in set(quiet["case"])
    peers = {bb.PEER_ORT} | ({bb.PEER_OV} if openvino_reason("int8", nncf=True) is None else set())
    assert peers <= set(quiet["case"])
    busy = df[df["load"] == "one other process spinning"]
    assert set(busy["image_size"]) == {32} and peers <= set(busy["case"])
    for size in (32, 64):
        assert f"vs the fastest INT8 U-Net of its backbone and width 4 (" in out and f"{size} px:" in out
    assert "one core busy, 32 px:" in out
    assert bb.fastest_peer(pd.Series({bb.PEER_ORT: 3.0, bb.PEER_OV: 2.0, "x": 1.0})) == (bb.PEER_OV, 2.0)
    assert bb.fastest_peer(pd.Series({"x": 1.0}))[0] is None


def test_speed_calibration_shrinks_with_the_image_area():
    """ONNX Runtime's calibrator holds every intermediate tensor of every calibration image, so
    the INT8 calibration batch of the speed studies (the bitpack benchmark, notebook 05's
    ``speed_cases``) keeps its pixel count, not its image count: 8 images at 256 px, 2 at 512 (8
    there took a 24 GB machine out of memory at width 64), never none."""
    from unetq.cli import bitpack_benchmark as bb
    from unetq.deploy.quantize import calibration_batch, calibration_count

    assert bb.calibration_batch is calibration_batch  # the benchmark and notebook 05 share the rule
    assert calibration_batch(256).shape == (8, 3, 256, 256)
    assert calibration_batch(512).shape == (2, 3, 512, 512)
    assert len(calibration_batch(2048)) == 1
    assert [calibration_count(s) for s in (96, 256, 512, 2048)] == [56, 8, 2, 1]
    assert np.array_equal(calibration_batch(64), calibration_batch(64))  # the same images for every case


def test_xor_popcount_ceiling_counts_what_it_times():
    from unetq.bench.popcount_ceiling import _reference, _xor_popcount, xor_popcount_peak

    a = np.arange(6, dtype=np.uint64).reshape(2, 3) * np.uint64(0x9E3779B97F4A7C15)
    b = a[::-1].copy()
    out = np.zeros(2, np.int64)
    _xor_popcount(a, b, 5, out)
    assert np.array_equal(out, _reference(a, b, 5)) and out.sum() > 0
    peak = xor_popcount_peak(1, words=64, reps=100, seconds=0.01)
    assert peak["bmacs_per_s"] > 0 and peak["calls"] >= 3


def test_gpu_check_dry_runs_on_the_cpu(tmp_path, capsys):
    """`make gpu-check` is prepared on the CPU: the same plan at toy sizes, CUDA rows say why."""
    from unetq.cli import gpu_check
    out = tmp_path / "gpu.csv"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["step"]) == {"amp training", "inference", "triton"}
    assert {"train off", "train bf16"} <= set(df["case"])
    ok = df[(df["step"] == "inference") & (df["status"] == "ok")]
    assert len(ok) >= 2 and (ok["median_ms"] > 0).all()  # eager fp32 and bf16 on the CPU
    assert df.loc[df["step"] == "triton", "status"].str.startswith("not measured on this machine").all()


def test_int8_floor_measures_a_correct_gemm_and_counts_the_model():
    from unetq.bench.int8_floor import floor_seconds, gemm_peak, model_macs
    from unetq.models import create_model

    peak = gemm_peak(64, threads=1, seconds=0.05)
    assert peak["macs_per_s"] > 0 and peak["calls"] >= 3 and peak["size"] == 64
    macs = model_macs(create_model("unet", width=4).eval(), 32)
    # U-Net width 4 at 32x32: the first conv alone is 3*4*9 MACs per pixel
    assert macs > 32 * 32 * 3 * 4 * 9
    assert floor_seconds(macs, dict(macs_per_s=1e9)) == macs / 1e9
