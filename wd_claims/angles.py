"""Rotational-equilibrium angles (E1, E2): the blocks of a run's late window, the window's drift,
and the block t-interval of a log residual log(θ_block/θ_pred).

The window is the last :data:`WINDOW` of a run, cut into :data:`N_BLOCKS` consecutive blocks, the
replicates of a residual's t-interval (:func:`wd_claims.claim.t_interval`, two-sided, Bonferroni
over the configurations judged together: family-wise :data:`FAMILY_LEVEL`). Where the last
recorded step has no successor (E1 reads ‖w_{t+1}‖), the blocks stop one step short (``tail=1``);
the drift always runs from the window's first step to the last recorded one.
"""

from __future__ import annotations

import numpy as np

from wd_claims import stats
from wd_claims.claim import Interval, t_interval
from wd_claims.verdict import Check

WINDOW = 0.5          # the last half of the run
N_BLOCKS = 8          # replicates of the window for the t-interval
FAMILY_LEVEL = 0.95   # family-wise, over the configurations of one verdict
BLOCKS_TEXT = f"{N_BLOCKS} blocks of the last {WINDOW:.0%}"


def level(family: int) -> float:
    """The level of each of ``family`` intervals for a family-wise :data:`FAMILY_LEVEL`."""
    return 1 - (1 - FAMILY_LEVEL) / family


def level_text(family: int) -> str:
    """The level in words, for a tolerance's reason."""
    return (f"level {level(family):.4f} (Bonferroni over {family} configurations: family-wise "
            f"{FAMILY_LEVEL:.0%})")


def blocks(n_steps: int, tail: int = 0) -> list[tuple[int, int]]:
    """:data:`N_BLOCKS` consecutive [start, stop) ranges tiling the window of ``n_steps`` steps,
    less its last ``tail`` steps."""
    return stats.block_edges(stats.late_window(n_steps, WINDOW).start, n_steps - tail, N_BLOCKS)


def window_drift(series, *, logged: bool = True) -> float:
    """δ: the mean per-step change of log ‖w‖² from the window's first step to the last recorded
    one. ``series``: (T,) log ‖w_t‖² (``logged``), or ‖w_t‖²."""
    start, end = stats.late_window(len(series), WINDOW).start, len(series) - 1
    change = series[end] - series[start] if logged else np.log(series[end] / series[start])
    return float(change / (end - start))


def run_series(result) -> list[dict]:
    """Per configuration of an engine run (a TrainResult), the per-step series of its joint column
    (all 3x3 kernels): cos θ_t (``cos``), x_t = ‖w_t‖² (``x``), ‖g_t‖ (``gnorm``), cos(g_t, w_t)
    (``cos_gw``); and cos θ_t, x_t of each other tensor ((T, P) ``cos_p``, ``x_p``)."""
    joint, each = len(result.tensors) - 1, [result.tensors.index(t) for t in result.tensors[:-1]]
    cos, x = result.metrics["cos_step"], result.metrics["sqnorm"]
    return [dict(cos=cos[k, :, joint], x=x[k, :, joint], gnorm=result.metrics["gnorm"][k, :, joint],
                 cos_gw=result.metrics["cos_gw"][k, :, joint], cos_p=cos[k][:, each],
                 x_p=x[k][:, each]) for k in range(len(result.config.etas))]


def geometric_angles(cos, tail: int = 0) -> list:
    """θ per block: the arccos of the geometric mean of the per-step cos θ_t over the block (the
    blocks stop ``tail`` steps short: :func:`blocks`). cos: (T,)."""
    return [np.arccos(stats.geometric_mean(cos[s:e])) for s, e in blocks(len(cos), tail)]


def rms_angles(theta2) -> np.ndarray:
    """θ_rms per block: √(mean of the per-step θ² over the block). theta2: (T,)."""
    return np.sqrt([np.mean(theta2[s:e]) for s, e in blocks(len(theta2))])


def angle_interval(theta, cos_pred, drift: float, family: int) -> Interval:
    """The criterion's interval: the t-interval of the mean over the blocks of
    log(θ_b/θ_pred,b), θ_pred,b = arccos(cos_pred(δ, b)) at the window's drift δ, b the block;
    ``theta``: one angle per block (:func:`geometric_angles`, :func:`rms_angles`)."""
    pred = np.arccos([cos_pred(drift, b) for b in range(len(theta))])
    return block_interval(np.log(np.asarray(theta, dtype=float) / pred), family)


def block_interval(values, family: int) -> Interval:
    """The t-interval of the mean of per-block ``values``, at :func:`level` (``family``)."""
    return t_interval(values, FAMILY_LEVEL, family)


def contains_zero(ci: Interval) -> bool:
    """A finite interval around 0."""
    return bool(np.all(np.isfinite(ci.as_tuple())) and ci.contains(0.0))


def excludes_zero(ci: Interval) -> bool:
    """A finite interval that misses 0."""
    return bool(np.all(np.isfinite(ci.as_tuple())) and ci.excludes(0.0))


def span(ci: Interval) -> list:
    """[low, high]: an interval as a check's tolerance."""
    return [ci.low, ci.high]


def zero_check(check_id: str, name: str, ci: Interval, criterion: str,
               kind: str = "statement") -> Check:
    """The core check 0 ∈ ``ci`` (finite): measured its estimate, tolerance its bounds; a
    statement resolves a log-ratio off 0 by more than the interval's half-width."""
    return Check(check_id, name, contains_zero(ci), measured=ci.estimate, tolerance=span(ci),
                 criterion=criterion, kind=kind, resolution=_resolution([ci], kind))


def family_check(check_id: str, name: str, holds: bool, cis: list, criterion: str,
                 core: bool = True, kind: str = "statement") -> Check:
    """A check judged on several intervals: measured their estimates, tolerance their bounds."""
    return Check(check_id, name, holds, core=core, measured=[ci.estimate for ci in cis],
                 tolerance=[span(ci) for ci in cis], criterion=criterion, kind=kind,
                 resolution=_resolution(cis, kind))


def _resolution(cis: list, kind: str) -> str:
    finite = [float(ci.halfwidth) for ci in cis if ci is not None and np.isfinite(ci.halfwidth)]
    if kind != "statement" or not finite:
        return ""
    return f"an angle off by > {100 * np.expm1(max(finite)):.1f} % (the widest interval)"


def controls_status(verdict) -> str:
    """The report's word for a verdict's controls (its ``control_rejected…`` checks): "rejected"
    when every one holds."""
    controls = [c for c in verdict.checks if c.id.startswith("control_rejected")]
    return "rejected" if all(c.holds for c in controls) else "NOT rejected"


def bounds(ci: Interval, digits: int = 3) -> str:
    """``[low, high]`` for a report table."""
    return f"[{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def number_id(value: float, spec: str = "g") -> str:
    """A number inside a check id: 0.9 → ``0_9``, 7.91e-05 → ``7_91e_05``."""
    return format(value, spec).replace(".", "_").replace("-", "_").replace("+", "")
