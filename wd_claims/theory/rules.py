"""The monitor's update rules beyond E1/E2: Lion's rotational equilibrium with correlated signs.

Lion (Chen et al. 2023; lion-pytorch's update): c_t = β₁m_{t−1} + (1−β₁)g_t, u_t = sign(c_t),
m_t = β₂m_{t−1} + (1−β₂)g_t, w_{t+1} = a·w_t − η·u_t with a = 1 − ηλ_w. ‖u_t‖² = C (the number of
entries) exactly. Assumptions, stated because the reference run tests them
(:mod:`wd_claims.monitor_reference`): (i) the gradients are a random walk: independent across steps,
zero mean, orthogonal to w (so ⟨u_t, w_t⟩ comes only from earlier updates inside w_t); (ii) the
entries of c are jointly Gaussian, so two signs agree by the arcsine law, E[sign X·sign Y] =
(2/π)·arcsin ρ. Then, with r_j = ⟨u_t, u_{t−j}⟩/C and S = Σ_{j≥1} a^{j−1} r_j,

    X*(1 − a²) = η²C(1 + 2aS),   cos θ* = a + (1 − a²)S/(1 + 2aS),

and the correlation of c_t with c_{t−j} is ρ_j = ρ₁β₂^{j−1}, ρ₁ = β₁(1−β₂)[(1−β₁) + β₁β₂/(1+β₂)]/V,
V = (1−β₁)² + β₁²(1−β₂)/(1+β₂) (Var c / Var g). S has no closed form (the arcsine); it is summed
numerically (:func:`lion_sum`). Checks proved here: the steady state solves the recursion; with
linear correlations r_j = β^j it is E2's (a+β)/(1+aβ) (AdamW, Kosson et al. 2024); the linearized
arcsine gives θ*²/(2ηλ_w) → 1/(1 + (2/π)(1−V)/V) as ηλ_w → 0; and the formula epfml/REQ publishes
for Lion, θ ≈ √(π/2)·√(2ηλ_w)·√V, is that limit's leading term as V → 0 (its ratio to ours → 1).
Ignoring the correlations altogether (the monitor's earlier cos θ* = a) is the β₁ = 0 case.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp

from wd_claims.theory.base import Derivation, _is_zero, eta
from wd_claims.theory.extensions import lam_w

b1, b2 = sp.symbols("beta1 beta2", positive=True)


@functools.cache
def lion_equilibrium() -> Derivation:
    """Lion's steady state with correlated sign updates (module docstring)."""
    a = 1 - eta * lam_w
    C, X, S, beta, s, v = sp.symbols("C X S beta s V", positive=True)
    x_star = sp.solve(sp.Eq(a**2 * X + eta**2 * C * (1 + 2 * a * S), X), X)[0]
    cos_star = sp.simplify(a + eta**2 * C * S / x_star)   # P = aX − η⟨u, w⟩ = aX + η²CS
    variance = (1 - b1) ** 2 + b1**2 * (1 - b2) / (1 + b2)
    cov1 = b1 * (1 - b2) * ((1 - b1) + b1 * b2 / (1 + b2))
    linear_s = beta / (1 - a * beta)                       # Σ a^{j−1} β^j
    e2 = (a + beta) / (1 + a * beta)
    # linearized arcsine, a → 1: S → (2/π)ρ₁/(1−β₂)
    s_lin = 2 / sp.pi * cov1 / variance / (1 - b2)
    # θ*² = 2(1 − cos θ*)(1 + O(1 − cos θ*)): the limit of a rational function, not of an arccos
    one_minus = sp.cancel((1 - cos_star.subs(S, s_lin)).subs(lam_w, s / eta))
    limit = sp.limit(one_minus / s, s, 0, "+")
    ours_lin = 1 / (1 + 2 / sp.pi * (1 - v) / v)
    published = sp.pi / 2 * v
    return Derivation(
        claim="monitor: Lion",
        statement="Lion, decoupled decay, correlated signs: X*(1-a^2) = eta^2 C (1 + 2aS), cos "
                  "theta* = a + (1-a^2) S/(1+2aS), S = sum_j a^(j-1) (2/pi) "
                  "asin(rho_1 beta2^(j-1))",
        exprs={"cos_star": cos_star, "x_star": x_star, "variance": variance,
               "rho1": sp.simplify(cov1 / variance), "theta_sq_over_2etalam_limit": limit,
               "published_over_ours": published / ours_lin},
        proved={
            "X* = a^2 X* + eta^2 C (1 + 2aS)":
                _is_zero(a**2 * x_star + eta**2 * C * (1 + 2 * a * S) - x_star),
            "linear correlations r_j = beta^j give E2's (a+beta)/(1+a beta)":
                _is_zero(cos_star.subs(S, linear_s) - e2),
            "1 - V == 2 beta1 [(1-beta1) + beta1 beta2/(1+beta2)]":
                _is_zero(1 - variance - 2 * cov1 / (1 - b2)),
            "theta*^2/(2 eta lambda_w) -> 1/(1 + (2/pi)(1-V)/V) (linearized arcsine)":
                _is_zero(limit - ours_lin.subs(v, variance)),
            "published sqrt(pi/2) sqrt(2 eta lambda_w V) / ours -> 1 as V -> 0":
                _is_zero(sp.limit(published / ours_lin, v, 0, "+") - 1),
        },
    )


@functools.cache
def _lion_numbers():
    d = lion_equilibrium()
    return (sp.lambdify((b1, b2), d.exprs["rho1"], "math"),
            sp.lambdify((eta, lam_w, sp.Symbol("S", positive=True)), d.exprs["cos_star"], "math"))


@functools.lru_cache(maxsize=4096)
def lion_sum(a: float, beta1: float, beta2: float, tol: float = 1e-13) -> float:
    """S = Σ_{j≥1} a^{j−1}·(2/π)·arcsin(ρ₁β₂^{j−1}), summed until the terms fall below ``tol``."""
    rho1 = _lion_numbers()[0](beta1, beta2) if beta1 > 0 else 0.0
    if rho1 == 0.0:
        return 0.0
    r = a * beta2
    n = 1 if r <= 0 else int(min(2_000_000, math.ceil(math.log(tol) / math.log(r)) + 1))
    j = np.arange(n, dtype=float)
    return float(np.sum(a**j * (2 / math.pi) * np.arcsin(rho1 * beta2**j)))


def lion_cos(lr: float, weight_decay: float, beta1: float, beta2: float) -> float:
    """cos θ* of Lion at (η, λ_w, β₁, β₂)."""
    a = 1 - lr * weight_decay
    return float(_lion_numbers()[1](lr, weight_decay, lion_sum(a, beta1, beta2)))
