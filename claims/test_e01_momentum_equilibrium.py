"""E1 — SGD with momentum under PyTorch's coupled decay: the equilibrium angle is √(2η·wd/(1+μ)).

Outside the article (it treats plain SGD; CLAIMS.md, "Momentum is outside the article"): Wan et al.
2021, "Spherical Motion Dynamics", for ``torch.optim.SGD(momentum=μ, weight_decay=wd)``, i.e.
buf ← μ·buf + g + wd·w, w ← w − η·buf, with wd = 2λ in the article's convention (λ‖w‖²).

Expected (sympy, ``wd_claims.theory.e01_momentum_equilibrium``): given only ⟨g_t, w_t⟩ = 0 (C2), the
inner products P_t = ⟨w_t, w_{t+1}⟩ obey P_t + μP_{t−1} = (1 + μ − η·wd)‖w_t‖² exactly, so at a
steady state (equal norms and angles from step to step) cos θ* = 1 − η·wd/(1+μ) and
θ* ≈ √(2η·wd/(1+μ)) (small angles). Where ‖w‖² still drifts by e^δ per step the same identity gives
cos θ = (1+μ−η·wd)/(e^{δ/2} + μe^{−δ/2}) — C8's boundary term generalised; δ is measured.

Measurement: the engine (``wd_claims.train``, PyTorch's SGD with momentum) on ResNet-8 at width 8
(CPU budgets) or the budget's width (full), μ ∈ {0.5, 0.9} × two (η, λ) of the budget's grid
(ηλ = 0.003, 0.01); the per-step cos θ_t of every scale-invariant tensor and of all 3x3 kernels
together (``cos_step``), its geometric mean over blocks of the last half of the run.

Criterion: per configuration, the block residuals log(θ_block/θ_pred(δ_block)) have a t-interval
(Bonferroni over the configurations, family-wise 95%) that contains 0, for all 3x3 kernels
together; per tensor the same is reported. The exact identity is checked step by step against
float32 rounding plus C2's ε term. Control: the plain-SGD prediction arccos(1 − 2ηλ) (C8, momentum
ignored; θ too large by √(1+μ)) must be rejected by the same interval for every configuration.

Budget: smoke — 96 steps; quick — 320 steps of batch 32 (stand-in data unless CIFAR-10 is
configured), ≈ 30 s on one core; full — 4,000 steps of batch 128 at width 16. Only the
scale-invariant tensors train at the CPU budgets (``budget.extra``, as the grid runs).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wd_claims import runs, stats, theory  # noqa: E402
from wd_claims.config import torch_weight_decay  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402
from wd_claims.train import ALL_3X3, TrainConfig  # noqa: E402

pytestmark = pytest.mark.e01

QUOTE = ("(outside the article) Wan et al. 2021: with momentum μ and weight decay wd the angular "
         "update converges to √(2η·wd/(1+μ))")
MOMENTA = (0.5, 0.9)
STEPS = {"smoke": 96, "quick": 320, "full": 4000}
CPU_WIDTH = 8        # CPU budgets: half-width ResNet-8 (the angle does not depend on the width)
INIT_SCALE = 0.5     # CPU budgets start at ‖w₀‖/2, nearer the fixed points (relaxation ≲ 40 steps)
WINDOW = 0.5         # the last half of the run: ≥ 4 long-time relaxation times (1−μ)/(8ηλ)
N_BLOCKS = 8         # replicates of the window for the t-interval
FAMILY_LEVEL = 0.95


def pairs(budget) -> list[tuple[float, float]]:
    """Two (η, λ) of the budget's grid at the middle η: ηλ = η·λ₀ and η·λ₁."""
    eta = budget.etas[len(budget.etas) // 2]
    return [(eta, budget.lams[0]), (eta, budget.lams[1])]


def config(budget, mu: float, data_name: str) -> TrainConfig:
    """One engine run: the two (η, λ) of :func:`pairs` with momentum μ (cached by its hash)."""
    cpu = budget.name != "full"
    ps = pairs(budget)
    return TrainConfig(etas=tuple(e for e, _ in ps), lams=tuple(lam for _, lam in ps),
                       steps=STEPS.get(budget.name, budget.steps), batch_size=budget.batch_size,
                       model="resnet8", width=CPU_WIDTH if cpu else budget.width,
                       seed=budget.seeds[0], momentum=mu, augment=budget.augment,
                       init_scales=(INIT_SCALE,) * len(ps) if cpu else None,
                       freeze_non_invariant=bool(budget.extra.get("freeze_non_invariant")),
                       evaluate=False, data=data_name, n_train=budget.n_train)


def blocks(n_steps: int) -> list[tuple[int, int]]:
    """N_BLOCKS consecutive [start, stop) ranges tiling the window's steps whose successor's norm
    is recorded (the last recorded step T−1 has no ‖w_T‖, so the window ends at T − 1)."""
    w = stats.late_window(n_steps, WINDOW)
    edges = np.linspace(w.start, n_steps - 1, N_BLOCKS + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:], strict=True))


