"""What every derivation shares: :class:`Derivation`, the symbols, small helpers."""

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
    """Is ``expr`` identically 0? ``cancel`` first: it brings a rational function of the symbols
    (and of any sqrt, function or derivative, taken as generators) to p/q in lowest terms, so
    p = 0 is a proof, at a tenth of ``simplify``'s cost on the geometry identities (C2, C3: 0.1
    against 1.2–1.5 s each); where it leaves anything, ``simplify`` decides, as before."""
    return sp.cancel(expr) == 0 or sp.simplify(expr) == 0


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
