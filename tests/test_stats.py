"""wd_claims.stats on inputs whose answers can be checked by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wd_claims import stats


def test_ols_recovers_an_exact_line_with_a_zero_width_interval():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    fit = stats.ols(1.5 + 0.5 * x, {"x": x})
    slope, lo, hi = fit["x"]
    assert slope == pytest.approx(0.5) and hi - lo == pytest.approx(0, abs=1e-12)
    assert fit.df == 2


def test_ols_interval_matches_scipy_linregress():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 20)
    y = 2 * x + rng.normal(0, 0.1, x.size)
    ref = __import__("scipy.stats", fromlist=["linregress"]).linregress(x, y)
    fit = stats.ols(y, {"x": x})
    t = __import__("scipy.stats", fromlist=["t"]).t.ppf(0.975, 18)
    assert fit["x"][0] == pytest.approx(ref.slope)
    assert fit.halfwidth("x") == pytest.approx(t * ref.stderr)


def test_ols_second_regressor_absorbs_a_confounder():
    # y = ½a + 3b exactly: the coefficient of a is ½ only with b in the fit.
    a = np.array([0.0, 1, 2, 0, 1, 2, 0, 1, 2])
    b = np.array([0.0, 0, 0, 1, 1, 1, 2, 2, 2]) + 0.3 * a
    fit = stats.ols(0.5 * a + 3 * b, {"a": a, "b": b})
    assert fit.contains("a", 0.5) and not fit.contains("a", 0.25)


def test_ols_refuses_too_few_points():
    with pytest.raises(ValueError, match="cannot give"):
        stats.ols([1.0, 2.0], {"x": [0.0, 1.0]})


def test_rms_geometric_mean_and_blocks_by_hand():
    assert stats.rms(np.array([3.0, 4.0, np.nan])) == pytest.approx(np.sqrt(12.5))
    assert stats.geometric_mean(np.array([1.0, 4.0])) == pytest.approx(2.0)
    np.testing.assert_allclose(stats.block_means(np.arange(7.0), 3), [1.5, 3.5, 5.5])
    assert stats.log_spread([2.0, 2.0]) == 0


def test_late_window_is_the_tail():
    assert stats.late_window(100, 0.25) == slice(75, 100)
    with pytest.raises(ValueError):
        stats.late_window(10, 0)


def test_unit_roundoff_is_half_of_machine_epsilon():
    assert stats.unit_roundoff("float32") == 2.0**-24
    assert stats.unit_roundoff(np.float64) == 2.0**-53


@settings(max_examples=20, deadline=None)
@given(st.floats(-5, 5), st.integers(5, 40))
def test_bootstrap_interval_contains_the_sample_mean(shift, n):
    x = shift + np.random.default_rng(n).normal(size=n)
    mean, lo, hi = stats.bootstrap_mean_ci(x)
    assert lo <= mean <= hi


def test_bootstrap_of_a_constant_has_no_interval():
    assert stats.bootstrap_mean_ci([1.0, 1.0, 1.0])[1:] == (-np.inf, np.inf)
