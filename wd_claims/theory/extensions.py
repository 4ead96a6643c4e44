"""E1 and E2: optimizers beyond plain SGD — momentum under coupled decay (Wan et al. 2021),
decoupled decay with momentum or Adam (Kosson et al. 2024).

Derived with sympy; see :mod:`wd_claims.theory`."""

from __future__ import annotations

import functools

import sympy as sp

from wd_claims.theory.base import Derivation, _is_zero, _vector, eta, lam
from wd_claims.theory.dynamics import c05_equilibrium

# --- extensions: optimizers beyond plain SGD (E1, E2) ----------------------------------------

mu = sp.Symbol("mu", positive=True)          # momentum μ (SGD) or β₁ (Adam), 0 < μ < 1
lam_w = sp.Symbol("lambda_w", positive=True)  # decoupled decay: w ← (1 − ηλ_w)w − η·update
delta = sp.Symbol("delta", real=True)        # per-step drift of log‖w‖² over a window


def _two_step_inner_products(n: int, decoupled: bool, orthogonal: bool = True):
    """(X_t, P_{t−1}, P_t) for one momentum step after another, from symbolic vectors: w_{t−1}
    and the buffer v_t arbitrary, the new gradient g_t with ⟨g_t, w_t⟩ = 0 imposed on its last
    entry. Coupled (PyTorch SGD): w_t = w_{t−1} − ηv_t, v_{t+1} = μv_t + g_t + 2λw_t,
    w_{t+1} = w_t − ηv_{t+1}. Decoupled (SGDW; AdamW with the preconditioned gradient as g):
    w_t = a·w_{t−1} − ηv_t, v_{t+1} = μv_t + g_t, w_{t+1} = a·w_t − ηv_{t+1}, a = 1 − ηλ_w."""
    w0, v, g = _vector("w", n), _vector("v", n), _vector("g", n)
    a = 1 - eta * lam_w if decoupled else 1
    w1 = [a * wi - eta * vi for wi, vi in zip(w0, v, strict=True)]
    if orthogonal:
        g[-1] = -sum(wi * gi for wi, gi in zip(w1[:-1], g[:-1], strict=True)) / w1[-1]
    decay = 0 if decoupled else 2 * lam
    v1 = [mu * vi + gi + decay * wi for vi, gi, wi in zip(v, g, w1, strict=True)]
    w2 = [a * wi - eta * vi for wi, vi in zip(w1, v1, strict=True)]
    dot = lambda p, q: sum(pi * qi for pi, qi in zip(p, q, strict=True))  # noqa: E731
    if not orthogonal:  # with ⟨g_t, w_t⟩ as a fourth value
        return dot(w1, w1), dot(w0, w1), dot(w1, w2), dot(g, w1)
    return dot(w1, w1), dot(w0, w1), dot(w1, w2)


def _momentum_equilibrium(kappa: sp.Expr, beta: sp.Expr):
    """For the exact identity P_t + κP_{t−1} = βX_t (P_t = ⟨w_t, w_{t+1}⟩, X_t = ‖w_t‖²): the
    stationary cosine c* = β/(1 + κ) (P = c·X, equal norms), and with the norm drifting by
    e^δ per step (X_{t+1} = e^δ X_t, constant cosine) c(δ) = β/(e^{δ/2} + κe^{−δ/2})."""
    c = sp.Symbol("c", positive=True)
    X = sp.Symbol("X", positive=True)
    steady = sp.solve(sp.Eq(c * X + kappa * c * X, beta * X), c)[0]
    # cos θ_t = P_t/√(X_t X_{t+1}): P_t = c e^{δ/2} X_t, P_{t−1} = c e^{−δ/2} X_t
    drifting = sp.solve(sp.Eq(c * sp.exp(delta / 2) * X + kappa * c * sp.exp(-delta / 2) * X,
                              beta * X), c)[0]
    return steady, drifting


