"""Quantizers, straight-through estimators, padding and the exact BatchNorm + sign of MBU-Net."""
import math

import pytest
import torch
import torch.nn.functional as F

from unetq.models.binary_layers import (BinaryWeight, BNSign, IntWeight, QuantConv2d, SignActivation,
                                        TernaryWeight, make_weight_quantizer, sign_ste)


def test_sign_forward_and_clipped_ste():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]  # sign(0) = +1
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]  # gradient only where |x| <= 1
    x2 = torch.tensor([-3.0, 3.0], requires_grad=True)
    SignActivation(clip=math.inf)(x2).sum().backward()
    assert x2.grad.tolist() == [1, 1]


def test_binary_weight_values_and_gradient():
    w = torch.tensor([[-0.3, 0.0, 0.7, 1.5]], requires_grad=True)
    q = BinaryWeight()(w)
    assert q.tolist() == [[-1, 1, 1, 1]]
    (q * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    assert w.grad.tolist() == [[1, 2, 3, 0]]  # clipped beyond |w| = 1


def test_ternary_weight_threshold_per_output_channel_and_ste():
    w = torch.tensor([[1.0, -0.1, 0.5, -2.0], [0.01, 0.02, -0.03, 0.0]], requires_grad=True)
    tq = TernaryWeight(k=0.7)
    q = tq(w)
    d0 = 0.7 * (1.0 + 0.1 + 0.5 + 2.0) / 4  # 0.63
    d1 = 0.7 * (0.01 + 0.02 + 0.03) / 4
    assert torch.allclose(tq.delta(w).flatten(), torch.tensor([d0, d1]))
    assert q.tolist() == [[1, 0, 0, -1], [0, 1, -1, 0]]
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # identity STE
    # transposed-conv weights [Cin, Cout, kh, kw]: output channel is dim 1
    wt = torch.zeros(2, 3, 2, 2)
    wt[:, 1] = 5.0
    wt[0, 1, 0, 0] = 0.1
    qt = TernaryWeight(channel_dim=1)(wt)
    assert qt[:, 1].abs().sum() == 7 and qt[0, 1, 0, 0] == 0


def test_ternary_weight_with_a_fixed_dead_zone_and_clipped_ste():
    w = torch.tensor([[0.9, -0.4, 0.5, -0.51, 1.7, -3.0]], requires_grad=True)
    tq = TernaryWeight(dead_zone=0.5)
    q = tq(w)
    assert q.tolist() == [[1, 0, 0, -1, 1, -1]]  # 0 where |w| <= 0.5, whatever the other weights are
    (q * torch.arange(1.0, 7.0)).sum().backward()
    assert w.grad.tolist() == [[1, 2, 3, 4, 0, 0]]  # no gradient beyond |w| = 1
    # the threshold does not follow the weights: scaling them changes the zero fraction
    assert (TernaryWeight(dead_zone=0.5)(4 * w.detach()) == 0).sum() == 0
    assert (TernaryWeight(k=0.7)(4 * w.detach()) == 0).sum() == (TernaryWeight(k=0.7)(w.detach()) == 0).sum()
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="dead_zone"):
            TernaryWeight(dead_zone=bad)
    assert make_weight_quantizer("masked", 1, 0.7, 0.25).dead_zone == 0.25


def test_int8_symmetric_scale_matches_seed_003_example():
    w = torch.tensor([[8.0, 3.86, -1.0, 0.0]])
    q8 = IntWeight(8)
    s = q8.scale(w).item()
    assert s == pytest.approx(8 / 127) and round(s, 3) == 0.063  # the paper prints 0.0629
    assert round(3.86 / s) == 61
    assert q8(w)[0, 1].item() == pytest.approx(61 * s)
    q4 = IntWeight(4)(w)
    assert q4[0, 0].item() == pytest.approx(8.0) and q4[0, 1].item() == pytest.approx(round(3.86 / (8 / 7)) * 8 / 7)
    with pytest.raises(ValueError):
        make_weight_quantizer("int3")


def test_binary_conv_pads_with_plus_one():
    conv = QuantConv2d(2, 1, 3, padding=1, weight_quantizer=BinaryWeight(), pad_value=1.0, integer_inputs=True)
    with torch.no_grad():
        conv.weight.fill_(0.5)
    x = torch.ones(1, 2, 4, 5)
    y = conv.eval()(x)
    assert torch.all(y == 18)  # 9 taps * 2 channels everywhere, also at the border
    zero_pad = F.conv2d(x, conv.quantized_weight(), padding=1)
    assert zero_pad[0, 0, 0, 0] == 8  # zero padding would differ at the corners


def _bn(c, gamma, beta, mean, var):
    bn = BNSign(c)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma, dtype=torch.float32))
        bn.bias.copy_(torch.tensor(beta, dtype=torch.float32))
        bn.running_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        bn.running_var.copy_(torch.tensor(var, dtype=torch.float32))
    return bn.eval()


def test_bnsign_exact_threshold_ties_and_directions():
    # channel 0: gamma>0, theta = 3; channel 1: gamma<0, theta = 3; channel 2: gamma=0, beta>=0;
    # channel 3: gamma=0, beta<0
    bn = _bn(4, [2.0, -2.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0], [3.0, 3.0, 0.0, 0.0], [1.0] * 4)
    x = torch.tensor([2.0, 3.0, 4.0]).view(1, 1, 1, 3).expand(1, 4, 1, 3).contiguous()
    y = bn(x)[0, :, 0].tolist()
    assert y[0] == [-1, 1, 1]   # x >= 3 (tie -> +1: sign(0) = +1)
    assert y[1] == [1, 1, -1]   # x <= 3
    assert y[2] == [1, 1, 1]
    assert y[3] == [-1, -1, -1]


def test_bnsign_eval_equals_float_batchnorm_then_sign():
    torch.manual_seed(0)
    c = 16
    bn = _bn(c, torch.randn(c).tolist(), torch.randn(c).tolist(), (torch.randn(c) * 3).tolist(),
             (torch.rand(c) * 4 + 0.1).tolist())
    x = torch.randn(4, c, 8, 8) * 5
    ref = torch.where(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps) >= 0,
                      1.0, -1.0)
    agree = (bn(x) == ref).float().mean().item()
    assert agree > 0.999  # identical except at float ties


def test_bnsign_train_mode_passes_gradients():
    bn = BNSign(3).train()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = bn(x)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_int_weight_layer_on_binary_inputs_is_not_rounded_in_eval():
    """INT8/INT4 weights are fake-quantized floats: a conv on +-1 inputs must not round its
    accumulator to an integer as it may for binary/ternary weights (seed 001 Table 1 rows)."""
    torch.manual_seed(0)
    for kind in ("int8", "int4"):
        conv = QuantConv2d(8, 4, 3, padding=1, weight_quantizer=make_weight_quantizer(kind), pad_value=1.0,
                           integer_inputs=True)
        assert conv.weight_quantizer.integer is False
        x = torch.where(torch.rand(2, 8, 6, 6) > 0.5, 1.0, -1.0)
        conv.eval()
        with torch.no_grad():
            ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1,) * 4, value=1.0),
                                             conv.quantized_weight())
            assert torch.allclose(conv(x), ref, atol=1e-6)
            assert not torch.equal(conv(x), torch.round(conv(x)))  # a float accumulator, kept
