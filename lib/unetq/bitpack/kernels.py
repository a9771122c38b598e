"""numba kernels of the bit-packed engine (CPU).

Layout: an activation tensor is a *padded NHWC bit buffer* ``uint64[N, H+2, W+2, WD]``: for
each pixel a row of words; channel ``c`` of a segment starting at word ``o`` is bit ``c % 64`` of
word ``o + c // 64``; bit 1 means +1, bit 0 means -1. Unused (tail) bits of every word are 0,
also in the 1-pixel border, whose valid bits are 1 (padding with +1, as the training-time
layers do). A buffer may hold several channel *segments* side by side (the U-Net skip and the
upsampled path), so concatenation costs nothing: the producers write into their segment.

Weights: ``uint64[nblk, taps, WD, CB]``, output channel ``co`` in block ``co // CB``, lane
``co % CB`` (``CB`` in 8/16/32/64, see ``packing.lane_block``). The inner products run in the
register-blocked micro-kernels of ``microkernels`` (AVX-512 ``vpxorq/vpandq/vpopcntq``), several
output pixels per weight load; rows are spread over threads with ``prange``. Block ``b`` writes
output word ``b`` of its segment, directly packed.

Every kernel accumulates an integer ``v`` per output channel and writes bit
``(v <= t[c]) ^ flip[c]``, the folded BatchNorm + sign threshold (``packing.fold_threshold``):

- mode ``xor``      binary weights:  v = sum popc(a ^ w),            a.b = n - 2 v
- mode ``xor_and``  masked weights:  v = sum popc((a ^ s) & m),      a.b = popc(m) - 2 v
- mode ``sub``      masked weights, the paper's subtractive encoding (two popcounts):
                    v = sum popc(a ^ pos) - popc(a ^ neg),          a.b = -v
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from . import microkernels as mk

_OPTS = dict(parallel=True, fastmath=False, cache=True, nogil=True)


@intrinsic
def popc64(typingctx, x):
    """Population count of a uint64 (LLVM ``ctpop``: ``popcnt``/``vpopcntq``), as int64."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True)
def popcount(x):
    """Scalar popcount (for tests and small helpers)."""
    return popc64(np.uint64(x))


# --------------------------------------------------------------------------------------------
# threshold + pack
# --------------------------------------------------------------------------------------------
@njit(inline="always")
def _pack_word(acc, a0, t, flip, base, nvalid):
    """Bits ``(acc[a0 + c] <= t[base + c]) ^ flip[base + c]`` for c < nvalid, packed."""
    word = np.uint64(0)
    for c in range(nvalid):
        bit = np.uint64((acc[a0 + c] <= t[base + c]) ^ flip[base + c])
        word |= bit << np.uint64(c)
    return word


@njit(**_OPTS)
def threshold_pack_float(y, theta, direction, out, out_off):
    """Binarise a float NCHW tensor ``y`` with BatchNorm thresholds (float64 ``theta``,
    ``direction`` +1: y >= theta, -1: y <= theta, 0: theta == -inf) into the interior of the
    padded bit buffer ``out`` at word offset ``out_off``."""
    N, C, H, W = y.shape
    nw = (C + 63) // 64
    for r in prange(N * H):
        n = r // H
        i = r % H
        for j in range(W):
            for b in range(nw):
                word = np.uint64(0)
                for k in range(min(64, C - 64 * b)):
                    c = 64 * b + k
                    v = np.float64(y[n, c, i, j])
                    d = direction[c]
                    if d > 0:
                        bit = v >= theta[c]
                    elif d < 0:
                        bit = v <= theta[c]
                    else:
                        bit = theta[c] < 0
                    if bit:
                        word |= np.uint64(1) << np.uint64(k)
                out[n, i + 1, j + 1, out_off + b] = word


