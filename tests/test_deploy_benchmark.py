"""The benchmark CLI runs end to end on a tiny configuration (no timing is asserted)."""
import pandas as pd

from unetq import bench
from unetq.cli import deploy_benchmark as benchmark


def test_benchmark_cli_tiny(capsys):
    summary = benchmark.main(["--width", "4", "--image-size", "32", "--repeats", "2", "--warmup", "1",
                              "--calib-images", "4", "--threads", "1", "--spinning", "on,off", "--block", "2",
                              "--variants", "fp32,int8,int8-norewrite"])
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
