"""C8 — the effective learning rate scales as √(ηλ) at fixed G; the step angle does regardless.

Article (Labatie 2020, section "Weight decay + scale invariance"): "the effective learning rate
η_e can be shown to scale as the square root of ηλ".

Expected (sympy, ``wd_claims.theory.c08_effective_lr``, from C5; docs/claims.md): η_e* = η/x* =
2√(ηλ(1−ηλ))/G, so η_e ∝ √(ηλ) only where G is fixed. What scales as √(ηλ) regardless of G is
the per-step angle: cos θ_t = (1−2ηλ)‖w_t‖/‖w_{t+1}‖ exactly (given C2), θ* = arccos(1−2ηλ).

Measurement: the Fig. 2 grid (``wd_claims.runs.grid_config``), last quarter of each run, all 3x3
kernels. (1) the per-step angle residual d_t = log cos θ_t − log(1−2ηλ) − ½ log(x_t/x_{t+1}),
block means over the window; (2) η_e = η/x̄ and G_eff = √(x̄·mean(G_t²/x_t)) (the G the map
x' = a²x + η²G²/x sees); OLS on log ηλ (and log η/λ) of log(η_e·G_eff/√(1−ηλ)), of log G_eff and of
the raw log η_e.

Criteria (core): per configuration, 0 ∈ the Bonferroni t-interval of the block means of d_t,
widened only by the a-priori float32 rounding bound of the update (see :func:`rounding_bound`);
½ ∈ the 95% t-interval of the G-divided slope. Non-core: the article's raw slope of log η_e is ½
(expected to miss where G moves with ηλ: the condition is the slope of log G_eff with an interval
excluding 0). No tolerance contains the residual it judges or the measured cos(g, w).

Control: exponents ¼ and 1 in the G-divided fit; the momentum run (``runs.momentum_config``)
under the same angle criterion.

Budget: quick — 384 steps of batch 16 at width 8, ηλ ∈ [1e-3, 0.1]; full — CIFAR-10, 100 epochs, 2
seeds.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import sympy as sp  # noqa: E402

from wd_claims import runs, setting, stats, theory  # noqa: E402
from wd_claims.judge import Check  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402

pytestmark = pytest.mark.c08
RADIAL_SHARE = 0.01  # g ⟂ w up to the normalization's ε: its radial term must stay below 1 % of
                     # the predicted log cos θ* (fixed before measuring; a radial component that
                     # matters to the angle, e.g. a missing normalization, exceeds it)

QUOTE = "the effective learning rate η_e can be shown to scale as the square root of ηλ"
WRONG_EXPONENTS = (0.25, 1.0)
N_BLOCKS = 8
LEVEL = 0.95


def rounding_bound(x_t, x_next, gnorm, eta, lam, dtype="float32"):
    """A-priori bound on |d_t| from the update's rounding alone (C2 exact).

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


