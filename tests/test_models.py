"""Architectures of seed 000 (U-Net, Ghost U-Net) and seed 002 (Squeeze U-Net): per-block parameter
counts at width 64, shapes, config round-trip, tables and profiles."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn as nn

from unetq.models import create_model, list_models, paper_param_table, param_table, profile_layers
from unetq.models.layers import scale_channels
from unetq.models.squeeze_unet import Fire, TransposedFire
from unetq.studies.architectures import plot_profile

# Expected counts at width 64, classes 1, written out here (not read from the library).
UNET_BLOCKS = {
    "Down1": 38_720,
    "Down2": 221_440,  # seed 000 Table 1 prints 221.550: a typo (2*9*64*128+128 + 9*128*128+128)
    "Down3": 885_248,
    "Down4": 3_539_968,
    "Bottleneck": 14_157_824,
    "Up1": 9_176_576,  # includes the 1024->512 ConvTranspose (2,097,664)
    "Up2": 2_294_528,
    "Up3": 573_824,
    "Up4": 143_552,
    "Output": 65,
}
UNET_TOTAL = 31_031_745  # Table 1 prints 31.031.855: the same +110 as the Down2 typo

GHOST_BLOCKS = {
    "Down1": 2_976, "Down2": 13_952, "Down3": 52_480, "Down4": 203_264, "Bottleneck": 14_157_824,
    "Up1": 2_497_536, "Up2": 626_176, "Up3": 157_440, "Up4": 39_808, "Output": 65,
}
GHOST_TOTAL = 17_751_521  # exact match with seed 000 Table 2

SQUEEZE_BLOCKS = {
    "Initial": 38_592, "DS1": 47_104, "DS2": 141_312, "DS3": 376_832, "DS4": 942_080,
    "TF1": 184_320, "US1": 425_984, "TF2": 73_728, "US2": 159_744,
    "TF3": 27_648,  # seed 002 Table 4 prints 27684: a typo (256*48 + 48*64*4 + 48*64)
    "US3": 53_248, "FinalUp": 32_768, "FinalConv": 110_592,
    "Head": 65,  # 1x1 conv 64 -> 1 with bias; not in the paper's tables
}
SQUEEZE_BACKBONE = 2_613_952  # before the head ("about 2.6 M" in seed 002)

EXPECTED = {"unet": UNET_BLOCKS, "ghost_unet": GHOST_BLOCKS, "squeeze_unet": SQUEEZE_BLOCKS}
OURS = ("unet", "ghost_unet", "squeeze_unet")


@pytest.fixture(scope="module")
def paper_models():
    """Width-64 models (construction only, ~0.5 s for all three; no width-64 forward on data)."""
    return {name: create_model(name) for name in OURS}


@pytest.mark.parametrize("name", OURS)
def test_every_block_matches_paper_at_width_64(paper_models, name):
    model = paper_models[name]
    counts = {b: sum(p.numel() for p in m.parameters()) for b, m in model.blocks()}
    assert list(counts) == list(EXPECTED[name])  # the paper tables' row order
    assert counts == EXPECTED[name]
    # The blocks hold every parameter of the model.
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


def test_totals_at_width_64(paper_models):
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in paper_models.items()}
    assert n["unet"] == UNET_TOTAL
    assert n["ghost_unet"] == GHOST_TOTAL
    assert n["squeeze_unet"] - SQUEEZE_BLOCKS["Head"] == SQUEEZE_BACKBONE
    assert create_model("squeeze_unet", classes=3).head.weight.numel() == 64 * 3


def test_param_table_at_width_64_256(paper_models):
    """Runs on the meta device: the full-size table costs no arithmetic."""
    df = param_table(paper_models["unet"], image_size=256)
    assert list(df["block"]) == [*UNET_BLOCKS, "Total"]
    assert list(df["params"][:-1]) == list(UNET_BLOCKS.values())
    assert df["params"].iloc[-1] == UNET_TOTAL
    # True shapes; seed 000 prints [256,64,64] and [512,32,32] for DownConv 3/4 (typos).
    assert list(df["output_shape"]) == [
        "[64, 128, 128]", "[128, 64, 64]", "[256, 32, 32]", "[512, 16, 16]", "[1024, 16, 16]",
        "[512, 32, 32]", "[256, 64, 64]", "[128, 128, 128]", "[64, 256, 256]", "[1, 256, 256]",
        "[1, 256, 256]"]
    hw = 256 * 256
    assert df.set_index("block").loc["Down1", "macs"] == (3 * 64 * 9 + 64 * 64 * 9) * hw
    assert df.set_index("block").loc["Output", "macs"] == 64 * hw
    assert df["macs"].iloc[-1] == df["macs"].iloc[:-1].sum()

    sq = param_table(paper_models["squeeze_unet"], image_size=256)
    assert list(sq["block"]) == [*SQUEEZE_BLOCKS, "Total"]
    assert list(sq["params"][:-1]) == list(SQUEEZE_BLOCKS.values())
    shapes = dict(zip(sq["block"], sq["output_shape"]))
    assert shapes["DS1"] == "[128, 128, 128]" and shapes["DS4"] == "[1024, 16, 16]"
    assert shapes["TF1"] == "[512, 32, 32]" and shapes["TF3"] == "[128, 128, 128]"
    assert shapes["FinalUp"] == "[64, 256, 256]" and shapes["Head"] == "[1, 256, 256]"
    # Squeeze U-Net exists to cut MACs: fewer than a third of U-Net's at the same size.
    assert sq["macs"].iloc[-1] * 3 < df["macs"].iloc[-1]


class _OneConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.config = {"in_channels": 3}

    def blocks(self):
        return [("conv", self.conv), ("up", self.up)]

    def forward(self, x):
        return self.up(self.conv(x))


def test_param_table_macs_by_hand():
    df = param_table(_OneConv(), image_size=16).set_index("block")
    assert df.loc["conv", "macs"] == 3 * 8 * 3 * 3 * 16 * 16  # 55,296
    assert df.loc["conv", "params"] == 3 * 8 * 9 + 8
    assert df.loc["conv", "output_shape"] == "[8, 16, 16]"
    assert df.loc["up", "macs"] == 8 * 4 * 2 * 2 * 16 * 16  # each input pixel meets the 2x2 kernel once
    assert df.loc["up", "output_shape"] == "[4, 32, 32]"
    assert df.loc["Total", "macs"] == 55_296 + 32_768
    # batch_size multiplies MACs, not params
    df4 = param_table(_OneConv(), image_size=16, batch_size=4).set_index("block")
    assert df4.loc["Total", "macs"] == 4 * df.loc["Total", "macs"]
    assert df4.loc["Total", "params"] == df.loc["Total", "params"]


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("width,in_ch,classes,h,w", [(4, 3, 1, 32, 32), (6, 1, 2, 16, 48), (2, 3, 3, 48, 32)])
def test_output_shapes(name, width, in_ch, classes, h, w):
    torch.manual_seed(0)
    model = create_model(name, in_channels=in_ch, classes=classes, width=width).eval()
    with torch.no_grad():
        y = model(torch.rand(2, in_ch, h, w))
    assert y.shape == (2, classes, h, w)
    assert torch.isfinite(y).all()
    if width >= 4:  # at width 2 a Ghost module has one intrinsic channel, which ReLU may zero
        assert y.std() > 0  # logits, not a constant


@pytest.mark.parametrize("name", OURS)
def test_param_table_small_matches_forward(name):
    model = create_model(name, width=4)
    df = param_table(model, image_size=32)
    assert df["block"].iloc[-1] == "Total"
    assert list(df["block"][:-1]) == [b for b, _ in model.blocks()]
    assert df["params"].iloc[-1] == sum(p.numel() for p in model.parameters()) == df["params"][:-1].sum()
    assert df["output_shape"].iloc[-1] == "[1, 32, 32]"
    assert (df["macs"] > 0).all()
    assert model.training  # param_table restores the training flag


@pytest.mark.parametrize("name", OURS)
def test_config_round_trip(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, classes=2, width=4)
    assert model.config == dict(name=name, in_channels=1, classes=2, width=4)
    clone = create_model(**model.config)
    clone.load_state_dict(model.state_dict(), strict=True)
    model.eval(), clone.eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


@pytest.mark.parametrize("name", OURS)
def test_deterministic_in_eval(name):
    model = create_model(name, width=4).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", OURS)
def test_backward_reaches_every_parameter(name):
    model = create_model(name, width=4)
    model(torch.rand(2, 3, 32, 32)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", OURS)
def test_bad_input_is_a_clear_error(name):
    model = create_model(name, width=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.rand(1, 3, 40, 32))
    with pytest.raises(ValueError, match="input channels"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 16"):
        param_table(model, image_size=40)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg")
    with pytest.raises(ValueError, match="even width"):
        create_model("ghost_unet", width=5)
    with pytest.raises(ValueError, match="width"):
        create_model("unet", width=0)
    with pytest.raises(ValueError, match="width"):
        create_model("unet", width=8.5)


def test_width_scaling():
    assert scale_channels(64, 64) == 64 and scale_channels(1024, 64) == 1024
    assert scale_channels(48, 16) == 12 and scale_channels(80, 4) == 5 and scale_channels(32, 1) == 1
    m = create_model("unet", width=16)
    assert m.down1.conv[0].out_channels == 16 and m.bottleneck[0].out_channels == 256
    s = create_model("squeeze_unet", width=16)
    assert s.ds4[0].squeeze[0].out_channels == 20  # s80 at width 16


def test_fire_modules_resample_by_two():
    x = torch.rand(1, 8, 10, 14)
    assert Fire(8, 4, 6, stride=2)(x).shape == (1, 12, 5, 7)
    assert Fire(8, 4, 6)(x).shape == (1, 12, 10, 14)
    tf = TransposedFire(8, 4, 3)
    s = tf.squeeze(x)
    a, b = tf.expand2x2(s), tf.expand1x1(s)
    # The 1x1 stride-2 branch (output_padding=1) has the 2x2 branch's size, like TF "same" padding.
    assert a.shape == b.shape == (1, 3, 20, 28)
    assert torch.all(b[..., 1::2, :] == 0) and torch.all(b[..., :, 1::2] == 0)
    assert tf(x).shape == (1, 6, 20, 28)


def test_paper_tables_agree_with_models(paper_models):
    typos = []
    for name in OURS:
        ours = param_table(paper_models[name], image_size=64).set_index("block")["params"]
        paper = paper_param_table(name).set_index("block")
        assert list(paper.index) == list(ours.index)
        assert (paper["correct_params"] == ours).all()
        printed = paper["paper_params"].dropna()
        typos += [(name, b) for b in printed.index if printed[b] != paper.loc[b, "correct_params"]]
    assert typos == [("unet", "Down2"), ("unet", "Total"), ("squeeze_unet", "TF3")]
    with pytest.raises(ValueError):
        paper_param_table("vgg")


@pytest.mark.parametrize("name", OURS)
def test_profile_layers_cpu(name):
    model = create_model(name, width=4)
    df = profile_layers(model, image_size=32, repeats=2)
    assert list(df.columns) == ["block", "time_ms", "share_percent"]
    assert list(df["block"]) == [b for b, _ in model.blocks()]
    assert (df["time_ms"] > 0).all()
    assert df["share_percent"].sum() == pytest.approx(100.0)
    assert model.training


def test_profile_layers_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the CUDA profile path cannot run here")
    model = create_model("squeeze_unet", width=4)
    df = profile_layers(model, image_size=32, repeats=2, device="cuda")
    assert list(df["block"]) == [b for b, _ in model.blocks()]
    assert (df["time_ms"] > 0).all()


def test_profile_layers_rejects_bad_arguments():
    model = create_model("unet", width=4)
    with pytest.raises(ValueError, match="repeats"):
        profile_layers(model, image_size=32, repeats=0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            profile_layers(model, image_size=32, device="cuda")


def test_plot_profile():
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame({"block": ["A", "B"], "time_ms": [1.0, 3.0], "share_percent": [25.0, 75.0]})
    ax = plot_profile(df)
    assert ax.get_xlabel() == "time per forward pass (ms)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    assert ax.yaxis_inverted()  # first block on top
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="time_ms"):
        plot_profile(pd.DataFrame({"block": ["A"]}))


@pytest.mark.parametrize("name", sorted(set(list_models())))
def test_registry_contract(name):
    """Every registered architecture (MBU-Net included once it exists) honours the shared contract."""
    model = create_model(name, width=4).eval()
    rebuilt = create_model(**model.config)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    df = param_table(model, image_size=32)
    assert df["params"].iloc[-1] == sum(p.numel() for p in model.parameters())
    assert len(model.blocks()) == len(df) - 1 - int("(outside blocks)" in set(df["block"]))


_IMPORT_PROBE = r'''
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def __init__(self, missing):
        self.missing = missing
    def find_spec(self, fullname, path, target=None):
        if fullname == "unetq.models.mbu_unet":
            raise ModuleNotFoundError(f"No module named {self.missing!r}", name=self.missing)
        return None

def fresh_import():
    for k in [k for k in sys.modules if k.startswith("unetq.models")]:
        del sys.modules[k]
    import unetq.models
    return unetq.models

sys.meta_path.insert(0, Block("unetq.models.mbu_unet"))   # the file itself is absent
m = fresh_import()
assert "mbu_unet" not in m.list_models() and "unet" in m.list_models()
sys.meta_path[0] = Block("some_missing_dependency")        # a broken import inside the file
try:
    fresh_import()
except ModuleNotFoundError as e:
    assert e.name == "some_missing_dependency"
    print("OK")
'''


def test_missing_mbu_module_is_tolerated_but_broken_one_raises():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"
