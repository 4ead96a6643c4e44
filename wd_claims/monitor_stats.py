"""The monitor's one interval method: batch means over blocks sized from the measured
autocorrelation, an equivalence test on them.

Why blocks sized from data: the angle's residual against a prediction is autocorrelated over the
norm's relaxation time (τ of hundreds to thousands of steps under decoupled decay), so blocks of a
fixed 32 steps are not independent and their t-interval is too narrow for an equivalence test. The
block here is twice the integrated autocorrelation time τ_int of the per-step residual
log(θ_t/θ*_t) (Geyer's initial positive sequence estimator), at least ``window // blocks`` steps;
a window holding fewer than :data:`MIN_BLOCKS` such blocks cannot decide (the verdict says so and
how long a window would).

Shapes: ``theta``, ``pred`` are (T,) float64 per recorded step, NaN where a step was skipped.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from wd_claims.claim import t_interval

MIN_BLOCKS = 4


def integrated_time(x: np.ndarray) -> float:
    """τ_int = 1 + 2Σ_k ρ_k of (n,) values (NaNs dropped), summed over Geyer's initial positive
    sequence (pairs ρ_{2m} + ρ_{2m+1} while positive); 1 for white noise."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 4 or not np.any(x != x[0]):
        return 1.0
    x = x - x.mean()
    f = np.fft.rfft(x, n=2 * n)
    acov = np.fft.irfft(f * np.conj(f))[:n] / n
    rho = acov / acov[0]
    tau = -1.0
    for m in range(0, n // 2 - 1):
        pair = rho[2 * m] + rho[2 * m + 1]
        if pair <= 0:
            break
        tau += 2 * pair
    return max(1.0, float(tau))


def block_size(theta: np.ndarray, pred: np.ndarray, window: int, blocks: int) -> tuple[int, float]:
    """(block length in recorded steps, τ_int) for the last ``window`` steps: ⌈2τ_int⌉ of the
    per-step residual, at least ``window // blocks``."""
    th, pr = theta[-window:], pred[-window:]
    with np.errstate(divide="ignore", invalid="ignore"):
        residual = np.log(th / pr)
    tau = integrated_time(residual)
    return max(window // blocks, math.ceil(2 * tau)), tau


def window_residuals(theta, pred, window: int, block: int) -> list[tuple[int, np.ndarray]]:
    """[(end index, (n,) block residuals log(θ_rms/θ*_rms))], oldest first, for every window of
    n = window // block blocks ending a whole number of blocks before the newest record (the
    last window ends at it)."""
    n = window // block
    span = n * block
    out = []
    for end in range(len(theta) - (len(theta) - span) // block * block, len(theta) + 1, block):
        th = theta[end - span: end].reshape(n, block)
        pr = pred[end - span: end].reshape(n, block)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)   # an all-NaN (skipped) block: NaN
            out.append((end, np.log(np.sqrt(np.nanmean(th**2, 1)) /
                                    np.sqrt(np.nanmean(pr**2, 1)))))
    return out


def interval(residuals, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of (n,) block residuals (the suite's one
    block interval, :func:`wd_claims.claim.t_interval`)."""
    finite = np.asarray(residuals)[np.isfinite(residuals)]
    if len(finite) < 2:
        return math.nan, math.nan, math.nan
    ci = t_interval(finite, level)
    return float(ci.estimate), float(ci.low), float(ci.high)


def inside(ci, tolerance: float) -> bool:
    """The equivalence criterion: the whole interval within ±log(1 + tolerance)."""
    band = math.log1p(tolerance)
    return bool(np.isfinite(ci[1]) and -band <= ci[1] and ci[2] <= band)


def outside(ci, tolerance: float) -> bool:
    """The interval lies wholly outside ±log(1 + tolerance): measurably off the prediction."""
    band = math.log1p(tolerance)
    return bool(np.isfinite(ci[1]) and (ci[1] > band or ci[2] < -band))
