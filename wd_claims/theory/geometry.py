"""C0 and C1–C3: the static picture — the classical rationale for weight decay (a convex,
Lipschitz, L2-regularized model) and the scale invariance a normalization gives (C1), the gradient
orthogonal to w (C2) and scaling as 1/‖w‖ (C3).

Derived with sympy; see :mod:`wd_claims.theory`."""

from __future__ import annotations

import functools

import sympy as sp

from wd_claims.theory.base import Derivation, _is_zero, _normalize, _vector, eps, lam, rho


@functools.cache
def c01_scale_invariance(n: int = 3) -> Derivation:
    """Norm(ρx) = Norm(x) for ε = 0; with ε, the exact and first-order relative deviation.

    ``exprs["relative_deviation"]`` is Norm_ε(ρx)/Norm_ε(x) − 1 as a function of (ρ, ε, σ²), the
    same for every component; ``exprs["first_order"]`` is its ε-linear term, (ε/2σ²)(1 − 1/ρ²).
    """
    v = _vector("x", n)
    scaled, plain = _normalize([rho * vi for vi in v]), _normalize(v)
    exact_invariance = all(_is_zero(a - b) for a, b in zip(scaled, plain, strict=True))

    s2 = sp.Symbol("sigma2", positive=True)  # per-channel variance σ² of the unscaled input
    # Norm_ε(ρx)_i / Norm_ε(x)_i = sqrt(σ² + ε) / sqrt(ρ²σ² + ε) · ρ, independent of i.
    ratio = rho * sp.sqrt(s2 + eps) / sp.sqrt(rho**2 * s2 + eps)
    deviation = ratio - 1
    first = sp.series(deviation, eps, 0, 2).removeO()
    # Check the closed form against the symbolic vector for one component.
    var_x = sum((vi - sum(v) / n) ** 2 for vi in v) / n
    comp = _normalize([rho * vi for vi in v], eps)[0] / _normalize(v, eps)[0]
    # Both sides are positive (ρ > 0, square roots), so equal squares mean equal values.
    matches = _is_zero(sp.cancel(comp) ** 2 - ratio.subs(s2, var_x) ** 2)
    return Derivation(
        claim="C1",
        statement="Norm(ρx) = Norm(x) for every ρ > 0 when ε = 0; "
                  "with ε the relative deviation is ρ√(σ²+ε)/√(ρ²σ²+ε) − 1 ≈ (ε/2σ²)(1 − 1/ρ²)",
        exprs={"relative_deviation": deviation, "first_order": sp.simplify(first)},
        proved={"Norm(rho*x) - Norm(x) == 0 (eps = 0)": exact_invariance,
                "closed-form eps deviation matches the symbolic vector": matches},
    )


@functools.cache
def epsilon_exponents() -> Derivation:
    """How fast a normalization's ε fades as its input is rescaled by ρ → ∞ (issue 24).

    Relative to the ε-free output, a unit normalized as x/(σ + ε) (ε added to the standard
    deviation: weight standardization, ε-after-sqrt norms) deviates by −ε/(ρσ + ε) ~ ρ⁻¹, one
    normalized as x/√(σ² + ε) (ε added to the variance: BatchNorm, LayerNorm, GroupNorm, RMSNorm)
    by ρσ/√(ρ²σ² + ε) − 1 ~ ρ⁻²: an ε gives a deviation that vanishes as a power of ρ, −1 or −2,
    while a tensor that is not scale-invariant gives one that does not vanish. ``exprs``: the two
    deviations and their leading exponents (``exponent_std`` = 1, ``exponent_variance`` = 2).
    """
    s = sp.Symbol("sigma", positive=True)
    t = sp.Symbol("t", positive=True)  # t = 1/ρ → 0⁺
    std_dev = rho * s / (rho * s + eps) - 1
    var_dev = rho * s / sp.sqrt(rho**2 * s**2 + eps) - 1

    def leading_power(expr):   # the smallest power of t in the series of expr(ρ = 1/t) at t = 0
        series = sp.series(expr.subs(rho, 1 / t), t, 0, 4).removeO()
        return min(sp.Poly(sp.expand(series), t).monoms())[0]

    p_std, p_var = leading_power(std_dev), leading_power(var_dev)
    return Derivation(
        claim="C1",
        statement="with ε in the normalization, |f(ρw) − f_ε-free(w)| ∝ ρ^(−p): p = 1 for ε added "
                  "to a standard deviation, p = 2 for ε added to a variance",
        exprs={"std_deviation": std_dev, "variance_deviation": var_dev,
               "exponent_std": sp.Integer(p_std), "exponent_variance": sp.Integer(p_var)},
        proved={"eps on the std fades as rho**-1": p_std == 1,
                "eps on the variance fades as rho**-2": p_var == 2,
                "both vanish as rho -> oo": sp.limit(std_dev, rho, sp.oo) == 0
                and sp.limit(var_dev, rho, sp.oo) == 0},
    )


