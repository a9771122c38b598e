"""Exhaustive checks of the binary / ternary dot-product identities (seed 001, STUDY.md)."""
import itertools

import numpy as np
import pytest

from unetq.bitpack import identities as idt
from unetq.bitpack.kernels import popcount


def _all(n, values):
    return [np.array(v) for v in itertools.product(values, repeat=n)]


@pytest.mark.parametrize("n", range(1, 7))
def test_binary_identities_exhaustive(n):
    vs = _all(n, (-1, 1))
    for a in vs:
        for b in vs:
            true = int(a @ b)
            assert idt.dot_xnor(a, b) == true
            assert idt.dot_xor(a, b) == true


@pytest.mark.parametrize("n", range(1, 7))
def test_masked_identities_exhaustive(n):
    acts, weights = _all(n, (-1, 1)), _all(n, (-1, 0, 1))
    eq3_errors = set()
    for a in acts:
        for b in weights:
            true = int(a @ b)
            assert idt.dot_alg1(a, b) == true          # Algorithm 1: R = C_neg - C_pos
            assert idt.dot_masked_one_popcount(a, b) == true
            eq3_errors.add(idt.dot_eq3_paper(a, b) - true)
    # Equation 3 as printed is off by exactly n, for every input: its "n +" term is spurious
    assert eq3_errors == {n}


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