@njit(**_OPTS)
def pack_signs(x, out, out_off):
    """Pack a +-1 (any float: bit = x >= 0) NCHW tensor into the interior of ``out``."""
    N, C, H, W = x.shape
    nw = (C + 63) // 64
    for r in prange(N * H):
        n = r // H
        i = r % H
        for j in range(W):
            for b in range(nw):
                word = np.uint64(0)
                for k in range(min(64, C - 64 * b)):
                    if x[n, 64 * b + k, i, j] >= 0:
                        word |= np.uint64(1) << np.uint64(k)
                out[n, i + 1, j + 1, out_off + b] = word


@njit(**_OPTS)
def unpack_signs(buf, off, C, out):
    """Interior channels ``[off-word segment, C channels]`` of ``buf`` -> +-1 float32 NCHW."""
    N, Hp, Wp, _ = buf.shape
    H = Hp - 2
    W = Wp - 2
    for r in prange(N * H):
        n = r // H
        i = r % H
        for j in range(W):
            for c in range(C):
                word = buf[n, i + 1, j + 1, off + c // 64]
                out[n, c, i, j] = 1.0 if (word >> np.uint64(c % 64)) & np.uint64(1) else -1.0


# --------------------------------------------------------------------------------------------
# micro-kernel dispatch: mode 0 = xor (binary), 1 = xor_and (masked), 2 = sub (masked, paper)
# --------------------------------------------------------------------------------------------
MODE_IDS = {"xor": 0, "xor_and": 1, "sub": 2}


@njit(inline="always")
def _npx(nvec):
    return min(8, 16 // nvec)


@njit(inline="always")
def _micro(mode, nvec, full, a, a_off, a_stride, w, m, w_off, K, acc, init):
    if mode == 0:
        if nvec == 8:
            if full:
                mk.xor_v8_p2(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xor_v8_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 4:
            if full:
                mk.xor_v4_p4(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xor_v4_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 2:
            if full:
                mk.xor_v2_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xor_v2_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        else:
            if full:
                mk.xor_v1_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xor_v1_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
    elif mode == 1:
        if nvec == 8:
            if full:
                mk.xa_v8_p2(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xa_v8_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 4:
            if full:
                mk.xa_v4_p4(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xa_v4_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 2:
            if full:
                mk.xa_v2_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xa_v2_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        else:
            if full:
                mk.xa_v1_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.xa_v1_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
    else:
        if nvec == 8:
            if full:
                mk.sub_v8_p2(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.sub_v8_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 4:
            if full:
                mk.sub_v4_p4(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.sub_v4_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        elif nvec == 2:
            if full:
                mk.sub_v2_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.sub_v2_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)
        else:
            if full:
                mk.sub_v1_p8(a, a_off, a_stride, w, m, w_off, K, acc, init)
            else:
                mk.sub_v1_p1(a, a_off, a_stride, w, m, w_off, K, acc, init)


# --------------------------------------------------------------------------------------------
# 3x3 convolutions (stride 1, +1 padding supplied by the buffer border)
# --------------------------------------------------------------------------------------------
@njit(**_OPTS)
def conv3x3(mode, inp, wa, wb, t, flip, out, out_off, cout):
    """Packed 3x3 conv + threshold. ``wa``/``wb``: weight planes ``[nblk, 9, WD, CB]`` (binary:
    w, w; masked: s, m; subtractive: pos, neg); ``mode`` from ``MODE_IDS``."""
    N, Hp, Wp, WD = inp.shape
    H = Hp - 2
    W = Wp - 2
    nblk, _, _, CB = wa.shape
    nvec = CB // 8
    npx_full = _npx(nvec)
    a = inp.reshape(-1)
    w1 = wa.reshape(-1)
    w2 = wb.reshape(-1)
    k3 = 3 * WD
    blk = 9 * WD * CB
    for r in prange(N * H):
        n = r // H
        y = r % H
        acc = np.empty(npx_full * CB, np.int64)
        x = 0
        while x < W:
            full = x + npx_full <= W
            npx = npx_full if full else 1
            for b in range(nblk):
                for ky in range(3):
                    aoff = ((n * Hp + y + ky) * Wp + x) * WD
                    _micro(mode, nvec, full, a, aoff, WD, w1, w2, b * blk + ky * k3 * CB, k3, acc,
                           1 if ky == 0 else 0)
                nvalid = min(CB, cout - b * CB)
                for p in range(npx):
                    out[n, y + 1, x + p + 1, out_off + b] = _pack_word(acc, p * CB, t, flip, b * CB, nvalid)
            x += npx


# --------------------------------------------------------------------------------------------
# 2x2 stride-2 transposed convolutions: each output pixel gets exactly one tap per input channel
# --------------------------------------------------------------------------------------------
@njit(**_OPTS)
def convt2x2(mode, inp, wa, wb, t, flip, out, out_off, cout):
    """Packed 2x2 stride-2 transposed conv + threshold. Planes ``[nblk, 4, WD, CB]`` (tap =
    2*di + dj), thresholds ``t, flip`` ``[4, nblk*CB]``; reads the interior of ``inp``."""
    N, Hp, Wp, WD = inp.shape
    H = Hp - 2
    W = Wp - 2
    nblk, _, _, CB = wa.shape
    nvec = CB // 8
    npx_full = _npx(nvec)
    a = inp.reshape(-1)
    w1 = wa.reshape(-1)
    w2 = wb.reshape(-1)
    for r in prange(N * H):
        n = r // H
        i = r % H
        acc = np.empty(npx_full * CB, np.int64)
        j = 0
        while j < W:
            full = j + npx_full <= W
            npx = npx_full if full else 1
            aoff = ((n * Hp + i + 1) * Wp + j + 1) * WD
            for tap in range(4):
                di = tap // 2
                dj = tap % 2
                for b in range(nblk):
                    _micro(mode, nvec, full, a, aoff, WD, w1, w2, (b * 4 + tap) * WD * CB, WD, acc, 1)
                    nvalid = min(CB, cout - b * CB)
                    for p in range(npx):
                        out[n, 2 * i + di + 1, 2 * (j + p) + dj + 1, out_off + b] = _pack_word(
                            acc, p * CB, t[tap], flip[tap], b * CB, nvalid)
            j += npx


# --------------------------------------------------------------------------------------------
# pooling and the float output layer
# --------------------------------------------------------------------------------------------
@njit(**_OPTS)
def maxpool2x2(inp, in_off, nw, out, out_off):
    """2x2 max-pool of +-1 values = OR of bits; floors odd sizes (like ``nn.MaxPool2d(2)``)."""
    N, Hp, Wp, _ = inp.shape
    Ho = out.shape[1] - 2
    Wo = out.shape[2] - 2
    for r in prange(N * Ho):
        n = r // Ho
        i = r % Ho
        for j in range(Wo):
            for w in range(nw):
                out[n, i + 1, j + 1, out_off + w] = (
                    inp[n, 2 * i + 1, 2 * j + 1, in_off + w] | inp[n, 2 * i + 1, 2 * j + 2, in_off + w]
                    | inp[n, 2 * i + 2, 2 * j + 1, in_off + w] | inp[n, 2 * i + 2, 2 * j + 2, in_off + w])


@njit(**_OPTS)
def conv1x1_float(inp, off, C, weight, bias, out):
    """Full-precision 1x1 conv on the +-1 activations of ``inp``: ``out[n,k,i,j] = bias[k] +
    sum_c weight[k,c] * a_c`` (float64 accumulation, float32 result)."""
    N, Hp, Wp, _ = inp.shape
    H = Hp - 2
    W = Wp - 2
    K = weight.shape[0]
    for r in prange(N * H):
        n = r // H
        i = r % H
        for j in range(W):
            for k in range(K):
                s = np.float64(bias[k])
                for c in range(C):
                    word = inp[n, i + 1, j + 1, off + c // 64]
                    if (word >> np.uint64(c % 64)) & np.uint64(1):
                        s += weight[k, c]
                    else:
                        s -= weight[k, c]
                out[n, k, i, j] = s