def _scale_invariant_function(n: int) -> tuple[list[sp.Symbol], sp.Expr]:
    """f(w) = F(w/‖w‖) for an arbitrary (undefined) F: the most general scale-invariant f."""
    w = _vector("w", n)
    r = sp.sqrt(sum(wi**2 for wi in w))
    F = sp.Function("F")
    return w, F(*[wi / r for wi in w])


@functools.cache
def c02_orthogonality(n: int = 3) -> Derivation:
    """Euler's relation for degree-0 homogeneity: ⟨∇f(w), w⟩ = d/dρ f(ρw)|_{ρ=1} = 0."""
    w, f = _scale_invariant_function(n)
    euler = sum(wi * sp.diff(f, wi) for wi in w)
    d_rho = sp.diff(f.subs({wi: rho * wi for wi in w}, simultaneous=True), rho).subs(rho, 1)
    return Derivation(
        claim="C2",
        statement="For f(ρw) = f(w): <grad f(w), w> = d/drho f(rho w) at rho = 1 = 0",
        exprs={"inner_product": sp.cancel(euler)},         # 0, as _is_zero proves
        proved={"<grad f, w> == 0": _is_zero(euler), "d/drho f(rho w)|1 == 0": _is_zero(d_rho)},
    )


@functools.cache
def c03_gradient_scaling(n: int = 3) -> Derivation:
    """Degree −1 homogeneity of the gradient: ∇f(ρw) = ∇f(w)/ρ, so ‖∇f(ρw)‖ → ∞ as ρ → 0."""
    w, f = _scale_invariant_function(n)
    grad = [sp.diff(f, wi) for wi in w]
    at_rho = [g.subs({wi: rho * wi for wi in w}, simultaneous=True) for g in grad]
    homogeneous = all(_is_zero(rho * a - g) for a, g in zip(at_rho, grad, strict=True))
    g0 = sp.Symbol("g_1", positive=True)  # ‖∇f(w)‖ at ρ = 1
    norm_at_rho = g0 / rho
    slope = rho * sp.diff(sp.log(norm_at_rho), rho)  # d log‖∇f‖ / d log ρ
    return Derivation(
        claim="C3",
        statement="grad f(rho w) = grad f(w) / rho: log-log slope -1; unbounded as rho -> 0",
        exprs={"norm_at_rho": norm_at_rho, "loglog_slope": sp.simplify(slope),
               "limit_rho_to_0": sp.limit(norm_at_rho, rho, 0, "+")},
        proved={"rho * grad f(rho w) - grad f(w) == 0": homogeneous,
                "lim_{rho->0} ||grad f(rho w)|| == oo":
                    sp.limit(norm_at_rho, rho, 0, "+") == sp.oo},
    )


# --- C0: the classical rationale (convex, Lipschitz, L2-regularized) ---------------------------

m_samples = sp.Symbol("m", positive=True)      # training examples m
ell = sp.Symbol("ell", positive=True)          # feature radius ℓ: every ‖x‖ ≤ ℓ


