"""Scale invariance up to a normalization's ε, told apart from no invariance (C1–C3, the atlas).

A tensor whose loss changes under w → ρw is either scale-invariant up to an ε inside a
normalization — its deviation from the ε-free network fades as ρ^(−p), p = 1 for an ε added to a
standard deviation (weight standardization), p = 2 for one added to a variance (BatchNorm,
LayerNorm, GroupNorm, RMSNorm), derived by sympy in :func:`wd_claims.theory.epsilon_exponents` —
or not scale-invariant: its deviation does not fade.

- :func:`scan` (the measurement): d(ρ) = ‖f(ρw) − f(Rw)‖/‖f(Rw)‖ over ρ = 2²⁰ down to 2⁻⁴⁰ by
  factors of 4 (until d leaves the first-order regime, > 1e-3), against R = 2⁴⁰, where any ε the
  scan can resolve has faded below rounding. Powers of two,
  so that ρw is exact. A tensor whose deviation does not fall 16-fold from ρ = 2⁻⁴ to 2⁴ (what
  p ≥ ½ gives) is not scanned further: three forward passes, not 32.
- :func:`law` (pure): the least-squares exponent of d on ρ over the points inside
  [:data:`WINDOW_ABOVE_ROUNDING`·tol, :data:`WINDOW_TOP`] — far enough above the rounding
  tolerance ``tol`` that rounding moves log d by ≤ 1e-3, small enough that the second-order term
  moves the local exponent by ≤ ≈1e-3 — with its 95 % t-interval. It *fades* when that interval
  lies within ±:data:`RESOLUTION` of a derived exponent and, for p = 1, its size is an ε's: an
  additive term of the tensor's own size (a bias after a normalization's gain, γx̂ + β, feeding
  the next normalization) also fades as ρ⁻¹, at 10⁻²–1 of the tensor's whole influence on the
  output (d at ρ = 2⁻⁴⁰, where the tensor has all but vanished), where an ε added to a standard
  deviation acts at ε/σ of it — :data:`MAX_STD_SCALE` and below (Big Transfer's 1e-10, the 1e-12
  of hand-written standardizations). Relative to the influence, not absolute: a block damped by
  a layer scale of 1e-6 (ConvNeXt) makes every deviation tiny, an ε's and a bias's alike.
  The claims then judge their
  identity at ``rho_free`` and above, where the fitted deviation is 100× below ``tol``: the
  ε-free statement, measured, not extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCAN_RHOS = tuple(2.0**k for k in range(-40, 21, 2))  # ρ, powers of two
REFERENCE = 2.0**40          # R: the ε-free end of the scan
SCREEN = (2.0**-4, 2.0**4)   # a fading deviation falls ≥ 16× between these (p ≥ ½)
WINDOW_ABOVE_ROUNDING = 1e3  # fit only where d ≥ 1e3·tol: rounding moves log d by ≤ 1e-3
WINDOW_TOP = 1e-3            # and d ≤ 1e-3: the first-order regime of ε (theory.epsilon_exponents)
RESOLUTION = 0.1             # the fitted exponent's interval within ±0.1 of 1 or 2
FREE_MARGIN = 1e-2           # ε-free: the fitted deviation ≤ 1e-2·tol
MIN_POINTS = 3
MAX_STD_SCALE = 1e-3         # p = 1: ε's effect at ρ = 1 ≤ 1e-3 of the tensor's influence


@dataclass(frozen=True)
class Law:
    """How a tensor's deviation from the ε-free network fades with ρ (see the module)."""

    exponent: float      # p, d ∝ ρ^(−p) (NaN with fewer than MIN_POINTS in the window)
    low: float           # its 95 % t-interval
    high: float
    points: int          # scan points inside the fit window
    at_one: float        # the fitted deviation at ρ = 1: ε's effect at the tensor's own norm
    nearest: int         # the derived exponent (1 or 2) nearest the fit, 0 if none resolved
    fades: bool          # the interval lies within ±RESOLUTION of ``nearest``
    rho_free: float      # smallest power of two where the fitted deviation ≤ FREE_MARGIN·tol

    @property
    def scale(self) -> float:
        """ε's scale as a factor of the tensor's norm: the ρ at which the fitted deviation
        reaches 1 (ε as large as the normalized quantity), ``at_one**(1/p)``."""
        return self.at_one ** (1.0 / self.exponent) if self.fades else math.nan

    def describe(self) -> str:
        if not self.fades:
            if self.points < MIN_POINTS:
                return "not scale-invariant: the deviation does not fade as ρ grows"
            if abs(self.exponent - 1) <= RESOLUTION:
                return (f"not scale-invariant: the deviation fades as ρ^−{self.exponent:.2f}, "
                        f"but is {self.at_one:.2g} at the tensor's own norm, too large a share of "
                        f"its influence for an ε (≤ {MAX_STD_SCALE:g}): an additive term of "
                        "its own size (a bias)")
            return (f"not scale-invariant: the deviation fades as ρ^−{self.exponent:.2f} "
                    f"[{self.low:.2f}, {self.high:.2f}], not as a normalization's ε does (ρ⁻¹ or "
                    "ρ⁻²)")
        return (f"scale-invariant up to ε: deviation ∝ ρ^−{self.exponent:.3f} "
                f"[{self.low:.3f}, {self.high:.3f}] (ε on a "
                f"{'standard deviation' if self.nearest == 1 else 'variance'}), "
                f"{self.at_one:.2g} at the tensor's own norm, ε-scale {self.scale:.2g}·‖w‖; "
                f"judged ε-free at ρ ≥ 2^{round(math.log2(self.rho_free))}")


