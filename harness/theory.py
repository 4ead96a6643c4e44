"""Symbolic side of every claim, derived with sympy. This module imports only sympy.

Each ``cNN_*`` function returns a :class:`Derivation`: the sympy expressions a claim needs, the
statement they prove (checked here by ``simplify(...) == 0``), and printable text for the report.
Numbers used by the claims come from these expressions (``lambdify``/``subs``), never typed in.

Convention: the regularizer is the loss term λ‖w‖², so an SGD step is w ← (1 − 2ηλ)w − ηg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass
class Derivation:
    """A derived expectation: ``exprs`` by name, ``proved`` facts (name → True), printable ``text``."""

    claim: str
    statement: str
    exprs: dict[str, sp.Expr] = field(default_factory=dict)
    proved: dict[str, bool] = field(default_factory=dict)

    @property
    def text(self) -> str:
        lines = [self.statement]
        lines += [f"{k} = {sp.sstr(v)}" for k, v in self.exprs.items()]
        lines += [f"proved: {k}" if ok else f"NOT PROVED: {k}" for k, ok in self.proved.items()]
        return "\n".join(lines)

    def fn(self, name: str, *symbols: sp.Symbol):
        """``lambdify`` one expression (numpy backend) over the given symbols."""
        return sp.lambdify(symbols, self.exprs[name], "numpy")


def _is_zero(expr: sp.Expr) -> bool:
    return sp.simplify(expr) == 0


# Symbols shared by the claims. ρ is the rescaling, ε the normalization's eps.
rho = sp.Symbol("rho", positive=True)
eps = sp.Symbol("epsilon", positive=True)
eta = sp.Symbol("eta", positive=True)       # learning rate η
lam = sp.Symbol("lambda", positive=True)    # weight decay λ of the loss term λ‖w‖²
G = sp.Symbol("G", positive=True)           # ‖∇L(u|B)‖, gradient norm on the unit sphere
x = sp.Symbol("x", positive=True)           # ‖w‖²


def _vector(name: str, n: int) -> list[sp.Symbol]:
    return list(sp.symbols(f"{name}1:{n + 1}", real=True))


def _normalize(v: list[sp.Expr], epsilon: sp.Expr = 0) -> list[sp.Expr]:
    """Norm(v) = (v − μ(v)) / sqrt(σ²(v) + ε) over all components (one BN channel / LN row)."""
    n = len(v)
    mu = sum(v) / n
    var = sum((vi - mu) ** 2 for vi in v) / n
    return [(vi - mu) / sp.sqrt(var + epsilon) for vi in v]


def c01_scale_invariance(n: int = 3) -> Derivation:
    """Norm(ρx) = Norm(x) for ε = 0; with ε, the exact and first-order relative deviation.

    ``exprs["relative_deviation"]`` is Norm_ε(ρx)/Norm_ε(x) − 1 as a function of (ρ, ε, σ²), the same
    for every component; ``exprs["first_order"]`` is its ε-linear term, (ε/2σ²)(1 − 1/ρ²).
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


def _scale_invariant_function(n: int) -> tuple[list[sp.Symbol], sp.Expr]:
    """f(w) = F(w/‖w‖) for an arbitrary (undefined) function F: the most general scale-invariant f."""
    w = _vector("w", n)
    r = sp.sqrt(sum(wi**2 for wi in w))
    F = sp.Function("F")
    return w, F(*[wi / r for wi in w])


def c02_orthogonality(n: int = 3) -> Derivation:
    """Euler's relation for degree-0 homogeneity: ⟨∇f(w), w⟩ = d/dρ f(ρw)|_{ρ=1} = 0."""
    w, f = _scale_invariant_function(n)
    euler = sum(wi * sp.diff(f, wi) for wi in w)
    d_rho = sp.diff(f.subs({wi: rho * wi for wi in w}, simultaneous=True), rho).subs(rho, 1)
    return Derivation(
        claim="C2",
        statement="For f(ρw) = f(w): <grad f(w), w> = d/drho f(rho w) at rho = 1 = 0",
        exprs={"inner_product": sp.simplify(euler)},
        proved={"<grad f, w> == 0": _is_zero(euler), "d/drho f(rho w)|1 == 0": _is_zero(d_rho)},
    )


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
                "lim_{rho->0} ||grad f(rho w)|| == oo": sp.limit(norm_at_rho, rho, 0, "+") == sp.oo},
    )


# --- C0: the classical rationale (convex, Lipschitz, L2-regularized) ---------------------------

m_samples = sp.Symbol("m", positive=True)      # training examples m
ell = sp.Symbol("ell", positive=True)          # feature radius ℓ: every ‖x‖ ≤ ℓ


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


# --- C9: noise of one 2η step vs two η steps --------------------------------------------------

sigma2 = sp.Symbol("sigma2", positive=True)   # total variance (trace) of one mini-batch's noise ξ
N_pool = sp.Symbol("N", positive=True)        # training examples the batches are drawn from
b_size = sp.Symbol("b", positive=True)        # mini-batch size
h_curv = sp.Symbol("h", positive=True)        # curvature of a quadratic loss along the noise


def _quadratic_form(a: list[sp.Expr], cov: sp.Matrix) -> sp.Expr:
    """Var(Σᵢ aᵢξᵢ) = aᵀ C a for noises ξ with covariance matrix C."""
    vec = sp.Matrix(a)
    return sp.expand((vec.T * cov * vec)[0, 0])


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
    return Derivation(
        claim="C9",
        statement="Var(2 eta xi) = 4 eta^2 sigma^2, Var(eta xi1 + eta xi2) = 2 eta^2 sigma^2 "
                  "(independent): ratio 2; disjoint batches of one epoch: 2(N-b)/(N-2b); two "
                  "sequential steps on curvature h: 4/(1+(1-eta h)^2); same batch twice: ~1",
        exprs={"var_one_step_2eta": one_step, "var_two_steps_eta": two_steps.subs(c, 0),
               "ratio": ratio, "ratio_epoch": epoch_ratio, "ratio_same_batch": same_batch,
               "ratio_sequential": seq_ratio, "ratio_same_batch_sequential": same_ratio_curved,
               "eta_h_from_ratio": implied, "cov_without_replacement": kappa_val},
        proved={"Var(2 eta xi) == 4 eta^2 sigma^2": _is_zero(one_step - 4 * eta**2 * sigma2),
                "Var(eta xi1 + eta xi2) == 2 eta^2 sigma^2 (independent)":
                    _is_zero(two_steps.subs(c, 0) - 2 * eta**2 * sigma2),
                "ratio == 2": _is_zero(ratio - 2),
                "same batch twice: ratio == 1": _is_zero(same_batch - 1),
                "epoch ratio == 2(N-b)/(N-2b)":
                    _is_zero(epoch_ratio - 2 * (N_pool - b_size) / (N_pool - 2 * b_size)),
                "epoch ratio -> 2 as N -> oo": sp.limit(epoch_ratio, N_pool, sp.oo) == 2,
                "sequential ratio -> 2 as h -> 0": _is_zero(seq_ratio.subs(h_curv, 0) - 2),
                "sequential ratio = 2 + 2 eta h + O((eta h)^2)":
                    _is_zero(sp.series(seq_ratio, h_curv, 0, 2).removeO() - 2 - 2 * eta * h_curv)},
    )
