"""Dot products of +-1 activations with binary / ternary weights as bit operations (seed 001).

Vectors are integer numpy arrays (the last axis is the vector; leading axes broadcast, so one
call can check many pairs); bits are 0/1 arrays of the same shape (``a' = (a+1)/2``).

- ``dot_xnor``       Equation 1:  a.b = 2 popc(a' XNOR b') - n
- ``dot_xor``        the same with XOR:  a.b = n - 2 popc(a' XOR b')
- ``dot_eq3_paper``  Equation 3 *as printed*: n + popc(a' XOR b_neg) - popc(a' XOR b_pos) (wrong:
                     the first under-brace is -(a' XOR b_pos), not 1 - (a' XOR b_pos), so the
                     "n +" term does not belong there)
- ``dot_alg1``       Algorithm 1 (R <- C_neg - C_pos): popc(a' XOR b_neg) - popc(a' XOR b_pos)
- ``dot_masked_one_popcount``  popc(m) - 2 popc((a' XOR s') AND m), m = b_pos OR b_neg,
                     s' = b_pos: one popcount per word (what the packed engine uses)
"""
from __future__ import annotations

import numpy as np


def to_bits(a: np.ndarray) -> np.ndarray:
    """+-1 -> 1/0."""
    a = np.asarray(a)
    if not np.all(np.isin(a, (-1, 1))):
        raise ValueError("to_bits expects a vector of -1/+1")
    return (a > 0).astype(np.uint8)


def ternary_planes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtractive encoding b = b_pos - b_neg of a {-1, 0, +1} vector."""
    b = np.asarray(b)
    if not np.all(np.isin(b, (-1, 0, 1))):
        raise ValueError("ternary_planes expects a vector of -1/0/+1")
    return (b > 0).astype(np.uint8), (b < 0).astype(np.uint8)


def popc(bits: np.ndarray):
    """Number of ones along the last axis."""
    return np.count_nonzero(bits, axis=-1)


def dot_xnor(a, b):
    ab, bb = to_bits(a), to_bits(b)
    return 2 * popc(1 - (ab ^ bb)) - ab.shape[-1]


def dot_xor(a, b):
    ab, bb = to_bits(a), to_bits(b)
    return ab.shape[-1] - 2 * popc(ab ^ bb)


def dot_eq3_paper(a, b):
    ab = to_bits(a)
    pos, neg = ternary_planes(b)
    return ab.shape[-1] + popc(ab ^ neg) - popc(ab ^ pos)


def dot_alg1(a, b):
    ab = to_bits(a)
    pos, neg = ternary_planes(b)
    return popc(ab ^ neg) - popc(ab ^ pos)


def dot_masked_one_popcount(a, b):
    ab = to_bits(a)
    pos, neg = ternary_planes(b)
    m = pos | neg
    return popc(m) - 2 * popc((ab ^ pos) & m)
