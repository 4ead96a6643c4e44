"""C9 and C10: the noise of one 2η step against two η steps, and the linear stability that
links a larger effective learning rate to flatter minima.

Derived with sympy; see :mod:`wd_claims.theory`."""

from __future__ import annotations

import functools

import sympy as sp

from wd_claims.theory.base import Derivation, G, _is_zero, eta, lam, x
from wd_claims.theory.dynamics import c05_equilibrium, s_el

# --- C9: noise of one 2η step vs two η steps --------------------------------------------------

sigma2 = sp.Symbol("sigma2", positive=True)   # total variance (trace) of one mini-batch's noise ξ
N_pool = sp.Symbol("N", positive=True)        # training examples the batches are drawn from
b_size = sp.Symbol("b", positive=True)        # mini-batch size
h_curv = sp.Symbol("h", positive=True)        # curvature of a quadratic loss along the noise


def _quadratic_form(a: list[sp.Expr], cov: sp.Matrix) -> sp.Expr:
    """Var(Σᵢ aᵢξᵢ) = aᵀ C a for noises ξ with covariance matrix C."""
    vec = sp.Matrix(a)
    return sp.expand((vec.T * cov * vec)[0, 0])


@functools.cache
def c09_noise_variance() -> Derivation:
    """Var(2ηξ) = 4η²σ² and Var(ηξ₁ + ηξ₂) = 2η²σ² for independent ξ (ratio 2); corrections.

    Disjoint batches of one epoch (sampling without replacement from N examples, batch gradient =
    mean of per-example gradients): Cov(ξ₁, ξ₂) = −s²/(N−1) against Var(ξ) = s²(N−b)/(b(N−1)), and
    the ratio becomes 2(N−b)/(N−2b). Two *sequential* steps on a quadratic of curvature h:
    w₂ − w₀ has noise −ηξ₂ − η(1 − ηh)ξ₁, ratio 4/(1 + (1 − ηh)²) ≈ 2 + 2ηh. The same batch twice
    (the control) has noise −η(2 − ηh)ξ₁, ratio 4/(2 − ηh)² ≈ 1.
    """
    c = sp.Symbol("c", real=True)                     # Cov(ξ₁, ξ₂)
    one_step = _quadratic_form([2 * eta], sp.Matrix([[sigma2]]))
    two_steps = _quadratic_form([eta, eta], sp.Matrix([[sigma2, c], [c, sigma2]]))
    ratio = sp.simplify(one_step / two_steps.subs(c, 0))
    same_batch = sp.simplify(one_step / two_steps.subs(c, sigma2))

    # Finite population: per-example gradients of variance s²; exchangeable draws without
    # replacement have a common covariance κ fixed by Var(sum of all N) = 0.
    s2, kappa = sp.Symbol("s2", positive=True), sp.Symbol("kappa", real=True)
    kappa_val = sp.solve(sp.Eq(N_pool * s2 + N_pool * (N_pool - 1) * kappa, 0), kappa)[0]
    var_batch = (b_size * s2 + b_size * (b_size - 1) * kappa_val) / b_size**2
    epoch_ratio = sp.factor(sp.simplify(
        _quadratic_form([2 * eta], sp.Matrix([[var_batch]]))
        / _quadratic_form([eta, eta], sp.Matrix([[var_batch, kappa_val], [kappa_val, var_batch]]))))

    # Curvature: two real steps on the quadratic ½h w² (minimum at 0) with additive noise.
    w0, xi1, xi2 = sp.symbols("w_0 xi_1 xi_2", real=True)
    w1 = w0 - eta * (h_curv * w0 + xi1)
    w2_indep = w1 - eta * (h_curv * w1 + xi2)
    w2_same = w1 - eta * (h_curv * w1 + xi1)
    var_seq = sigma2 * sum(sp.diff(w2_indep, x_) ** 2 for x_ in (xi1, xi2))
    var_same = sigma2 * sp.diff(w2_same, xi1) ** 2
    seq_ratio = sp.simplify(one_step / var_seq)
    same_ratio_curved = sp.simplify(one_step / var_same)
    r = sp.Symbol("r", positive=True)                 # a measured sequential ratio
    q = sp.Symbol("q", positive=True)                 # ηh
    # ηh implied by a measured ratio r: the root that vanishes at r = 2 (no curvature).
    roots = sp.solve(sp.Eq(seq_ratio.subs(h_curv, q / eta), r), q)
    implied = [s for s in roots if sp.simplify(s.subs(r, 2)) == 0][0]
    # The ratio depends on (1 − ηh)² only: 2 − q explains r as well (ηh > 2: beyond stability).
    symmetric = _is_zero(seq_ratio.subs(h_curv, q / eta) - seq_ratio.subs(h_curv, (2 - q) / eta))
    return Derivation(
        claim="C9",
        statement="Var(2 eta xi) = 4 eta^2 sigma^2, Var(eta xi1 + eta xi2) = 2 eta^2 sigma^2 "
                  "(independent): ratio 2; disjoint batches of one epoch: 2(N-b)/(N-2b); two "
                  "sequential steps on curvature h: 4/(1+(1-eta h)^2); same batch twice: ~1",
        exprs={"var_one_step_2eta": one_step, "var_two_steps_eta": two_steps.subs(c, 0),
               "ratio": ratio, "ratio_epoch": epoch_ratio, "ratio_same_batch": same_batch,
               "ratio_sequential": seq_ratio, "ratio_same_batch_sequential": same_ratio_curved,
               "eta_h_from_ratio": implied, "eta_h_from_ratio_other_root": 2 - implied,
               "cov_without_replacement": kappa_val},
        proved={"Var(2 eta xi) == 4 eta^2 sigma^2": _is_zero(one_step - 4 * eta**2 * sigma2),
                "Var(eta xi1 + eta xi2) == 2 eta^2 sigma^2 (independent)":
                    _is_zero(two_steps.subs(c, 0) - 2 * eta**2 * sigma2),
                "ratio == 2": _is_zero(ratio - 2),
                "same batch twice: ratio == 1": _is_zero(same_batch - 1),
                "epoch ratio == 2(N-b)/(N-2b)":
                    _is_zero(epoch_ratio - 2 * (N_pool - b_size) / (N_pool - 2 * b_size)),
                "epoch ratio -> 2 as N -> oo": sp.limit(epoch_ratio, N_pool, sp.oo) == 2,
                "sequential ratio -> 2 as h -> 0": _is_zero(seq_ratio.subs(h_curv, 0) - 2),
                "sequential ratio symmetric about eta h = 1": symmetric,
                "sequential ratio = 2 + 2 eta h + O((eta h)^2)":
                    _is_zero(sp.series(seq_ratio, h_curv, 0, 2).removeO() - 2 - 2 * eta * h_curv)},
    )




