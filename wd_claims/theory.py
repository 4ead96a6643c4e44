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
    """A derived expectation: ``exprs`` by name, ``proved`` facts (name → True), its ``text``."""

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


def _scale_invariant_function(n: int) -> tuple[list[sp.Symbol], sp.Expr]:
    """f(w) = F(w/‖w‖) for an arbitrary (undefined) F: the most general scale-invariant f."""
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
                "lim_{rho->0} ||grad f(rho w)|| == oo":
                    sp.limit(norm_at_rho, rho, 0, "+") == sp.oo},
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


# ---------------------------------------------------------------------------------------------
# C4–C8: the dynamics of ‖w‖ and of u = w/‖w‖ under plain SGD with the loss term λ‖w‖².
# One step is w' = a·w − ηg with a = 1 − 2ηλ; C2 gives ⟨g, w⟩ = 0 and C3 gives ‖g‖ = G/‖w‖.

p_e = sp.Symbol("p", positive=True)          # η_e·G = ‖η_e ∇L(u|B)‖, the size of a direction step
s_el = sp.Symbol("s", positive=True)         # ηλ
q_el = sp.Symbol("q", positive=True)         # η/λ
t_step = sp.Symbol("t", positive=True)       # step count (continuum time)
x0 = sp.Symbol("x_0", positive=True)         # ‖w_0‖²


def _sgd_map() -> sp.Expr:
    """x = ‖w‖² after one step, given ⟨g, w⟩ = 0 and ‖g‖² = G²/x: F(x) = (1−2ηλ)²x + η²G²/x."""
    return (1 - 2 * eta * lam) ** 2 * x + eta**2 * G**2 / x


def c04_spiral_out(n: int = 3) -> Derivation:
    """λ = 0: ‖w − ηg‖² = ‖w‖² − 2η⟨g, w⟩ + η²‖g‖², so with ⟨g, w⟩ = 0 the norm only grows
    (Pythagoras); with ‖g‖ = G/‖w‖ the continuum law dx/dt = η²G²/x gives x(t) = √(x₀² + 2η²G²t),
    ‖w‖ ∝ t^¼ at stationary G."""
    w, g = _vector("w", n), _vector("g", n)
    step = [wi - eta * gi for wi, gi in zip(w, g, strict=True)]
    sq = lambda v: sum(vi**2 for vi in v)  # noqa: E731
    inner = sum(wi * gi for wi, gi in zip(w, g, strict=True))
    cross = sp.expand(sq(step) - sq(w) - eta**2 * sq(g))  # = −2η⟨g, w⟩, zero given C2
    xt = sp.Function("x")
    ode = sp.Eq(xt(t_step).diff(t_step), eta**2 * G**2 / xt(t_step))
    sols = sp.dsolve(ode, xt(t_step), ics={xt(0): x0})
    sols = sols if isinstance(sols, list) else [sols]
    growth = next(s.rhs for s in sols if s.rhs.subs({t_step: 1, x0: 1, eta: 1, G: 1}).is_positive)
    norm_exponent = sp.limit(t_step * sp.diff(sp.log(sp.sqrt(growth)), t_step), t_step, sp.oo)
    return Derivation(
        claim="C4",
        statement="lambda = 0: ||w - eta g||^2 = ||w||^2 + eta^2 ||g||^2 when <g, w> = 0; "
                  "x(t) = sqrt(x0^2 + 2 eta^2 G^2 t), ||w|| ~ t^(1/4)",
        exprs={"cross_term": sp.factor(cross), "recursion": _sgd_map().subs(lam, 0),
               "growth": growth, "norm_exponent": norm_exponent},
        proved={"||w - eta g||^2 - ||w||^2 - eta^2||g||^2 == -2 eta <g, w>":
                    _is_zero(cross + 2 * eta * inner),
                "x(t) solves dx/dt = eta^2 G^2 / x with x(0) = x0":
                    _is_zero(sp.diff(growth, t_step) - eta**2 * G**2 / growth)
                    and _is_zero(growth.subs(t_step, 0) - x0),
                "d log||w|| / d log t -> 1/4": norm_exponent == sp.Rational(1, 4)},
    )


