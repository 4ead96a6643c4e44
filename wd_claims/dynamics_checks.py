"""What the dynamics claims (C4–C8) share beyond the runs: float32 rounding bounds, block intervals.

- :func:`block_intervals` — per configuration (and tensor), the t-interval of the mean of a
  window's block means, Bonferroni over all of them (C4, C6, C8).
- :func:`plain_step_rounding` (C4) and :func:`coupled_step_rounding` (C8) — a-priori bounds of
  what float32 rounding of one SGD update can do to an exact identity: the only allowance the
  step criteria get (no tolerance contains the residual it judges).
- :func:`spiral_step_criteria` — C4's per-step identities of a λ = 0 run, and their intervals.
- :func:`tensor_sizes` — the entries of each tracked tensor, the n of those bounds' float64 sums.
- :func:`angle_blocks` — the terms of C8's per-step angle identity over a run's late window.
- :func:`concat_runs` — per-configuration columns of several runs (seeds), concatenated.
- :func:`fit_on_eta_lambda` — OLS of a per-configuration quantity on log ηλ and log η/λ (C8).
- :func:`fluctuation_bound` — C5's √(1+v) − 1 as a function of (c², η, λ) (C7, C8).
- :func:`probe_G` — G = ‖∇L(u)‖ of the joint column on one fixed batch, from a checkpoint (C4's
  measured cause: apart from the recorded per-step ‖g‖).
"""

from __future__ import annotations

import numpy as np

from wd_claims import stats, theory
from wd_claims.claim import derivation
from wd_claims.run_config import ALL_3X3
from wd_claims.series import LATE, series

LEVEL = 0.95


def block_intervals(blocks, level: float = LEVEL) -> np.ndarray:
    """(…, 3) (mean, low, high) for ``blocks`` (…, B): per leading entry, the t-interval of the
    mean of its B values (:func:`wd_claims.stats.ols`, intercept only), Bonferroni-corrected
    over every leading entry (the family judged together)."""
    b = np.asarray(blocks, dtype=float)
    family = int(np.prod(b.shape[:-1]))
    corrected = 1 - (1 - level) / family
    rows = [stats.ols(row, {}, level=corrected)["intercept"] for row in b.reshape(-1, b.shape[-1])]
    return np.array(rows).reshape(*b.shape[:-1], 3)


def plain_step_rounding(x, gnorm, eta, n_elements, u):
    """(…, T−1) a-priori bound on |Δx_t − η²‖g_t‖² + 2η⟨g_t, w_t⟩| for a plain λ = 0 step.

    v = fl(w − fl(η)·g) rounds η to the parameters' dtype, the product and the sum: ‖v − ṽ‖ ≤ e
    with e = γ₂η‖g‖ + u‖ṽ‖ (ṽ = w − ηg exact), so |‖v‖² − ‖ṽ‖²| ≤ 2‖ṽ‖e + e²; the float64 sums of
    n squares (x_t, x_{t+1}, ‖g‖²) add γ_n^{(64)}(x_t + x_{t+1} + η²‖g‖²). ‖ṽ‖ ≤ √x_{t+1} + e."""
    g2 = 2 * u / (1 - 2 * u)
    u64 = stats.unit_roundoff("float64")
    gam = n_elements * u64 / (1 - n_elements * u64)
    inc = eta**2 * gnorm[..., :-1] ** 2
    vn = np.sqrt(x[..., 1:])
    e = g2 * eta * gnorm[..., :-1] + u * vn
    e = e + u * e
    return 2 * (vn + e) * e + e**2 + gam * (x[..., 1:] + x[..., :-1] + inc)


def coupled_step_rounding(x_t, x_next, gnorm, eta, lam, dtype="float32"):
    """A-priori bound on |d_t| (C8's angle residual) from the update's rounding alone (C2 exact).

    PyTorch's step v = fl(w − η·fl(g + 2λw)) rounds each entry at most three times, so
    ‖v − ṽ‖ ≤ γ₃(‖w‖(1+2ηλ) + η‖g‖) =: e for the exact ṽ = (1−2ηλ)w − ηg. Moving v by e turns the
    unit vector by ≤ 2e/‖v‖ and ‖v‖ by ≤ e: |log cos θ − log cos θ̃| ≤ 2e/(‖v‖ cos θ̃) and
    |log ‖v‖ − log ‖ṽ‖| ≤ e/‖v‖ (to first order). The float64 metric sums add ~n·2⁻⁵³: negligible
    but included (n ≤ 1e7)."""
    u = stats.unit_roundoff(dtype)
    g3 = 3 * u / (1 - 3 * u)
    e = g3 * (np.sqrt(x_t) * (1 + 2 * eta * lam) + eta * gnorm) / np.sqrt(x_next)
    cos_pred = (1 - 2 * eta * lam) * np.sqrt(x_t / x_next)
    return 2 * e / cos_pred + e + 1e7 * np.finfo(np.float64).eps