@functools.cache
def c10_flatness() -> Derivation:
    """Linear stability of gradient descent on a quadratic, then on the sphere (C5, C6, C8).

    On L(z) = ½hz² (h > 0 the curvature) a step of size η is z ← z − ηL′(z) = (1 − ηh)z: the
    minimum is linearly stable iff |1 − ηh| < 1 ⇔ 0 < ηh < 2 (solved below), so a minimum whose
    sharpness h exceeds 2/η cannot hold the iterates. On the sphere the direction moves with the
    effective learning rate η_e = η/((1 − 2ηλ)‖w‖²) (C6): stability needs h·η_e < 2, h measured
    at ‖w‖ = 1. At the equilibrium x* of C5, η_e* = 2√(ηλ(1 − ηλ))/(G(1 − 2ηλ)) (C8's
    2√(ηλ(1 − ηλ))/G to first order in ηλ) and the bound 2/η_e* = G(1 − 2ηλ)/√(ηλ(1 − ηλ)):
    at fixed η and G it falls as λ grows (log-log slope → −½ as ηλ → 0), and along equal ηλ it
    does not depend on λ at all.
    """
    q = sp.Symbol("q", positive=True)           # ηh: the step times the curvature
    z = sp.Symbol("z", real=True)               # the coordinate along the curvature direction
    multiplier = sp.simplify((z - eta * sp.diff(h_curv * z**2 / 2, z)) / z)
    stable = sp.solve_univariate_inequality(sp.Abs(multiplier.subs(h_curv, q / eta)) < 1, q,
                                            relational=False)
    q_max = stable.sup                          # the largest stable ηh
    eta_e = eta / ((1 - 2 * eta * lam) * x)     # C6's exact first-order factor
    x_star = c05_equilibrium().exprs["x_star"]
    eta_e_star = sp.simplify(eta_e.subs(x, x_star).subs(eta, s_el / lam))
    closed = 2 * sp.sqrt(s_el * (1 - s_el)) / (G * (1 - 2 * s_el))
    bound_star = sp.simplify(q_max / closed)
    ll = sp.Symbol("log_lambda", real=True)
    slope_fixed_eta = sp.simplify(
        sp.diff(sp.log(bound_star.subs(s_el, eta * sp.exp(ll))), ll).subs(ll, sp.log(lam)))
    slope_in_s = sp.simplify(slope_fixed_eta.subs(lam, s_el / eta))
    c08_form = 2 * sp.sqrt(s_el * (1 - s_el)) / G
    return Derivation(
        claim="C10",
        statement="gradient descent on (1/2) h z^2: z <- (1 - eta h) z, stable iff 0 < eta h < 2; "
                  "on the sphere h eta_e < 2 with eta_e = eta/((1 - 2 eta lambda)||w||^2); at "
                  "equilibrium 2/eta_e* = G (1 - 2 eta lambda)/sqrt(eta lambda (1 - eta lambda))",
        exprs={"multiplier": multiplier, "stable_eta_h": stable, "eta_h_max": q_max,
               "sharpness_bound": q_max / eta, "eta_e": eta_e,
               "sphere_bound": sp.simplify(q_max / eta_e), "stability_product": h_curv * eta_e,
               "eta_e_star": closed, "bound_at_equilibrium": bound_star,
               "loglog_slope_in_lambda": slope_in_s,
               "loglog_slope_limit": sp.limit(slope_in_s, s_el, 0, "+")},
        proved={"z - eta L'(z) == (1 - eta h) z": _is_zero(multiplier - (1 - eta * h_curv)),
                "|1 - eta h| < 1 exactly for 0 < eta h < 2": stable == sp.Interval.open(0, 2),
                "eta_e(x*) == 2 sqrt(eta lambda (1 - eta lambda))/(G (1 - 2 eta lambda))":
                    _is_zero(eta_e_star**2 - closed**2),    # both positive for ηλ < ½: squares
                "eta_e(x*) == C8's 2 sqrt(eta lambda (1 - eta lambda))/G + O(eta lambda)":
                    sp.limit((closed - c08_form) / c08_form / s_el, s_el, 0, "+") == 2,
                "d log(2/eta_e*)/d log lambda -> -1/2 as eta lambda -> 0 (fixed eta, G)":
                    sp.limit(slope_in_s, s_el, 0, "+") == -sp.Rational(1, 2),
                "2/eta_e* depends on (eta, lambda) only through eta lambda":
                    not bound_star.has(eta) and not bound_star.has(lam)},
    )