def c05_equilibrium() -> Derivation:
    """Fixed point of F(x) = (1−2ηλ)²x + η²G²/x, its slope F′(x*) = 2(1−2ηλ)² − 1, the relaxation
    rate 1 − F′ = 8ηλ(1−ηλ), the stability region, and the second-order (Jensen) bias of the
    stochastic steady state: with G_t² = G²(1+ξ_t), Var ξ = c², the linearised AR(1) around x* has
    relative variance v = c²ηλ(1−ηλ)/(1−2ηλ)² and E[x] = x*√(1+v) ≈ x*(1 + v/2)."""
    F = _sgd_map()
    roots = sp.solve(sp.Eq(F, x), x)
    sample = {eta: sp.Rational(1, 10), lam: sp.Rational(1, 10), G: 1}  # a point with 0 < ηλ < 1
    root = next(r for r in roots if r.subs(sample) > 0)
    closed = G / 2 * sp.sqrt(eta / (lam * (1 - eta * lam)))
    # Both are positive for 0 < ηλ < 1 (checked at a sample point), so equal squares prove equality
    # and the readable closed form stands for the root from here on.
    root_is_closed = _is_zero(root**2 - closed**2) and closed.subs(sample) > 0
    x_star = closed
    a2 = (1 - 2 * eta * lam) ** 2
    slope = sp.simplify(sp.diff(F, x).subs(x, x_star))
    rate = sp.factor(sp.simplify(1 - slope))
    c2 = sp.Symbol("c2", positive=True)  # Var(G_t²)/G⁴ of the mini-batch G_t
    phi = slope  # AR(1) coefficient of x_t − x*
    innovation_var = (eta**2 * G**2 / x_star) ** 2 * c2
    v = sp.simplify(innovation_var / (1 - phi**2) / x_star**2)
    # The map at ηλ = 1/2 has F′ = −1: a period-2 orbit, not a stable point.
    return Derivation(
        claim="C5",
        statement="x* = (G/2) sqrt(eta/(lambda(1 - eta lambda))), "
                  "F'(x*) = 2(1-2 eta lambda)^2 - 1, relaxation 8 eta lambda (1 - eta lambda) "
                  "per step; stable iff 0 < eta lambda < 1, "
                  "eta lambda != 1/2",
        exprs={"x_star": x_star, "slope": slope, "relaxation_rate": rate,
               "relative_variance": v, "jensen_bias": sp.sqrt(1 + v) - 1, "map": F},
        proved={"the positive root of F(x) = x is (G/2) sqrt(eta/(lambda(1 - eta lambda)))":
                    root_is_closed,
                "F'(x*) == 2(1-2 eta lambda)^2 - 1": _is_zero(slope - (2 * a2 - 1)),
                "1 - F'(x*) == 8 eta lambda (1 - eta lambda)":
                    _is_zero(rate - 8 * eta * lam * (1 - eta * lam)),
                "|F'(x*)| < 1 exactly for eta lambda in (0, 1/2) U (1/2, 1)":
                    sp.solve_univariate_inequality(
                        sp.Abs(2 * (1 - 2 * s_el) ** 2 - 1) < 1, s_el, relational=False)
                    == sp.Union(sp.Interval.open(0, sp.Rational(1, 2)),
                                sp.Interval.open(sp.Rational(1, 2), 1)),
                "F'(x*) == -1 at eta lambda = 1/2":
                    _is_zero((2 * (1 - 2 * s_el) ** 2 - 1).subs(s_el, sp.Rational(1, 2)) + 1),
                "v == c2 eta lambda (1 - eta lambda) / (1 - 2 eta lambda)^2":
                    _is_zero(v - c2 * eta * lam * (1 - eta * lam) / a2)},
    )