@functools.cache
def e01_momentum_equilibrium(n: int = 3) -> Derivation:
    """SGD with momentum μ and PyTorch's coupled decay wd = 2λ (buf ← μ·buf + g + wd·w,
    w ← w − η·buf). Given ⟨g_t, w_t⟩ = 0 only, P_t + μP_{t−1} = (1 + μ − η·wd)X_t exactly
    (P_t = ⟨w_t, w_{t+1}⟩), so at a steady state (equal norms, equal angles) cos θ* = 1 −
    η·wd/(1+μ): θ*² = 2η·wd/(1+μ) + O((η·wd)²) (Wan et al. 2021, small angles), and the
    per-step displacement balances the decay, ‖Δw‖²/‖w‖² = 2(1 − cos θ*) = 2η·wd/(1+μ). With
    a drift e^δ of ‖w‖² per step: cos θ = (1+μ−η·wd)/(e^{δ/2} + μe^{−δ/2}). μ = 0 gives C8's
    1 − 2ηλ; ignoring μ over-predicts the angle by √(1+μ) as ηλ → 0 (the control)."""
    X1, P0, P1 = _two_step_inner_products(n, decoupled=False)
    wd = 2 * lam
    kappa, beta = mu, 1 + mu - eta * wd
    identity = _is_zero(sp.together(P1 + kappa * P0 - beta * X1))
    # for any g_t: P_t + μP_{t−1} + η⟨g_t, w_t⟩ = (1 + μ − η·wd)X_t (the update rule alone; what
    # the engine's float32 steps are checked against, with no orthogonality assumed)
    Xg, P0g, P1g, gw = _two_step_inner_products(n, decoupled=False, orthogonal=False)
    identity_any_g = _is_zero(sp.expand(P1g + kappa * P0g + eta * gw - beta * Xg))
    c_star, c_drift = _momentum_equilibrium(kappa, beta)
    theta = sp.acos(c_star)
    small = sp.Symbol("s", positive=True)  # η·wd
    # θ*² = 2(1 − cos θ*) + O(θ*⁴): the ratio to Wan's small-angle form tends to 1
    small_angle = sp.limit((theta**2 / (2 * (1 - c_star))).subs(lam, small / (2 * eta)), small,
                           0, "+")
    wan = sp.sqrt(2 * eta * wd / (1 + mu))
    plain = sp.acos(1 - 2 * eta * lam)  # C8's arccos(1 − 2ηλ): momentum ignored
    ratio = sp.limit((plain / theta).subs(lam, small / (2 * eta)), small, 0, "+")
    # the long-time limit (≫ 1/(1−μ) steps): buf ≈ (g + wd·w)/(1−μ), i.e. plain SGD at η/(1−μ);
    # C5's relaxation rate 8ηλ(1−ηλ) there: the norm settles in ≈ (1−μ)/(8ηλ) steps
    rate = c05_equilibrium().exprs["relaxation_rate"].subs(eta, eta / (1 - mu))
    return Derivation(
        claim="E1",
        statement="coupled SGD + momentum (wd = 2 lambda): P_t + mu P_{t-1} = (1 + mu - eta wd) "
                  "X_t given <g_t, w_t> = 0; steady state cos theta* = 1 - eta wd/(1 + mu), "
                  "theta* ~ sqrt(2 eta wd/(1 + mu)) (Wan et al. 2021)",
        exprs={"cos_star": c_star, "theta_star": theta, "cos_drift": c_drift,
               "one_minus_cos_star": sp.simplify(1 - c_star), "theta_wan": wan,
               "theta_plain_sgd": plain,
               "control_ratio_limit": ratio, "relaxation_rate_long_time": rate,
               "step_sq_over_sqnorm": 2 * (1 - c_star)},
        proved={"P_t + mu P_{t-1} == (1 + mu - eta wd) X_t (given <g_t, w_t> = 0)": identity,
                "P_t + mu P_{t-1} + eta <g_t, w_t> == (1 + mu - eta wd) X_t (any g_t)":
                    identity_any_g,
                "1 - cos theta* == eta wd/(1 + mu)": _is_zero(1 - c_star - wan**2 / 2),
                "theta*^2 / (2 eta wd/(1 + mu)) -> 1 as eta wd -> 0": small_angle == 1,
                "mu = 0 gives C8's cos theta* = 1 - 2 eta lambda":
                    _is_zero(c_star.subs(mu, 0) - (1 - 2 * eta * lam)),
                "no drift: c(0) == cos theta*": _is_zero(c_drift.subs(delta, 0) - c_star),
                "arccos(1 - 2 eta lambda)/theta* -> sqrt(1 + mu) as eta lambda -> 0":
                    _is_zero(ratio - sp.sqrt(1 + mu))},
    )


