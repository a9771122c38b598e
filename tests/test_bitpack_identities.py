"""Exhaustive checks of the binary / ternary dot-product identities (seed 001, STUDY.md)."""
import itertools

import numpy as np
import pytest

from unetq.bitpack import identities as idt
from unetq.bitpack.kernels import popcount


def _all(n, values):
    return np.array(list(itertools.product(values, repeat=n)))


@pytest.mark.parametrize("n", range(1, 8))
def test_binary_identities_exhaustive(n):
    vs = _all(n, (-1, 1))
    a, b = vs[:, None, :], vs[None, :, :]  # every pair at once
    true = (a * b).sum(-1)
    assert np.array_equal(idt.dot_xnor(a, b), true)
    assert np.array_equal(idt.dot_xor(a, b), true)
    # the vectorised calls agree with one-pair calls
    assert idt.dot_xor(vs[0], vs[-1]) == int(vs[0] @ vs[-1])


@pytest.mark.parametrize("n", range(1, 8))
def test_masked_identities_exhaustive(n):
    acts, weights = _all(n, (-1, 1)), _all(n, (-1, 0, 1))
    a, b = acts[:, None, :], weights[None, :, :]
    true = (a * b).sum(-1)
    assert np.array_equal(idt.dot_alg1(a, b), true)  # Algorithm 1: R = C_neg - C_pos
    assert np.array_equal(idt.dot_masked_one_popcount(a, b), true)
    # Equation 3 as printed is off by exactly n, for every input: its "n +" term is spurious
    assert set(np.unique(idt.dot_eq3_paper(a, b) - true)) == {n}


def test_eq3_as_printed_fails_on_a_small_example():
    a, b = np.array([1, -1, 1]), np.array([1, 0, -1])
    assert int(a @ b) == 0
    assert idt.dot_alg1(a, b) == 0
    assert idt.dot_eq3_paper(a, b) == 3  # != 0


def test_input_validation():
    with pytest.raises(ValueError):
        idt.to_bits(np.array([0, 1]))
    with pytest.raises(ValueError):
        idt.ternary_planes(np.array([2]))


def test_numba_popcount_matches_python():
    rng = np.random.default_rng(0)
    words = list(rng.integers(0, 2**63, 200, dtype=np.uint64)) + [np.uint64(0), np.uint64(2**64 - 1)]
    for w in words:
        assert popcount(w) == bin(int(w)).count("1")
