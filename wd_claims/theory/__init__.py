"""Symbolic side of every claim, derived with sympy. This module imports only sympy.

Each ``cNN_*`` function returns a :class:`Derivation`: the sympy expressions a claim needs, the
statement they prove (checked here by ``simplify(...) == 0``), and printable text for the report.
Numbers used by the claims come from these expressions (``lambdify``/``subs``), never typed in.
Each is pure and computed once per process (``functools.cache``; C5's equilibrium was derived nine
times per session before, by C5, C7, C8 and E1): a Derivation is shared, to be read, never changed.

Convention: the regularizer is the loss term λ‖w‖², so an SGD step is w ← (1 − 2ηλ)w − ηg.

Split by claim group: :mod:`.base` (Derivation, symbols), :mod:`.geometry` (C0–C3),
:mod:`.dynamics` (C4–C8), :mod:`.noise_flatness` (C9, C10), :mod:`.extensions` (E1, E2).
"""

from wd_claims.theory.base import (
    Derivation,
    G,
    _is_zero,
    _normalize,
    _vector,
    eps,
    eta,
    lam,
    rho,
    x,
)
from wd_claims.theory.dynamics import (
    _sgd_map,
    c04_spiral_out,
    c05_equilibrium,
    c06_direction_update,
    c07_norm_scaling,
    c08_effective_lr,
    p_e,
    q_el,
    s_el,
    t_step,
    x0,
)
from wd_claims.theory.extensions import (
    _momentum_equilibrium,
    _two_step_inner_products,
    delta,
    e01_momentum_equilibrium,
    e02_decoupled_decay,
    lam_w,
    mu,
)
from wd_claims.theory.geometry import (
    _scale_invariant_function,
    c00_classical_rationale,
    c01_scale_invariance,
    c02_orthogonality,
    c03_gradient_scaling,
    ell,
    epsilon_exponents,
    m_samples,
)
from wd_claims.theory.noise_flatness import (
    N_pool,
    _quadratic_form,
    b_size,
    c09_noise_variance,
    c10_flatness,
    h_curv,
    sigma2,
)

__all__ = [
    "b_size", "c00_classical_rationale", "c01_scale_invariance", "c02_orthogonality",
    "epsilon_exponents", "c03_gradient_scaling", "c04_spiral_out", "c05_equilibrium",
    "c06_direction_update",
    "c07_norm_scaling", "c08_effective_lr", "c09_noise_variance", "c10_flatness", "delta",
    "Derivation", "e01_momentum_equilibrium", "e02_decoupled_decay", "ell", "eps", "eta", "G",
    "h_curv", "_is_zero", "lam", "lam_w", "m_samples", "_momentum_equilibrium", "mu", "N_pool",
    "_normalize", "p_e", "q_el", "_quadratic_form", "rho", "s_el", "_scale_invariant_function",
    "_sgd_map", "sigma2", "t_step", "_two_step_inner_products", "_vector", "x", "x0",
]
