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
