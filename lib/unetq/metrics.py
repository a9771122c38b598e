"""Loss and segmentation metrics of seed 000: BCE + Dice loss, IoU and Dice (the one place they
are computed: training, evaluation of every runner and the explorer all call these).

Definitions (seed 000, Equations 1-4), for a binary mask and a prediction thresholded at
``threshold`` on the sigmoid probability (0.5 by default, i.e. logit > 0):

- ``IoU  = TP / (TP + FP + FN)``
- ``Dice = 2 TP / (2 TP + FP + FN)``
- ``loss = BCE(logits, target) + (1 - soft Dice)``, with the soft Dice computed on the sigmoid
  probabilities of the whole batch: ``(2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)``.

Two aggregations are reported:

- **split level** (``iou``, ``dice``): TP/FP/FN are summed over every pixel of the split, then the
  ratio is taken once (this is what seed 000 reports).
- **per image** (``iou_img``, ``dice_img``): the ratio is taken per image, then averaged.

Empty-mask rule (both levels): when ``TP + FP + FN == 0`` -- the truth is empty *and* nothing was
predicted -- IoU and Dice are **1.0** (a perfect answer to "no crack here"). An empty truth with any
predicted pixel gives 0.0, as the formulas do. Per image, this makes crack-free images count as
1.0 when the model stays silent on them, and 0.0 on any false alarm.

Crack benchmarks (CrackForest, Crack500, DeepCrack) also report **precision, recall and F1 with
a boundary tolerance** of a few pixels, since a label a pixel off the drawn crack is not a
miss: precision is the fraction of predicted crack pixels within ``tolerance`` pixels (Euclidean)
of a labelled one, recall the fraction of labelled pixels within ``tolerance`` of a predicted
one, summed over the split (:func:`tolerance_counts`, :func:`tolerance_prf`; empty rule: with no
predicted pixel, precision is 1.0 when nothing is labelled either, else 0.0; likewise recall).
:func:`best_threshold` picks the decision threshold that maximises split-level Dice (chosen on
the validation split; the test split is then scored at 0.5 and at that threshold).

Everything accepts torch tensors or numpy arrays, shaped ``[N, C, H, W]`` or ``[N, H, W]``
(the ONNX / bit-packed runners return numpy logits).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "bce_dice_loss",
    "dice_loss",
    "confusion_counts",
    "iou_from_counts",
    "dice_from_counts",
    "SegmentationMeter",
    "mask_scores",
    "tolerance_counts",
    "tolerance_prf",
    "best_threshold",
    "error_classes",
    "ERROR_CLASSES",
]


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if t.dim() not in (3, 4):
        raise ValueError(f"{name} must be [N, C, H, W] or [N, H, W], got shape {tuple(t.shape)}")
    return t


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}"
        )


def _check_binary_target(target: torch.Tensor) -> None:
    if target.is_floating_point() and not bool(torch.isfinite(target).all()):
        n = int((~torch.isfinite(target)).sum())
        raise ValueError(f"target must hold values in [0, 1] (a binary mask); {n} value(s) are NaN or Inf")
    if target.numel() and (target.min() < 0 or target.max() > 1):
        raise ValueError(
            f"target must hold values in [0, 1] (a binary mask); got range "
            f"[{float(target.min())}, {float(target.max())}]"
        )


def dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` over the whole batch (all pixels of all images pooled)."""
    probs = probs.float().reshape(-1)
    target = target.float().reshape(-1)
    inter = (probs * target).sum()
    return 1.0 - (2.0 * inter + smooth) / (probs.sum() + target.sum() + smooth)


