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
            if r.available and r.backend in ("torch", "onnxruntime")]


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