def spiral_step_criteria(x, g, cos, eta, n_elements, u, n_blocks: int = 8) -> dict:
    """C4's per-step criteria on (K, P, T) series: plain-step ok (K, P), the ⟨g,w⟩ = 0 intervals
    (K, P, 3) and ok (K, P), monotone ok (K, P), the worst plain-step ratio, the relative bound."""
    eta = np.asarray(eta, float)[:, None, None]
    n = np.asarray(n_elements, float)[None, :, None]
    inc = eta**2 * g[..., :-1] ** 2
    resid = np.diff(x, axis=-1) - inc
    cross = 2 * eta * g[..., :-1] * np.sqrt(x[..., :-1]) * cos[..., :-1]
    bound = plain_step_rounding(x, g, eta, n, u)
    ratio = np.abs(resid + cross) / bound
    ci = block_intervals(stats.block_means(resid / inc, n_blocks))
    rel_bound = np.nanmax(bound / inc, axis=-1)
    return {"plain": np.nanmax(ratio, axis=-1) <= 1, "ci": ci, "rel_bound": rel_bound,
            "radial_ok": (ci[..., 1] - rel_bound <= 0) & (0 <= ci[..., 2] + rel_bound),
            "monotone": np.all(np.diff(x, axis=-1) >= -bound, axis=-1),
            "worst": float(np.nanmax(ratio))}


def tensor_sizes(result) -> np.ndarray:
    """Number of entries of each tracked tensor (from the shapes in the final checkpoint); the
    joint column (last) holds the 3x3 kernels among them, or all of them (its label says)."""
    state = result.checkpoints[max(result.checkpoints)][0]
    names = result.tensors[:-1]
    sizes = [int(np.prod(state[n].shape)) for n in names]
    in_joint = [result.tensors[-1] != ALL_3X3 or tuple(state[n].shape[-2:]) == (3, 3)
                for n in names]
    return np.array(sizes + [sum(s for s, j in zip(sizes, in_joint, strict=True) if j)])


def probe_G(result, k: int, step: int, x, y) -> tuple[float, float]:
    """(G, ‖w‖): G = ‖∇L‖·‖w‖ of the joint column (every tracked tensor the joint column holds), for
    configuration k's checkpoint at ``step``, on the fixed batch (x, y), BN in training mode,
    float64 sums: a scale-invariant quantity, measured apart from the recorded series."""
    import torch
    from torch.nn import functional as F

    model = result.model(k, step)
    params = dict(model.named_parameters())
    names = [n for n, size in zip(result.tensors[:-1], tensor_sizes(result)[:-1], strict=True)
             if result.tensors[-1] != ALL_3X3 or tuple(params[n].shape[-2:]) == (3, 3)
             if size]
    loss = F.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    g2 = sum(float(g.double().pow(2).sum()) for g in grads)
    w2 = sum(float(params[n].detach().double().pow(2).sum()) for n in names)
    return float(np.sqrt(g2 * w2)), float(np.sqrt(w2))


def fit_on_eta_lambda(y, eta, lam) -> stats.Fit:
    """OLS of ``y`` (one value per configuration) on log ηλ and log(η/λ), with an intercept."""
    return stats.ols(y, {"log(ηλ)": np.log(eta * lam), "log(η/λ)": np.log(eta / lam)})


def fluctuation_bound():
    """C5's a-priori fluctuation term √(1+v) − 1 (sympy, lambdified) as a function of
    (c², η, λ), c² = Var(G_t²)/G⁴: how far the stochastic steady state's mean sits above x*."""
    d = derivation(theory.c05_equilibrium)
    c2 = next(s for s in d.exprs["jensen_bias"].free_symbols if s.name == "c2")
    return d.fn("jensen_bias", c2, theory.eta, theory.lam)


def angle_blocks(result, n_blocks: int):
    """The terms of cos θ_t = ((1−2ηλ)x_t − η⟨g_t,w_t⟩)/(‖w_t‖‖w_{t+1}‖) over the late window
    (:data:`~wd_claims.series.LATE`), as block means (K, n): log cos θ_t, ½ log(x_t/x_{t+1}) and
    the radial term log(1 − η⟨g_t,w_t⟩/((1−2ηλ)x_t)) (0 when g ⟂ w); and the max over the window
    of :func:`coupled_step_rounding` (K,). A short run (the smoke budget's momentum control) gets
    fewer blocks, at least two."""
    eta, lam = np.asarray(result.config.etas), np.asarray(result.config.lams)
    x = series(result, "sqnorm")
    T = x.shape[1]
    t = np.arange(stats.late_window(T, LATE).start, T - 1)   # steps whose w_{t+1} is recorded
    logcos = np.log(series(result, "cos_step")[:, t])
    half = 0.5 * np.log(x[:, t] / x[:, t + 1])
    gnorm = series(result, "gnorm")[:, t]
    radial = np.log1p(-eta[:, None] * series(result, "cos_gw")[:, t] * gnorm
                      / ((1 - 2 * eta * lam)[:, None] * np.sqrt(x[:, t])))
    bound = coupled_step_rounding(x[:, t], x[:, t + 1], gnorm, eta[:, None], lam[:, None],
                                  result.config.dtype)
    n = min(n_blocks, max(2, len(t) // 2))
    return (stats.block_means(logcos, n), stats.block_means(half, n),
            stats.block_means(radial, n), np.nanmax(bound, axis=1))


def concat_runs(columns: list[dict]) -> dict:
    """One dict of per-configuration columns from one per run (the grid's seeds), each key's
    arrays concatenated along the configurations, in the runs' order."""
    return {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}
