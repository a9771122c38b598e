"""Every runner that can run on this machine, on a tiny model (width 4, 32x32), against PyTorch
FP32; INT8 quantization (ONNX Runtime static, QDQ) on a briefly trained tiny model; the
sensitivity tools; evaluate_runner."""
import numpy as np
import onnx
import pytest
import torch

from unetq.deploy import (QuantConfig, RunnerUnavailable, available_runners, evaluate_runner, export_onnx,
                          make_runner, quantizable_nodes, quantize_int8, quantized_op_summary, read_quant_metadata)
from unetq.deploy.availability import runner_unavailable_reason
from unetq.deploy.quantize import prepare_model
from unetq.models import create_model

# max |runner - torch fp32| / max(1, max |torch fp32|), per precision
TOL = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 6e-2, "int8": 0.25}


def _cheap_pairs():
    df = available_runners()
    return [(r.backend, r.precision) for r in df.itertuples()
            if r.available and r.backend in ("torch", "onnxruntime", "openvino", "openvino_nncf")]


@pytest.fixture(scope="module")
def ghost():
    torch.manual_seed(0)
    m = create_model("ghost_unet", width=4).eval()
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("backend,precision", _cheap_pairs())
def test_runner_agrees_with_torch_fp32(ghost, batch, backend, precision, tmp_path):
    with torch.no_grad():
        ref = ghost(torch.from_numpy(batch)).numpy()
    calib = np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)
    r = make_runner(backend, precision, model=ghost, image_size=32, calib_data=calib, workdir=tmp_path)
    y = r(batch)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert r.backend == backend and r.precision == precision and r.device in ("cpu", "cuda")
    assert isinstance(r.model_size_bytes, int) and r.model_size_bytes > 0
    err = np.abs(y - ref).max() / max(1.0, np.abs(ref).max())
    assert err <= TOL[precision], (backend, precision, err)
    if precision != "fp32":
        assert not np.array_equal(y, ref)  # the reduced precision is really used
    y1 = r(batch[:1])  # another batch size through the same runner
    np.testing.assert_allclose(y1, y[:1], rtol=0, atol=max(1e-5, TOL[precision] * 0.1))
    r.close()


def test_openvino_says_its_precision_and_runs_the_study_int8_file(ghost, batch, tmp_path):
    pytest.importorskip("openvino", reason="openvino not installed")
    if runner_unavailable_reason("openvino", "int8"):
        pytest.skip(runner_unavailable_reason("openvino", "int8"))
    calib = np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)
    f32 = make_runner("openvino", "fp32", model=ghost, image_size=32, workdir=tmp_path / "f")
    # FP32 is asked for explicitly; what OpenVINO would pick by itself is recorded beside it
    assert f32.details["inference_precision"] == "f32" and f32.details["openvino_default_precision"]
    ort8 = make_runner("onnxruntime", "int8", model=ghost, image_size=32, calib_data=calib, workdir=tmp_path / "o")
    ov8 = make_runner("openvino", "int8", onnx_path=ort8.onnx_path, workdir=tmp_path / "v")
    assert ov8.model_path == ort8.onnx_path and ov8.model_size_bytes == ort8.model_size_bytes
    a, b = ort8(batch), ov8(batch)
    # the same quantized graph: the two engines agree far more closely than INT8 agrees with FP32
    assert np.abs(a - b).max() / max(1.0, np.abs(a).max()) < 0.05
    nn8 = make_runner("openvino_nncf", "int8", model=ghost, image_size=32, calib_data=calib, workdir=tmp_path / "n")
    assert nn8.backend == "openvino_nncf" and nn8.model_path.suffix == ".xml"
    assert nn8.model_path.with_suffix(".bin").stat().st_size < f32.model_size_bytes  # int8 weights
    assert nn8.model_size_bytes > nn8.model_path.with_suffix(".bin").stat().st_size  # size = .xml + .bin