@functools.cache
def e02_decoupled_decay(n: int = 3) -> Derivation:
    """Decoupled decay λ_w with momentum μ (SGDW; AdamW with β₁ = μ): w_{t+1} = a·w_t − η·v_{t+1},
    v_{t+1} = μv_t + h_t, a = 1 − ηλ_w (PyTorch AdamW's weight_decay = λ_w; not the article's λ).
    Given ⟨h_t, w_t⟩ = 0 only, P_t + μa·P_{t−1} = (a + μ)X_t exactly, so at a steady state
    cos θ* = (a + μ)/(1 + μa), θ*² = 2ηλ_w(1−μ)/(1+μ) + O((ηλ_w)²) (Kosson et al. 2024's
    rotational equilibrium; μ = 0: √(2ηλ_w)). Norm balance ‖w_{t+1} − a·w_t‖² = η²U (U = ‖v‖²):
    X* = η²U(1+μa)/((1−a²)(1−μa)); with Adam's random-walk U = C(1−μ)/(1+μ) (C elements; C for
    μ = 0) X* → ηC/(2λ_w): exponent 1 in η/λ_w, not the article's ½. For SGDW h = g is exactly
    orthogonal (C2); for AdamW h = m-increment/√v is only approximately so (an assumption).
    Norm balance for any update u (w_{t+1} = a·w_t − ηu, c = cos(u, w), r = η‖u‖/‖w‖, e^δ the
    step's ‖w‖² ratio): r = ac + √(a²c² + e^δ − a²), cos θ = (a − cr)e^{−δ/2}; Kosson's θ* is
    this at c*(μ) = −μ√((1−a²)/((1+μa)(1−μa))), the share momentum alone gives."""
    X1, P0, P1 = _two_step_inner_products(n, decoupled=True)
    a = 1 - eta * lam_w
    kappa, beta = mu * a, a + mu
    identity = _is_zero(sp.together(P1 + kappa * P0 - beta * X1))
    c_star, c_drift = _momentum_equilibrium(kappa, beta)
    theta = sp.acos(c_star)
    small = sp.Symbol("s", positive=True)  # ηλ_w
    kosson = sp.sqrt(2 * eta * lam_w * (1 - mu) / (1 + mu))
    small_angle = sp.limit((theta**2 / kosson**2).subs(lam_w, small / eta), small, 0, "+")
    U, C = sp.symbols("U C", positive=True)
    x_star = sp.simplify(eta**2 * U / (1 + a**2 - 2 * a * c_star))
    x_kosson = sp.simplify(x_star.subs(U, C * (1 - mu) / (1 + mu)))
    x_limit = sp.limit((x_kosson / (eta * C / (2 * lam_w))).subs(lam_w, small / eta), small, 0)
    q = sp.Symbol("q", positive=True)  # η/λ_w at fixed s = ηλ_w
    x_qs = sp.simplify((eta * C / (2 * lam_w)).subs({eta: sp.sqrt(q * small),
                                                      lam_w: sp.sqrt(small / q)}))
    exponent = sp.simplify(q * sp.diff(sp.log(x_qs), q))
    coupled = sp.acos(1 - eta * lam_w / (1 + mu))  # E1's formula reading λ_w as PyTorch's wd
    naive = sp.acos(1 - eta * lam_w)               # μ ignored (Kosson's μ = 0 case)
    ratio_coupled = sp.limit((coupled / theta).subs(lam_w, small / eta), small, 0, "+")
    ratio_naive = sp.limit((naive / theta).subs(lam_w, small / eta), small, 0, "+")
    # norm balance with a measured radial share (any h, any μ): w_{t+1} = a·w_t − η·u_t, c =
    # ⟨u,w⟩/(‖u‖‖w‖), r = η‖u‖/‖w‖, e^δ = ‖w_{t+1}‖²/‖w_t‖²: e^δ = a² − 2acr + r², so r is the
    # positive root (the roots' product −(e^δ − a²) < 0) and cos θ = (a − cr)e^{−δ/2} exactly
    c_r = sp.Symbol("c", real=True)
    r_bal = a * c_r + sp.sqrt(a**2 * c_r**2 + sp.exp(delta) - a**2)
    cos_bal = (a - c_r * r_bal) * sp.exp(-delta / 2)
    # Kosson's equilibrium is the balance at the momentum-induced radial step ρ* = c*r*
    rho_star = sp.simplify(a - c_star)
    r_star = sp.sqrt((1 - a**2) * (1 - mu * a) / (1 + mu * a))
    c_mom = rho_star / r_star
    c_mom_limit = sp.limit((c_mom / (-mu * sp.sqrt(2 * eta * lam_w / (1 - mu**2))))
                           .subs(lam_w, small / eta), small, 0, "+")
    return Derivation(
        claim="E2",
        statement="decoupled decay (a = 1 - eta lambda_w) + momentum mu: P_t + mu a P_{t-1} = "
                  "(a + mu) X_t given <h_t, w_t> = 0; steady state cos theta* = (a + mu)/(1 + mu a)"
                  ", theta* ~ sqrt(2 eta lambda_w (1 - mu)/(1 + mu)); X* = eta^2 U (1 + mu a)/"
                  "((1 - a^2)(1 - mu a)) -> eta C/(2 lambda_w) (Kosson et al. 2024)",
        exprs={"cos_star": c_star, "theta_star": theta, "cos_drift": c_drift,
               "one_minus_cos_star": sp.simplify(1 - c_star), "theta_kosson": kosson,
               "x_star": x_star,
               "x_star_random_walk": x_kosson, "x_exponent_in_eta_over_lambda": exponent,
               "theta_coupled_reading": coupled, "theta_momentum_ignored": naive,
               "control_ratio_coupled": ratio_coupled, "control_ratio_naive": ratio_naive,
               "r_balance": r_bal, "cos_balance": cos_bal, "radial_step_momentum": rho_star,
               "radial_share_momentum": c_mom},
        proved={"P_t + mu a P_{t-1} == (a + mu) X_t (given <h_t, w_t> = 0)": identity,
                "theta*^2 / (2 eta lambda_w (1 - mu)/(1 + mu)) -> 1 as eta lambda_w -> 0":
                    _is_zero(small_angle - 1),
                "X* == eta^2 U (1 + mu a)/((1 - a^2)(1 - mu a))":
                    _is_zero(x_star - eta**2 * U * (1 + mu * a) / ((1 - a**2) * (1 - mu * a))),
                "X*(random-walk U) / (eta C/(2 lambda_w)) -> 1 as eta lambda_w -> 0":
                    _is_zero(x_limit - 1),
                "d log X*/d log(eta/lambda_w) == 1 at fixed eta lambda_w": exponent == 1,
                "no drift: c(0) == cos theta*": _is_zero(c_drift.subs(delta, 0) - c_star),
                "E1's coupled formula read with wd = lambda_w / theta* -> 1/sqrt(1 - mu)":
                    _is_zero(ratio_coupled**2 - 1 / (1 - mu)),  # both positive: squares
                "momentum ignored / theta* -> sqrt((1 + mu)/(1 - mu))":
                    _is_zero(ratio_naive**2 - (1 + mu) / (1 - mu)),
                "balance: e^delta == a^2 - 2 a c r + r^2 at r = r_balance":
                    _is_zero(a**2 - 2 * a * c_r * r_bal + r_bal**2 - sp.exp(delta)),
                "balance geometry: cos^2 + sin^2 == 1 (sin theta = r sqrt(1 - c^2) e^{-delta/2})":
                    _is_zero((a - c_r * r_bal)**2 + r_bal**2 * (1 - c_r**2) - sp.exp(delta)),
                "balance at c = 0: cos theta == a e^{-delta/2} (the mu = 0 Kosson angle)":
                    _is_zero(cos_bal.subs(c_r, 0) - c_drift.subs(mu, 0)),
                "balance at Kosson's radial share c*(mu): r* is its root, cos theta == cos theta*":
                    _is_zero(r_star**2 - 2 * a * rho_star - (1 - a**2))
                    and _is_zero(a - rho_star - c_star),
                "c*(mu) / (-mu sqrt(2 eta lambda_w/(1 - mu^2))) -> 1 as eta lambda_w -> 0":
                    _is_zero(c_mom_limit**2 - 1)},
    )
