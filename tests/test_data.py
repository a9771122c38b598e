"""unetq.data: generator, layouts, preprocessing, splits, statistics and bad input."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetq.data import (CrackDataset, DataError, Sample, binarize, crack_fraction_per_split,
                        data_stats_table, detect_layout, ensure_synthetic, find_samples,
                        make_loader, make_synthetic_cracks, pixel_value_proportions,
                        prepare_splits, split_samples, splits_from_preset)
from unetq.config import get_preset


# ----------------------------------------------------------------------------- helpers
def _img(path: Path, w=20, h=16, mode="RGB", fmt=None, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    if mode == "RGB":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif mode == "RGBA":
        a = np.concatenate([rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                            np.full((h, w, 1), 255, np.uint8)], 2)
    else:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
    Image.fromarray(a, mode).save(path, fmt)
    return path


def _mask(path: Path, w=20, h=16, box=(2, 2, 8, 8), value=255, fmt=None, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = value
    im = Image.fromarray(a, "L")
    if mode == "P":
        im = Image.fromarray((a > 0).astype(np.uint8), "P")
        im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.save(path, fmt)
    return path


def _kaggle(root: Path, n=5, ext=".png"):
    for i in range(n):
        _img(root / "images" / f"{i:03d}{ext}")
        _mask(root / "masks" / f"{i:03d}{ext}")
    return root


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*.jpg"))}


# ----------------------------------------------------------------------------- generator
def test_generator_deterministic_and_seed_dependent(tmp_path):
    a = _files(make_synthetic_cracks(tmp_path / "a", 4, size=64, seed=0, progress=False))
    b = _files(make_synthetic_cracks(tmp_path / "b", 4, size=64, seed=0, progress=False))
    c = _files(make_synthetic_cracks(tmp_path / "c", 4, size=64, seed=1, progress=False))
    assert len(a) == 8 and a == b
    assert all(a[k] != c[k] for k in a if k.startswith("images"))


def test_generator_prefix_property(tmp_path):
    small = _files(make_synthetic_cracks(tmp_path / "s", 3, size=64, seed=7, progress=False))
    big = _files(make_synthetic_cracks(tmp_path / "b", 5, size=64, seed=7, progress=False))
    assert len(big) == 10
    assert all(big[k] == v for k, v in small.items())


def test_generator_layout_and_stray_mask_values(tmp_path):
    root = make_synthetic_cracks(tmp_path / "d", 6, size=96, seed=0, progress=False)
    samples = find_samples(root)
    assert detect_layout(root) == "kaggle" and len(samples) == 6
    with Image.open(samples[0].image) as im:
        assert im.mode == "RGB" and im.size == (96, 96) and im.format == "JPEG"
    with Image.open(samples[0].mask) as m:
        assert m.mode == "L" and m.format == "JPEG"
    p = pixel_value_proportions(samples).set_index(["stage", "value"])["fraction"]
    # JPEG masks hold stray grey values, so binarisation changes something
    assert p["raw", "other"] > 0.001
    assert 0 < p["binarised", "255"] < 0.5
    assert p["binarised", "255"] != pytest.approx(p["raw", "255"])


def test_generator_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic_cracks(tmp_path, 0)
    with pytest.raises(ValueError, match="size must be"):
        make_synthetic_cracks(tmp_path, 1, size=8)


def test_ensure_synthetic_caches_and_regenerates_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETQ_DATA_DIR", str(tmp_path))
    root = ensure_synthetic(3, 64, 0)
    assert root == tmp_path / "synthetic_n3_s64_seed0"
    stamp = (root / "images" / "00000.jpg").stat().st_mtime_ns
    assert ensure_synthetic(3, 64, 0) == root  # reused, not rewritten
    assert (root / "images" / "00000.jpg").stat().st_mtime_ns == stamp
    (root / "COMPLETE.json").unlink()  # as if a run had been killed
    (root / "images" / "00002.jpg").unlink()
    root2 = ensure_synthetic(3, 64, 0)
    assert len(find_samples(root2)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- preprocessing
def test_binarisation_threshold_is_strict_at_100(tmp_path):
    assert binarize(np.array([0, 99, 100, 101, 255], np.uint8)).tolist() == [0, 0, 0, 1, 1]
    # end to end through the dataset (PNG keeps exact values, no resize at source size)
    root = tmp_path / "k"
    _img(root / "images" / "a.png", 8, 8)
    m = np.full((8, 8), 100, np.uint8)
    m[:, 4:] = 101
    (root / "masks").mkdir()
    Image.fromarray(m, "L").save(root / "masks" / "a.png")
    x, y = CrackDataset(find_samples(root), size=8)[0]
    assert y[0, :, :4].sum() == 0 and y[0, :, 4:].min() == 1


def test_dataset_items_shapes_ranges_and_resize(tmp_path):
    root = _kaggle(tmp_path / "k", n=3)
    for cache in (True, False):
        ds = CrackDataset(find_samples(root), size=32, cache=cache)
        x, y = ds[1]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert y.shape == (1, 32, 32) and y.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1
        assert set(y.unique().tolist()) == {0.0, 1.0}
        # box 2..8 x 2..8 of a 20x16 mask, scaled to 32x32: about x 3..13, y 4..16
        assert y[0, 8, 6] == 1 and y[0, 25, 25] == 0


def test_augment_flips_image_and_mask_together(tmp_path):
    root = _kaggle(tmp_path / "k", n=1)
    plain = CrackDataset(find_samples(root), size=16)
    aug = CrackDataset(find_samples(root), size=16, augment=True)
    x0, y0 = plain[0]
    seen = set()
    torch.manual_seed(0)
    for _ in range(20):
        x, y = aug[0]
        for name, f in {"id": lambda t: t, "h": lambda t: t.flip(-1), "v": lambda t: t.flip(-2),
                        "hv": lambda t: t.flip(-1).flip(-2)}.items():
            if torch.equal(x, f(x0)):
                assert torch.equal(y, f(y0))
                seen.add(name)
    assert len(seen) >= 3


def test_loader_is_reproducible(tmp_path):
    root = _kaggle(tmp_path / "k", n=6)
    ds = CrackDataset(find_samples(root), size=16)
    order = lambda seed: torch.cat([x.flatten() for x, _ in make_loader(ds, 2, True, seed=seed)])
    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    assert sum(len(x) for x, _ in make_loader(ds, 4, False)) == 6


# ----------------------------------------------------------------------------- splits
def _fake(n, split=None):
    return [Sample(f"id{i:04d}", Path(f"/x/{i}.jpg"), (Path(f"/x/{i}_m.jpg"),), split) for i in range(n)]


def test_split_ratios_reproducible_and_stable():
    s = _fake(100)
    a = split_samples(s, seed=0)
    assert [len(a[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    ids = [x.id for k in a for x in a[k]]
    assert sorted(ids) == sorted(x.id for x in s)  # disjoint and complete
    b = split_samples(list(reversed(s)), seed=0)  # input order does not matter
    assert all([x.id for x in a[k]] == [x.id for x in b[k]] for k in a)
    c = split_samples(s, seed=1)
    assert [x.id for x in a["test"]] != [x.id for x in c["test"]]
    d = split_samples(_fake(24), ratios=(0.7, 0.2, 0.1), seed=0)
    assert [len(d[k]) for k in ("train", "val", "test")] == [17, 5, 2]
    with pytest.raises(ValueError, match="summing to 1"):
        split_samples(s, ratios=(0.8, 0.1, 0.2))


def test_split_honours_dataset_test_split():
    s = _fake(90, "train") + [Sample(f"t{i}", Path("/t"), (Path("/m"),), "test") for i in range(7)]
    sp = split_samples(s, seed=0)
    assert len(sp["test"]) == 7 and all(x.split == "test" for x in sp["test"])
    assert len(sp["val"]) == 10 and len(sp["train"]) == 80  # val = 0.1/0.9 of the train pool


def test_prepare_splits_synthetic_and_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETQ_DATA_DIR", str(tmp_path))
    sp = prepare_splits("synthetic", n=10, source_size=64, image_size=32, seed=0)
    assert {k: len(v) for k, v in sp.items()} == {"train": 8, "val": 1, "test": 1}
    x, y = sp["train"][0]
    assert x.shape == (3, 32, 32) and y.shape == (1, 32, 32)
    assert (tmp_path / "synthetic_n10_s64_seed0" / "COMPLETE.json").exists()
    cfg = get_preset("ci", n_images=10, source_size=64, image_size=32)
    sp2 = splits_from_preset(cfg)
    assert [s.id for s in sp2["test"].samples] == [s.id for s in sp["test"].samples]
    assert torch.equal(sp2["train"][3][0], sp["train"][3][0])


def test_prepare_splits_from_real_root_with_subset(tmp_path):
    root = _kaggle(tmp_path / "k", n=12)
    sp = prepare_splits(root, n=10, image_size=16, seed=0)
    assert sum(len(v) for v in sp.values()) == 10
    assert len(sp["test"]) == 1 and len(sp["val"]) == 1


# ----------------------------------------------------------------------------- statistics
def test_pixel_value_proportions_counts_exactly():
    a = np.array([[0, 0, 255, 100], [101, 3, 0, 255]], np.uint8)
    p = pixel_value_proportions([a, a]).set_index(["stage", "value"])
    assert p.loc[("raw", "0"), "pixels"] == 6 and p.loc[("raw", "255"), "pixels"] == 4
    assert p.loc[("raw", "other"), "pixels"] == 6
    assert p.loc[("binarised", "255"), "pixels"] == 6  # 255, 255, 101 per array
    assert p.loc[("binarised", "0"), "fraction"] == pytest.approx(10 / 16)


def test_crack_fraction_per_split_and_stats_table(tmp_path):
    root = _kaggle(tmp_path / "k", n=3)
    _mask(root / "masks" / "001.png", box=(0, 0, 0, 0))  # crack-free
    s = find_samples(root)
    splits = {"train": CrackDataset(s[:2], size=20), "test": CrackDataset(s[2:], size=20)}
    df = crack_fraction_per_split(splits).set_index("split")
    assert df.loc["train", "images"] == 2 and df.loc["train", "crack_free_images"] == 1
    # each crack mask: a 6x6 box in 20x16, resized to 20x20 -> 6 x 7.5 px
    assert 0.05 < df.loc["test", "crack_pixel_fraction"] < 0.2
    t = data_stats_table(splits, pixel_value_proportions(s), dataset="fixture", image_size=20)
    assert list(t.columns[:2]) == ["dataset", "image_size"]
    assert {"split", "statistic", "value"} <= set(t.columns)
    assert "mask_raw_fraction_other" in set(t.statistic)


# ----------------------------------------------------------------------------- real layouts
def test_kaggle_split_variant_keeps_test(tmp_path):
    root = tmp_path / "kg"
    for sp, n in (("train", 9), ("test", 3)):
        for i in range(n):
            _img(root / sp / "images" / f"{sp}{i}.jpg", fmt="JPEG")
            _mask(root / sp / "masks" / f"{sp}{i}.jpg", fmt="JPEG")
    assert detect_layout(root) == "kaggle"
    s = find_samples(root)
    assert len(s) == 12 and sum(x.split == "test" for x in s) == 3
    assert {x.id for x in split_samples(s)["test"]} == {f"test/test{i}" for i in range(3)}


def test_deepcrack_layout(tmp_path):
    root = tmp_path / "dc"
    for sp, n in (("train", 4), ("test", 2)):
        for i in range(n):
            _img(root / f"{sp}_img" / f"{i}.jpg", fmt="JPEG")
            _mask(root / f"{sp}_lab" / f"{i}.png")
    s = find_samples(root)
    assert detect_layout(root) == "deepcrack" and len(s) == 6
    assert len(split_samples(s)["test"]) == 2
    assert CrackDataset(s, size=8)[0][1].shape == (1, 8, 8)


def test_carvana_layout_with_gif_masks(tmp_path):
    root = tmp_path / "cv"
    for i in range(3):
        _img(root / "train" / f"car{i}_01.jpg", w=24, h=16, fmt="JPEG")
        _mask(root / "train_masks" / f"car{i}_01_mask.gif", w=24, h=16, mode="P", fmt="GIF")
    s = find_samples(root)
    assert detect_layout(root) == "carvana" and [x.id for x in s] == ["car0_01", "car1_01", "car2_01"]
    y = CrackDataset(s, size=24)[0][1]  # palette 1 -> white -> foreground
    assert y.sum() > 0 and y[0, 4, 4 * 24 // 24] == 1 and y[0, 15, 23] == 0


def test_isic2018_layout(tmp_path):
    root = tmp_path / "isic"
    for name, n in (("Training", 4), ("Validation", 2)):
        for i in range(n):
            _img(root / f"ISIC2018_Task1-2_{name}_Input" / f"ISIC_{name[0]}{i:06d}.jpg", fmt="JPEG")
            _mask(root / f"ISIC2018_Task1_{name}_GroundTruth" / f"ISIC_{name[0]}{i:06d}_segmentation.png")
    (root / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("not an image")
    s = find_samples(root)
    assert detect_layout(root) == "isic2018" and len(s) == 6
    sp = split_samples(s)
    assert len(sp["val"]) == 2 and all(x.split == "val" for x in sp["val"])
    assert len(sp["test"]) == 0 or all(x.split == "train" for x in sp["test"])


def test_dsb2018_layout_merges_instance_masks(tmp_path):
    root = tmp_path / "dsb" / "stage1_train"
    for i in range(2):
        d = root / f"abc{i}"
        _img(d / "images" / f"abc{i}.png", mode="RGBA")
        _mask(d / "masks" / "m1.png", box=(0, 0, 4, 4))
        _mask(d / "masks" / "m2.png", box=(10, 8, 14, 12))
    s = find_samples(tmp_path / "dsb")
    assert detect_layout(tmp_path / "dsb") == "dsb2018" and len(s) == 2 and len(s[0].masks) == 2
    x, y = CrackDataset(s, size=20, resize="stretch")[0]  # 20x16 -> 20x20, stretched
    assert x.shape == (3, 20, 20)
    assert y[0, 1, 1] == 1 and y[0, 12, 12] == 1 and y[0, 6, 6] == 0


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="unknown dataset layout") as e:
        find_samples(tmp_path)
    for name in ("kaggle", "deepcrack", "carvana", "isic2018", "dsb2018", "train_masks"):
        assert name in str(e.value)


# ----------------------------------------------------------------------------- bad input
def test_truncated_image_is_named(tmp_path):
    root = _kaggle(tmp_path / "k", n=3, ext=".jpg")
    bad = root / "images" / "001.jpg"
    _img(bad, fmt="JPEG")
    bad.write_bytes(bad.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"truncated image file .*001\.jpg"):
        find_samples(root)


def test_unreadable_mask_is_named(tmp_path):
    root = _kaggle(tmp_path / "k", n=2)
    (root / "masks" / "001.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"unreadable mask file .*001\.png"):
        find_samples(root)


def test_corrupt_body_fails_at_decode_naming_the_file(tmp_path):
    root = _kaggle(tmp_path / "k", n=2, ext=".jpg")
    p = root / "images" / "000.jpg"
    _img(p, w=64, h=64, fmt="JPEG")
    data = bytearray(p.read_bytes())
    data[400:-2] = b"\x00" * (len(data) - 402)  # header and end marker intact, body zeroed
    p.write_bytes(bytes(data))
    s = find_samples(root, validate=False)
    try:
        CrackDataset(s, size=8)
    except DataError as e:
        assert "000.jpg" in str(e)
    else:  # libjpeg may decode garbage without complaint; then nothing to check
        pytest.skip("this libjpeg decodes the zeroed body without an error")


def test_image_without_mask_and_mask_without_image(tmp_path):
    root = _kaggle(tmp_path / "k", n=2)
    _img(root / "images" / "lonely.png")
    with pytest.raises(DataError, match=r"without a mask.*lonely\.png"):
        find_samples(root)
    (root / "images" / "lonely.png").unlink()
    _mask(root / "masks" / "orphan.png")
    with pytest.raises(DataError, match=r"without an image.*orphan\.png"):
        find_samples(root)


def test_size_mismatch_is_named(tmp_path):
    root = _kaggle(tmp_path / "k", n=2)
    _mask(root / "masks" / "001.png", w=21, h=16)
    with pytest.raises(DataError, match=r"size mismatch: image .*001\.png is 20x16, mask .*001\.png is 21x16"):
        find_samples(root)


def test_empty_folder(tmp_path):
    (tmp_path / "k" / "images").mkdir(parents=True)
    (tmp_path / "k" / "masks").mkdir()
    with pytest.raises(DataError, match=r"empty folder.*images"):
        find_samples(tmp_path / "k")


def test_unsupported_modes(tmp_path):
    root = _kaggle(tmp_path / "k", n=2)
    Image.fromarray(np.full((16, 20), 40000, np.uint16)).save(root / "images" / "001.png")
    with pytest.raises(DataError, match=r"unsupported image mode 'I(;16)?' in .*001\.png"):
        find_samples(root)
    _img(root / "images" / "001.png")
    _img(root / "masks" / "000.png", mode="RGBA")
    with pytest.raises(DataError, match=r"unsupported mask mode 'RGBA' in .*000\.png"):
        find_samples(root)


def test_rgba_and_gray_images_are_converted_with_a_log(tmp_path, caplog):
    root = _kaggle(tmp_path / "k", n=3)
    _img(root / "images" / "000.png", mode="RGBA")
    _img(root / "images" / "001.png", mode="L")
    with caplog.at_level(logging.INFO, logger="unetq.data"):
        s = find_samples(root)
    assert "RGBA->RGB" in caplog.text and "000.png" in caplog.text
    assert any(r.levelno == logging.WARNING and "RGBA" in r.getMessage() for r in caplog.records)
    assert "image L->RGB" in caplog.text
    x, _ = CrackDataset(s, size=8)[1]
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "nope")


def test_dsb2018_image_without_masks_and_isic_incomplete(tmp_path):
    d = tmp_path / "dsb" / "x1"
    _img(d / "images" / "x1.png")
    (d / "masks").mkdir()
    with pytest.raises(DataError, match=r"image without mask: .*x1\.png"):
        find_samples(tmp_path / "dsb")
    root = tmp_path / "isic"
    _img(root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg", fmt="JPEG")
    with pytest.raises(DataError, match="ISIC2018_Task1_Training_GroundTruth"):
        find_samples(root)


def test_plots_pick_examples_and_label_axes(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from unetq.studies.data import pick_examples, plot_crack_fraction, plot_pixel_proportions, plot_samples
    from unetq.studies.figures import save_figure

    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(tmp_path / "rep"))
    root = _kaggle(tmp_path / "k", n=4)
    _mask(root / "masks" / "000.png", box=(0, 0, 0, 0))  # crack-free
    ds = CrackDataset(find_samples(root), size=16)
    assert [s.id for s in pick_examples(ds, 3)] == ["001", "002", "000"]
    fig = plot_samples(ds, n=2)
    assert all(ax.get_xlabel() == "x (px)" for ax in fig.axes if ax.images)
    fig = plot_pixel_proportions(pixel_value_proportions(ds.samples))
    assert "%" in fig.axes[0].get_ylabel()
    fig = plot_crack_fraction({"train": ds})
    assert "%" in fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() == "split"
    assert save_figure(fig, "x.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- non-square, splits, identity
def test_resize_modes_keep_aspect_and_thin_cracks():
    from unetq.data.imageio import resize_binary_mask, resize_image

    img = np.full((30, 60, 3), 200, np.uint8)  # 60 wide, 30 high
    m = np.zeros((30, 60), np.uint8)
    m[:, 10] = 1  # a vertical crack one pixel wide
    pad = resize_image(img, 20, "pad")
    assert pad.shape == (20, 20, 3) and (pad[:10] == 200).all() and (pad[10:] == 0).all()  # 60x30 -> 20x10 + pad
    assert resize_image(img, 20, "crop").shape == (20, 20, 3) and (resize_image(img, 20, "crop") == 200).all()
    for mode in ("pad", "stretch"):  # shrunk 3x: the 1-px crack stays one connected line
        small = resize_binary_mask(m, 20, mode)
        rows = small[:10] if mode == "pad" else small
        assert rows.any(axis=1).all(), mode
        assert mode != "pad" or not small[10:].any()  # padding is background
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(img, 20, "zoom")


def test_dataset_identity_is_layout_and_content(tmp_path):
    from unetq.data import SYNTHETIC, dataset_identity

    a = _kaggle(tmp_path / "a", n=3)
    ida = dataset_identity(a)
    assert ida.startswith("kaggle-") and len(ida) == len("kaggle-") + 8
    b = _kaggle(tmp_path / "b", n=3)
    assert dataset_identity(b) == ida  # same files elsewhere: same dataset
    c = _kaggle(tmp_path / "c", n=4)
    assert dataset_identity(c) != ida and dataset_identity("synthetic") == dataset_identity(None) == SYNTHETIC and SYNTHETIC.startswith("synthetic-v")


def test_split_file_written_once_reused_and_user_supplied(tmp_path, monkeypatch):
    import json

    from unetq.data import DataError, split_file_path

    monkeypatch.setenv("UNETQ_DATA_DIR", str(tmp_path / "data"))
    root = _kaggle(tmp_path / "k", n=20)
    sp = prepare_splits(root, n=None, image_size=16, seed=0)
    stored = split_file_path(root, None, 0, (0.8, 0.1, 0.1))
    assert stored.exists() and json.loads(stored.read_text())["test"] == [s.id for s in sp["test"].samples]
    # the file is the split from now on (edit it: the next call follows it)
    spec = json.loads(stored.read_text())
    spec["val"], spec["test"] = spec["test"], spec["val"]
    stored.write_text(json.dumps(spec))
    again = prepare_splits(root, n=None, image_size=16, seed=0)
    assert [s.id for s in again["val"].samples] == [s.id for s in sp["test"].samples]
    # a user's own split file
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"train": ["000", "001", "002"], "val": ["003"], "test": ["004", "005"]}))
    mine = prepare_splits(root, n=None, image_size=16, seed=0, split_file=own)
    assert [len(mine[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    own.write_text(json.dumps({"train": ["000"], "val": ["nope"], "test": ["004"]}))
    with pytest.raises(DataError, match="own.json.*not in the dataset"):
        prepare_splits(root, n=None, image_size=16, seed=0, split_file=own)


def test_too_few_images_is_a_clear_error(tmp_path, monkeypatch):
    from unetq.data import DataError

    monkeypatch.setenv("UNETQ_DATA_DIR", str(tmp_path / "data"))
    root = _kaggle(tmp_path / "k", n=4)
    with pytest.raises(DataError, match=r"the val and test splits are empty \(train 4, val 0, test 0"):
        prepare_splits(root, n=None, image_size=16, seed=0)


def test_generator_appearance_is_in_the_real_range(tmp_path):
    """Crack fraction, label width and crack contrast of the generator's defaults fall in the range
    of real road-crack sets (unetq.data.stats.REAL_RANGES); labels hug the visible crack."""
    from unetq.data.stats import REAL_RANGES, appearance_summary, crack_appearance

    root = make_synthetic_cracks(tmp_path / "g", 40, 448, seed=0, progress=False)
    s = appearance_summary(crack_appearance(find_samples(root))).set_index("statistic")
    lo, hi = REAL_RANGES["crack_fraction"]
    assert lo <= s.loc["crack_fraction", "mean"] <= hi
    lo, hi = REAL_RANGES["label_width_px"]
    assert lo <= s.loc["label_width_px", "median"] <= hi
    assert s.loc["contrast_bg_std", "q1"] > REAL_RANGES["contrast_bg_std"][0]
    # the older style (labels 3-7 px wider than the crack on each side) fails the same checks
    wide = make_synthetic_cracks(tmp_path / "w", 10, 448, seed=0, progress=False, label_margin=5.0)
    sw = appearance_summary(crack_appearance(find_samples(wide))).set_index("statistic")
    assert sw.loc["label_width_px", "median"] > 8 and sw.loc["contrast_bg_std", "median"] < 1


def test_generator_non_square(tmp_path):
    root = make_synthetic_cracks(tmp_path / "ns", 3, 64, seed=1, progress=False, width=96)
    img = Image.open(root / "images" / "00000.jpg")
    mask = Image.open(root / "masks" / "00000.jpg")
    assert img.size == (96, 64) and mask.size == (96, 64)


# ----------------------------------------------------------------------------- more bad input
def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path, monkeypatch):
    import warnings

    root = _kaggle(tmp_path / "k", n=3)  # 20x16 = 320 pixels each
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's error above 200 pixels
    with pytest.raises(DataError, match=r"3 bad sample\(s\)(.|\n)*image file .*000\.png claims too many pixels"):
        find_samples(root)  # validation collects them all instead of aborting on the first
    with pytest.raises(DataError, match=r"image file .*000\.png claims too many pixels"):
        CrackDataset(find_samples(root, validate=False), size=8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # above the limit, below twice: a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_samples(root)
    named = [str(w.message) for w in caught if issubclass(w.category, Image.DecompressionBombWarning)
             and "000.png" in str(w.message)]
    assert named, [str(w.message) for w in caught]


def test_other_image_extensions_load_and_other_files_are_listed(tmp_path):
    root = tmp_path / "k"
    for i, ext in enumerate((".webp", ".jpe", ".jfif", ".tif")):
        fmt = {".webp": "WEBP", ".tif": "TIFF"}.get(ext, "JPEG")
        _img(root / "images" / f"{i:03d}{ext}", fmt=fmt)
        _mask(root / "masks" / f"{i:03d}.png")
    (root / "images" / "004.psd").write_bytes(b"an image type Pillow does not list")
    (root / "masks" / "003.heic").write_bytes(b"not readable here")
    (root / "images" / "notes.txt").write_text("a document: skipped without a warning")
    (root / "images" / ".DS_Store").write_bytes(b"hidden: ignored")
    with pytest.warns(UserWarning, match=r"2 file\(s\) skipped.*images/004\.psd, masks/003\.heic \("):
        s = find_samples(root)
    assert [x.image.suffix for x in s] == [".webp", ".jpe", ".jfif", ".tif"]
    assert CrackDataset(s, size=8)[0][0].shape == (3, 8, 8)
    from unetq.data import skipped_files

    assert skipped_files(root) == [root / "images" / "004.psd", root / "images" / "notes.txt",
                                   root / "masks" / "003.heic"]


def test_pairs_in_sub_folders_are_found(tmp_path):
    root = _kaggle(tmp_path / "k", n=2)
    for site in ("site_a", "site_b/deeper"):
        _img(root / "images" / site / "000.png")
        _mask(root / "masks" / site / "000.png")
    s = find_samples(root)
    assert [x.id for x in s] == ["000", "001", "site_a/000", "site_b/deeper/000"]
    assert s[2].mask == root / "masks" / "site_a" / "000.png"
    _img(root / "images" / "site_c" / "000.png")  # nested, but without its mask: named
    with pytest.raises(DataError, match=r"without a mask.*site_c/000\.png"):
        find_samples(root)


def test_zero_one_masks_are_crack_not_background(tmp_path, caplog):
    from unetq.data import load_pair

    root = tmp_path / "k"
    _img(root / "images" / "000.png")
    _mask(root / "masks" / "000.png", value=1, box=(2, 2, 8, 8))  # a 0/1 label map
    with caplog.at_level(logging.INFO, logger="unetq.data"):
        _, m = load_pair(root / "images" / "000.png", root / "masks" / "000.png", size=20, threshold=100)
    assert m.sum() == 36 and "0/1 masks" in caplog.text  # 6x6 box, 20x16 padded to 20x20: kept
    assert binarize(np.array([0, 1, 1, 0], np.uint8)).tolist() == [0, 1, 1, 0]
    assert binarize(np.array([0, 1, 2, 101], np.uint8)).tolist() == [0, 0, 0, 1]  # a 0-255 mask as before
    props = pixel_value_proportions([root / "masks" / "000.png"])
    assert float(props.query("stage == 'binarised' and value == '255'")["pixels"].iloc[0]) == 36


def test_nonfinite_mask_values_are_rejected():
    with pytest.raises(DataError, match="NaN"):
        binarize(np.array([[0.0, np.nan], [255.0, 0.0]], np.float32))
    with pytest.raises(DataError, match="NaN/Inf"):
        binarize(np.array([0.0, np.inf], np.float32))
