"""C5's measurement of a norm equilibrium: the log gap to the fixed point, and when a run is there.

- :func:`gap` — per configuration, the mean log gap r = log(x̄/x*(RMS G)) over a window's blocks,
  its allowance (Bonferroni t·se plus the fluctuation bound √(1+v) − 1 from the measured c²,
  neither built from r), and whether the window can be at the equilibrium at all (:func:`gap`'s
  ``at_equilibrium``, fixed by the design and by G, never by r).
- :func:`settling_step` — when a start's trailing-τ gap enters its band and stays.

"At equilibrium" (docs/claims.md, C5, derived before any number was looked at): x relaxes to x*
at the rate 1/τ = 8ηλ(1−ηλ) (sympy), so after the window's first step s the initial offset is at
most e^{−s/τ}; and a fixed point that moves, x* ∝ G with d log G/dt = ġ, is trailed by ġ·τ (a
first-order relaxation tracking a moving target). A configuration is at equilibrium when both are
≤ EQUILIBRIUM_TOL: x* is then known to 5 % before any statistics. A configuration that is not is
reported as such and excluded from the equilibrium statement, never absorbed by a wider allowance.
"""

from __future__ import annotations

import numpy as np

from wd_claims import claim, stats, theory

N_BLOCKS, LEVEL = 8, 0.95  # blocks of the window (≥ 24 steps at quick); family-wise level
OUTSIDE_ALLOWED = 0.05  # a settled trajectory may leave its band on ≤ 5 % of later steps
EQUILIBRIUM_TOL = 0.05  # offset e^{−s/τ} and lag ġ·τ each ≤ 5 % (log units): at equilibrium


def functions():
    """sympy's x*(G, η, λ), Jensen bias (c², η, λ), relaxation rate (η, λ), relative variance."""
    d = claim.derivation(theory.c05_equilibrium)
    c2 = next(s for s in d.exprs["jensen_bias"].free_symbols if s.name == "c2")
    e, lam = theory.eta, theory.lam
    return (d.fn("x_star", theory.G, e, lam), d.fn("jensen_bias", c2, e, lam),
            d.fn("relaxation_rate", e, lam), d.fn("relative_variance", c2, e, lam))


def block_rms(G):
    """(K, N_BLOCKS) RMS of G_t per block: x* needs the RMS, not the mean (the fault tests swap
    this for the mean and must see C5 fail)."""
    return np.sqrt(stats.block_means(G**2, N_BLOCKS))


def gap(x, G, etas, lams, family: int, start: int) -> dict:
    """Per configuration (K,) arrays: mean log gap r, its allowance (t·se + fluctuation bound),
    agreement, and the equilibrium premise (offset e^{−start/τ}, lag |ġ|·τ, at_equilibrium).
    x, G: (K, W) windows that open at step ``start``; ``family``: configurations sharing the
    level."""
    x_star, jensen, rate, rel_var = functions()
    xb, Gb = stats.block_means(x, N_BLOCKS), block_rms(G)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_b = np.log(xb / x_star(Gb, etas[:, None], lams[:, None]))
        c2 = np.nanvar(G**2, axis=1) / np.nanmean(G**2, axis=1) ** 2
        fluct = np.abs(jensen(c2, etas, lams))
        spread = np.sqrt(rel_var(c2, etas, lams))              # std of x/x* in the steady state
        tau = 1 / rate(etas, lams)                             # relaxation time, steps
    ci = claim.t_interval(r_b, LEVEL, family)
    lag = np.abs(stats.block_slope(np.log(Gb), x.shape[1])) * tau   # x* ∝ G trailed by ġ·τ
    offset = np.exp(-start / tau)                                   # the start's offset left
    allowance = ci.halfwidth + fluct
    return {"r": ci.estimate, "tse": ci.halfwidth, "fluct": fluct, "lag": lag, "offset": offset,
            "tau": tau, "spread": spread, "allowance": allowance,
            "agrees": np.abs(ci.estimate) <= allowance,
            "at_equilibrium": (offset <= EQUILIBRIUM_TOL) & (lag <= EQUILIBRIUM_TOL)}


def settling_step(x, G, eta, lam, band: float) -> int:
    """First step after which the trailing-τ mean of log(x_t/x*(G)) stays within ±band (but for
    OUTSIDE_ALLOWED of the later steps); len(x) if never. x, G: (T,) one run."""
    x_star, _, rate, _ = functions()
    tau = max(1, int(np.ceil(1 / rate(eta, lam))))
    G_rms = np.sqrt(stats.trailing_mean(G**2, tau))            # G over the last τ steps
    dev = stats.trailing_mean(np.log(x / x_star(G_rms, eta, lam)), tau)
    return stats.settled_from(dev, band, OUTSIDE_ALLOWED)