def bce_dice_loss(logits, target, smooth: float = 1.0) -> torch.Tensor:
    """BCE (mean over pixels, from logits: numerically stable) + soft Dice loss.

    Computed in float32 even under autocast. ``logits`` and ``target`` are tensors or numpy
    arrays of the same shape; returns a 0-dim tensor (call ``float()`` for a number)."""
    logits = _as_tensor(logits, "logits").float()
    target = _as_tensor(target, "target").to(logits.device, torch.float32)
    _check_pair(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_loss(torch.sigmoid(logits), target, smooth)


def _bce_dice_from_probs(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    eps = 1e-7
    p = probs.float().clamp(eps, 1 - eps)
    bce = F.binary_cross_entropy(p, target.float())
    return bce + dice_loss(probs, target, smooth)


def confusion_counts(pred, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image TP, FP, FN (int64 numpy arrays of length N) from binary masks
    (bool or {0,1}) shaped ``[N, ...]``."""
    pred = _as_tensor(pred, "pred").bool()
    target = _as_tensor(target, "target").bool()
    _check_pair(pred, target)
    p = pred.reshape(pred.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.device)
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    return tp.cpu().numpy(), fp.cpu().numpy(), fn.cpu().numpy()


def mask_scores(pred, truth) -> dict:
    """IoU and Dice of one binary prediction against one binary mask (``[H, W]``, bool or
    {0,1}), by the definitions and the empty-mask rule above: ``{"iou", "dice"}``."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} does not match target shape {t.shape}")
    tp, fp, fn = confusion_counts(p[None], t[None])
    return dict(iou=float(iou_from_counts(tp, fp, fn)[0]), dice=float(dice_from_counts(tp, fp, fn)[0]))


#: The classes of :func:`error_classes`, in code order.
ERROR_CLASSES = ("true negative", "true positive", "false positive", "false negative")


def error_classes(truth, pred) -> np.ndarray:
    """Per pixel of two binary masks (``[H, W]``): 0 true negative, 1 true positive, 2 false
    positive, 3 false negative (:data:`ERROR_CLASSES`); ``uint8 [H, W]``."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} does not match target shape {t.shape}")
    out = np.zeros(t.shape, np.uint8)
    out[p & t] = 1
    out[p & ~t] = 2
    out[~p & t] = 3
    return out


def _disk(radius: int) -> torch.Tensor:
    r = int(radius)
    y, x = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return ((x * x + y * y) <= radius * radius).float()[None, None]


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within Euclidean distance ``radius`` of a true pixel of ``mask`` ``[N, H, W]``."""
    if radius <= 0:
        return mask
    k = _disk(radius).to(mask.device)
    return F.conv2d(mask.float()[:, None], k, padding=k.shape[-1] // 2)[:, 0] > 0.5


def tolerance_counts(pred, target, tolerance: int = 2) -> tuple[np.ndarray, ...]:
    """Per image ``(matched_pred, n_pred, matched_true, n_true)`` (int64 arrays of length N):
    predicted pixels within ``tolerance`` px of a labelled one, predicted pixels, labelled pixels
    within ``tolerance`` px of a predicted one, labelled pixels. Binary masks ``[N, ...]``."""
    p = _as_tensor(pred, "pred").bool()
    t = _as_tensor(target, "target").bool().to(p.device)
    _check_pair(p, t)
    p, t = p.reshape(-1, *p.shape[-2:]), t.reshape(-1, *t.shape[-2:])
    mp = (p & _dilate(t, tolerance)).flatten(1).sum(1)
    mt = (t & _dilate(p, tolerance)).flatten(1).sum(1)
    return tuple(v.cpu().numpy().astype(np.int64) for v in (mp, p.flatten(1).sum(1), mt, t.flatten(1).sum(1)))


def tolerance_prf(matched_pred, n_pred, matched_true, n_true) -> dict:
    """Precision, recall and F1 with a boundary tolerance from (summed) :func:`tolerance_counts`."""
    mp, np_, mt, nt = (float(np.sum(v)) for v in (matched_pred, n_pred, matched_true, n_true))
    precision = mp / np_ if np_ else (1.0 if nt == 0 else 0.0)
    recall = mt / nt if nt else (1.0 if np_ == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return dict(precision=precision, recall=recall, f1=f1)


def best_threshold(probs, target, thresholds=None) -> tuple[float, list[dict]]:
    """The decision threshold (on probabilities ``[N, ...]``) with the highest split-level Dice
    against ``target``, and every threshold's ``{threshold, iou, dice}`` (ties: the one nearest
    0.5). Default grid 0.05, 0.10, ..., 0.95."""
    thresholds = [round(0.05 * i, 2) for i in range(1, 20)] if thresholds is None else list(thresholds)
    p = _as_tensor(probs, "probs").float()
    t = _as_tensor(target, "target").to(p.device) >= 0.5
    _check_pair(p, t)
    rows = []
    for th in thresholds:
        tp, fp, fn = (int(v.sum()) for v in confusion_counts(p > th, t))
        rows.append(dict(threshold=float(th), iou=float(iou_from_counts(tp, fp, fn)),
                         dice=float(dice_from_counts(tp, fp, fn))))
    best = max(rows, key=lambda r: (r["dice"], -abs(r["threshold"] - 0.5)))
    return best["threshold"], rows


def iou_from_counts(tp, fp, fn):
    """IoU = TP/(TP+FP+FN); 1.0 where TP+FP+FN == 0 (see module docstring). Scalars or arrays."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    den = tp + fp + fn
    out = np.where(den > 0, tp / np.where(den > 0, den, 1.0), 1.0)
    return float(out) if out.ndim == 0 else out


def dice_from_counts(tp, fp, fn):
    """Dice = 2TP/(2TP+FP+FN); 1.0 where TP+FP+FN == 0 (see module docstring)."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    den = 2 * tp + fp + fn
    out = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1.0), 1.0)
    return float(out) if out.ndim == 0 else out


class SegmentationMeter:
    """Accumulates TP/FP/FN over a split, per-image IoU/Dice and the loss.

    ``meter.update(outputs, target)`` per batch, then ``meter.compute()`` returns
    ``dict(loss, iou, dice, iou_img, dice_img, n, tp, fp, fn)`` and, with ``tolerance`` (pixels),
    ``precision_tol, recall_tol, f1_tol, tolerance_px`` (see the module docstring).

    ``from_logits=True`` (default): ``outputs`` are logits and a pixel is predicted positive when
    ``sigmoid(logit) > threshold`` (evaluated exactly as ``logit > log(t / (1 - t))``).
    ``from_logits=False``: ``outputs`` are probabilities in [0, 1], positive when ``> threshold``.
    The loss is :func:`bce_dice_loss` per batch (from probabilities: clamped BCE + Dice loss),
    averaged over batches weighted by their number of images -- so, like any batch-level Dice
    loss, it depends slightly on the batch size. Pass ``loss=`` to ``update`` to use a loss you
    computed yourself. ``target`` may hold values in [0, 1]; pixels ``>= 0.5`` are positive.
    """

    def __init__(self, threshold: float = 0.5, from_logits: bool = True, smooth: float = 1.0,
                 tolerance: int | None = None):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.tolerance = tolerance
        self.from_logits = bool(from_logits)
        self.smooth = smooth
        self.reset()

    def reset(self) -> None:
        self._tp = self._fp = self._fn = 0
        self._iou_img: list[np.ndarray] = []
        self._dice_img: list[np.ndarray] = []
        self._loss_sum = 0.0
        self._loss_n = 0
        self._tol = np.zeros(4, np.int64)
        self.n = 0

    def update(self, outputs, target, loss: float | None = None) -> None:
        out = _as_tensor(outputs, "outputs").detach()
        tgt = _as_tensor(target, "target").detach().to(out.device)
        _check_pair(out, tgt)
        out = out.float()
        tgt = tgt.float()
        _check_binary_target(tgt)
        if self.from_logits:
            cut = math.log(self.threshold / (1.0 - self.threshold))
            pred = out > cut
        else:
            if out.numel() and (out.min() < 0 or out.max() > 1):
                raise ValueError("from_logits=False but outputs are outside [0, 1]; pass logits "
                                 "with from_logits=True")
            pred = out > self.threshold
        tp, fp, fn = confusion_counts(pred, tgt >= 0.5)
        self._tp += int(tp.sum())
        self._fp += int(fp.sum())
        self._fn += int(fn.sum())
        self._iou_img.append(np.atleast_1d(iou_from_counts(tp, fp, fn)))
        self._dice_img.append(np.atleast_1d(dice_from_counts(tp, fp, fn)))
        if self.tolerance is not None:
            self._tol += np.array([int(v.sum()) for v in tolerance_counts(pred, tgt >= 0.5, self.tolerance)])
        n = out.shape[0]
        if loss is None:
            if self.from_logits:
                loss = float(bce_dice_loss(out, tgt, self.smooth))
            else:
                loss = float(_bce_dice_from_probs(out, tgt, self.smooth))
        self._loss_sum += float(loss) * n
        self._loss_n += n
        self.n += n

    def compute(self) -> dict:
        if self.n == 0:
            raise ValueError("SegmentationMeter.compute() called before any update()")
        iou_img = np.concatenate(self._iou_img)
        dice_img = np.concatenate(self._dice_img)
        extra = {}
        if self.tolerance is not None:
            extra = {f"{k}_tol": v for k, v in tolerance_prf(*self._tol).items()}
            extra["tolerance_px"] = int(self.tolerance)
        return dict(
            **extra,
            loss=self._loss_sum / self._loss_n if self._loss_n else float("nan"),
            iou=iou_from_counts(self._tp, self._fp, self._fn),
            dice=dice_from_counts(self._tp, self._fp, self._fn),
            iou_img=float(iou_img.mean()),
            dice_img=float(dice_img.mean()),
            n=int(self.n),
            tp=int(self._tp),
            fp=int(self._fp),
            fn=int(self._fn),
        )
