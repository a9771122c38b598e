"""MBU-Net construction, configuration, cost-aware ranking and sparsity."""
import pytest
import torch

from unetq.models import create_model
from unetq.models.mbu_unet import (LAYER_NAMES, MBUNet, cost_aware_order, cost_ranking, layer_costs,
                                   resolve_layer_kinds, table_a4, zero_fraction)


def test_create_and_rebuild_from_config():
    m = create_model("mbu_unet", width=4, masked=4)
    assert isinstance(m, MBUNet)
    again = create_model(**m.config)
    assert again.kinds == m.kinds
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in again.parameters())
    x = torch.rand(2, 3, 32, 48)
    assert m(x).shape == (2, 1, 32, 48)
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        m(torch.rand(1, 3, 30, 32))


def test_blocks_cover_every_parameter_once():
    m = create_model("mbu_unet", width=4)
    names = [n for n, _ in m.blocks()]
    assert names[0] == "Input" and names[-1] == "Output" and "Up-CT4" in names and len(names) == 14
    total = sum(p.numel() for _, b in m.blocks() for p in b.parameters())
    assert total == sum(p.numel() for p in m.parameters())


def test_layer_kinds_resolution():
    k = resolve_layer_kinds(masked=4)
    assert {n for n, v in k.items() if v == "masked"} == {"up_ct1", "up_ct2", "up_ct3", "up_ct4", "input_c2"}
    assert k["down_c1"] == "binary"
    k = resolve_layer_kinds(base="binary", masked=["down_c2"], layers={"up_c4": "int8"})
    assert k["down_c2"] == "masked" and k["up_c4"] == "int8" and k["up_ct4"] == "binary"
    fp = resolve_layer_kinds(base="fp", activation="relu")
    assert set(fp.values()) == {"fp"}
    for bad in (dict(masked=13), dict(masked="cost-aware"), dict(layers={"nope": "binary"}),
                dict(layers={"up_c1": "int2"}), dict(base="ternary"), dict(activation="tanh")):
        with pytest.raises(ValueError):
            resolve_layer_kinds(**bad)


def test_full_precision_baseline_has_relu_and_zero_padding():
    m = create_model("mbu_unet", width=4, base="fp", activation="relu")
    assert any(isinstance(x, torch.nn.ReLU) for x in m.modules())
    convs = [x for x in m.modules() if hasattr(x, "pad_value")]
    assert convs and all(c.pad_value == 0.0 for c in convs)
    b = create_model("mbu_unet", width=4)
    pads = {c.pad_value for c in b.modules() if hasattr(c, "pad_value")}
    assert pads == {0.0, 1.0}  # the first conv (float image) pads with 0, all binary-input convs with +1


def test_cost_ranking_transposed_convs_cheapest_ct4_first():
    r = cost_ranking()
    assert list(r["layer"][:4]) == ["up_ct4", "up_ct3", "up_ct2", "up_ct1"]  # Table A.4's first four
    assert list(r["rank"]) == list(range(1, 13)) and set(r["layer"]) == set(LAYER_NAMES)
    assert r["score"].is_monotonic_increasing
    # divided by the maximum (seed 001's Table A.4 normalisation), not min-max
    assert r["op_norm"].max() == 1 and r["param_norm"].max() == 1 and r["op_norm"].min() > 0
    assert r.loc[r["layer"] == "up_ct4", "score"].item() == r["score"].min()  # cheapest in ops and params
    assert cost_aware_order() == list(r["layer"])
    # normalised scores do not depend on the width
    m = create_model("mbu_unet", width=8)
    assert list(cost_ranking(m)["layer"]) == list(r["layer"])
    assert (cost_ranking(m)["kind"] == "binary").all()


def test_layer_costs_count_a_conv_mac_twice_and_a_transposed_conv_mac_once():
    c = layer_costs(width=64, image_size=512, backbone="classic").set_index("layer")
    # Up-CT4: 128 -> 64 channels, 2x2 kernel, input 256x256: one product per output pixel and input channel
    assert c.loc["up_ct4", "params"] == 128 * 64 * 4
    assert c.loc["up_ct4", "macs"] == 256 * 256 * 128 * 64 * 4
    assert c.loc["up_ct4", "ops"] == c.loc["up_ct4", "macs"]
    # Down-C1: 64 -> 128 -> 128 at 256x256
    assert c.loc["down_c1", "params"] == 9 * (64 * 128 + 128 * 128)
    assert c.loc["down_c1", "ops"] == 2 * c.loc["down_c1", "macs"] == 2 * 256 * 256 * c.loc["down_c1", "params"]


