"""The C4–C8 derivations of wd_claims.theory, checked on numbers: random float64 vectors with
⟨g, w⟩ = 0 (the only assumption of the algebra) and iterations of the scalar map."""

from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wd_claims import theory

RTOL = 1e-9  # float64 arithmetic on O(1) numbers over a handful of operations

etas = st.floats(1e-3, 2.0)
lams = st.floats(1e-4, 0.2)
seeds = st.integers(0, 2**31 - 1)


@cache
def derivation(name):
    """Each sympy derivation once per session (they take a fraction of a second each)."""
    return getattr(theory, name)()


def orthogonal_pair(seed, n=50):
    """(w, g) in R^n with ⟨g, w⟩ = 0 to float64 rounding."""
    rng = np.random.default_rng(seed)
    w, g = rng.normal(size=n), rng.normal(size=n)
    return w, g - (g @ w) / (w @ w) * w


@settings(max_examples=50, deadline=None)
@given(etas, seeds)
def test_pythagorean_step_without_weight_decay(eta, seed):
    w, g = orthogonal_pair(seed)
    x_new = np.sum((w - eta * g) ** 2)
    assert np.isclose(x_new, w @ w + eta**2 * (g @ g), rtol=RTOL)
    growth = derivation("c04_spiral_out").fn("growth", theory.x0, theory.eta, theory.G,
                                             theory.t_step)
    assert np.isclose(growth(2.0, eta, 1.0, 0.0), 2.0)


# ηλ from 1e-3 (the quick grid's smallest; below it the 40 relaxation times iterated here grow as
# 1/(8ηλ) into millions of Python steps) to 0.4 (away from the period-2 point ηλ = ½).
@settings(max_examples=30, deadline=None)
@given(etas, st.floats(1e-3, 0.4), st.floats(0.1, 10), st.floats(0.01, 100))
def test_the_map_converges_to_the_derived_fixed_point_at_the_derived_rate(eta, eta_lam, G, start):
    lam = eta_lam / eta
    d = derivation("c05_equilibrium")
    F = d.fn("map", theory.x, theory.eta, theory.lam, theory.G)
    x_star = float(d.fn("x_star", theory.G, theory.eta, theory.lam)(G, eta, lam))
    assert np.isclose(F(x_star, eta, lam, G), x_star, rtol=RTOL)
    h = 1e-6 * x_star  # central difference: F′(x*) against 1 − relaxation rate
    slope = (F(x_star + h, eta, lam, G) - F(x_star - h, eta, lam, G)) / (2 * h)
    rate = float(d.fn("relaxation_rate", theory.eta, theory.lam)(eta, lam))
    assert np.isclose(slope, 1 - rate, atol=1e-6)
    x = start * x_star
    for _ in range(int(40 / rate) + 200):
        x = F(x, eta, lam, G)
    assert np.isclose(x, x_star, rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(etas, lams, st.floats(0.01, 10), seeds)
def test_direction_update_residual_equals_the_closed_form(eta, lam, r, seed):
    w, g = orthogonal_pair(seed)
    w = r * w / np.linalg.norm(w)
    a = 1 - 2 * eta * lam
    w_new = a * w - eta * g
    u, u_new = w / np.linalg.norm(w), w_new / np.linalg.norm(w_new)
    g_u = g * np.linalg.norm(w)  # ∇L(u) = ‖w‖∇L(w) (C3)
    eta_e = eta / (a * (w @ w))
    p = eta_e * np.linalg.norm(g_u)
    d = derivation("c06_direction_update")
    exact = d.fn("resid_exact", theory.p_e)(p)
    article = d.fn("resid_article", theory.p_e, __import__("sympy").Symbol("a", positive=True))
    assert np.isclose(np.linalg.norm(u_new - u + eta_e * g_u), exact, rtol=1e-6, atol=1e-12)
    measured_article = np.linalg.norm(u_new - u + eta / (w @ w) * g_u)
    assert np.isclose(measured_article, article(p, a), rtol=1e-6, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(etas, lams, seeds)
def test_step_cosine_is_decay_factor_times_norm_ratio(eta, lam, seed):
    w, g = orthogonal_pair(seed)
    a = 1 - 2 * eta * lam
    w_new = a * w - eta * g
    cos = (w @ w_new) / (np.linalg.norm(w) * np.linalg.norm(w_new))
    assert np.isclose(cos, a * np.linalg.norm(w) / np.linalg.norm(w_new), rtol=RTOL)


def test_fixed_point_exponent_and_angle_are_one_half():
    assert float(theory.c07_norm_scaling().exprs["exponent"]) == 0.5
    d = derivation("c08_effective_lr")
    theta = d.fn("theta_star", theory.s_el)
    s = np.array([1e-6, 1e-5])
    assert np.allclose(np.diff(np.log(theta(s))) / np.diff(np.log(s)), 0.5, atol=1e-3)


def test_every_derivation_is_computed_once_per_process_and_shared():
    # C5's equilibrium is read by C5, C7, C8 and E1 (and by the derivations of C7, C8 and E1):
    # derived once, the same object every time, proved as before
    names = [n for n in dir(theory) if n[:1] in "ce" and n[1:3].isdigit()]
    assert len(names) == 13
    for name in names:
        assert getattr(theory, name)() is getattr(theory, name)(), name
    assert theory.c07_norm_scaling().exprs["x_star_qs"] is not None
    assert all(theory.c05_equilibrium().proved.values())