def derived_exponents() -> tuple[int, int]:
    """(1, 2): the exponents sympy derives for ε on a standard deviation and on a variance."""
    from wd_claims.theory import epsilon_exponents

    d = epsilon_exponents()
    return int(d.exprs["exponent_std"]), int(d.exprs["exponent_variance"])


def law(rhos, devs, tol: float) -> Law:
    """The fading law of one tensor's scan (pure). rhos, devs: (n,), devs NaN where not measured;
    ``tol``: the rounding tolerance of the identity the claim judges."""
    from scipy import stats

    rhos, devs = np.asarray(rhos, float), np.asarray(devs, float)
    influence = devs[np.argmin(rhos)]   # the tensor all but removed (ρ = 2⁻⁴⁰): its influence
    inside = np.isfinite(devs) & (devs >= WINDOW_ABOVE_ROUNDING * tol) & (devs <= WINDOW_TOP)
    n = int(inside.sum())
    if n < MIN_POINTS:
        return Law(math.nan, math.nan, math.nan, n, math.nan, 0, False, math.nan)
    fit = stats.linregress(np.log(rhos[inside]), np.log(devs[inside]))
    half = float(stats.t.ppf(0.975, n - 2) * fit.stderr)
    p = -float(fit.slope)
    nearest = min(derived_exponents(), key=lambda q: abs(q - p))
    at_one = float(np.exp(fit.intercept))
    fades = bool(nearest - RESOLUTION <= p - half and p + half <= nearest + RESOLUTION
                 and (nearest == 2 or at_one <= MAX_STD_SCALE * influence))
    rho_free = math.nan
    if fades:   # at_one·ρ^(−p) ≤ FREE_MARGIN·tol
        rho_free = 2.0 ** math.ceil(math.log2(at_one / (FREE_MARGIN * tol)) / p)
    return Law(p, p - half, p + half, n, at_one, nearest, fades, float(rho_free))


def shift(law_: Law, grid_min: float) -> float:
    """The power of two s that puts a claim's grid (smallest ρ ``grid_min``) at or above
    ``law_.rho_free``: the claim measures its identity at s·w. 1 where the law does not fade."""
    if not law_.fades:
        return 1.0
    return max(1.0, 2.0 ** math.ceil(math.log2(law_.rho_free / grid_min)))


def scan(model, x, name: str, rhos: tuple[float, ...] = SCAN_RHOS) -> np.ndarray:
    """d(ρ) for ρ in ``rhos`` (powers of two including :data:`SCREEN`, the smallest the
    influence point; see the module), shape (len(rhos),); NaN where not measured (every point but
    the screen's and the smallest when the deviation does not fade). ``model`` in the mode and
    precision it is judged in (float64, training mode); left as it was."""
    import torch

    from wd_claims.probes import rescaled

    out = np.full(len(rhos), np.nan)
    with torch.no_grad():
        with rescaled(model, name, REFERENCE):
            ref = model(x)

        def at(rho):
            with rescaled(model, name, rho):
                return float((model(x) - ref).norm() / ref.norm())

        low, high = (at(r) for r in SCREEN)
        for r, d in zip(SCREEN, (low, high), strict=True):
            out[rhos.index(r)] = d
        smallest = int(np.argmin(rhos))
        out[smallest] = at(rhos[smallest])   # the tensor's influence (see law)
        if not high * 16 <= low:
            return out
        # from the largest ρ down, until the deviation leaves the first-order regime: below
        # that ρ it only grows further out of the fit window (a fading deviation is monotone)
        for i in sorted(range(len(rhos)), key=lambda j: -rhos[j]):
            if np.isnan(out[i]):
                out[i] = at(rhos[i])
            if out[i] > WINDOW_TOP and rhos[i] < SCREEN[1]:
                break
    return out


def kind(base: float, law_: Law, at_shift: float, tol: float) -> str:
    """"exact", "up to ε" or "not scale-invariant" (pure): a tensor whose loss deviation fades
    as a normalization's ε does is "up to ε" when the claim's identity holds at the shifted scale
    (``at_shift``, its worst deviation there); otherwise the identity's worst deviation ``base``
    at the tensor's own scale decides, against ``tol``."""
    if law_.fades:
        return "up to ε" if at_shift <= tol else "not scale-invariant"
    return "exact" if base <= tol else "not scale-invariant"
