"""unetq.metrics against hand-computed cases and an independent set-based recount."""
import math

import numpy as np
import pytest
import torch

from unetq.metrics import (SegmentationMeter, bce_dice_loss, confusion_counts, dice_from_counts,
                           iou_from_counts)


def _sets(pred: np.ndarray, truth: np.ndarray):
    """Independent recount: positive pixels as sets of flat indices."""
    p = set(np.flatnonzero(pred).tolist())
    t = set(np.flatnonzero(truth).tolist())
    return len(p & t), len(p - t), len(t - p)


def _ref_iou_dice(tp, fp, fn):
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def test_hand_case_counts_and_ratios():
    truth = np.array([[[1, 1, 0], [0, 1, 0], [0, 0, 0]]], np.float32)[:, None]
    pred = np.array([[[1, 0, 0], [0, 1, 1], [1, 0, 0]]], np.float32)[:, None]
    tp, fp, fn = confusion_counts(pred, truth)
    assert (tp[0], fp[0], fn[0]) == (2, 2, 1)
    assert iou_from_counts(2, 2, 1) == pytest.approx(2 / 5)
    assert dice_from_counts(2, 2, 1) == pytest.approx(4 / 7)
    # logits: +5 where predicted, -5 elsewhere
    m = SegmentationMeter()
    m.update(torch.from_numpy(pred * 10 - 5), torch.from_numpy(truth))
    r = m.compute()
    assert (r["tp"], r["fp"], r["fn"], r["n"]) == (2, 2, 1, 1)
    assert r["iou"] == pytest.approx(0.4) and r["dice"] == pytest.approx(4 / 7)
    assert r["iou_img"] == pytest.approx(0.4) and r["dice_img"] == pytest.approx(4 / 7)


def test_against_independent_recount_random():
    rng = np.random.default_rng(0)
    truth = (rng.random((7, 1, 9, 11)) > 0.7).astype(np.float32)
    truth[2] = 0  # an image without crack
    logits = rng.normal(size=truth.shape).astype(np.float32)
    logits[2] = -1  # ... on which the model stays silent
    pred = logits > 0
    m = SegmentationMeter()
    m.update(logits[:3], truth[:3])  # in two batches: split-level counts must add up
    m.update(logits[3:], truth[3:])
    r = m.compute()
    tp, fp, fn = _sets(pred, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (tp, fp, fn)
    iou, dice = _ref_iou_dice(tp, fp, fn)
    assert r["iou"] == pytest.approx(iou) and r["dice"] == pytest.approx(dice)
    per = [_ref_iou_dice(*_sets(pred[i], truth[i])) for i in range(len(truth))]
    assert per[2] == (1.0, 1.0)
    assert r["iou_img"] == pytest.approx(np.mean([p[0] for p in per]))
    assert r["dice_img"] == pytest.approx(np.mean([p[1] for p in per]))
    assert r["n"] == 7


def test_empty_mask_rules():
    z = np.zeros((1, 1, 4, 4), np.float32)
    one = z.copy()
    one[0, 0, 1, 1] = 1
    neg, pos = np.full_like(z, -3), np.full_like(z, 3)
    # both empty: 1.0 per image and at split level (0/0 rule)
    m = SegmentationMeter()
    m.update(neg, z)
    r = m.compute()
    assert (r["iou"], r["dice"], r["iou_img"], r["dice_img"]) == (1.0, 1.0, 1.0, 1.0)
    # empty truth, false alarm: 0
    m = SegmentationMeter()
    m.update(pos, z)
    r = m.compute()
    assert (r["iou"], r["dice"], r["iou_img"], r["dice_img"]) == (0.0, 0.0, 0.0, 0.0)
    # crack missed entirely: 0
    m = SegmentationMeter()
    m.update(neg, one)
    assert m.compute()["dice_img"] == 0.0
    # mixing: a perfect empty image and a missed crack -> per-image mean 0.5, split level 0
    m = SegmentationMeter()
    m.update(np.concatenate([neg, neg]), np.concatenate([z, one]))
    r = m.compute()
    assert r["dice_img"] == pytest.approx(0.5) and r["dice"] == 0.0
    assert iou_from_counts(0, 0, 0) == 1.0 and dice_from_counts(0, 0, 0) == 1.0


def test_threshold_is_strict_and_exact_on_logits():
    t = np.ones((1, 1, 1, 3), np.float32)
    logits = np.array([[[[0.0, 1e-7, -1e-7]]]], np.float32)  # sigmoid(0) = 0.5 is not > 0.5
    m = SegmentationMeter()
    m.update(logits, t)
    assert m.compute()["tp"] == 1
    m = SegmentationMeter(threshold=0.9)  # logit(0.9) = 2.197
    m.update(np.array([[[[2.19, 2.21]]]], np.float32), np.ones((1, 1, 1, 2), np.float32))
    assert m.compute()["tp"] == 1


def test_numpy_torch_and_probabilities_agree():
    rng = np.random.default_rng(1)
    truth = (rng.random((3, 1, 8, 8)) > 0.5).astype(np.float32)
    logits = rng.normal(size=truth.shape).astype(np.float32)
    a, b, c = SegmentationMeter(), SegmentationMeter(), SegmentationMeter(from_logits=False)
    a.update(logits, truth)
    b.update(torch.from_numpy(logits), torch.from_numpy(truth))
    c.update(torch.sigmoid(torch.from_numpy(logits)).numpy(), truth)
    ra, rb, rc = a.compute(), b.compute(), c.compute()
    for k in ("iou", "dice", "iou_img", "dice_img", "tp", "fp", "fn"):
        assert ra[k] == rb[k] == rc[k]
    assert ra["loss"] == pytest.approx(rb["loss"]) and ra["loss"] == pytest.approx(rc["loss"], rel=1e-4)
    # [N, H, W] works too
    d = SegmentationMeter()
    d.update(logits[:, 0], truth[:, 0])
    assert d.compute()["tp"] == ra["tp"]


def test_loss_hand_case():
    # logits 0 -> p = 0.5 everywhere; target all zero over N = 8 pixels
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    bce = math.log(2)
    dice_loss = 1 - (0 + 1) / (8 * 0.5 + 0 + 1)
    assert float(bce_dice_loss(logits, target)) == pytest.approx(bce + dice_loss, rel=1e-6)
    # target all one: inter = 4, sum p = 4, sum t = 8
    target = torch.ones(2, 1, 2, 2)
    dice_loss = 1 - (2 * 4 + 1) / (4 + 8 + 1)
    assert float(bce_dice_loss(logits, target)) == pytest.approx(bce + dice_loss, rel=1e-6)


def test_loss_matches_numpy_formula_and_is_stable():
    rng = np.random.default_rng(2)
    x = rng.normal(scale=3, size=(2, 1, 5, 5))
    t = (rng.random(x.shape) > 0.6).astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    got = float(bce_dice_loss(x.astype(np.float32), t.astype(np.float32)))
    assert got == pytest.approx(bce + 1 - dice, rel=1e-5)
    # huge logits: no inf/nan, ~0 BCE when right, huge when wrong
    t1 = torch.tensor([[[[1.0, 0.0]]]])
    right = bce_dice_loss(torch.tensor([[[[1e4, -1e4]]]]), t1)
    wrong = bce_dice_loss(torch.tensor([[[[-1e4, 1e4]]]]), t1)
    assert torch.isfinite(right) and torch.isfinite(wrong)
    assert float(right) < 1e-3 and float(wrong) > 1000
    # half-precision logits are computed in float32
    assert bce_dice_loss(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16), torch.zeros(1, 1, 2, 2)).dtype == torch.float32