def c06_direction_update() -> Derivation:
    """Exact direction update (given ⟨g, w⟩ = 0). In the orthonormal basis (u, e), e = ∇L(u|B)/G:
    w = r·u, g = (G/r)·e, w' = a·r·u − (ηG/r)·e. With η_e = η/(a r²) and p = η_e·G, the residual
    ‖u' − u + η_e∇L(u|B)‖ = √(1+p²) − 1 = p²/2 + O(p⁴): second order. The article's factor
    η/r² = a·η_e leaves ‖(s−1)u + (a−s)p·e‖ with s = 1/√(1+p²): first order in p at fixed ηλ."""
    r = sp.Symbol("r", positive=True)
    a = sp.Symbol("a", positive=True)  # 1 − 2ηλ
    w_new = sp.Matrix([a * r, -eta * G / r])
    u_new = w_new / sp.sqrt(w_new.dot(w_new))
    u = sp.Matrix([1, 0])
    e = sp.Matrix([0, 1])
    eta_e = eta / (a * r**2)
    on_p = {eta: p_e * a * r**2 / G}  # express everything in p = η_e·G

    def norm_of(v):
        return sp.sqrt(sp.simplify(v.dot(v)))

    exact = sp.simplify(norm_of((u_new - u + eta_e * G * e).subs(on_p)))
    article = sp.simplify(norm_of((u_new - u + eta / r**2 * G * e).subs(on_p)))
    zeroth = sp.simplify(norm_of((u_new - u).subs(on_p)))
    closed = sp.sqrt(1 + p_e**2) - 1

    def order(expr, at_a=None):
        e_ = expr if at_a is None else expr.subs(a, at_a)
        return sp.limit(p_e * sp.diff(sp.log(e_), p_e), p_e, 0, "+")

    local_slope = sp.series(p_e * sp.diff(sp.log(closed), p_e), p_e, 0, 4).removeO()
    return Derivation(
        claim="C6",
        statement="||u' - u + eta_e grad L(u|B)|| = sqrt(1 + p^2) - 1 = p^2/2 + O(p^4), "
                  "p = eta_e G, eta_e = eta/((1 - 2 eta lambda)||w||^2); the article's eta/||w||^2 "
                  "leaves a first-order term 2 eta lambda p",
        exprs={"resid_exact": closed, "resid_article": article, "resid_zeroth": zeroth,
               "exact_series": sp.series(closed, p_e, 0, 6).removeO(),
               "local_loglog_slope": local_slope,
               "order_exact": order(exact), "order_article": order(article, sp.Rational(1, 2)),
               "order_zeroth": order(zeroth)},
        proved={"residual == sqrt(1 + p^2) - 1": _is_zero(sp.simplify(exact**2 - closed**2)),
                "order of the exact-factor residual == 2": order(exact) == 2,
                "order of the article-factor residual at fixed eta lambda > 0 == 1":
                    order(article, sp.Rational(9, 10)) == 1,
                "article-factor residual == exact residual when lambda = 0":
                    _is_zero(sp.simplify((article - exact).subs(a, 1))),
                "order of the zeroth-order prediction == 1": order(zeroth) == 1},
    )


def c07_norm_scaling() -> Derivation:
    """x* in the coordinates q = η/λ, s = ηλ: x* = (G/2)√(q/(1−s)); d log x*/d log q = ½ at fixed
    s and G; the ratio x*/√(η/λ) = G/(2√(1−s)) depends on (η, λ) only through s = ηλ (and G)."""
    on_qs = {eta: sp.sqrt(q_el * s_el), lam: sp.sqrt(s_el / q_el)}
    x_star = c05_equilibrium().exprs["x_star"]
    x_qs = sp.simplify(x_star.subs(on_qs))
    ratio = sp.simplify(x_qs / sp.sqrt(q_el))
    lq, ls = sp.symbols("log_q log_s", real=True)
    log_x = sp.expand_log(sp.log(x_qs.subs({q_el: sp.exp(lq), s_el: sp.exp(ls)})), force=True)
    exponent = sp.simplify(sp.diff(log_x, lq))
    return Derivation(
        claim="C7",
        statement="x* = (G/2) sqrt(q/(1 - s)), q = eta/lambda, s = eta lambda: "
                  "d log x*/d log q = 1/2 at fixed s, G; x*/sqrt(q) = G/(2 sqrt(1 - s))",
        exprs={"x_star_qs": x_qs, "exponent": exponent, "ratio": ratio},
        proved={"d log x* / d log(eta/lambda) == 1/2": exponent == sp.Rational(1, 2),
                "x*/sqrt(eta/lambda) is free of eta/lambda": not ratio.has(q_el),
                "x*/sqrt(eta/lambda) == G/(2 sqrt(1 - eta lambda))":  # both positive: squares
                    _is_zero(ratio**2 - G**2 / (4 * (1 - s_el)))},
    )