def test_ort_session_settings(ghost, tmp_path):
    import os

    import onnxruntime as ort

    r = make_runner("onnxruntime", "fp32", model=ghost, image_size=32, workdir=tmp_path)
    so = r.session.get_session_options()
    assert so.intra_op_num_threads == os.cpu_count()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert r.details["threads"] == os.cpu_count()
    # CPU sessions do not spin idle threads unless asked to (see runners.CPU_SPINNING)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert r.details["spinning"] == "off"
    r2 = make_runner("onnxruntime", "fp32", onnx_path=r.onnx_path, spinning=True, workdir=tmp_path)
    assert r2.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_make_runner_errors(ghost, tmp_path):
    with pytest.raises(ValueError, match="needs model"):
        make_runner("torch", "fp32")
    with pytest.raises(ValueError, match="image_size"):
        make_runner("onnxruntime", "fp32", model=ghost)
    with pytest.raises(ValueError, match="calib_data"):
        make_runner("onnxruntime", "int8", model=ghost, image_size=32)
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        make_runner("onnxruntime", "fp32", onnx_path=tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(Exception, match="bad.onnx"):
        quantize_int8(bad, tmp_path / "q.onnx", np.zeros((2, 3, 32, 32), np.float32))
    r = make_runner("torch", "fp32", model=ghost)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        r(np.zeros((3, 32, 32), np.float32))
    if runner_unavailable_reason("tensorrt", "fp32"):
        with pytest.raises(RunnerUnavailable, match="tensorrt/fp32 unavailable"):
            make_runner("tensorrt", "fp32", model=ghost, image_size=32)


# --------------------------------------------------------------------------- INT8 on a trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A width-4 U-Net trained for a few dozen steps on synthetic cracks at 32x32."""
    from unetq.data import prepare_splits
    from unetq.metrics import bce_dice_loss

    splits = prepare_splits(source="synthetic", n=24, source_size=96, image_size=32, seed=0)
    torch.manual_seed(0)
    model = create_model("unet", width=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and immune to a busy machine
    xs = torch.stack([splits["train"][i][0] for i in range(len(splits["train"]))])
    ys = torch.stack([splits["train"][i][1] for i in range(len(splits["train"]))])
    model.train()
    for step in range(60):
        idx = torch.arange(step * 8, step * 8 + 8) % len(xs)
        loss = bce_dice_loss(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    model.eval()
    d = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(model, d / "fp32.onnx", 32)
    return model, splits, fp32, d


def test_int8_quantization_close_to_fp32(trained):
    model, splits, fp32, d = trained
    q = quantize_int8(fp32, d / "int8.onnx", splits["train"], calib_images=8)
    meta = read_quant_metadata(q)
    assert meta["calib_images"] == 8 and meta["per_channel"] and meta["activation_type"] == "uint8"
    assert len(meta["rewritten"]) == 4  # the 4 up-convolutions were rewritten...
    summary = quantized_op_summary(q)
    assert not summary["float"] and len(summary["quantized"]) == 23  # ...and every weight layer is INT8
    data = splits["train"]  # enough images to compare the two representations
    r32 = make_runner("onnxruntime", "fp32", onnx_path=fp32)
    r8 = make_runner("onnxruntime", "int8", onnx_path=q)
    m32, m8 = evaluate_runner(r32, data, 4), evaluate_runner(r8, data, 4)
    assert m32["n"] == m8["n"] == len(data)
    assert abs(m8["dice"] - m32["dice"]) < 0.05 and abs(m8["loss"] - m32["loss"]) < 0.05
    x = np.stack([data[i][0].numpy() for i in range(8)])
    y32, y8 = r32(x), r8(x)
    rel = np.sqrt(np.mean((y8 - y32) ** 2)) / np.sqrt(np.mean(y32 ** 2))
    assert rel < 0.1, rel
    assert np.mean((y8 > 0) == (y32 > 0)) > 0.95
    assert r8.model_size_bytes < 0.5 * r32.model_size_bytes


@pytest.mark.parametrize("overrides", [dict(per_channel=False), dict(method="entropy"), dict(method="percentile"),
                                       dict(quant_format="qoperator"), dict(rewrite_convtranspose=False),
                                       dict(activation_type="int8", symmetric_activations=True)])
def test_int8_variants_run(trained, overrides):
    model, splits, fp32, d = trained
    q = quantize_int8(fp32, d / "v.onnx", splits["train"], calib_images=4, cache_dir=d / "calib", **overrides)
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    if overrides.get("quant_format") == "qoperator":
        assert "QLinearConv" in ops
    else:
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    if overrides.get("rewrite_convtranspose") is False:
        assert "ConvTranspose" in ops
    r = make_runner("onnxruntime", "int8", onnx_path=q)
    x = np.stack([splits["val"][i][0].numpy() for i in range(len(splits["val"]))])
    y = r(x)
    ref = make_runner("onnxruntime", "fp32", onnx_path=fp32)(x)
    assert np.isfinite(y).all() and np.mean((y > 0) == (ref > 0)) > 0.7
    if overrides.get("method") != "entropy":  # entropy clips ranges hard on 4 calibration images
        assert np.abs(y - ref).max() / max(1.0, np.abs(ref).max()) < 0.5


def test_tensorrt_target_config_is_symmetric_int8(trained):
    _, splits, fp32, d = trained
    q = quantize_int8(fp32, d / "trt.onnx", splits["train"], QuantConfig.for_target("tensorrt"), calib_images=4)
    proto = onnx.load(str(q))
    zps = [t for t in proto.graph.initializer if t.name.endswith("_zero_point")]
    assert zps and all(t.data_type == onnx.TensorProto.INT8 for t in zps)  # no int32 bias DequantizeLinear
    assert len(zps) > 20  # activations and weights
    assert all(not onnx.numpy_helper.to_array(t).any() for t in zps)  # zero-point 0 everywhere


def test_mixed_precision_excludes_nodes(trained):
    _, splits, fp32, d = trained
    prepared = d / "prepared.onnx"
    prepare_model(fp32, prepared)
    nodes = quantizable_nodes(prepared)
    assert len(nodes) == 23
    keep = (nodes[0], nodes[-1])
    q = quantize_int8(prepared, d / "mixed.onnx", splits["train"], calib_images=4, nodes_to_exclude=keep)
    assert set(quantized_op_summary(q)["float"]) == set(keep)
    assert read_quant_metadata(q)["nodes_to_exclude"] == list(keep)


def test_sensitivity_and_search(trained):
    from unetq.deploy.sensitivity import evaluate_configs, layer_sensitivity, mixed_precision_search, weight_stats

    _, splits, fp32, d = trained
    nodes = quantizable_nodes(fp32)[:3]
    sens = layer_sensitivity(fp32, splits["train"], splits["val"], mode="only", nodes=nodes, calib_images=4,
                             progress=False)
    assert list(sens["node"]) == nodes and sens["delta_dice"].notna().all()
    assert {"err_per_tensor", "err_per_channel", "ch_range_spread"} <= set(sens.columns)
    assert set(sens.attrs) >= {"fp32", "int8", "config"}
    allbut = layer_sensitivity(fp32, splits["train"], splits["val"], mode="all_but", nodes=nodes[:1],
                               calib_images=4, progress=False)
    assert len(allbut) == 1
    grid = evaluate_configs(fp32, splits["train"], splits["val"],
                            {"pt": QuantConfig(per_channel=False), "pc": QuantConfig()}, calib_images=4,
                            progress=False)
    assert list(grid["config"]) == ["fp32", "pt", "pc"] and grid.loc[0, "delta_dice"] == 0
    cfg, steps = mixed_precision_search(fp32, splits["train"], splits["val"], tolerance=-1.0, order=nodes,
                                        max_float=2, calib_images=4, progress=False)
    assert list(steps["n_float"]) == [0, 1, 2] and cfg.nodes_to_exclude == tuple(nodes[:2])
    ws = weight_stats(fp32)
    assert len(ws) == 23 and (ws["err_per_channel"] <= ws["err_per_tensor"] * (1 + 1e-4)).all()


def test_evaluate_runner_matches_train_evaluate(trained):
    from unetq.train import evaluate

    model, splits, fp32, d = trained
    ref = evaluate(model, splits["val"], batch_size=4, device="cpu")
    got = evaluate_runner(make_runner("torch", "fp32", model=model, device="cpu"), splits["val"], batch_size=4)
    for k in ("loss", "iou", "dice", "iou_img", "dice_img"):
        assert got[k] == pytest.approx(ref[k], abs=1e-5), k
    assert got["n"] == ref["n"] == len(splits["val"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_runner(make_runner("torch", "fp32", model=model), [], 4)


def test_entropy_calibration_clips_and_differs_from_minmax(trained):
    from unetq.deploy.sensitivity import activation_ranges

    _, splits, fp32, d = trained
    r = activation_ranges(fp32, splits["train"], ("minmax", "entropy", "percentile"), calib_images=8)
    assert {"kept_entropy", "kept_percentile", "node", "op_type"} <= set(r.columns)
    relu = r[r.op_type == "Relu"]
    assert len(relu) > 0 and (relu["lo_minmax"] >= 0).all()
    # KL search over 2048 -> 128 bins: ranges really clipped (ORT's 128 -> 128 default would be MinMax)
    assert (r["kept_entropy"].dropna() <= 1.0 + 1e-6).all() and r["kept_entropy"].median() < 0.99


def test_shared_concat_scale_gives_concat_inputs_one_scale(trained):
    _, splits, fp32, d = trained
    q = quantize_int8(fp32, d / "shared.onnx", splits["train"], calib_images=4, shared_concat_scale=True,
                      cache_dir=d / "calib")
    proto = onnx.load(str(q))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    concats = [n for n in proto.graph.node if n.op_type == "Concat"]
    assert concats
    for c in concats:
        scales = {float(init[producer[i].input[1]]) for i in c.input if producer[i].op_type == "DequantizeLinear"}
        assert len(scales) == 1, (c.name, scales)
    assert "Relu" in {n.op_type for n in proto.graph.node}  # kept explicit: widened ranges do not imply it
    x = np.stack([splits["val"][i][0].numpy() for i in range(len(splits["val"]))])
    y = make_runner("onnxruntime", "int8", onnx_path=q)(x)
    ref = make_runner("onnxruntime", "fp32", onnx_path=fp32)(x)
    assert np.mean((y > 0) == (ref > 0)) > 0.9


def test_bitpack_runner_wraps_packed_mbu():
    why = runner_unavailable_reason("bitpack", "binary")
    if why:
        pytest.skip(f"bitpack/binary: {why}")
    try:
        m = create_model("mbu_unet", width=4).eval()
    except ValueError as e:  # engineer E's model not registered
        pytest.skip(f"mbu_unet not available: {e}")
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    r = make_runner("bitpack", "binary", model=m)
    y = r(x)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert y.shape == ref.shape and y.dtype == np.float32
    assert r.model_size_bytes == r.packed.nbytes > 0
    assert np.mean((y > 0) == (ref > 0)) > 0.99
    with pytest.raises(ValueError, match="needs model"):
        make_runner("bitpack", "binary")


# --------------------------------------------------------------------------- non-finite input, collapse
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_runners_reject_nonfinite_input(ghost, batch, backend, bad, tmp_path):
    r = make_runner(backend, "fp32", model=ghost, image_size=32, workdir=tmp_path, device="cpu")
    x = batch.copy()
    x[2, 1, 5, 7] = bad
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\) \(first in image 2 of the batch of 3\)"):
        r(x)
    assert np.isfinite(r(batch)).all()  # finite input still runs
    huge = np.full((1, 3, 32, 32), 3e38, np.float32)  # finite, though its float32 sum overflows
    assert r(huge).shape == (1, 1, 32, 32)
    r.close()


class ConstantRunner:
    """A stand-in for a collapsed INT8 model: the same logit everywhere, whatever the image."""
    name = "constant"

    def __init__(self, value=-2.5):
        self.value = value

    def __call__(self, x):
        return np.full((x.shape[0], 1, *x.shape[2:]), self.value, np.float32)


def test_output_collapse_detects_constant_and_input_independent_models():
    from unetq.deploy.evaluate import output_collapse

    rng = np.random.default_rng(0)
    live = rng.normal(size=(4, 1, 8, 8)).astype(np.float32)
    assert output_collapse(live) is None
    assert "constant" in output_collapse(np.full((4, 1, 8, 8), 0.3, np.float32))
    level = np.float32(0.0472)  # an INT8 output one quantization level wide: near-constant
    assert "constant" in output_collapse([np.full((2, 1, 8, 8), -60 * level), np.full((2, 1, 8, 8), -61 * level)])
    same_map = np.repeat(live[:1], 4, axis=0)  # varies over pixels, not with the image
    assert "same output map" in output_collapse(same_map)
    assert output_collapse(np.full((2, 1, 4, 4), np.nan, np.float32)) == "no finite output"


def test_evaluate_runner_flags_a_collapsed_model(trained):
    model, splits, fp32, d = trained
    got = evaluate_runner(ConstantRunner(), splits["val"], batch_size=4)
    assert got["collapsed"] and "constant output" in got["collapse_reason"]
    ok = evaluate_runner(make_runner("torch", "fp32", model=model, device="cpu"), splits["val"], batch_size=4)
    assert not ok["collapsed"] and ok["collapse_reason"] == ""


def test_quantization_study_records_a_collapsed_int8_model_without_scoring_it(trained, tmp_path, monkeypatch):
    """A constant-output "INT8" model gets status "collapsed: ...", collapsed=True and no metrics
    in int8_accuracy (and the sensitivity tables), never a Dice."""
    from onnx import TensorProto, helper

    from unetq.config import get_preset
    from unetq.deploy.sensitivity import _row
    from unetq.studies.quantization import ModelFiles, int8_accuracy

    monkeypatch.setenv("UNETQ_RESULTS_DIR", str(tmp_path / "results"))
    _, splits, fp32, d = trained
    # the collapsed model: ReduceMean over channels, times 0, minus 3 (the same logit everywhere)
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "zero"], ["z"]), helper.make_node("Add", ["z", "c"], ["y"])]
    graph = helper.make_graph(nodes, "collapsed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1, 32, 32])],
                              [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                               helper.make_tensor("c", TensorProto.FLOAT, [], [-3.0])])
    collapsed = tmp_path / "int8_collapsed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(collapsed))
    files = ModelFiles("unet", "ci", 32, tmp_path, fp32, fp32,
                       int8={"collapsed": (QuantConfig(method="entropy"), collapsed),
                             "working": (QuantConfig(), fp32)})
    df = int8_accuracy("unet", files, splits["val"], get_preset("ci"), batch_size=4).set_index("int8_name")
    bad, good = df.loc["collapsed"], df.loc["working"]
    assert bad["status"].startswith("collapsed: constant output") and bool(bad["collapsed"])
    assert np.isnan(bad[["loss", "iou", "dice", "iou_img", "dice_img", "delta_dice_vs_fp32"]].astype(float)).all()
    assert good["status"] == "ok" and not bool(good["collapsed"]) and np.isfinite(float(good["dice"]))
    row = _row(dict(evaluate_runner(ConstantRunner(), splits["val"], 4)), dict(dice=0.5, iou=0.4, loss=0.3))
    assert row["collapsed"] and np.isnan(row["dice"]) and np.isnan(row["delta_dice"])


@pytest.mark.parametrize("pad", [-1.0, 1.0])
def test_openvino_binary_convolution_is_the_sign_convolution(pad):
    pytest.importorskip("openvino", reason="openvino not installed")
    import torch.nn.functional as F

    from unetq.deploy.openvino_engine import binary_conv3x3
    rng = np.random.default_rng(0)
    x = np.where(rng.random((1, 64, 8, 8)) > 0.5, 1.0, -1.0).astype(np.float32)  # 64*9 bits: several words
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    ref = F.conv2d(F.pad(torch.from_numpy(x), (1, 1, 1, 1), value=pad), torch.from_numpy(np.sign(w))).numpy()
    np.testing.assert_array_equal(binary_conv3x3(w, 8, 8, threads=1, pad_value=pad)(x), ref)


def test_torch_bf16_on_the_cpu_runs_bf16_weights_channels_last(ghost, batch):
    if runner_unavailable_reason("torch", "bf16"):
        pytest.skip(runner_unavailable_reason("torch", "bf16"))
    r = make_runner("torch", "bf16", model=ghost, device="cpu")
    assert r.details["memory_format"] == "channels_last" and r.channels_last
    w = next(r.module.parameters())
    assert w.dtype == torch.bfloat16 and w.is_contiguous(memory_format=torch.channels_last)
    plain = make_runner("torch", "fp32", model=ghost, device="cpu")
    assert plain.details["memory_format"] == "contiguous"
    assert np.abs(r(batch) - plain(batch)).max() / max(1.0, np.abs(plain(batch)).max()) <= TOL["bf16"]