def test_loss_gradient_flows():
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    bce_dice_loss(x, (torch.rand(2, 1, 4, 4) > 0.5).float()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bad_inputs_are_clear_errors():
    m = SegmentationMeter()
    with pytest.raises(ValueError, match="shape"):
        m.update(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)))
    with pytest.raises(ValueError, match="binary mask"):
        m.update(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 255.0))
    with pytest.raises(ValueError, match="before any update"):
        SegmentationMeter().compute()
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        SegmentationMeter(from_logits=False).update(np.full((1, 1, 2, 2), 3.0), np.zeros((1, 1, 2, 2)))
    with pytest.raises(TypeError):
        m.update([[0.0]], [[0.0]])
    with pytest.raises(ValueError, match="threshold"):
        SegmentationMeter(threshold=1.0)


# ----------------------------------------------------------------------------- crack-benchmark metrics
def _brute_tolerance(pred, true, tol):
    """Independent: for every pixel, the Euclidean distance to the nearest pixel of the other mask."""
    pp, tt = np.argwhere(pred), np.argwhere(true)

    def near(a, b):
        if len(a) == 0 or len(b) == 0:
            return 0
        d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1)
        return int((d <= tol).sum())

    return near(pp, tt), len(pp), near(tt, pp), len(tt)


def test_tolerance_counts_match_brute_force():
    from unetq.metrics import tolerance_counts, tolerance_prf

    rng = np.random.default_rng(0)
    for tol in (0, 1, 2, 3):
        pred = rng.random((3, 14, 17)) > 0.9
        true = rng.random((3, 14, 17)) > 0.92
        got = tolerance_counts(pred, true, tol)
        for i in range(3):
            assert tuple(int(v[i]) for v in got) == _brute_tolerance(pred[i], true[i], tol), (tol, i)
    # a prediction one pixel beside a thin labelled line: a miss at 0 px, a hit at 1 px
    true = np.zeros((1, 10, 10), bool)
    true[0, :, 4] = True
    pred = np.roll(true, 1, axis=2)
    assert tolerance_prf(*tolerance_counts(pred, true, 0))["f1"] == 0.0
    assert tolerance_prf(*tolerance_counts(pred, true, 1)) == dict(precision=1.0, recall=1.0, f1=1.0)
    empty = np.zeros((1, 4, 4), bool)
    assert tolerance_prf(*tolerance_counts(empty, empty, 2))["f1"] == 1.0
    assert tolerance_prf(*tolerance_counts(empty, true[:, :4, :4] | True, 2))["recall"] == 0.0


def test_meter_tolerance_and_best_threshold():
    from unetq.metrics import best_threshold

    rng = np.random.default_rng(1)
    true = (rng.random((4, 1, 16, 16)) > 0.8).astype(np.float32)
    probs = np.clip(true * 0.35 + rng.random(true.shape) * 0.3, 0, 1).astype(np.float32)  # positives 0.35-0.65
    t, rows = best_threshold(probs, true)
    assert len(rows) == 19 and t < 0.5 and max(r["dice"] for r in rows) == next(r for r in rows if r["threshold"] == t)["dice"]
    m = SegmentationMeter(threshold=0.5, from_logits=False, tolerance=1)
    m.update(probs, true)
    out = m.compute()
    assert out["tolerance_px"] == 1
    # a tolerance can only help: at least the pixel-exact precision and recall
    assert out["precision_tol"] >= out["tp"] / (out["tp"] + out["fp"]) - 1e-12
    assert out["recall_tol"] >= out["tp"] / (out["tp"] + out["fn"]) - 1e-12
    plain = SegmentationMeter(threshold=0.5, from_logits=False)
    plain.update(probs, true)
    assert "precision_tol" not in plain.compute()