def window_drift(x) -> float:
    """δ: the mean per-step change of log ‖w_t‖² over the window (x: (T,) ‖w_t‖²)."""
    spans = blocks(len(x))
    start, stop = spans[0][0], spans[-1][1]
    return float(np.log(x[stop] / x[start]) / (stop - start))


def block_residuals(cos, x, cos_pred):
    """(N_BLOCKS,) log(θ_block/θ_pred): θ_block = arccos of the geometric mean of cos θ_t over the
    block, θ_pred = arccos(cos_pred(δ)) at the window's drift δ (:func:`window_drift`; one δ for
    the window: a block's own drift is mostly noise). cos: (T,), x: (T,) ‖w_t‖²; cos_pred:
    δ ↦ predicted cos θ."""
    theta_pred = np.arccos(cos_pred(window_drift(x)))
    theta = [np.arccos(stats.geometric_mean(cos[start:stop])) for start, stop in blocks(len(cos))]
    return np.log(np.array(theta) / theta_pred)


def interval(residuals, level):
    """(mean, low, high): t-interval of the mean block residual (wd_claims.stats.ols)."""
    return stats.ols(residuals, {}, intercept=True, level=level)["intercept"]


def _contains_zero(ci) -> bool:
    return bool(ci[1] <= 0 <= ci[2])


def _excludes_zero(ci) -> bool:
    """True only for a finite interval that misses 0 (NaN never counts as a rejection)."""
    return bool(np.all(np.isfinite(ci[1:])) and not ci[1] <= 0 <= ci[2])


def identity_excess(result, k, p, mu):
    """max over steps of |(1+μ)X_t − P_t − μP_{t−1} − η·wd·X_t|/X_t minus C2's ε term
    η‖g_t‖|cos(g_t, w_t)|/‖w_t‖, in units of float32's u (rounding of w_t, w_{t+1})."""
    eta, lam = result.config.etas[k], result.config.lams[k]
    x = result.metrics["sqnorm"][k, :, p]
    P = result.metrics["cos_step"][k, :-1, p] * np.sqrt(x[:-1] * x[1:])
    resid = ((1 + mu) * x[1:-1] - P[1:] - mu * P[:-1]) / x[1:-1] - eta * torch_weight_decay(lam)
    g, cos_gw = result.metrics["gnorm"][k, 1:-1, p], result.metrics["cos_gw"][k, 1:-1, p]
    eps_term = eta * g * np.abs(cos_gw) / np.sqrt(x[1:-1])
    return float(np.nanmax(np.abs(resid) - eps_term)) / stats.unit_roundoff("float32")