def test_paper_backbone_channels_costs_and_table_a4_order():
    m = create_model("mbu_unet", width=64, backbone="paper", masked=4)
    assert m.channels == (64, 128, 256, 512, 512) and m.up_channels == (256, 128, 64, 64)
    assert m.up_ct1[0].weight.shape[:2] == (512, 512) and m.up_ct4[0].weight.shape[:2] == (64, 64)  # keeps channels
    assert m.up_c1[0][0].weight.shape[:2] == (256, 1024) and m.up_c4[1][0].weight.shape[:2] == (64, 64)
    # seed 001: "about 16 M parameters"; every conv/transposed conv weight of the backbone counted
    n = sum(p.numel() for p in m.parameters())
    assert 14.5e6 < n < 16.5e6
    # the model's own cost ranking is Table A.4 (up to the printed Down-C2), costs from its weights
    rank = cost_ranking(m)
    a4 = table_a4()
    assert list(rank["layer"]) == list(a4["layer"]) and rank["score"].round(3).tolist() == a4["score"].round(3).tolist()
    costs = layer_costs(64, 512, "paper").set_index("layer")
    for name in LAYER_NAMES:
        w = sum(p.numel() for q in getattr(m, name).modules() if hasattr(q, "weight_quantizer") for p in [q.weight])
        assert costs.loc[name, "params"] == w, name
    # masked=k takes the k cheapest layers of the model's own backbone
    k5 = create_model("mbu_unet", width=4, backbone="paper", masked=5).kinds
    assert k5["up_c3"] == "masked" and k5["down_c1"] == "binary"
    assert create_model("mbu_unet", width=4, masked=5, backbone="classic").kinds["down_c1"] == "masked"
    assert create_model("mbu_unet", width=4).backbone == "paper"  # the study's MBU-Net is seed 001's
    x = torch.rand(1, 3, 32, 32)
    assert create_model("mbu_unet", width=4, backbone="paper")(x).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="backbone"):
        create_model("mbu_unet", width=4, backbone="resnet")


def test_emergent_zeros_start_half_zero_and_are_recorded_per_epoch():
    torch.manual_seed(0)
    m = create_model("mbu_unet", width=8, masked=4, zeros="emergent")
    z = m.zero_fractions()
    assert set(z) == {"input_c2", "up_ct1", "up_ct2", "up_ct3", "up_ct4"}
    assert all(0.4 < v < 0.6 for v in z.values())  # latent weights uniform on [-1, 1], dead zone 0.5
    ratio = create_model("mbu_unet", width=8, masked=4).zero_fractions()
    assert all(0.3 < v < 0.5 for v in ratio.values())  # the ratio rule: ~42 % for any bell-shaped weights
    with pytest.raises(ValueError, match="zeros"):
        create_model("mbu_unet", width=4, zeros="learned-ish")
    with pytest.raises(ValueError, match="dead_zone"):
        create_model("mbu_unet", width=4, zeros="emergent", dead_zone=1.5)
    # PyTorch's own initialisation (bound 1/sqrt(fan_in)) starts every masked weight in the dead zone
    torch_init = create_model("mbu_unet", width=8, masked=4, zeros="emergent", latent_init="torch")
    assert set(torch_init.zero_fractions().values()) == {1.0}
    with pytest.raises(ValueError, match="latent_init"):
        create_model("mbu_unet", width=4, zeros="emergent", latent_init="normal")
    with pytest.raises(ValueError, match="latent_init"):
        create_model("mbu_unet", width=4, latent_init="torch")  # the ratio rule has no latent scale


def test_w_op_changes_the_weighting():
    by_params = cost_ranking(w_op=0.0)
    assert by_params["layer"].iloc[0] == "up_ct4"  # fewest parameters
    assert by_params["layer"].iloc[-1] == "down_c4"  # the bottleneck holds the most
    with pytest.raises(ValueError):
        cost_ranking(w_op=1.5)


def test_zero_fraction_of_masked_layers():
    torch.manual_seed(0)
    m = create_model("mbu_unet", width=4, masked=["up_ct4", "down_c1"])
    z = zero_fraction(m)
    assert set(z["layer"]) == {"up_ct4", "down_c1", "input_c2"}
    assert ((z["zero_fraction"] > 0) & (z["zero_fraction"] < 1)).all()
    total = z["zero_fraction"] + z["plus_fraction"] + z["minus_fraction"]
    assert torch.allclose(torch.tensor(total.values), torch.ones(len(z), dtype=torch.float64))


def test_one_training_step_updates_latent_weights():
    torch.manual_seed(0)
    m = create_model("mbu_unet", width=4, masked=4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.8).float()
    before = m.down_c2[1][0][0].weight.detach().clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x), y)
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    assert not torch.equal(before, m.down_c2[1][0][0].weight)


def test_float_stem_keeps_both_input_convs_in_full_precision():
    m = create_model("mbu_unet", width=4, stem="float", masked=4)
    assert m.kinds["input_c2"] == "fp"
    assert isinstance(m.input[0][2], torch.nn.ReLU)  # float activations between the input convs
    assert m.input[1][0].pad_value == 0.0  # its input is float: zero padding
    assert m(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError):
        resolve_layer_kinds(stem="float", layers={"input_c2": "masked"})
    with pytest.raises(ValueError):
        resolve_layer_kinds(stem="half")


def test_table_a4_is_reproduced_by_the_paper_backbone_with_max_normalisation():
    from unetq.models.mbu_unet import table_a4
    t = table_a4().set_index("layer")
    other = t.index != "down_c2"
    assert (t.loc[other, "score"].round(3) == t.loc[other, "printed"]).all()  # 11 of 12 to three decimals
    # Down-C2 computes to 0.344 where the table prints 0.406; either value gives it the same rank
    assert round(t.loc["down_c2", "score"], 3) == 0.344 and t.loc["down_c2", "printed"] == 0.406
    assert (t["rank"] == t["printed_rank"]).all()
    assert 14e6 < t["params"].sum() + 9 * (3 * 64 + 64 * 64) < 17e6  # "about 16 M" with the input block