def angle_series(result):
    """Per configuration over the late window: block means (K, N_BLOCKS) of log cos θ_t, of
    ½ log(x_t/x_{t+1}) and of the radial term log(1 − η⟨g_t,w_t⟩/((1−2ηλ)x_t)) (zero when
    g ⟂ w; the normalization's ε makes it small, not zero), and the max rounding bound (K,)."""
    eta, lam = np.asarray(result.config.etas), np.asarray(result.config.lams)
    x = runs.series(result, "sqnorm")
    T = x.shape[1]
    w = stats.late_window(T, runs.LATE)
    t = np.arange(w.start, T - 1)               # steps whose w_{t+1} is recorded
    logcos = np.log(runs.series(result, "cos_step")[:, t])
    half = 0.5 * np.log(x[:, t] / x[:, t + 1])
    gnorm = runs.series(result, "gnorm")[:, t]
    radial = np.log1p(-eta[:, None] * runs.series(result, "cos_gw")[:, t] * gnorm
                      / ((1 - 2 * eta * lam)[:, None] * np.sqrt(x[:, t])))
    bound = rounding_bound(x[:, t], x[:, t + 1], gnorm,
                           eta[:, None], lam[:, None], result.config.dtype)
    n = min(N_BLOCKS, max(2, len(t) // 2))  # a short run (the smoke budget's momentum control)
    return (stats.block_means(logcos, n), stats.block_means(half, n),  # gets fewer blocks
            stats.block_means(radial, n), np.nanmax(bound, axis=1))


def measure(results, momentum) -> dict:
    """Flat dict: per configuration (seeds concatenated) eta, lam, eta_e, G_eff, G_rms, the angle
    blocks, the rounding bound; the same angle blocks for the momentum run (``mom_*``)."""
    out = {k: [] for k in ("eta", "lam", "eta_e", "G_eff", "G_rms", "c2", "logcos", "half",
                           "radial", "round")}
    for r in results:
        x = runs.series(r, "sqnorm")
        w = stats.late_window(x.shape[1], runs.LATE)
        G = runs.grad_norm_on_sphere(r)[:, w]
        xbar = np.nanmean(x[:, w], axis=1)
        logcos, half, radial, bound = angle_series(r)
        out["eta"].append(np.asarray(r.config.etas))
        out["lam"].append(np.asarray(r.config.lams))
        out["eta_e"].append(np.asarray(r.config.etas) / xbar)
        out["G_eff"].append(np.sqrt(xbar * np.nanmean(G**2 / x[:, w], axis=1)))
        out["G_rms"].append(stats.rms(G))
        out["c2"].append(np.nanvar(G**2, axis=1) / np.nanmean(G**2, axis=1) ** 2)
        out["logcos"].append(logcos)
        out["half"].append(half)
        out["radial"].append(radial)
        out["round"].append(bound)
    m = {k: np.concatenate(v) for k, v in out.items()}
    logcos, half, radial, bound = angle_series(momentum)
    m.update(mom_eta=np.asarray(momentum.config.etas), mom_lam=np.asarray(momentum.config.lams),
             mom_logcos=logcos, mom_half=half, mom_radial=radial, mom_round=bound,
             momentum=float(momentum.config.momentum))
    return m


def angle_criterion(logcos, half, radial, bound, eta, lam):
    """Per configuration: (mean d, low, high) Bonferroni t-interval of the block means of
    d = log cos θ − log(1−2ηλ) − ½ log(x_t/x_{t+1}) − radial term, and whether
    0 ∈ [low − bound, high + bound]. The identity cos θ_t = ((1−2ηλ)x_t − η⟨g_t,w_t⟩)/
    (‖w_t‖‖w_{t+1}‖) is exact for any plain SGD step with coupled decay: what is left is
    rounding."""
    d = logcos - np.log(1 - 2 * eta * lam)[:, None] - half - radial
    level = 1 - (1 - LEVEL) / d.shape[0]
    cis = [stats.ols(row, {}, level=level)["intercept"] for row in d]
    holds = [lo - b <= 0 <= hi + b for (_, lo, hi), b in zip(cis, bound, strict=True)]
    return np.array(cis), np.array(holds)


def fit_on_eta_lambda(y, m):
    return stats.ols(y, {"log(ηλ)": np.log(m["eta"] * m["lam"]),
                         "log(η/λ)": np.log(m["eta"] / m["lam"])})


def _ci(fit, name="log(ηλ)"):
    return [round(v, 4) for v in fit[name]]


def judge(m: dict) -> Verdict:
    derivation = theory.c08_effective_lr()
    s = m["eta"] * m["lam"]
    corrected = derivation.exprs["eta_e_star"] * theory.G / sp.sqrt(1 - theory.s_el)
    half = float(sp.limit(theory.s_el * sp.diff(sp.log(corrected), theory.s_el), theory.s_el, 0))
    raw_pred = float(sp.limit(derivation.exprs["exponent_at_fixed_G"], theory.s_el, 0))
    theta_fn = derivation.fn("theta_star", theory.s_el)

    cis, holds = angle_criterion(m["logcos"], m["half"], m["radial"], m["round"], m["eta"],
                                 m["lam"])
    mom_cis, mom_holds = angle_criterion(m["mom_logcos"], m["mom_half"], m["mom_radial"],
                                         m["mom_round"], m["mom_eta"], m["mom_lam"])
    radial_share = np.max(np.abs(m["radial"]), axis=1) / np.abs(np.log(1 - 2 * s))
    fixed_G = fit_on_eta_lambda(np.log(m["eta_e"] * m["G_eff"] / np.sqrt(1 - s)), m)
    # C5's a-priori fluctuation bound: the stochastic steady state sits above x* by at most
    # √(1+v) − 1, v ∝ ηλ, which alone can tilt the slope by as much as its own slope on log ηλ
    c05 = theory.c05_equilibrium()
    c2_sym = next(x for x in c05.exprs["jensen_bias"].free_symbols if x.name == "c2")
    jensen = c05.fn("jensen_bias", c2_sym, theory.eta, theory.lam)(m["c2"], m["eta"], m["lam"])
    tilt = abs(fit_on_eta_lambda(np.log1p(jensen), m)["log(ηλ)"][0])
    _, slope_lo, slope_hi = fixed_G["log(ηλ)"]
    slope_ok = slope_lo - tilt <= half <= slope_hi + tilt
    raw = fit_on_eta_lambda(np.log(m["eta_e"]), m)
    g_fit = fit_on_eta_lambda(np.log(m["G_eff"]), m)
    wrong = {e: fixed_G.contains("log(ηλ)", e) for e in WRONG_EXPONENTS}
    theta_meas = np.arccos(np.exp(np.mean(m["logcos"], axis=1)))
    worst = int(np.argmax(np.abs(cis[:, 0]) - m["round"]))
    checks = [
        Check("per-step angle", bool(np.all(holds)),
              measured={"worst mean d": float(cis[worst, 0]),
                        "its interval": [float(cis[worst, 1]), float(cis[worst, 2])]},
              tolerance={"rounding bound": float(m["round"][worst])},
              criterion="per configuration, 0 ∈ Bonferroni 95% t-interval of block means of "
                        "d = log cos θ − log(1−2ηλ) − ½log(x_t/x_{t+1}), ± float32 rounding"),
        Check("g ⟂ w: the radial term is negligible", bool(np.all(radial_share <= RADIAL_SHARE)),
              measured={"max |radial term| / |log(1−2ηλ)|": float(radial_share.max())},
              tolerance=f"≤ {RADIAL_SHARE}",
              criterion="per configuration and block, the radial term moves log cos θ by less "
                        f"than {RADIAL_SHARE:.0%} of the predicted log cos θ* = log(1−2ηλ)"),
        Check("G divided out: slope ½", bool(slope_ok),
              measured=_ci(fixed_G), tolerance={"95% t-interval ± fluctuation tilt": tilt},
              criterion=f"{half} ∈ CI of the slope of log(η_e·G_eff/√(1−ηλ)) on log ηλ, "
                        "widened by the slope C5's fluctuation bound √(1+v)−1 has on log ηλ"),
        Check("wrong exponents rejected", not any(wrong.values()),
              measured={str(e): v for e, v in wrong.items()}, tolerance="95% t-interval",
              criterion="¼ and 1 ∉ the CI of the G-divided slope"),
        Check("control rejected", not bool(np.all(mom_holds)),
              measured={"momentum mean d": [round(float(v), 6) for v in mom_cis[0]]},
              tolerance={"rounding bound": float(m["mom_round"][0])},
              criterion="the momentum run misses the same angle criterion"),
        Check("raw η_e ∝ √(ηλ)", raw.contains("log(ηλ)", raw_pred), core=False,
              measured=_ci(raw), tolerance="95% t-interval",
              criterion=f"{raw_pred} ∈ CI of the slope of log η_e on log ηλ (the article's "
                        "statement, G not held fixed)"),
    ]
    conditions = [Check("G moves with ηλ", not g_fit.contains("log(ηλ)", 0.0),
                        measured=_ci(g_fit), tolerance="95% t-interval",
                        criterion="0 ∉ CI of the slope of log G_eff on log ηλ")]
    rows = ["| η | λ | ηλ | η_e = η/x̄ | G_eff | η_e·G_eff | 2√(ηλ(1−ηλ)) | mean d [CI] | "
            "θ measured | arccos(1−2ηλ) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {e:.3g} | {lam:.3g} | {e * lam:.2g} | {fmt(a)} | {fmt(g)} | {fmt(a * g)} | "
             f"{fmt(2 * np.sqrt(e * lam * (1 - e * lam)))} | {c[0]:.2e} [{c[1]:.2e}, {c[2]:.2e}] | "
             f"{fmt(t)} | {fmt(float(theta_fn(e * lam)))} |"
             for e, lam, a, g, c, t in zip(m["eta"], m["lam"], m["eta_e"], m["G_eff"], cis,
                                           theta_meas, strict=True)]
    hw = float(np.max((cis[:, 2] - cis[:, 1]) / 2 + m["round"]))
    return Verdict(
        id="C8", title="η_e·G ∝ √(ηλ); the per-step angle θ* = arccos(1−2ηλ)", quote=QUOTE,
        expected="cos θ_t = (1−2ηλ)‖w_t‖/‖w_{t+1}‖; slope of log(η_e G/√(1−ηλ)) on log ηλ = ½",
        derivation=derivation.text,
        predicted={"G divided out": half, "raw (fixed G)": raw_pred, "mean d": 0.0},
        measured={"headline": fixed_G["log(ηλ)"][0], "G divided out": _ci(fixed_G),
                  "raw η_e": _ci(raw), "G_eff": _ci(g_fit),
                  "max |mean d|": float(np.max(np.abs(cis[:, 0])))},
        tolerance={"slopes": "95% t-intervals", "angle": "Bonferroni t-interval ± rounding"},
        tolerance_reason="slopes: 95% t-intervals of OLS over the grid (wd_claims.stats.ols); "
                         f"angle: t-interval over {N_BLOCKS} blocks of the window per "
                         "configuration, Bonferroni over configurations, widened by the a-priori "
                         "float32 rounding bound of the update (γ₃ per entry)",
        checks=checks, conditions=conditions,
        control={"description": f"exponents ¼ and 1 in the G-divided fit; momentum "
                                f"{m['momentum']:g} (λ = 0) under the angle criterion",
                 "measured": {"wrong exponents inside CI": {str(e): v for e, v in wrong.items()},
                              "momentum mean d": [float(v) for v in mom_cis[0]]}},
        resolves=f"a per-step log-cosine shift of {hw:.1e} (a factor-2 slip of λ shifts it by "
                 f"2ηλ ≥ {2 * float(s.min()):.0e}); G-divided exponents ½ ± "
                 f"{fixed_G.halfwidth('log(ηλ)'):.3f}",
        tables=["\n".join(rows)],
        notes=[f"raw slope of log η_e: {_ci(raw)}; slope of log G_eff: {_ci(g_fit)}; with G "
               f"divided out: {_ci(fixed_G)}",
               "G_eff = √(x̄·mean(G²/x)) is the G of the map x' = (1−2ηλ)²x + η²G²/x averaged "
               "over the window (the RMS of G_t is recorded beside it as G_rms)"],
        context={"model": str(m.get("model", "resnet8"))})


def figure(m, suite):
    theta_fn = theory.c08_effective_lr().fn("theta_star", theory.s_el)
    s = m["eta"] * m["lam"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    ax[0].loglog(s, m["eta_e"], "o", label="η_e = η/x̄")
    ax[0].loglog(s, m["eta_e"] * m["G_eff"], "s", label="η_e·G_eff")
    grid = np.geomspace(s.min(), s.max(), 50)
    ax[0].loglog(grid, 2 * np.sqrt(grid * (1 - grid)), "k-", lw=1, label="2√(ηλ(1−ηλ)) (sympy)")
    ax[0].set(xlabel="ηλ", title="η_e: √(ηλ) only once G is divided out")
    ax[0].legend(fontsize=7)
    ax[1].loglog(s, np.arccos(np.exp(np.mean(m["logcos"], axis=1))), "o",
                 label="θ from the geometric-mean cos θ_t")
    ax[1].loglog(grid, theta_fn(grid), "k-", lw=1, label="arccos(1 − 2ηλ) (sympy)")
    ax[1].set(xlabel="ηλ", ylabel="per-step angle (rad)", title="the angle scales as √(ηλ)")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, suite.report_dir, f"C8-{m.get('model', 'resnet8')}.png")
    plt.close(fig)
    return path


@pytest.mark.models("resnet8")
def test_effective_lr_times_G_and_the_step_angle_scale_as_sqrt_eta_lambda(
        suite, images, record_verdict, model_spec):
    results = runs.results(suite, images, "grid", model_spec.name)
    (momentum,) = runs.results(suite, images, "momentum", model_spec.name)
    m = measure(results, momentum)
    m["model"] = model_spec.name
    v = judge(m)
    v.context["data"] = images[0].name
    v.figures = [figure(m, suite)]
    v.setting = setting.merge([setting.of_run(r.config, images[0].name) for r in results])
    record_verdict(v, measurements=m)
