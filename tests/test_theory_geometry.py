"""The C1–C3 derivations prove what they say and evaluate to the numbers a hand computation
gives."""

import math

import sympy as sp

from wd_claims import theory


def test_normalization_is_exactly_invariant_and_its_eps_term_is_first_order():
    d = theory.c01_scale_invariance()
    assert all(d.proved.values()), d.text
    s2 = sp.Symbol("sigma2", positive=True)
    first = d.fn("first_order", theory.rho, theory.eps, s2)
    exact = d.fn("relative_deviation", theory.rho, theory.eps, s2)
    # By hand: (ε/2σ²)(1 − 1/ρ²) at ε = 1e-5, σ² = 1, ρ = 0.1 is 0.5e-5·(1 − 100) = −4.95e-4.
    assert math.isclose(first(0.1, 1e-5, 1.0), -4.95e-4, rel_tol=1e-12)
    # The first-order term agrees with the exact deviation to second order in ε/(ρ²σ²).
    assert math.isclose(exact(0.1, 1e-5, 1.0), first(0.1, 1e-5, 1.0), rel_tol=2e-3)
    assert exact(1.0, 1e-5, 1.0) == 0.0


def test_euler_relation_makes_the_gradient_orthogonal():
    d = theory.c02_orthogonality()
    assert all(d.proved.values()) and d.exprs["inner_product"] == 0


def test_gradient_is_homogeneous_of_degree_minus_one_and_unbounded():
    d = theory.c03_gradient_scaling()
    assert all(d.proved.values())
    assert d.exprs["loglog_slope"] == -1 and d.exprs["limit_rho_to_0"] == sp.oo


def test_a_function_that_is_not_scale_invariant_is_not_proved_invariant():
    # The proof machinery can fail: ‖w‖² is homogeneous of degree 2, so Euler gives 2‖w‖², not 0.
    w = sp.symbols("w1:4", real=True)
    f = sum(wi**2 for wi in w)
    assert sp.simplify(sum(wi * sp.diff(f, wi) for wi in w)) != 0


def test_the_zero_test_proves_the_degree_minus_one_identity_and_refuses_a_wrong_exponent():
    # theory.base._is_zero tries sympy's cancel before simplify: a shortcut must never prove a
    # false identity, here ρ²∇f(ρw) = ∇f(w) (degree −2) and the same for f without normalization
    from wd_claims.theory import base, geometry

    w, f = geometry._scale_invariant_function(3)
    scaled = {wi: theory.rho * wi for wi in w}
    grad = [sp.diff(f, wi) for wi in w]
    at_rho = [g.subs(scaled, simultaneous=True) for g in grad]
    assert base._is_zero(theory.rho * at_rho[0] - grad[0])
    assert not base._is_zero(theory.rho**2 * at_rho[0] - grad[0])
    plain = sp.Function("F")(*w)                               # no normalization: not invariant
    d_plain = sp.diff(plain, w[0])
    assert not base._is_zero(theory.rho * d_plain.subs(scaled, simultaneous=True) - d_plain)
