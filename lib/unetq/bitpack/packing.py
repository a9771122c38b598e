"""Packing: activations into padded NHWC bit buffers, +-1/ternary weights into bit planes, and
BatchNorm + sign into integer thresholds (layouts in ``kernels``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels

WORD = 64
MASKED_FORMS = ("xor_and", "subtractive")


def words(channels: int) -> int:
    """uint64 words holding ``channels`` bits."""
    return (int(channels) + WORD - 1) // WORD


def valid_bits(channels: int) -> np.ndarray:
    """The words of a segment of ``channels`` channels with every valid bit set."""
    nw = words(channels)
    out = np.full(nw, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    rem = channels - WORD * (nw - 1)
    if rem < WORD:
        out[-1] = np.uint64((1 << rem) - 1)
    return out


@dataclass
class Segments:
    """Channel segments of a buffer: ``channels[i]`` channels starting at word ``offsets[i]``."""

    channels: list[int]
    offsets: list[int] = field(init=False)

    def __post_init__(self):
        self.offsets, o = [], 0
        for c in self.channels:
            self.offsets.append(o)
            o += words(c)
        self.total_words = o

    @property
    def total_channels(self) -> int:
        return sum(self.channels)

    def channel_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(word index, bit index) of every channel in torch (concatenation) order."""
        wi, bi = [], []
        for c, o in zip(self.channels, self.offsets):
            k = np.arange(c)
            wi.append(o + k // WORD)
            bi.append(k % WORD)
        return np.concatenate(wi).astype(np.int64), np.concatenate(bi).astype(np.uint64)


def new_buffer(n: int, h: int, w: int, segments: Segments) -> np.ndarray:
    """Padded bit buffer ``[n, h+2, w+2, words]``: interior zero, border = +1 on valid bits."""
    buf = np.zeros((n, h + 2, w + 2, segments.total_words), dtype=np.uint64)
    border = np.concatenate([valid_bits(c) for c in segments.channels])
    buf[:, 0, :, :] = border
    buf[:, -1, :, :] = border
    buf[:, :, 0, :] = border
    buf[:, :, -1, :] = border
    return buf


def pack_activations(x: np.ndarray, segments: Segments | None = None) -> np.ndarray:
    """+-1 float NCHW (bit = x >= 0) -> padded bit buffer. With ``segments`` the channels are
    split over the segments in order (their total must equal C)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"pack_activations expects NCHW, got shape {x.shape}")
    n, c, h, w = x.shape
    segments = segments or Segments([c])
    if segments.total_channels != c:
        raise ValueError(f"segments hold {segments.total_channels} channels, tensor has {c}")
    buf = new_buffer(n, h, w, segments)
    start = 0
    for ch, off in zip(segments.channels, segments.offsets):
        kernels.pack_signs(np.ascontiguousarray(x[:, start:start + ch]), buf, off)
        start += ch
    return buf


def unpack_activations(buf: np.ndarray, segments: Segments | None = None, channels: int | None = None) -> np.ndarray:
    """Padded bit buffer -> +-1 float32 NCHW (all segments concatenated)."""
    if segments is None:
        segments = Segments([channels if channels is not None else WORD * buf.shape[-1]])
    n, hp, wp, _ = buf.shape
    parts = []
    for ch, off in zip(segments.channels, segments.offsets):
        out = np.empty((n, ch, hp - 2, wp - 2), dtype=np.float32)
        kernels.unpack_signs(buf, off, ch, out)
        parts.append(out)
    return np.concatenate(parts, axis=1)


def lane_block(cout: int) -> int:
    """Output channels per block (the micro-kernels' lane counts): 64, or the smallest of
    8/16/32/64 that holds ``cout``."""
    for cb in (8, 16, 32):
        if cout <= cb:
            return cb
    return WORD


def pack_weight_planes(wq: np.ndarray, in_segments: Segments, planes: dict) -> dict[str, np.ndarray]:
    """Integer weights ``wq[Cout, Cin, taps]`` (values -1/0/+1) -> bit planes
    ``uint64[nblk, taps, WD, CB]``; ``planes`` maps plane name -> predicate on ``wq`` (bool)."""
    cout, cin, taps = wq.shape
    if cin != in_segments.total_channels:
        raise ValueError(f"weights have {cin} input channels, input segments {in_segments.total_channels}")
    cb = lane_block(cout)
    nblk = -(-cout // cb)
    wi, bi = in_segments.channel_positions()
    co = np.arange(cout)
    out = {}
    for name, pred in planes.items():
        vals = pred(wq)  # [cout, cin, taps] bool
        plane = np.zeros((nblk, taps, in_segments.total_words, cb), dtype=np.uint64)
        shifted = vals.astype(np.uint64) << bi[None, :, None]  # [cout, cin, taps]
        for ci in range(cin):  # distinct bits per word: OR == add
            plane[co // cb, :, wi[ci], co % cb] |= shifted[:, ci, :]
        out[name] = plane
    return out


def float32_thresholds(theta: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(t32, mode)`` for ``kernels.threshold_pack_float`` from BatchNorm + sign thresholds
    (``BNSign.thresholds``: float64 ``theta``, ``direction``): for every float32 ``y``,
    ``float64(y) >= theta`` iff ``y >= t32`` where ``t32`` is the smallest float32 >= theta
    (direction +1), and ``float64(y) <= theta`` iff ``y <= t32`` with the largest float32 <=
    theta (direction -1); direction 0 gives a constant bit (1 iff theta < 0, i.e. -inf)."""
    theta = np.asarray(theta, dtype=np.float64)
    direction = np.asarray(direction)
    with np.errstate(over="ignore"):
        t32 = theta.astype(np.float32)
    up = (direction > 0) & (t32.astype(np.float64) < theta)
    down = (direction < 0) & (t32.astype(np.float64) > theta)
    t32[up] = np.nextafter(t32[up], np.float32(np.inf))
    t32[down] = np.nextafter(t32[down], np.float32(-np.inf))
    mode = np.where(direction > 0, kernels.TH_GE, np.where(direction < 0, kernels.TH_LE,
                    np.where(theta < 0, kernels.TH_ONE, kernels.TH_ZERO))).astype(np.int64)
    return np.ascontiguousarray(t32, dtype=np.float32), mode


def fold_threshold(theta: np.ndarray, direction: np.ndarray, n_terms: np.ndarray, form: str,
                   cpad: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds ``(t, flip)`` (length ``cpad``) such that the kernels' bit
    ``(v <= t) ^ flip`` equals ``sign(BN(a.b)) >= 0`` (module doc of ``kernels``).

    ``n_terms[c]``: count of nonzero weights seen by output channel c (binary: 9*Cin or Cin;
    masked: popc(mask)). ``form``: ``"mismatch"`` (v = number of sign mismatches among the
    nonzero terms, a.b = n - 2v) or ``"neg_dot"`` (v = -a.b, the subtractive encoding)."""
    theta = np.asarray(theta, dtype=np.float64)
    direction = np.asarray(direction, dtype=np.int64)
    n = np.asarray(n_terms, dtype=np.int64)
    cout = theta.shape[0]
    t = np.full(cpad, -1, dtype=np.int64)
    flip = np.zeros(cpad, dtype=np.uint8)
    for c in range(cout):
        nc, d, th = int(n[c]), int(direction[c]), float(theta[c])
        if d == 0 or not np.isfinite(th):
            always = (th < 0) if d == 0 else (th < 0) == (d > 0)  # +-inf thresholds
            t[c] = -1 if form == "mismatch" else -nc - 1
            flip[c] = 1 if always else 0
            continue
        th = min(max(th, -nc - 2.0), nc + 2.0)
        if d > 0:
            big_t = int(np.ceil(th))  # dot >= T
            if form == "mismatch":
                t[c], flip[c] = (nc - big_t) // 2, 0
            else:
                t[c], flip[c] = -big_t, 0
        else:
            big_t = int(np.floor(th))  # dot <= T
            if form == "mismatch":
                t[c], flip[c] = -((big_t - nc) // 2) - 1, 1
            else:
                t[c], flip[c] = -big_t - 1, 1
    return t.astype(np.int32), flip