def figure(rows, suite):
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    for mu, marker in zip(MOMENTA, "os", strict=True):
        sel = [r for r in rows if r["mu"] == mu]
        s = [r["eta"] * r["lam"] for r in sel]
        ax.plot(s, [r["theta"] for r in sel], marker, ms=8, label=f"measured, μ = {mu}")
        ax.plot(s, [r["theta_pred"] for r in sel], "k" + marker, mfc="none", ms=11,
                label=f"arccos(1 − η·wd/(1+μ)), μ = {mu}")
    grid = np.geomspace(min(r["eta"] * r["lam"] for r in rows) / 1.5,
                        max(r["eta"] * r["lam"] for r in rows) * 1.5, 40)
    ax.plot(grid, np.arccos(1 - 2 * grid), "r--", lw=1, label="plain SGD arccos(1−2ηλ) (control)")
    ax.set(xscale="log", yscale="log", xlabel="ηλ (wd = 2λ)", ylabel="per-step angle θ (rad)",
           title="momentum: the equilibrium angle shrinks by √(1+μ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure_path = save_figure(fig, suite.report_dir, "E1-resnet8.png")
    plt.close(fig)
    return figure_path


def test_momentum_sgd_equilibrium_angle_is_sqrt_of_2_eta_wd_over_1_plus_mu(
        suite, images, record_verdict):
    derivation = theory.e01_momentum_equilibrium()
    assert all(derivation.proved.values()), derivation.text
    cos_drift = derivation.fn("cos_drift", theory.eta, theory.lam, theory.mu, theory.delta)
    theta_star = derivation.fn("theta_star", theory.eta, theory.lam, theory.mu)
    theta_wan = derivation.fn("theta_wan", theory.eta, theory.lam, theory.mu)

    results = {mu: runs.run(suite, images, config(suite.budget, mu, images[0].name))
               for mu in MOMENTA}
    n_configs = sum(r.config.k for r in results.values())
    level = 1 - (1 - FAMILY_LEVEL) / n_configs          # Bonferroni: family-wise 95 %
    rows, per_tensor = [], []
    for mu, r in results.items():
        p_all = r.tensors.index(ALL_3X3)
        n_tensors = len(r.tensors) - 1
        tensor_level = 1 - (1 - FAMILY_LEVEL) / (n_configs * n_tensors)
        for k, (eta, lam) in enumerate(zip(r.config.etas, r.config.lams, strict=True)):
            def pred(d, eta=eta, lam=lam, mu=mu):
                return cos_drift(eta, lam, mu, d)

            def ctrl(d, eta=eta, lam=lam):
                return cos_drift(eta, lam, 0.0, d)   # μ = 0: C8's (1−2ηλ)e^{−δ/2}

            cos, x = r.metrics["cos_step"][k], r.metrics["sqnorm"][k]
            res = block_residuals(cos[:, p_all], x[:, p_all], pred)
            res_ctrl = block_residuals(cos[:, p_all], x[:, p_all], ctrl)
            window = stats.late_window(cos.shape[0], WINDOW)
            theta = float(np.arccos(stats.geometric_mean(cos[window, p_all][:-1])))
            m, lo, hi = interval(res, level)
            mc, loc, hic = interval(res_ctrl, level)
            inside = [_contains_zero(interval(block_residuals(cos[:, p], x[:, p], pred),
                                              tensor_level)) for p in range(n_tensors)]
            per_tensor.append(inside)
            rows.append(dict(
                mu=mu, eta=eta, lam=lam, theta=theta,
                theta_pred=float(theta_star(eta, lam, mu)),
                theta_wan=float(theta_wan(eta, lam, mu)),
                theta_ctrl=float(np.arccos(1 - 2 * eta * lam)), resid=(m, lo, hi),
                ctrl=(mc, loc, hic), ok=_contains_zero((m, lo, hi)),
                rejected=_excludes_zero((mc, loc, hic)),
                drift=float(np.log(x[-1, p_all] / x[window.start, p_all])),
                identity_u=identity_excess(r, k, p_all, mu),
                identity_u_plain=identity_excess(r, k, p_all, 0.0),
                tensors_inside=sum(inside), n_tensors=n_tensors))
    passed = all(r["ok"] for r in rows)
    angle_rejected = all(r["rejected"] for r in rows)
    # the identity: float32 rounding of w_t, w_{t+1} enters P_t, P_{t−1} and X_t once each, with
    # coefficients 1, μ, 1+μ (each ≤ u·X_t); 4(1+μ)u bounds the sum with margin
    identity_ok = all(r["identity_u"] <= 4 * (1 + r["mu"]) for r in rows)
    # the identity's control: the same runs read with μ = 0 (plain SGD's P_t = (1−2ηλ)X_t)
    identity_rejected = all(r["identity_u_plain"] > 4 for r in rows)
    rejected = angle_rejected and identity_rejected
    table = ["| μ | η | λ (wd = 2λ) | θ measured | arccos(1−η·wd/(1+μ)) | √(2η·wd/(1+μ)) | "
             "log(θ/θ_pred) CI | plain SGD θ (control) | control log-ratio CI | "
             "tensors inside | drift log(x_T/x_s) |", "|---" * 11 + "|"]
    table += [f"| {r['mu']} | {r['eta']:.3g} | {r['lam']:.3g} | {fmt(r['theta'])} | "
              f"{fmt(r['theta_pred'])} | {fmt(r['theta_wan'])} | "
              f"[{r['resid'][1]:.3f}, {r['resid'][2]:.3f}] | {fmt(r['theta_ctrl'])} | "
              f"[{r['ctrl'][1]:.3f}, {r['ctrl'][2]:.3f}] | "
              f"{r['tensors_inside']}/{r['n_tensors']} | {r['drift']:.3f} |" for r in rows]
    status = "pass" if passed and rejected and identity_ok else "fail"
    if status == "fail" and rejected and identity_ok and suite.budget.name == "smoke":
        status = "xfail"  # 96 steps: the window is too short to be an equilibrium
    reason = ("" if status == "pass" else
              f"{'smoke budget: ' if status == 'xfail' else ''}predicted angle outside the "
              f"interval for {[(r['mu'], r['eta'], r['lam']) for r in rows if not r['ok']]}; "
              f"control rejected: {rejected}; identity within rounding: {identity_ok}")
    record_verdict(Verdict(
        id="E1", title="momentum SGD (coupled wd = 2λ): θ* = arccos(1 − η·wd/(1+μ)) ≈ "
                       "√(2η·wd/(1+μ))", quote=QUOTE,
        expected="cos θ* = 1 − η·wd/(1+μ); drift-corrected (1+μ−η·wd)/(e^{δ/2} + μe^{−δ/2})",
        derivation=derivation.text,
        predicted={f"μ={r['mu']}, η={r['eta']:.3g}, λ={r['lam']:.3g}": r["theta_pred"]
                   for r in rows},
        measured={"headline": max(abs(r["resid"][0]) for r in rows),
                  "θ": {f"μ={r['mu']}, η={r['eta']:.3g}, λ={r['lam']:.3g}": r["theta"]
                        for r in rows},
                  "identity excess (units of u)": [r["identity_u"] for r in rows]},
        tolerance={"log(θ/θ_pred)": [list(r["resid"][1:]) for r in rows],
                   "identity (units of u)": [4 * (1 + r["mu"]) for r in rows]},
        tolerance_reason=f"t-interval over {N_BLOCKS} blocks of the last {WINDOW:.0%} of the run "
                         f"of log(θ_block/θ_pred(δ)), δ the window's drift, at level {level:.4f} "
                         f"(Bonferroni over {n_configs} configurations: family-wise "
                         f"{FAMILY_LEVEL:.0%}); the exact identity per step: C2's measured ε "
                         "term η‖g‖|cos(g,w)|/‖w‖ plus 4(1+μ)u float32 rounding of the parameters",
        status=status, reason=reason,
        control={"description": "plain-SGD prediction (momentum ignored, C8's drift-corrected "
                                "(1−2ηλ)e^{−δ/2}) in the same interval; the identity read "
                                "with μ = 0",
                 "measured": {"angle log-ratio CIs": [list(r["ctrl"]) for r in rows],
                              "identity read with μ = 0 (units of u, tolerance 4)":
                                  [r["identity_u_plain"] for r in rows]},
                 "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure(rows, suite)], tables=["\n".join(table)],
        notes=["PyTorch's SGD: buf ← μ·buf + g + wd·w, w ← w − η·buf, wd = 2λ "
               "(wd_claims.config.torch_weight_decay)",
               "sympy: ignoring momentum over-predicts the angle by √(1+μ) as ηλ → 0 "
               f"({', '.join(f'{np.sqrt(1 + mu):.3f} at μ = {mu}' for mu in MOMENTA)})",
               "per tensor: 'tensors inside' counts the scale-invariant tensors whose own "
               "interval (Bonferroni over every tensor and configuration) contains 0",
               "long-time relaxation ≈ (1−μ)/(8ηλ) steps (sympy: C5's rate at η/(1−μ))"],
        context={"model": f"resnet8 (width {results[MOMENTA[0]].config.width})",
                 "data": images[0].name, "steps": results[MOMENTA[0]].config.steps,
                 "optimizer": "torch.optim.SGD(momentum=μ, weight_decay=2λ)"}))
    if status == "xfail":
        pytest.xfail(reason)
    assert rejected, [r["ctrl"] for r in rows]
    assert identity_ok, [r["identity_u"] for r in rows]
    assert passed, [(r["mu"], r["eta"], r["lam"], r["resid"]) for r in rows]
