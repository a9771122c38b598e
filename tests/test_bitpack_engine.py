"""The bit-packed engine reproduces the PyTorch MBU-Net's eval output exactly."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetq.bitpack import (PackedConv3x3, PackedConvT2x2, Segments, maxpool, new_buffer, pack_activations,
                           pack_mbu, unpack_activations)
from unetq.bitpack import engine
from unetq.bitpack.packing import fold_threshold, valid_bits
from unetq.models import create_model
from unetq.models.binary_layers import BNSign, QuantConv2d, QuantConvTranspose2d, make_weight_quantizer


def _signs(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(*shape, generator=g) > 0.5, 1.0, -1.0)


def randomize_bn(bn: BNSign, n_terms: int, seed: int = 0):
    """Non-trivial BatchNorm statistics: thresholds inside the accumulator range, negative and
    zero scales, and exact ties (integer thresholds) on the first channels."""
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    s = max(1.0, n_terms ** 0.5)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * s)
        bn.running_var.copy_(torch.rand(c, generator=g) * s * s + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
        if c >= 4:
            bn.weight[0], bn.weight[1], bn.weight[2] = 1.0, -1.0, 0.0
            bn.bias[:3] = 0.0
            bn.running_mean[0], bn.running_mean[1] = 1.0, -3.0  # theta = mean exactly (ties)
            bn.bias[3] = 0.0
    return bn.eval()


def randomize_model_bn(model, seed=0):
    for i, m in enumerate(model.modules()):
        if isinstance(m, BNSign):
            randomize_bn(m, 9 * 16, seed + i)
    return model.eval()


@pytest.mark.parametrize("channels,shape", [([37], (2, 5, 7)), ([100], (1, 3, 3)), ([20, 70], (1, 4, 6))])
def test_pack_unpack_round_trip_and_border(channels, shape):
    n, h, w = shape
    x = _signs(n, sum(channels), h, w).numpy()
    seg = Segments(channels)
    buf = pack_activations(x, seg)
    assert buf.shape == (n, h + 2, w + 2, seg.total_words)
    assert np.array_equal(unpack_activations(buf, seg), x)
    border = np.concatenate([valid_bits(c) for c in channels])
    assert (buf[:, 0] == border).all() and (buf[:, :, -1] == border).all()  # +1 padding, tail bits 0


def _conv_pair(cin, cout, kind, seed):
    torch.manual_seed(seed)
    conv = QuantConv2d(cin, cout, 3, padding=1, weight_quantizer=make_weight_quantizer(kind), pad_value=1.0,
                       integer_inputs=True).eval()
    bn = randomize_bn(BNSign(cout), 9 * cin, seed)
    return conv, bn


@pytest.fixture(params=["serial", "parallel"])
def threading(request, monkeypatch):
    """Run the packed layers on the calling thread or spread over threads (both kernels)."""
    monkeypatch.setattr(engine, "SERIAL_WORK", 10**12 if request.param == "serial" else 0)
    return request.param


@pytest.mark.parametrize("kind,form", [("binary", "xor_and"), ("masked", "xor_and"), ("masked", "subtractive")])
@pytest.mark.parametrize("cin,cout,h,w", [(3, 5, 7, 9), (70, 20, 5, 11), (64, 130, 3, 4), (130, 64, 9, 2)])
def test_conv3x3_layer_exact(kind, form, cin, cout, h, w, threading):
    conv, bn = _conv_pair(cin, cout, kind, seed=cin + cout)
    x = _signs(2, cin, h, w, seed=h)
    with torch.no_grad():
        ref = bn(conv(x)).numpy()
    layer = PackedConv3x3.from_torch(conv, bn, masked_form=form)
    out = new_buffer(2, h, w, Segments([cout]))
    layer(pack_activations(x.numpy()), out)
    got = unpack_activations(out, Segments([cout]))
    assert np.array_equal(got, ref)
    assert 0.05 < (ref > 0).mean() < 0.95  # both outputs occur: the thresholds are non-trivial


def test_conv3x3_reads_concatenated_segments_and_writes_into_a_segment():
    c_skip, c_up, cout = 20, 45, 33
    conv, bn = _conv_pair(c_skip + c_up, cout, "masked", seed=3)
    skip, up = _signs(1, c_skip, 6, 5, seed=1), _signs(1, c_up, 6, 5, seed=2)
    with torch.no_grad():
        ref = bn(conv(torch.cat([skip, up], 1))).numpy()
    seg_in = Segments([c_skip, c_up])
    layer = PackedConv3x3.from_torch(conv, bn, seg_in)
    inp = pack_activations(torch.cat([skip, up], 1).numpy(), seg_in)
    out = new_buffer(1, 6, 5, Segments([10, cout]))  # write into the second segment
    layer(inp, out, out_off=1)
    got = unpack_activations(out, Segments([10, cout]))[:, 10:]
    assert np.array_equal(got, ref)
    with pytest.raises(ValueError, match="words"):
        layer(pack_activations(skip.numpy()), out)


@pytest.mark.parametrize("kind,form", [("binary", "xor_and"), ("masked", "xor_and"), ("masked", "subtractive")])
@pytest.mark.parametrize("cin,cout,h,w", [(70, 20, 5, 7), (16, 72, 1, 3), (130, 8, 2, 2)])
def test_transposed_conv_layer_exact(kind, form, cin, cout, h, w, threading):
    torch.manual_seed(cin)
    ct = QuantConvTranspose2d(cin, cout, 2, stride=2, weight_quantizer=make_weight_quantizer(kind, 1),
                              integer_inputs=True).eval()
    bn = randomize_bn(BNSign(cout), cin, seed=cout)
    x = _signs(2, cin, h, w, seed=cout)
    with torch.no_grad():
        ref = bn(ct(x)).numpy()
    layer = PackedConvT2x2.from_torch(ct, bn, masked_form=form)
    out = new_buffer(2, 2 * h, 2 * w, Segments([cout]))
    layer(pack_activations(x.numpy()), out)
    assert np.array_equal(unpack_activations(out, Segments([cout])), ref)


@pytest.mark.parametrize("h,w", [(7, 9), (8, 5), (3, 3)])
def test_maxpool_is_or_of_bits_and_floors_odd_sizes(h, w, threading):
    x = _signs(2, 70, h, w, seed=h * w)
    ref = F.max_pool2d(x, 2).numpy()
    seg = Segments([10, 70])
    inp = pack_activations(torch.cat([_signs(2, 10, h, w), x], 1).numpy(), seg)
    out = new_buffer(2, h // 2, w // 2, Segments([70]))
    maxpool(inp, seg, 1, out)
    assert np.array_equal(unpack_activations(out, Segments([70])), ref)


def test_fold_threshold_matches_definition_exhaustively():
    n = 12
    for form in ("mismatch", "neg_dot"):
        for d in (1, -1, 0):
            for theta in (-20.0, -12.0, -3.5, -3.0, 0.0, 0.25, 4.0, 11.9, 12.0, 13.0, np.inf, -np.inf):
                t, flip = fold_threshold(np.array([theta]), np.array([d]), np.array([n]), form, 1)
                for dot in range(-n, n + 1, 2):  # a.b has the parity of n
                    v = (n - dot) // 2 if form == "mismatch" else -dot
                    want = (dot >= theta) if d > 0 else (dot <= theta) if d < 0 else (theta < 0)
                    assert bool((v <= t[0]) ^ flip[0]) == bool(want), (form, d, theta, dot)


@pytest.mark.parametrize("width,masked,size,stem,kw", [
    (4, 6, (32, 48), "binary", {}), (5, 12, (16, 32), "binary", {}), (3, 0, (48, 16), "binary", {}),
    (4, 4, (32, 32), "float", {}), (6, 4, (32, 16), "int8", {}), (5, 12, (16, 48), "int8", {}),
    (16, 4, (32, 32), "thermo", {}), (5, 0, (16, 48), "thermo", {}),
    # seed 001's backbone (bottleneck kept, up-CT keeping channels, up-C 2c -> c/2) and learned zeros
    (16, 4, (32, 32), "thermo", dict(backbone="paper")), (6, 12, (16, 48), "binary", dict(backbone="paper")),
    (5, 7, (32, 16), "int8", dict(backbone="paper", zeros="emergent")),
    (8, 12, (16, 32), "thermo", dict(zeros="emergent", dead_zone=0.3)),
    # PyTorch's initialisation under the emergent rule: masked layers entirely zero
    (6, 4, (32, 16), "thermo", dict(backbone="paper", zeros="emergent", latent_init="torch"))])
def test_whole_network_exact_layer_by_layer(width, masked, size, stem, kw, threading):
    torch.manual_seed(width)
    model = randomize_model_bn(create_model("mbu_unet", width=width, masked=masked, stem=stem, **kw), seed=width)
    x = torch.rand(2, 3, *size)
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: acts.__setitem__(name, out.numpy()))
             for name, m in model.named_modules() if isinstance(m, BNSign)]
    with torch.no_grad():
        ref = model(x).numpy()
    for h in hooks:
        h.remove()
    for form in ("xor_and", "subtractive"):
        packed = pack_mbu(model, masked_form=form)
        got = packed.layer_outputs(x.numpy())
        assert set(got) == set(acts)
        for name in acts:
            assert np.array_equal(got[name], acts[name]), f"{form}: binary activations differ at {name}"
        logits = packed(x.numpy())
        assert logits.dtype == np.float32 and logits.shape == ref.shape
        np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_packed_model_is_much_smaller_than_fp32():
    model = create_model("mbu_unet", width=16, masked=4).eval()
    packed = pack_mbu(model)
    fp32 = sum(p.numel() for p in model.parameters()) * 4
    assert packed.nbytes * 12 <= fp32


def test_pack_errors_name_the_problem():
    with pytest.raises(ValueError, match="up_c4"):
        pack_mbu(create_model("mbu_unet", width=4, layers={"up_c4": "int8"}))
    with pytest.raises(ValueError, match="binary activations"):
        pack_mbu(create_model("mbu_unet", width=4, base="fp", activation="relu"))
    with pytest.raises(TypeError):
        pack_mbu(create_model("unet", width=4))
    packed = pack_mbu(create_model("mbu_unet", width=4).eval())
    with pytest.raises(ValueError, match="divisible by 16"):
        packed(np.zeros((1, 3, 20, 32), np.float32))


def test_int8_stem_integer_conv_is_exact_with_clipping():
    """The int8 stem's ONNX Runtime ConvInteger reproduces the model's eval output bit for bit,
    also where the 7-bit activation clips (small alpha) and with more than 64 channels."""
    from unetq.bitpack.engine import IntegerConv3x3
    from unetq.models.binary_layers import IntConv2d

    torch.manual_seed(0)
    for cin, alpha in ((70, 0.5), (3, 4.0)):
        conv = IntConv2d(cin, 9).eval()
        conv.act_quantizer.alpha.data.fill_(alpha)
        x = torch.relu(torch.randn(2, cin, 11, 7) * 2)
        with torch.no_grad():
            ref = conv(x).numpy()
            fake = torch.nn.functional.conv2d(torch.nn.functional.pad(conv.act_quantizer(x), (1,) * 4),
                                              conv.quantized_weight()).numpy()
        got = IntegerConv3x3(conv)(x.numpy())
        assert got.dtype == np.float32 and np.array_equal(got, ref)
        np.testing.assert_allclose(ref, fake, rtol=1e-4, atol=1e-4)  # eval path = the trained fake quant
        if alpha < 1:
            assert (conv.act_quantizer.integer(x) == conv.act_quantizer.qmax).float().mean() > 0.2


def test_threshold_pack_float_is_exact_at_ties():
    """float32 thresholds rounded outward decide exactly as float64(y) >= theta (and <=),
    also for values one float32 step around theta; thermometer channel maps work."""
    from unetq.bitpack import kernels
    from unetq.bitpack.packing import Segments, float32_thresholds, new_buffer, unpack_activations

    rng = np.random.default_rng(0)
    c, levels = 5, 3
    theta = rng.normal(size=c * levels)
    theta[0] = float(np.float32(0.1))  # exactly representable
    direction = rng.choice([-1, 1], size=c * levels)
    direction[1], theta[1] = 0, -np.inf   # always 1
    direction[2], theta[2] = 0, np.inf    # always 0
    src = np.arange(c * levels) // levels
    y = rng.normal(size=(2, c, 4, 9)).astype(np.float32)
    for k in range(c * levels):  # plant values at and next to the thresholds
        if np.isfinite(theta[k]):
            t = np.float32(theta[k])
            y[0, src[k], 0, :3] = [np.nextafter(t, np.float32(-1e9)), t, np.nextafter(t, np.float32(1e9))]
    t32, mode = float32_thresholds(theta, direction)
    out = new_buffer(2, 4, 9, Segments([c * levels]))
    kernels.threshold_pack_float(y, src, t32, mode, out, 0)
    got = unpack_activations(out, Segments([c * levels])) > 0
    yd = y.astype(np.float64)[:, src]
    th, d = theta.reshape(1, -1, 1, 1), direction.reshape(1, -1, 1, 1)
    want = np.where(d > 0, yd >= th, np.where(d < 0, yd <= th, th < 0))
    assert np.array_equal(got, want)


@pytest.mark.parametrize("stem", ["binary", "float", "thermo"])
def test_first_conv_in_bands_gives_the_whole_image_bits(stem, monkeypatch):
    """The first conv runs in bands of rows (with the rows of context its convs need; the float
    stem's two convs need two); the bits equal the model's at every band edge, including a last
    band shorter than the others. Where a band's sums differ from the whole image's (as if oneDNN
    ordered them otherwise), that shape runs whole, and the decision is kept."""
    torch.manual_seed(11)
    model = randomize_model_bn(create_model("mbu_unet", width=6, masked=4, stem=stem), seed=11)
    x = torch.rand(2, 3, 48, 32)
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: acts.__setitem__(name, out.numpy()))
             for name, m in model.named_modules() if isinstance(m, BNSign)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    packed = pack_mbu(model)
    assert packed.first_halo == (2 if stem == "float" else 1)
    channels = int(packed.first_src.max()) + 1
    monkeypatch.setattr(engine, "FIRST_BAND_BYTES", 4 * 2 * channels * 32 * 7)  # bands of 7 rows: 48 = 6 x 7 + 6
    got = packed.layer_outputs(x.numpy())
    assert packed.first_band_rows == {(2, 48, 32): 7}
    for name in acts:
        assert np.array_equal(got[name], acts[name]), f"binary activations differ at {name}"
    whole = pack_mbu(model)
    monkeypatch.setattr(torch, "equal", lambda a, b: False)
    got = whole.layer_outputs(x.numpy())
    assert whole.first_band_rows == {(2, 48, 32): 48}
    for name in acts:
        assert np.array_equal(got[name], acts[name]), f"whole-image fallback: activations differ at {name}"


@pytest.mark.parametrize("stem", ["binary", "int8", "float", "thermo"])
def test_nonfinite_input_is_rejected_by_the_engine_and_its_runner(stem):
    """The int8 stem's outputs differed from the model's on NaN input (an undefined integer
    cast): non-finite input is an error of every engine (the packed engine and its runner)."""
    from unetq.deploy import make_runner

    torch.manual_seed(0)
    model = randomize_model_bn(create_model("mbu_unet", width=4, stem=stem), seed=1)
    packed = pack_mbu(model)
    x = torch.rand(2, 3, 16, 16).numpy()
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 2, 3, 4] = bad
        with pytest.raises(ValueError, match="NaN/Inf"):
            packed(y)
        with pytest.raises(ValueError, match="first in image 1"):
            make_runner("bitpack", "binary", model=model)(y)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(packed(x), ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_dynamic_row_chunks_give_the_same_bits(chunk_rows):
    """Dynamic scheduling (chunk_rows > 0) changes which thread computes a row, never the result."""
    torch.manual_seed(3)
    model = randomize_model_bn(create_model("mbu_unet", width=6, masked=4, stem="thermo"), seed=3)
    x = np.random.default_rng(3).random((2, 3, 32, 48), dtype=np.float32)
    static = pack_mbu(model)(x)
    assert np.array_equal(pack_mbu(model, chunk_rows=chunk_rows)(x), static)
    with pytest.raises(ValueError, match="chunk_rows"):
        pack_mbu(model, chunk_rows=-1)


def test_the_engine_leaves_torch_threads_as_it_found_them(monkeypatch):
    """The first conv's bands run torch on one thread each; the process-wide setting is restored."""
    torch.manual_seed(2)
    model = randomize_model_bn(create_model("mbu_unet", width=4, masked=4, stem="thermo"), seed=2)
    packed = pack_mbu(model)
    monkeypatch.setattr(engine, "FIRST_BAND_BYTES", 4 * 4 * 32 * 5)
    before = torch.get_num_threads()
    packed(np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32))
    assert packed.first_band_rows[(1, 32, 32)] < 32 and torch.get_num_threads() == before
