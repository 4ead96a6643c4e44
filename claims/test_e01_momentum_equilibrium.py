"""E1 — SGD with momentum under PyTorch's coupled decay: the equilibrium angle is √(2η·wd/(1+μ)).

Outside the article (it treats plain SGD; docs/claims.md, E1, "Momentum is outside the article"):
Wan et al. 2021, "Spherical Motion Dynamics", for ``torch.optim.SGD(momentum=μ, weight_decay=wd)``,
i.e. buf ← μ·buf + g + wd·w, w ← w − η·buf, with wd = 2λ in the article's convention (λ‖w‖²).

Expected (sympy, ``wd_claims.theory.e01_momentum_equilibrium``): for any gradient the inner
products P_t = ⟨w_t, w_{t+1}⟩ obey P_t + μP_{t−1} + η⟨g_t, w_t⟩ = (1 + μ − η·wd)‖w_t‖² exactly;
with ⟨g_t, w_t⟩ = 0 (C2) a steady state has cos θ* = 1 − η·wd/(1+μ), θ* ≈ √(2η·wd/(1+μ)).
Where ‖w‖² still drifts by e^δ per step, cos θ = (1+μ−η·wd)/(e^{δ/2} + μe^{−δ/2}); δ is measured.

Measurement: the engine (``wd_claims.train``, PyTorch's SGD) on ResNet-8 at width 8 (CPU budgets;
the report's setting says so) or the budget's width (full), μ ∈ {0, 0.9} × two (η, λ) of the
budget's grid (ηλ = 0.00316, 0.01); the per-step cos θ_t of all 3x3 kernels together.

Criterion (core, per configuration): the block residuals log(θ_block/θ_pred(δ)) over 8 blocks of
the last half of the run have a t-interval (Bonferroni over the configurations, family-wise 95 %)
that contains 0 — the tolerance is that confidence interval. Core too: the update-rule identity
above, step by step, within float32 rounding of the stored weights, 2(1+μ)u (derived in
:func:`identity_bound`; nothing measured enters it). Controls (at μ > 0, the same criteria): the
plain-SGD prediction arccos((1−2ηλ)e^{−δ/2}) (momentum ignored; θ too large by √(1+μ)) must miss
the interval, and the identity read with μ = 0 must exceed its rounding bound.

Budget: smoke — 96 steps; quick — 320 steps of batch 16 (stand-in data unless CIFAR-10 is
configured); full — 4,000 steps of batch 128 at width 16. Only the scale-invariant tensors train at
the CPU budgets (``budget.extra``, as the grid runs). No budget is excused: a miss is a FAIL.
"""

import functools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wd_claims import runs, setting, stats, theory  # noqa: E402
from wd_claims.config import torch_weight_decay  # noqa: E402
from wd_claims.judge import Check  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402
from wd_claims.train import TrainConfig  # noqa: E402

pytestmark = pytest.mark.e01

QUOTE = ("(outside the article) Wan et al. 2021: with momentum μ and weight decay wd the angular "
         "update converges to √(2η·wd/(1+μ))")
MOMENTA = (0.0, 0.9)  # μ = 0: plain SGD, the formula's μ → 0 end (and the fault tests' data)
STEPS = {"smoke": 96, "quick": 320, "full": 4000}
CPU_WIDTH = 8        # CPU budgets: half-width ResNet-8 (the angle does not depend on the width)
INIT_SCALE = 0.5     # CPU budgets start at ‖w₀‖/2, nearer the fixed points (relaxation ≲ 40 steps)
WINDOW = 0.5         # the last half of the run
N_BLOCKS = 8         # replicates of the window for the t-interval
FAMILY_LEVEL = 0.95
U32 = stats.unit_roundoff("float32")


