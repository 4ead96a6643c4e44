"""The C0 and C9 derivations of wd_claims.theory: every fact proved, numbers checkable by hand."""

import functools
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from wd_claims import theory


@pytest.fixture(scope="module")
def c00():
    return theory.c00_classical_rationale()


@pytest.fixture(scope="module")
def c09():
    return theory.c09_noise_variance()


def test_every_c00_fact_is_proved(c00):
    assert c00.proved and all(c00.proved.values()), c00.text


def test_every_c09_fact_is_proved(c09):
    assert c09.proved and all(c09.proved.values()), c09.text


def test_logistic_norm_bound_at_lambda_log2_is_one(c00):
    # √(L(0)/λ) with L(0) = log 2: λ = log 2 gives exactly 1.
    assert c00.fn("norm_bound_logistic", theory.lam)(math.log(2)) == pytest.approx(1.0)


def test_gap_bound_is_two_over_lambda_m_for_unit_features(c00):
    bound = c00.fn("gap_bound_logistic", theory.lam, theory.m_samples, theory.ell)
    assert bound(0.1, 100, 1.0) == pytest.approx(0.2)   # 2·1²/(0.1·100)
    assert bound(0.1, 100, 2.0) == pytest.approx(0.8)   # ℓ² scaling


def test_epoch_ratio_is_three_when_the_pool_holds_four_batches(c09):
    # 2(N − b)/(N − 2b) with N = 4b: 2·3b/2b = 3.
    ratio = c09.fn("ratio_epoch", theory.N_pool, theory.b_size)
    assert ratio(128, 32) == pytest.approx(3.0)


def test_same_batch_control_ratio_is_one_without_curvature(c09):
    assert float(c09.exprs["ratio_same_batch"]) == 1.0
    same = c09.fn("ratio_same_batch_sequential", theory.eta, theory.h_curv)
    assert same(0.1, 1e-9) == pytest.approx(1.0)


@functools.cache
def _sequential_and_inverse():
    c09 = theory.c09_noise_variance()
    return (c09.fn("ratio_sequential", theory.eta, theory.h_curv),
            c09.fn("eta_h_from_ratio", sp.Symbol("r", positive=True)))


@given(st.floats(0.0, 0.9))
def test_implied_curvature_inverts_the_sequential_ratio(q):
    seq, back = _sequential_and_inverse()
    assert back(seq(1.0, q)) == pytest.approx(q, abs=1e-9)


def test_sequential_ratio_grows_with_curvature(c09):
    seq = c09.fn("ratio_sequential", theory.eta, theory.h_curv)
    values = seq(0.1, np.array([0.0, 1.0, 3.0]))
    assert values[0] == pytest.approx(2.0) and np.all(np.diff(values) > 0)
