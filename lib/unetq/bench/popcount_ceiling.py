"""The XOR+popcount ceiling of this CPU: binary multiply-accumulates per second of the friendliest
binary workload there is.

A binary convolution is XOR (or XNOR) of packed activations and weights, then a population
count, 64 binary multiply-accumulates (MACs) per 64-bit word. :func:`xor_popcount_peak` runs
``PER_LOAD`` independent XOR + popcounts per 64-bit word loaded from L1 cache, on every benchmark
thread, so that the popcount units and not the loads bound it (numba, compiled
with LLVM's ``ctpop``, which becomes ``vpopcntq`` on CPUs with AVX-512 VPOPCNTDQ, as in the
packed engine's kernels) and returns the rate in binary MACs per second. Each repetition XORs
with a different word so the compiler cannot hoist the work out of the loop. The packed engine's
layers cannot beat it; ``python -m unetq.cli.bitpack_benchmark`` prints the fraction they reach.
"""
from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from ..bitpack.kernels import popc64


#: XOR + popcount operations per loaded word: enough independent ones that the loop is bound by
#: the popcount units, not by loads (the packed engine reuses each loaded activation word for
#: several output channels the same way).
PER_LOAD = 8


@njit(cache=True, nogil=True)
def _one_thread(a, b, reps):
    """One thread's share, a separate function so LLVM vectorises its inner loop (inside a
    ``prange`` body it does not)."""
    acc = np.int64(0)
    for r in range(reps):
        k = np.uint64(r * PER_LOAD)
        s = np.int64(0)
        for i in range(a.shape[0]):
            x = a[i] ^ b[i]
            s += (popc64(x ^ k) + popc64(x ^ (k + np.uint64(1))) + popc64(x ^ (k + np.uint64(2)))
                  + popc64(x ^ (k + np.uint64(3))) + popc64(x ^ (k + np.uint64(4))) + popc64(x ^ (k + np.uint64(5)))
                  + popc64(x ^ (k + np.uint64(6))) + popc64(x ^ (k + np.uint64(7))))
        acc += s
    return acc


@njit(parallel=True, cache=True, nogil=True)
def _xor_popcount(a, b, reps, out):
    for t in prange(a.shape[0]):
        out[t] = _one_thread(a[t], b[t], reps)


def _reference(a, b, reps) -> np.ndarray:
    """The same sums in numpy (a check that the kernel computes what it is timed for)."""
    out = np.zeros(a.shape[0], np.int64)
    for r in range(reps):
        for j in range(PER_LOAD):
            x = a ^ b ^ np.uint64(r * PER_LOAD + j)
            out += np.unpackbits(x.view(np.uint8), axis=1).sum(axis=1, dtype=np.int64)
    return out


def xor_popcount_peak(threads: int, words: int = 512, reps: int = 20_000, seconds: float = 1.0) -> dict:
    """Binary MACs per second of XOR+popcount over ``words`` 64-bit words (4 KiB, in L1) per
    thread, ``reps`` passes per call, best of repeated calls over about ``seconds``:
    ``bmacs_per_s``, ``threads``, ``words``, ``calls``, ``best_s``. Threads are the caller's
    numba threads (``unetq.machine.pin_threads``); ``threads`` sizes the work, one row each."""
    threads = max(1, int(threads))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2 ** 63, size=(threads, words), dtype=np.uint64)
    b = rng.integers(0, 2 ** 63, size=(threads, words), dtype=np.uint64)
    out = np.zeros(threads, np.int64)
    _xor_popcount(a, b, 3, out)  # compile, and check
    if not np.array_equal(out, _reference(a, b, 3)):
        raise RuntimeError("the XOR+popcount kernel disagrees with numpy: its rate would be meaningless")
    best, calls, t_end = float("inf"), 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end or calls < 3:
        t0 = time.perf_counter()
        _xor_popcount(a, b, reps, out)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return dict(bmacs_per_s=64.0 * PER_LOAD * threads * words * reps / best, threads=threads, words=words, calls=calls,
                best_s=best)