def c08_effective_lr(n: int = 3) -> Derivation:
    """η_e* = η/x* = 2√(ηλ(1−ηλ))/G: exponent ½ in ηλ at fixed G only (plus the (1−ηλ) term). The
    per-step angle: cos θ_t = ⟨w_t, w_{t+1}⟩/(‖w_t‖‖w_{t+1}‖) = (1−2ηλ)‖w_t‖/‖w_{t+1}‖ exactly
    (given C2), so over n steps Π cos θ_t = (1−2ηλ)ⁿ‖w_start‖/‖w_end‖ — at the fixed point
    cos θ* = 1 − 2ηλ, θ* = arccos(1 − 2ηλ) ≈ 2√(ηλ), exponent ½ independent of G."""
    x_star = c05_equilibrium().exprs["x_star"]
    eta_e = sp.simplify((eta / x_star).subs(eta, s_el / lam))
    eta_e_closed = 2 * sp.sqrt(s_el * (1 - s_el)) / G
    closed = eta_e_closed
    ls = sp.Symbol("log_s", real=True)
    log_eta_e = sp.log(closed.subs(s_el, sp.exp(ls)))
    exponent = sp.simplify(sp.diff(log_eta_e, ls).subs(ls, sp.log(s_el)))
    # the exact per-step cosine from vectors: w' = a w − ηg, ⟨g, w⟩ = 0 imposed on g's last entry
    w, g = _vector("w", n), _vector("g", n)
    g[-1] = -sum(wi * gi for wi, gi in zip(w[:-1], g[:-1], strict=True)) / w[-1]
    a = 1 - 2 * eta * lam
    w_new = [a * wi - eta * gi for wi, gi in zip(w, g, strict=True)]
    nw, nn_ = sp.sqrt(sum(v**2 for v in w)), sp.sqrt(sum(v**2 for v in w_new))
    cos_step = sum(p * q for p, q in zip(w, w_new, strict=True)) / (nw * nn_)
    theta = sp.acos(1 - 2 * s_el)
    theta_exponent = sp.limit(s_el * sp.diff(sp.log(theta), s_el), s_el, 0, "+")
    return Derivation(
        claim="C8",
        statement="eta_e* = eta/x* = 2 sqrt(eta lambda (1 - eta lambda))/G; "
                  "cos theta_t = (1 - 2 eta lambda)||w_t||/||w_t+1||; "
                  "theta* = acos(1 - 2 eta lambda)",
        exprs={"eta_e_star": closed, "exponent_at_fixed_G": exponent, "theta_star": theta,
               "theta_series": sp.series(theta, s_el, 0, 2).removeO(),
               "theta_exponent": theta_exponent},
        proved={"eta/x* == 2 sqrt(eta lambda (1 - eta lambda))/G":  # both positive: squares
                    _is_zero(eta_e**2 - closed**2),
                "d log eta_e*/d log(eta lambda) -> 1/2 (fixed G, eta lambda -> 0)":
                    sp.limit(exponent, s_el, 0, "+") == sp.Rational(1, 2),
                "cos theta_t == (1 - 2 eta lambda)||w_t||/||w_t+1||":
                    _is_zero(sp.simplify(cos_step**2 - (a * nw / nn_) ** 2)),
                "d log theta*/d log(eta lambda) -> 1/2": theta_exponent == sp.Rational(1, 2)},
    )


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