def pairs(budget) -> list[tuple[float, float]]:
    """Two (η, λ) of the budget's grid at the middle η: ηλ = η·λ₀ and η·λ₁."""
    eta = budget.etas[len(budget.etas) // 2]
    return [(eta, budget.lams[0]), (eta, budget.lams[1])]


def config(budget, mu: float, data_name: str, model: str = "resnet8") -> TrainConfig:
    """One engine run: the two (η, λ) of :func:`pairs` with momentum μ (cached by its hash)."""
    cpu = budget.name != "full"
    ps = pairs(budget)
    return TrainConfig(etas=tuple(e for e, _ in ps), lams=tuple(lam for _, lam in ps),
                       steps=budget.cap_steps(STEPS.get(budget.name, budget.steps)),
                       batch_size=budget.batch_size,
                       model=model, width=CPU_WIDTH if cpu else budget.width,
                       seed=budget.seeds[0], momentum=mu, augment=budget.augment,
                       init_scales=(INIT_SCALE,) * len(ps) if cpu else None,
                       freeze_non_invariant=bool(budget.extra.get("freeze_non_invariant")),
                       evaluate=False, data=data_name, n_train=budget.n_train)


runs.register("E1", lambda suite, images, model: [config(suite.budget, mu, images[0].name, model)
                                                   for mu in MOMENTA])


# --- measure ---------------------------------------------------------------------------------

def measure(suite, images, model: str = "resnet8") -> dict:
    """Train one engine run per μ (two (η, λ) each) and keep, per configuration (row r) and
    step, the series of all 3x3 kernels together: cos θ_t, x_t = ‖w_t‖², ‖g_t‖, cos(g_t, w_t),
    and cos θ_t, x_t per tensor ((R, T, P) arrays)."""
    rows = {k: [] for k in ("mu", "eta", "lam", "cos", "x", "gnorm", "cos_gw", "cos_p", "x_p")}
    tensors = []
    for mu in MOMENTA:
        r = runs.run(suite, images, config(suite.budget, mu, images[0].name, model))
        p_all = len(r.tensors) - 1                  # the joint column (all 3x3 kernels)
        tensors = list(r.tensors[:-1])
        others = [r.tensors.index(t) for t in tensors]
        for k, (eta, lam) in enumerate(zip(r.config.etas, r.config.lams, strict=True)):
            rows["mu"].append(mu)
            rows["eta"].append(eta)
            rows["lam"].append(lam)
            for key, metric in (("cos", "cos_step"), ("x", "sqnorm"), ("gnorm", "gnorm"),
                                ("cos_gw", "cos_gw")):
                rows[key].append(r.metrics[metric][k, :, p_all])
            rows["cos_p"].append(r.metrics["cos_step"][k][:, others])
            rows["x_p"].append(r.metrics["sqnorm"][k][:, others])
    out = {k: np.asarray(v, dtype=float) for k, v in rows.items()}
    out.update(tensors=np.asarray(tensors), model=model, data=images[0].name,
               width=config(suite.budget, 0.0, images[0].name, model).width)
    return out


# --- judge -----------------------------------------------------------------------------------

@functools.cache
def derivation():
    d = theory.e01_momentum_equilibrium()
    if not all(d.proved.values()):
        raise AssertionError(d.text)
    return d


def blocks(n_steps: int) -> list[tuple[int, int]]:
    """N_BLOCKS consecutive [start, stop) ranges tiling the window's steps whose successor's norm
    is recorded (the last recorded step T−1 has no ‖w_T‖, so the window ends at T − 1)."""
    return stats.block_edges(stats.late_window(n_steps, WINDOW).start, n_steps - 1, N_BLOCKS)


def window_drift(x) -> float:
    """δ: the mean per-step change of log ‖w_t‖² over the window (x: (T,) ‖w_t‖²)."""
    spans = blocks(len(x))
    start, stop = spans[0][0], spans[-1][1]
    return float(np.log(x[stop] / x[start]) / (stop - start))


def angle_interval(cos, x, cos_pred, level):
    """The criterion: (mean, low, high), the t-interval (wd_claims.stats.ols) of the block
    residuals log(θ_block/θ_pred(δ)); θ_block = arccos of the geometric mean of cos θ_t over a
    block, θ_pred = arccos(cos_pred(δ)) at the window's drift δ. cos, x: (T,)."""
    theta_pred = np.arccos(cos_pred(window_drift(x)))
    theta = [np.arccos(stats.geometric_mean(cos[s:e])) for s, e in blocks(len(cos))]
    return stats.ols(np.log(np.array(theta) / theta_pred), {}, intercept=True,
                     level=level)["intercept"]


def contains_zero(ci) -> bool:
    return bool(np.all(np.isfinite(ci)) and ci[1] <= 0 <= ci[2])


def identity_residual(m, r, mu) -> float:
    """max over steps t ≥ 1 of |(1+μ−η·wd)X_t − P_t − μP_{t−1} − η⟨g_t, w_t⟩|/X_t in units of
    float32's u, for row r read with momentum ``mu`` (P_t = cos θ_t·√(X_t X_{t+1}))."""
    eta, wd = m["eta"][r], torch_weight_decay(m["lam"][r])
    x, cos = m["x"][r], m["cos"][r]
    P = cos[:-1] * np.sqrt(x[:-1] * x[1:])
    gw = m["cos_gw"][r, 1:-1] * m["gnorm"][r, 1:-1] * np.sqrt(x[1:-1])
    resid = (1 + mu - eta * wd) * x[1:-1] - P[1:] - mu * P[:-1] - eta * gw
    return float(np.nanmax(np.abs(resid) / x[1:-1])) / U32


def identity_bound(mu) -> float:
    """The identity's float32 rounding bound in units of u (fixed before measuring): the stored
    w_{t+1} and w_t each carry one rounding |δw_i| ≤ u|w_i|, entering P_t and μP_{t−1}, so by
    Cauchy–Schwarz ≤ (1+μ)u·√(X_{t±1}/X_t); the buffer's roundings enter multiplied by η, i.e.
    relative O(uθ) ≪ u; the float64 sums add ~n·2⁻⁵³ ≪ u. ×2 covers the norm ratio and O(uθ)."""
    return 2 * (1 + mu)


def judge(m: dict, derivation_=None) -> Verdict:
    d = derivation_ or derivation()
    cos_drift = d.fn("cos_drift", theory.eta, theory.lam, theory.mu, theory.delta)
    theta_star = d.fn("theta_star", theory.eta, theory.lam, theory.mu)
    n_rows = len(m["mu"])
    level = 1 - (1 - FAMILY_LEVEL) / n_rows             # Bonferroni: family-wise 95 %
    n_tensors = m["cos_p"].shape[2]
    tensor_level = 1 - (1 - FAMILY_LEVEL) / (n_rows * n_tensors)
    rows = []
    for r in range(n_rows):
        mu, eta, lam = float(m["mu"][r]), float(m["eta"][r]), float(m["lam"][r])

        def pred(dl, eta=eta, lam=lam, mu=mu):
            return cos_drift(eta, lam, mu, dl)

        def ctrl(dl, eta=eta, lam=lam):
            return cos_drift(eta, lam, 0.0, dl)      # μ ignored: C8's (1−2ηλ)e^{−δ/2}

        cos, x = m["cos"][r], m["x"][r]
        window = stats.late_window(len(cos), WINDOW)
        ci = angle_interval(cos, x, pred, level)
        inside = [contains_zero(angle_interval(m["cos_p"][r, :, p], m["x_p"][r, :, p], pred,
                                               tensor_level)) for p in range(n_tensors)]
        rows.append(dict(
            mu=mu, eta=eta, lam=lam, ci=ci, ok=contains_zero(ci),
            ctrl=angle_interval(cos, x, ctrl, level) if mu > 0 else None,
            theta=float(np.arccos(stats.geometric_mean(cos[window][:-1]))),
            theta_pred=float(theta_star(eta, lam, mu)),
            theta_ctrl=float(np.arccos(1 - 2 * eta * lam)),
            drift=float(np.log(x[-1] / x[window.start])),
            identity_u=identity_residual(m, r, mu), bound=identity_bound(mu),
            identity_plain=identity_residual(m, r, 0.0) if mu > 0 else None,
            tensors_inside=sum(inside), n_tensors=n_tensors))
    label = [f"μ={r['mu']:g}, ηλ={r['eta'] * r['lam']:.3g}" for r in rows]
    criterion = (f"0 ∈ the {level:.4f} t-interval of mean log(θ_block/θ_pred(δ)) over {N_BLOCKS} "
                 f"blocks of the last {WINDOW:.0%}")
    checks = [Check(f"angle {lab}", r["ok"], measured=r["ci"][0], tolerance=list(r["ci"][1:]),
                    criterion=criterion) for lab, r in zip(label, rows, strict=True)]
    checks.append(Check(
        "update-rule identity", all(r["identity_u"] <= r["bound"] for r in rows),
        measured=[r["identity_u"] for r in rows], tolerance=[r["bound"] for r in rows],
        criterion="max_t |(1+μ−η·wd)X_t − P_t − μP_{t−1} − η⟨g_t,w_t⟩|/X_t ≤ 2(1+μ)u "
                  "(units of float32's u)"))
    mom = [r for r in rows if r["mu"] > 0]
    ctrl_angle = [not contains_zero(r["ctrl"]) and bool(np.all(np.isfinite(r["ctrl"])))
                  for r in mom]
    ctrl_identity = [r["identity_plain"] > identity_bound(0.0) for r in mom]
    checks += [
        Check("control rejected: plain-SGD angle", bool(mom) and all(ctrl_angle),
              measured=[r["ctrl"][0] for r in mom], tolerance=[list(r["ctrl"][1:]) for r in mom],
              criterion="the same interval, for arccos((1−2ηλ)e^{−δ/2}) (μ ignored), must miss 0 "
                        "at every μ > 0"),
        Check("control rejected: identity read with μ = 0", bool(mom) and all(ctrl_identity),
              measured=[r["identity_plain"] for r in mom], tolerance=identity_bound(0.0),
              criterion="the same identity with μ = 0 must exceed its rounding bound 2u")]
    halfwidth = max((r["ci"][2] - r["ci"][1]) / 2 for r in rows)
    table = ["| μ | η | λ (wd = 2λ) | θ measured | arccos(1−η·wd/(1+μ)) | log(θ/θ_pred) CI | "
             "plain SGD θ (control) | control log-ratio CI | identity /u (bound) | "
             "tensors inside | drift log(x_T/x_s) |", "|---" * 11 + "|"]
    table += [f"| {r['mu']:g} | {r['eta']:.3g} | {r['lam']:.3g} | {fmt(r['theta'])} | "
              f"{fmt(r['theta_pred'])} | [{r['ci'][1]:.3f}, {r['ci'][2]:.3f}] | "
              f"{fmt(r['theta_ctrl'])} | "
              + (f"[{r['ctrl'][1]:.3f}, {r['ctrl'][2]:.3f}]" if r["ctrl"] is not None else "= θ*")
              + f" | {r['identity_u']:.2g} ({r['bound']:g}) | "
              f"{r['tensors_inside']}/{r['n_tensors']} | {r['drift']:.3f} |" for r in rows]
    controls = [c for c in checks if c.name.startswith("control rejected")]
    rejected = "rejected" if all(c.holds for c in controls) else "NOT rejected"
    return Verdict(
        id="E1", title="momentum SGD (coupled wd = 2λ): θ* = arccos(1 − η·wd/(1+μ)) ≈ "
                       "√(2η·wd/(1+μ))", quote=QUOTE,
        expected="cos θ* = 1 − η·wd/(1+μ); drift-corrected (1+μ−η·wd)/(e^{δ/2} + μe^{−δ/2})",
        derivation=d.text,
        predicted=dict(zip(label, [r["theta_pred"] for r in rows], strict=True)),
        measured={"headline": max(abs(r["ci"][0]) for r in rows),
                  "θ": dict(zip(label, [r["theta"] for r in rows], strict=True)),
                  "identity residual (units of u)": [r["identity_u"] for r in rows]},
        tolerance={"log(θ/θ_pred)": [list(r["ci"][1:]) for r in rows],
                   "identity (units of u)": [r["bound"] for r in rows]},
        tolerance_reason=f"t-interval over {N_BLOCKS} blocks of the last {WINDOW:.0%} of the run "
                         f"of log(θ_block/θ_pred(δ)), δ the window's drift, at level {level:.4f} "
                         f"(Bonferroni over {n_rows} configurations: family-wise "
                         f"{FAMILY_LEVEL:.0%}); the update-rule identity (exact for any g, "
                         "sympy): float32 rounding of the stored weights, 2(1+μ)u "
                         "(identity_bound)",
        checks=checks,
        control={"status": rejected,
                 "description": "plain-SGD prediction (momentum ignored, C8's drift-corrected "
                                "(1−2ηλ)e^{−δ/2}) in the same interval; the identity read "
                                "with μ = 0; both at every μ > 0",
                 "measured": {"angle log-ratio CIs": [list(r["ctrl"]) for r in mom],
                              "identity read with μ = 0 (units of u, bound 2)":
                                  [r["identity_plain"] for r in mom]}},
        resolves=f"log(θ/θ*) to ±{halfwidth:.3f} per configuration (θ within "
                 f"{np.expm1(halfwidth):.1%}; μ ignored is off by log √1.9 = 0.32 at μ = 0.9); "
                 "the identity to 2(1+μ)·6e-8 relative",
        tables=["\n".join(table)],
        notes=["PyTorch's SGD: buf ← μ·buf + g + wd·w, w ← w − η·buf, wd = 2λ "
               "(wd_claims.config.torch_weight_decay)",
               "sympy: ignoring momentum over-predicts the angle by √(1+μ) as ηλ → 0 "
               f"({np.sqrt(1 + MOMENTA[-1]):.3f} at μ = {MOMENTA[-1]})",
               "μ = 0 is C8's plain SGD, the formula's μ → 0 end; the controls are judged at μ > 0",
               "the identity P_t + μP_{t−1} + η⟨g_t,w_t⟩ = (1+μ−η·wd)X_t holds for any g (it "
               "checks the update rule and its μ, wd); orthogonality ⟨g,w⟩ = 0 is C2's claim",
               "per tensor: 'tensors inside' counts the scale-invariant tensors whose own "
               "interval (Bonferroni over every tensor and configuration) contains 0; reported, "
               "not judged",
               "long-time relaxation ≈ (1−μ)/(8ηλ) steps (sympy: C5's rate at η/(1−μ))"],
        context={"model": str(m["model"]), "data": m["data"], "steps": int(m["cos"].shape[1]),
                 "width": int(m["width"]),
                 "optimizer": "torch.optim.SGD(momentum=μ, weight_decay=2λ)"})


def figure(m, v, report_dir):
    d = derivation()
    theta_star = d.fn("theta_star", theory.eta, theory.lam, theory.mu)
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    theta = list(v.measured["θ"].values())
    for mu, marker in zip(MOMENTA, "os", strict=True):
        sel = [i for i, x in enumerate(m["mu"]) if x == mu]
        s = [m["eta"][i] * m["lam"][i] for i in sel]
        ax.plot(s, [theta[i] for i in sel], marker, ms=8, label=f"measured, μ = {mu:g}")
        ax.plot(s, [theta_star(m["eta"][i], m["lam"][i], mu) for i in sel], "k" + marker,
                mfc="none", ms=11, label=f"arccos(1 − η·wd/(1+μ)), μ = {mu:g}")
    grid = np.geomspace(min(m["eta"] * m["lam"]) / 1.5, max(m["eta"] * m["lam"]) * 1.5, 40)
    ax.plot(grid, np.arccos(1 - 2 * grid), "r--", lw=1, label="plain SGD arccos(1−2ηλ) (control)")
    ax.set(xscale="log", yscale="log", xlabel="ηλ (wd = 2λ)", ylabel="per-step angle θ (rad)",
           title="momentum: the equilibrium angle shrinks by √(1+μ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, report_dir, f"E1-{m['model']}.png")
    plt.close(fig)
    return path


@pytest.mark.models("resnet8")
def test_momentum_sgd_equilibrium_angle_is_sqrt_of_2_eta_wd_over_1_plus_mu(
        suite, images, record_verdict, model_spec):
    m = measure(suite, images, model_spec.name)
    v = judge(m)
    v.figures = [figure(m, v, suite.report_dir)]
    v.setting = setting.merge([setting.of_run(config(suite.budget, mu, images[0].name,
                                                     model_spec.name), images[0].name)
                               for mu in MOMENTA])
    record_verdict(v, measurements=m)
