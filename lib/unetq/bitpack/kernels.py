"""numba kernels of the bit-packed engine (CPU).

Layout: an activation tensor is a *padded NHWC bit buffer* ``uint64[N, H+2, W+2, WD]``: for
each pixel a row of words; channel ``c`` of a segment starting at word ``o`` is bit ``c % 64`` of
word ``o + c // 64``; bit 1 means +1, bit 0 means -1. Unused (tail) bits of every word are 0,
also in the 1-pixel border, whose valid bits are 1 (padding with +1, as the training-time
layers do). A buffer may hold several channel *segments* side by side (the U-Net skip and the
upsampled path), so concatenation costs nothing: the producers write into their segment.

Weights: ``uint64[nblk, taps, WD, CB]``, output channel ``co`` in block ``co // CB``, lane
``co % CB`` (``CB`` in 8/16/32/64, see ``packing.lane_block``). The inner products run in the
register-blocked micro-kernels of ``microkernels`` (AVX-512 ``vpxorq/vpternlogq/vpopcntq``),
several output pixels per weight load; rows are spread over threads with ``prange``. Block ``b``
writes output word ``b`` of its segment, directly packed by vector compares.

Every kernel accumulates an integer ``v`` per output channel and writes bit
``(v <= t[c]) ^ flip[c]``, the folded BatchNorm + sign threshold (``packing.fold_threshold``;
the flips of a block are one mask word):

- mode ``xor``      binary weights:  v = sum popc(a ^ w),            a.b = n - 2 v
- mode ``xor_and``  masked weights:  v = sum popc((a ^ s) & m),      a.b = popc(m) - 2 v
- mode ``sub``      masked weights, the paper's subtractive encoding (two popcounts):
                    v = sum popc(a ^ pos) - popc(a ^ neg),          a.b = -v
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# numba's OpenMP threading layer (its default here) is 2x faster than its work-queue layer for
# this engine's ~25 short parallel kernels per image, but by default libgomp keeps idle workers
# spinning for ~300,000 iterations after each kernel; on a machine shared with other thread
# pools (ONNX Runtime, PyTorch, other processes) that oversubscribes the cores (a 4 ms network
# took 400 ms on a loaded 2-core machine). A short spin still bridges the gap between two
# kernels, then the workers sleep. numba's libgomp is loaded at its first parallel kernel, after
# this line, so only its threads see the setting (PyTorch's own libgomp is already initialised);
# an explicit GOMP_SPINCOUNT / OMP_WAIT_POLICY in the environment wins.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "20000"

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
#: ``mode`` codes of :func:`threshold_pack_float` (from ``packing.float32_thresholds``).
TH_GE, TH_LE, TH_ONE, TH_ZERO = 1, -1, 2, 0


@njit(**_OPTS)
def threshold_pack_float(y, src, t32, mode, out, out_off, row_off=0):
    """Binarise a float32 NCHW tensor ``y`` into the interior of the padded bit buffer ``out``
    at word offset ``out_off``, its row 0 at the buffer's image row ``row_off`` (a band of rows
    of a larger image). Output channel ``c`` (``len(t32)`` of them) reads input channel
    ``src[c]`` (``arange(C)``: one threshold per channel; ``arange(C * k) // k``: a k-level
    thermometer code) and is 1 where ``y >= t32[c]`` (``mode`` ``TH_GE``), ``y <= t32[c]``
    (``TH_LE``), always (``TH_ONE``) or never (``TH_ZERO``). The float32 thresholds are the
    BatchNorm float64 thresholds rounded outward (``packing.float32_thresholds``), so the
    comparisons are exact and vectorise over a row of pixels."""
    N, _, H, W = y.shape
    C = t32.shape[0]
    nw = (C + 63) // 64
    for r in prange(N * H):
        n = r // H
        i = r % H
        row = np.empty(W, np.uint64)
        for b in range(nw):
            row[:] = 0
            for k in range(min(64, C - 64 * b)):
                c = 64 * b + k
                yr = y[n, src[c], i]
                t = t32[c]
                m = mode[c]
                sh = np.uint64(k)
                if m == 1:
                    for j in range(W):
                        row[j] |= np.uint64(yr[j] >= t) << sh
                elif m == -1:
                    for j in range(W):
                        row[j] |= np.uint64(yr[j] <= t) << sh
                elif m == 2:
                    for j in range(W):
                        row[j] |= np.uint64(1) << sh
            for j in range(W):
                out[n, row_off + i + 1, j + 1, out_off + b] = row[j]


#: :func:`threshold_pack_float` on the calling thread alone (GIL released): the first conv's
#: bands are binarised by the threads that convolve them (``PackedMBU._first_conv_bits``).
threshold_pack_float_serial = njit(**dict(_OPTS, parallel=False))(threshold_pack_float.py_func)


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
#
# The branches below repeat one call shape on purpose: numba compiles each micro-kernel of
# ``microkernels`` (one per mode x vector width x pixel count, generated LLVM IR with the register
# blocking fixed at compile time) as its own function, and only a literal call in each branch
# lets it inline the chosen one; a table of functions would be a runtime dispatch inside the
# innermost loop.
# --------------------------------------------------------------------------------------------
MODE_IDS = {"xor": 0, "xor_and": 1, "sub": 2}


@njit(inline="always")
def _npx(nvec):
    return min(8, 16 // nvec)


@njit(inline="always")
def _micro(mode, nvec, full, a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps):
    if mode == 0:
        if nvec == 8:
            if full:
                mk.xor_v8_p2(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xor_v8_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 4:
            if full:
                mk.xor_v4_p4(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xor_v4_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 2:
            if full:
                mk.xor_v2_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xor_v2_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        else:
            if full:
                mk.xor_v1_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xor_v1_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
    elif mode == 1:
        if nvec == 8:
            if full:
                mk.xa_v8_p2(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xa_v8_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 4:
            if full:
                mk.xa_v4_p4(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xa_v4_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 2:
            if full:
                mk.xa_v2_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xa_v2_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        else:
            if full:
                mk.xa_v1_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.xa_v1_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
    else:
        if nvec == 8:
            if full:
                mk.sub_v8_p2(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.sub_v8_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 4:
            if full:
                mk.sub_v4_p4(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.sub_v4_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        elif nvec == 2:
            if full:
                mk.sub_v2_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.sub_v2_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
        else:
            if full:
                mk.sub_v1_p8(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)
            else:
                mk.sub_v1_p1(a, a_off, a_ps, a_rs, nrows, K, w, m, w_off, w_rs, t, t_off, fmask, vmask, o, o_off, o_ps)


# --------------------------------------------------------------------------------------------
# 3x3 convolutions (stride 1, +1 padding supplied by the buffer border)
# --------------------------------------------------------------------------------------------
@njit(inline="always")
def _conv3x3_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """Output row ``r`` (= n * H + y) of a packed 3x3 conv + threshold."""
    N, Hp, Wp, WD = inp.shape
    WDO = out.shape[3]
    H = Hp - 2
    W = Wp - 2
    nblk, _, _, CB = wa.shape
    nvec = CB // 8
    npx_full = _npx(nvec)
    a = inp.reshape(-1)
    w1 = wa.reshape(-1)
    w2 = wb.reshape(-1)
    o = out.reshape(-1)
    k3 = 3 * WD
    blk = 9 * WD * CB
    n = r // H
    y = r % H
    x = 0
    while x < W:
        full = x + npx_full <= W
        for b in range(nblk):
            _micro(mode, nvec, full, a, ((n * Hp + y) * Wp + x) * WD, WD, Wp * WD, 3, k3, w1, w2, b * blk,
                   k3 * CB, t, b * CB, fmask[b], vmask[b], o, ((n * Hp + y + 1) * Wp + x + 1) * WDO + out_off + b,
                   WDO)
        x += npx_full if full else 1


@njit(**_OPTS)
def conv3x3(mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """Packed 3x3 conv + threshold, rows in parallel. ``wa``/``wb``: weight planes
    ``[nblk, 9, WD, CB]`` (binary: w, w; masked: s, m; subtractive: pos, neg); ``t`` int64
    thresholds ``[nblk*CB]``; ``fmask``/``vmask`` per-block flip and valid-bit masks; ``mode``
    from ``MODE_IDS``."""
    for r in prange(inp.shape[0] * (inp.shape[1] - 2)):
        _conv3x3_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off)


@njit(cache=True, fastmath=False, nogil=True)
def conv3x3_serial(mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """``conv3x3`` on the calling thread (small layers: no thread dispatch)."""
    for r in range(inp.shape[0] * (inp.shape[1] - 2)):
        _conv3x3_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off)


# --------------------------------------------------------------------------------------------
# 2x2 stride-2 transposed convolutions: each output pixel gets exactly one tap per input channel
# --------------------------------------------------------------------------------------------
@njit(inline="always")
def _convt2x2_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """Input row ``r`` (= n * H + i) of a packed 2x2 stride-2 transposed conv + threshold."""
    N, Hp, Wp, WD = inp.shape
    Hpo = out.shape[1]
    Wpo = out.shape[2]
    WDO = out.shape[3]
    H = Hp - 2
    W = Wp - 2
    nblk, _, _, CB = wa.shape
    nvec = CB // 8
    npx_full = _npx(nvec)
    a = inp.reshape(-1)
    w1 = wa.reshape(-1)
    w2 = wb.reshape(-1)
    t1 = t.reshape(-1)
    o = out.reshape(-1)
    cpad = nblk * CB
    n = r // H
    i = r % H
    j = 0
    while j < W:
        full = j + npx_full <= W
        a_off = ((n * Hp + i + 1) * Wp + j + 1) * WD
        for tap in range(4):
            di = tap // 2
            dj = tap % 2
            o_base = ((n * Hpo + 2 * i + di + 1) * Wpo + 2 * j + dj + 1) * WDO + out_off
            for b in range(nblk):
                _micro(mode, nvec, full, a, a_off, WD, 0, 1, WD, w1, w2, (b * 4 + tap) * WD * CB, 0, t1,
                       tap * cpad + b * CB, fmask[tap, b], vmask[b], o, o_base + b, 2 * WDO)
        j += npx_full if full else 1


@njit(**_OPTS)
def convt2x2(mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """Packed 2x2 stride-2 transposed conv + threshold, rows in parallel. Planes
    ``[nblk, 4, WD, CB]`` (tap = 2*di + dj), thresholds ``t`` ``[4, nblk*CB]``, ``fmask``
    ``[4, nblk]``; reads the interior of ``inp``, writes a (2H, 2W) interior."""
    for r in prange(inp.shape[0] * (inp.shape[1] - 2)):
        _convt2x2_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off)


@njit(cache=True, fastmath=False, nogil=True)
def convt2x2_serial(mode, inp, wa, wb, t, fmask, vmask, out, out_off):
    """``convt2x2`` on the calling thread."""
    for r in range(inp.shape[0] * (inp.shape[1] - 2)):
        _convt2x2_row(r, mode, inp, wa, wb, t, fmask, vmask, out, out_off)


# --------------------------------------------------------------------------------------------
# pooling and the float output layer
# --------------------------------------------------------------------------------------------
@njit(inline="always")
def _maxpool_row(r, inp, in_off, nw, out, out_off):
    Ho = out.shape[1] - 2
    Wo = out.shape[2] - 2
    n = r // Ho
    i = r % Ho
    for j in range(Wo):
        for w in range(nw):
            out[n, i + 1, j + 1, out_off + w] = (
                inp[n, 2 * i + 1, 2 * j + 1, in_off + w] | inp[n, 2 * i + 1, 2 * j + 2, in_off + w]
                | inp[n, 2 * i + 2, 2 * j + 1, in_off + w] | inp[n, 2 * i + 2, 2 * j + 2, in_off + w])


@njit(**_OPTS)
def maxpool2x2(inp, in_off, nw, out, out_off):
    """2x2 max-pool of +-1 values = OR of bits; floors odd sizes (like ``nn.MaxPool2d(2)``)."""
    for r in prange(out.shape[0] * (out.shape[1] - 2)):
        _maxpool_row(r, inp, in_off, nw, out, out_off)


@njit(cache=True, fastmath=False, nogil=True)
def maxpool2x2_serial(inp, in_off, nw, out, out_off):
    """``maxpool2x2`` on the calling thread."""
    for r in range(out.shape[0] * (out.shape[1] - 2)):
        _maxpool_row(r, inp, in_off, nw, out, out_off)


@njit(**_OPTS)
def conv1x1_float(inp, off, C, weight, bias, out):
    """Full-precision 1x1 conv on the +-1 activations of ``inp``: ``out[n,k,i,j] = bias[k] +
    sum_c weight[k,c] * a_c`` (float64 accumulation in channel order, float32 result)."""
    N, Hp, Wp, _ = inp.shape
    H = Hp - 2
    W = Wp - 2
    K = weight.shape[0]
    for r in prange(N * H):
        n = r // H
        i = r % H
        acc = np.empty(W, np.float64)
        for k in range(K):
            acc[:] = bias[k]
            for c in range(C):
                wv = weight[k, c]
                wi = off + c // 64
                sh = np.uint64(c % 64)
                for j in range(W):
                    if (inp[n, i + 1, j + 1, wi] >> sh) & np.uint64(1):
                        acc[j] += wv
                    else:
                        acc[j] -= wv
            for j in range(W):
                out[n, k, i, j] = acc[j]


def popcount_instruction() -> str:
    """Which instruction the micro-kernels' vector popcount compiles to on this CPU: compiles a
    tiny uncached kernel around one micro-kernel and reads its assembly (the cached kernels
    cannot be inspected)."""
    def probe(a, w, t, fm, vm, o):
        mk.xor_v8_p2(a, 0, 1, 0, 1, 1, w, w, 0, 0, t, 0, fm, vm, o, 0, 1)

    f = njit(cache=False)(probe)
    a = np.zeros(2, np.uint64)
    w = np.zeros(64, np.uint64)
    f(a, w, np.zeros(64, np.int64), np.uint64(0), np.uint64(0), np.zeros(2, np.uint64))
    asm = "\n".join(f.inspect_asm().values())
    if "vpopcntq" in asm:
        reg = "zmm" if "%zmm" in asm else "ymm"
        return f"vpopcntq on {reg} registers (AVX-512 VPOPCNTDQ)"
    if "popcnt" in asm:
        return "scalar popcnt (no AVX-512 VPOPCNTDQ on this CPU)"
    return "software popcount (no popcnt instruction found)"
