"""Tolerances and confidence intervals, from numpy and scipy.stats rather than by hand.

- :func:`ols` — least squares with t-based confidence intervals (scipy.stats.t): the exponents of
  C6–C8 are regression slopes on log-log axes.
- :func:`bootstrap_mean_ci` — scipy.stats.bootstrap (BCa) for means of replicates (blocks, seeds).
- windows, RMS, geometric means, log-spreads: small helpers with the shapes in their docstrings.
- :func:`unit_roundoff` — u = eps/2 of a float dtype, the unit of every float-precision tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Fit:
    """An OLS fit y ≈ X·coef. ``ci[i]`` is the two-sided ``level`` t-interval of ``coef[i]``."""

    coef: np.ndarray        # (k,)
    stderr: np.ndarray      # (k,)
    ci: np.ndarray          # (k, 2)
    df: int                 # residual degrees of freedom, n − k
    level: float
    names: tuple[str, ...]

    def __getitem__(self, name: str) -> tuple[float, float, float]:
        """(estimate, low, high) of the coefficient called ``name``."""
        i = self.names.index(name)
        return float(self.coef[i]), float(self.ci[i, 0]), float(self.ci[i, 1])

    def contains(self, name: str, value: float) -> bool:
        _, lo, hi = self[name]
        return lo <= value <= hi

    def halfwidth(self, name: str) -> float:
        _, lo, hi = self[name]
        return (hi - lo) / 2


def ols(y, regressors: dict[str, np.ndarray], *, level: float = 0.95,
        intercept: bool = True) -> Fit:
    """Ordinary least squares of ``y`` (n,) on named regressors (each (n,)), with t-based CIs.

    The residual variance is s² = RSS/(n − k); Var(coef) = s²(XᵀX)⁻¹; the interval is
    coef ± t_{(1+level)/2, n−k}·stderr. Needs n > k.
    """
    y = np.asarray(y, dtype=float).ravel()
    names = (("intercept",) if intercept else ()) + tuple(regressors)
    cols = ([np.ones_like(y)] if intercept else []) + [np.asarray(v, float).ravel()
                                                        for v in regressors.values()]
    X = np.column_stack(cols)
    n, k = X.shape
    if n <= k:
        raise ValueError(f"{n} points cannot give a confidence interval for {k} coefficients")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    df = n - k
    s2 = float(resid @ resid) / df
    cov = s2 * np.linalg.pinv(X.T @ X)
    stderr = np.sqrt(np.clip(np.diag(cov), 0, None))
    tq = stats.t.ppf(0.5 + level / 2, df)
    ci = np.column_stack([coef - tq * stderr, coef + tq * stderr])
    return Fit(coef=coef, stderr=stderr, ci=ci, df=df, level=level, names=names)


def bootstrap_mean_ci(samples, *, level: float = 0.95, seed: int = 0,
                      n_resamples: int = 2000) -> tuple[float, float, float]:
    """(mean, low, high): scipy.stats.bootstrap BCa interval of the mean of ``samples`` (n,).

    With fewer than 3 distinct values no interval can be estimated: returns (mean, −inf, inf)
    rather than a degenerate zero-width interval.
    """
    x = np.asarray(samples, dtype=float).ravel()
    mean = float(x.mean())
    if x.size < 3 or np.unique(x).size < 3:
        return mean, -np.inf, np.inf
    res = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples,
                          method="BCa", random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def late_window(n_steps: int, fraction: float) -> slice:
    """The last ``fraction`` of ``n_steps`` steps (at least one step)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} outside (0, 1]")
    return slice(n_steps - max(1, int(round(fraction * n_steps))), n_steps)


def block_edges(start: int, stop: int, n_blocks: int) -> list[tuple[int, int]]:
    """[start, stop) cut into ``n_blocks`` consecutive near-equal ranges; fewer (one step each, at
    least one) when the span is shorter than ``n_blocks``."""
    n = max(1, min(n_blocks, stop - start))
    edges = np.linspace(start, stop, n + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:], strict=True))


def rms(a, axis=-1) -> np.ndarray:
    """√(mean(a²)) along ``axis``, ignoring NaN (steps after a divergence)."""
    return np.sqrt(np.nanmean(np.square(a), axis=axis))


def geometric_mean(a, axis=-1) -> np.ndarray:
    """exp(mean(log a)) along ``axis`` for positive ``a``, ignoring NaN."""
    return np.exp(np.nanmean(np.log(a), axis=axis))


def block_means(a, n_blocks: int, axis=-1) -> np.ndarray:
    """Means of ``n_blocks`` consecutive equal blocks along ``axis`` (a trailing remainder that does
    not fill a block is dropped). (…, T) → (…, n_blocks) for axis = −1. A series shorter than
    ``n_blocks`` (a run cut short for testing) gets one block per value, at least two."""
    a = np.moveaxis(np.asarray(a, dtype=float), axis, -1)
    if a.shape[-1] < 2:
        raise ValueError(f"{a.shape[-1]} value(s) cannot give two blocks: the run is too short")
    n_blocks = min(n_blocks, a.shape[-1])
    size = a.shape[-1] // n_blocks
    trimmed = a[..., a.shape[-1] - size * n_blocks:]
    out = trimmed.reshape(*a.shape[:-1], n_blocks, size).mean(axis=-1)
    return np.moveaxis(out, -1, axis)


def block_slope(blocks, n_steps: int) -> np.ndarray:
    """(K, B) block values over a window of ``n_steps`` → (K,) least-squares slope per step
    against the blocks' centres (a window's drift, e.g. of log G)."""
    nb = np.shape(blocks)[-1]
    centers = (np.arange(nb) + 0.5) * (n_steps // nb)
    return np.polyfit(centers, np.asarray(blocks).T, 1)[0]


def trailing_mean(a, window: int) -> np.ndarray:
    """(T,) → (T,): the mean of ``a`` over the last ``window`` steps up to each step (fewer at the
    start)."""
    a = np.asarray(a, dtype=float)
    t = np.arange(len(a))
    start = np.maximum(0, t + 1 - window)
    c = np.concatenate([[0.0], np.cumsum(a)])
    return (c[t + 1] - c[start]) / (t + 1 - start)


def settled_from(deviation, band: float, outside_allowed: float) -> int:
    """The first step after which |deviation| ≤ band on all but ``outside_allowed`` of the later
    steps; len(deviation) if never. deviation: (T,)."""
    outside = (np.abs(np.asarray(deviation)) > band)
    later = np.cumsum(outside[::-1])[::-1] / np.arange(len(outside), 0, -1)
    ok = np.flatnonzero(later <= outside_allowed)
    return int(ok[0]) if ok.size else len(outside)


def log_spread(a) -> float:
    """Standard deviation of log(a) over all entries: a scale-free spread (0 for constant a)."""
    return float(np.std(np.log(np.asarray(a, dtype=float).ravel())))


def unit_roundoff(dtype) -> float:
    """u = eps/2: the relative error bound of one rounding in ``dtype`` (2⁻²⁴ for float32)."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2
