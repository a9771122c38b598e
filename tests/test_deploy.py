"""unetq.deploy: export parity, the exact ConvTranspose rewrite, float16 conversion, the
quantization arithmetic of seed 003 and the availability table."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from unetq.deploy import (available_runners, check_parity, convert_float16, export_onnx, op_counts,
                          rewrite_conv_transpose, runner_unavailable_reason)
from unetq.deploy.availability import SUPPORTED
from unetq.deploy.quantmath import (dequantize, fake_quantize, int_range, quantize, scale_zero_point,
                                    weight_quant_error)
from unetq.deploy.rewrite import conv_transpose_as_conv_weights
from unetq.models import create_model

ARCHS = ["unet", "ghost_unet", "squeeze_unet"]


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def _ort(path_or_proto):
    src = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) else str(path_or_proto)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for arch in ARCHS:
        m = _randomize_bn(create_model(arch, width=4))
        out[arch] = (m, export_onnx(m, d / f"{arch}.onnx", 32))
    return out


# ------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("arch", ARCHS)
def test_export_matches_pytorch(exported, arch):
    model, path = exported[arch]
    ops = op_counts(path)
    assert "BatchNormalization" not in ops and "Identity" not in ops  # folded / removed
    assert ops.get("ConvTranspose", 0) > 0 and ops.get("Conv", 0) > 0
    assert check_parity(model, path, 32, batch=3) < 1e-4  # stated tolerance: 1e-4 absolute


@pytest.mark.slow
def test_export_dynamic_batch_and_dynamo(tmp_path):
    torch.manual_seed(1)
    m = create_model("unet", width=4).eval()
    p = export_onnx(m, tmp_path / "dyn.onnx", 32, exporter="dynamo")
    assert check_parity(m, p, 32, batch=2) < 1e-4
    shape = onnx.load(str(p)).graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and [d.dim_value for d in shape[1:]] == [3, 32, 32]
    static = export_onnx(m, tmp_path / "static.onnx", 32, dynamic_batch=False)
    assert onnx.load(str(static)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


def test_export_rejects_bad_size(tmp_path):
    with pytest.raises(ValueError, match="divisible by 16"):
        export_onnx(create_model("unet", width=4), tmp_path / "x.onnx", 40)


# ----------------------------------------------------------------------------------- rewrite
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["DCR", "CRD", "transpose"])
def test_conv_transpose_rewrite_is_exact(exported, arch, mode):
    _, path = exported[arch]
    proto = onnx.load(str(path))
    new, report = rewrite_conv_transpose(proto, mode)
    n_ct = op_counts(proto)["ConvTranspose"]
    assert len(report["rewritten"]) == n_ct and not report["kept"]
    assert "ConvTranspose" not in op_counts(new)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    ref = _ort(path).run(None, {"input": x})[0]
    y = _ort(new).run(None, {"input": x})[0]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


class _Transposes(torch.nn.Module):
    """The transposed convolutions of the three architectures, plus one that cannot be rewritten."""

    def __init__(self):
        super().__init__()
        self.k2s2 = torch.nn.ConvTranspose2d(6, 5, 2, 2)                     # U-Net / Ghost / Squeeze
        self.k1s2 = torch.nn.ConvTranspose2d(6, 5, 1, 2, output_padding=1)   # Squeeze transposed fire
        self.k1s1 = torch.nn.ConvTranspose2d(6, 5, 1, 1, bias=False)          # Squeeze squeeze layer
        self.k3s2 = torch.nn.ConvTranspose2d(6, 5, 3, 2, padding=1, output_padding=1)  # overlapping

    def forward(self, x):
        up = torch.nn.functional.interpolate(self.k1s1(x), scale_factor=2.0)
        return torch.cat([self.k2s2(x), self.k1s2(x), up, self.k3s2(x)], 1)


@pytest.mark.parametrize("mode", ["DCR", "CRD", "transpose"])
def test_rewrite_covers_every_transposed_conv_shape(tmp_path, mode):
    torch.manual_seed(0)
    m = _Transposes().eval()
    p = export_onnx(m, tmp_path / "t.onnx", 16, in_channels=6)
    new, report = rewrite_conv_transpose(onnx.load(str(p)), mode)
    assert len(report["rewritten"]) == 3
    (kept_name, why), = report["kept"].items()
    assert "k3s2" in kept_name and why == "padded"
    x = np.random.default_rng(1).standard_normal((2, 6, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_ort(new).run(None, {"input": x})[0], _ort(p).run(None, {"input": x})[0],
                               rtol=0, atol=1e-5)


def test_rewrite_weight_layout_by_hand():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)  # [C_in, C_out, k, k]
    b = np.array([0.5, -1.0], np.float32)
    wc, bc = conv_transpose_as_conv_weights(w, b, 2, "DCR")
    for a in range(2):
        for bb in range(2):
            for o in range(2):
                np.testing.assert_array_equal(wc[(a * 2 + bb) * 2 + o, :, 0, 0], w[:, o, a, bb])
    wc2, bc2 = conv_transpose_as_conv_weights(w, b, 2, "CRD")
    np.testing.assert_array_equal(wc2[1 * 4 + 1 * 2 + 0, :, 0, 0], w[:, 1, 1, 0])
    assert list(bc) == [0.5, -1.0] * 4 and list(bc2) == [0.5] * 4 + [-1.0] * 4
    with pytest.raises(ValueError, match="mode"):
        conv_transpose_as_conv_weights(w, b, 2, "XYZ")


# -------------------------------------------------------------------------------------- fp16
def test_float16_conversion_keeps_float32_io(exported):
    _, path = exported["unet"]
    proto16 = convert_float16(onnx.load(str(path)))
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in proto16.graph.initializer)
    assert proto16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    ref = _ort(path).run(None, {"input": x})[0]
    y = _ort(proto16).run(None, {"input": x})[0]
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() <= 1e-2 * max(1.0, np.abs(ref).max())
    assert not np.array_equal(y, ref)  # really computed in float16


# --------------------------------------------------------------------------------- quantmath
def test_seed003_asymmetric_example():
    s, z = scale_zero_point(-2.5, 5.0)
    assert round(s, 4) == 0.0294 and z == -43
    assert int(quantize(4.1, s, z)) == 96
    assert abs(float(dequantize(96, s, z)) - 4.1) <= s / 2 + 1e-9


def test_seed003_symmetric_example():
    s, z = scale_zero_point(-8.0, 8.0, symmetric=True)
    assert s == pytest.approx(8 / 127) and abs(s - 0.0629) < 1e-4 and z == 0  # the paper truncates 0.06299
    assert int(quantize(3.86, s, z, symmetric=True)) == 61
    assert int_range(8, symmetric=True) == (-127, 127) and int_range(8) == (-128, 127)
    assert int(quantize(100.0, s, 0, symmetric=True)) == 127 and int(quantize(-100.0, s, 0, symmetric=True)) == -127
    s_full, _ = scale_zero_point(-8.0, 8.0, symmetric=True, restricted=False)
    assert s_full == pytest.approx(16 / 255)


def test_quantize_roundtrip_error_bounded():
    x = np.linspace(-3, 7, 1001, dtype=np.float32)
    s, z = scale_zero_point(x.min(), x.max())
    q = quantize(x, s, z)
    assert q.min() >= -128 and q.max() <= 127
    assert np.abs(dequantize(q, s, z) - x).max() <= s / 2 + 1e-6
    assert np.abs(fake_quantize(x) - x).max() <= s / 2 + 1e-6
    with pytest.raises(ValueError):
        scale_zero_point(1.0, -1.0)


def test_per_tensor_weights_lose_small_channels():
    # BatchNorm folded into a depthwise conv: channel scales differ by 1000x
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * np.logspace(0, -3, 8, dtype=np.float32)[:, None, None, None]
    per_tensor = weight_quant_error(w, per_channel=False)
    per_channel = weight_quant_error(w, per_channel=True)
    assert per_channel.max() < 0.02
    assert per_tensor[-1] > 0.5  # the smallest channel is mostly rounded away


# ------------------------------------------------------------------------------ availability
def test_available_runners_table():
    df = available_runners()
    assert list(df.columns) == ["backend", "precision", "available", "reason"]
    assert len(df) == sum(len(v) for v in SUPPORTED.values())
    assert set(df.backend) == {"torch", "torch_compile", "onnxruntime", "onnxruntime_cuda", "tensorrt", "openvino",
                               "openvino_nncf", "bitpack"}
    row = df[(df.backend == "onnxruntime") & (df.precision == "fp32")].iloc[0]
    assert row.available and row.reason == ""
    assert df[df.backend == "torch"].query("precision == 'fp32'").available.all()
    for _, r in df[~df.available].iterrows():
        assert r.reason  # every unavailable pair says why
    if not torch.cuda.is_available():
        for b in ("onnxruntime_cuda", "tensorrt"):
            reasons = set(df[df.backend == b].reason)
            assert reasons and all(reasons), reasons
            assert all(("not installed" in r) or ("CUDA" in r) for r in reasons)


def test_unknown_backend_or_precision():
    with pytest.raises(ValueError, match="unknown backend"):
        runner_unavailable_reason("tflite", "fp32")
    with pytest.raises(ValueError, match="no precision"):
        runner_unavailable_reason("onnxruntime_cuda", "int8")


def test_deploy_seeds_scores_every_representation_of_a_seed(tmp_path, monkeypatch):
    """python -m unetq.cli.deploy_seeds: each training seed's model in every representation that
    runs here plus notebook 06's chosen INT8 configuration, rows tagged with the seed."""
    from unetq import results
    from unetq.cli import deploy_seeds as cli
    from unetq.config import get_preset
    from unetq.studies import deploy_seeds

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("UNETQ_PUBLISHED_DIR", str(tmp_path))
    df = deploy_seeds.run(get_preset("ci"), archs=["unet"], seeds=[1], progress=False)
    assert set(df["train_seed"]) == {1}
    ok = df[df["status"] == "ok"]
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")} <= set(zip(ok.backend, ok.precision))
    assert set(df.loc[df.precision == "int8", "int8_name"].dropna()) >= {"default", "chosen"}
    stored = results.read(results.ACCURACY_SEEDS, root=tmp_path / "results").df
    assert len(stored) == len(df)
    s = deploy_seeds.summary(df)
    assert (s["seeds"] >= 1).all() and "dice_mean" in s
    with pytest.raises(SystemExit):
        cli.main(["--archs", "resnet"])