@functools.cache
def c00_classical_rationale() -> Derivation:
    """Norm and stability bounds of L2-regularized empirical risk minimization.

    For w*(λ) = argmin L(w) + λ‖w‖² with L ≥ 0: ‖w*‖ ≤ √(L(0)/λ) (compare with w = 0),
    non-increasing in λ (sum the two optimality inequalities of λ₁ < λ₂). For a convex
    ρ-Lipschitz loss the objective is 2λ-strongly convex, so replacing one of m examples moves w*
    by at most 2ρ/(λm) and the expected generalization gap is ≤ 2ρ²/(λm) (Shalev-Shwartz &
    Ben-David 2014, Cor. 13.6 with Thm. 13.2). Logistic loss ℓ(z) = log(1 + e^−z), z = y⟨w, x⟩,
    has sup|ℓ′| = 1, so with ‖x‖ ≤ ℓ it is ℓ-Lipschitz in w (ρ = ℓ) and L(0) = log 2.
    """
    L0, Lw = sp.symbols("L_0 L_w", nonnegative=True)     # L(0), L(w*)
    r = sp.Symbol("r", nonnegative=True)                 # ‖w*‖
    # Optimality against w = 0: L(w*) + λr² ≤ L(0); L(w*) ≥ 0 leaves λr² ≤ L(0).
    slack_at_zero_loss = (L0 - Lw - lam * r**2).subs(Lw, 0)
    norm_bound = [s for s in sp.solve(sp.Eq(slack_at_zero_loss, 0), r) if s.is_nonnegative][0]

    # Monotonicity: F_λ₁(w₁) ≤ F_λ₁(w₂) and F_λ₂(w₂) ≤ F_λ₂(w₁); their slacks add up to
    # (λ₂ − λ₁)(n₁ − n₂) ≥ 0 with n = ‖w‖², hence n₁ ≥ n₂ when λ₁ < λ₂.
    l1, l2 = sp.symbols("lambda_1 lambda_2", positive=True)
    L1, L2, n1, n2 = sp.symbols("L_1 L_2 n_1 n_2", nonnegative=True)
    slacks = (L2 + l1 * n2 - L1 - l1 * n1) + (L1 + l2 * n1 - L2 - l2 * n2)
    monotone = _is_zero(slacks - (l2 - l1) * (n1 - n2))

    # Logistic loss: value at w = 0 and Lipschitz constant in the margin z.
    z = sp.Symbol("z", real=True)
    logistic = sp.log(1 + sp.exp(-z))
    slope = sp.simplify(-sp.diff(logistic, z))           # |ℓ′(z)| = 1/(1 + e^z), decreasing in z
    lipschitz = sp.limit(slope, z, -sp.oo)               # its supremum, approached as z → −∞
    slope_decreasing = bool(sp.simplify(sp.diff(slope, z)).is_negative)

    # Stability: 2λ-strong convexity gives λd² ≤ (2ρ/m)d for the displacement d of w* when one
    # example is replaced; the loss moves by at most ρd on any example.
    rho_l = sp.Symbol("rho_L", positive=True)            # Lipschitz constant of the loss in w
    d = sp.Symbol("d", positive=True)
    d_max = sp.solve(sp.Eq(lam * d**2, 2 * rho_l * d / m_samples), d)[0]
    gap_bound = sp.simplify(rho_l * d_max)
    gap_bound_logistic = gap_bound.subs(rho_l, lipschitz * ell)
    return Derivation(
        claim="C0",
        statement="L2-regularized ERM: ||w*(lam)|| <= sqrt(L(0)/lam) -> 0, non-increasing in lam; "
                  "convex rho-Lipschitz loss: E[L_D(w*) - L_S(w*)] <= 2 rho^2/(lam m) "
                  "(SSBD Cor. 13.6); logistic loss with ||x|| <= ell: rho = ell, L(0) = log 2",
        exprs={"norm_bound": norm_bound,
               "norm_bound_logistic": norm_bound.subs(L0, logistic.subs(z, 0)),
               "logistic_L0": logistic.subs(z, 0), "logistic_lipschitz": lipschitz,
               "replace_one_displacement": d_max, "gap_bound": gap_bound,
               "gap_bound_logistic": gap_bound_logistic},
        proved={"lambda ||w*||^2 <= L(0) gives ||w*|| <= sqrt(L(0)/lambda)":
                    _is_zero(norm_bound**2 - L0 / lam),
                "norm bound -> 0 as lambda -> oo": sp.limit(norm_bound, lam, sp.oo) == 0,
                "optimality slacks sum to (lambda_2 - lambda_1)(||w_1||^2 - ||w_2||^2)": monotone,
                "logistic L(0) = log 2": _is_zero(logistic.subs(z, 0) - sp.log(2)),
                "sup |logistic'| = 1 (|l'| decreasing, limit at -oo)":
                    slope_decreasing and lipschitz == 1,
                "gap bound = 2 ell^2/(lambda m) for logistic loss, ||x|| <= ell":
                    _is_zero(gap_bound_logistic - 2 * ell**2 / (lam * m_samples))},
    )
