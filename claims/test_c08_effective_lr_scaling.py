"""C8 — the effective learning rate scales as √(ηλ) at fixed G; the step angle does regardless.

Sympy (``theory.c08_effective_lr``, from C5; docs/claims.md): η_e* = η/x* = 2√(ηλ(1−ηλ))/G, ∝ √(ηλ)
only at fixed G; cos θ_t = (1−2ηλ)‖w_t‖/‖w_{t+1}‖ exactly (given C2), θ* = arccos(1−2ηλ).

Measured on the grid's last quarter, all 3x3 kernels: d_t = log cos θ_t − log(1−2ηλ) −
½ log(x_t/x_{t+1}) − radial term; η_e = η/x̄, G_eff = √(x̄·mean(G_t²/x_t)).
Identities: 0 ∈ each configuration's Bonferroni t-interval of d ± float32 rounding only; ½ ∈ the
t-interval (± C5's fluctuation tilt) of the slope of log(η_e·G_eff/√(1−ηλ)) on log ηλ. Premise:
the radial term < 1 % of log(1−2ηλ). The article's statement: the raw slope of log η_e is ½
(expected to miss where G moves with ηλ). Control: exponents ¼, 1; the momentum run.
"""

import numpy as np
import sympy as sp

from wd_claims import dynamics_checks as dyn
from wd_claims import stats, theory
from wd_claims.claim import Claim, Judgement, Presentation, canvas, derivation
from wd_claims.series import LATE, grad_norm_on_sphere, series
from wd_claims.verdict import Check, fmt

CLAIM = Claim(
    id="C8", title="η_e·G ∝ √(ηλ); the per-step angle θ* = arccos(1−2ηλ)",
    quote="the effective learning rate η_e can be shown to scale as the square root of ηλ",
    derive=theory.c08_effective_lr, models=("resnet8",), shared_runs=True,
    expected_failures=("raw_eta_e_sqrt",))
RADIAL_SHARE = 0.01  # g ⟂ w up to the normalization's ε; a missing normalization exceeds it
WRONG_EXPONENTS = (0.25, 1.0)
N_BLOCKS = 8
ANGLE = ("logcos", "half", "radial", "round")   # the angle identity's terms (angle_blocks)


def measure(ctx, model) -> dict:
    """Per configuration (seeds concatenated) η, λ, η_e, G's, c², the angle blocks; ``mom_*``."""
    results = ctx.results("grid", model.name)
    (momentum,) = ctx.results("momentum", model.name)
    ctx.stands_on_runs(results)

    def columns(r):
        x = series(r, "sqnorm")
        w = stats.late_window(x.shape[1], LATE)
        G = grad_norm_on_sphere(r)[:, w]
        xbar = np.nanmean(x[:, w], axis=1)
        eta = np.asarray(r.config.etas)
        return {"eta": eta, "lam": np.asarray(r.config.lams), "eta_e": eta / xbar,
                "G_eff": np.sqrt(xbar * np.nanmean(G**2 / x[:, w], axis=1)), "G_rms": stats.rms(G),
                "c2": np.nanvar(G**2, axis=1) / np.nanmean(G**2, axis=1) ** 2,
                **dict(zip(ANGLE, dyn.angle_blocks(r, N_BLOCKS), strict=True))}

    mom = {"eta": momentum.config.etas, "lam": momentum.config.lams,
           **dict(zip(ANGLE, dyn.angle_blocks(momentum, N_BLOCKS), strict=True))}
    return {**dyn.concat_runs([columns(r) for r in results]),
            **{f"mom_{k}": np.asarray(v) for k, v in mom.items()},
            "momentum": float(momentum.config.momentum), "model": model.name}


def angle_criterion(m: dict, run: str = ""):
    """Per configuration of the grid (``run`` "") or the momentum run ("mom_"): the Bonferroni
    t-interval (mean, low, high) of the block means of d = log cos θ − log(1−2ηλ) − ½ log(x_t/
    x_{t+1}) − radial term (exact for plain SGD with coupled decay: what is left is rounding), and
    whether 0 ∈ [low − bound, high + bound]."""
    logcos, half, radial, bound = (m[run + k] for k in ANGLE)
    cis = dyn.block_intervals(logcos - np.log(1 - 2 * m[run + "eta"] * m[run + "lam"])[:, None]
                          - half - radial)
    return cis, (cis[:, 1] - bound <= 0) & (0 <= cis[:, 2] + bound)


def _ci(fit, name="log(ηλ)"):
    return [round(v, 4) for v in fit[name]]


def analysis(m: dict) -> dict:
    """Sympy's slopes, the angle criteria, the fits on log ηλ, and the tilt C5's fluctuation bound
    √(1+v) − 1 (v ∝ ηλ) alone can give the G-divided slope."""
    d = derivation(theory.c08_effective_lr)
    s, eta, lam = m["eta"] * m["lam"], m["eta"], m["lam"]
    corrected = d.exprs["eta_e_star"] * theory.G / sp.sqrt(1 - theory.s_el)
    divided = m["eta_e"] * m["G_eff"] / np.sqrt(1 - s)          # η_e·G_eff/√(1−ηλ)
    a = {"s": s, "theta_fn": d.fn("theta_star", theory.s_el),
         "half": float(sp.limit(theory.s_el * sp.diff(sp.log(corrected), theory.s_el),
                                theory.s_el, 0)),
         "raw_pred": float(sp.limit(d.exprs["exponent_at_fixed_G"], theory.s_el, 0)),
         "fixed_G": dyn.fit_on_eta_lambda(np.log(divided), eta, lam),
         "raw": dyn.fit_on_eta_lambda(np.log(m["eta_e"]), eta, lam),
         "g_fit": dyn.fit_on_eta_lambda(np.log(m["G_eff"]), eta, lam)}
    a["cis"], a["holds"] = angle_criterion(m)
    a["mom_cis"], a["mom_holds"] = angle_criterion(m, "mom_")
    a["radial_share"] = np.max(np.abs(m["radial"]), axis=1) / np.abs(np.log(1 - 2 * s))
    jensen = dyn.fluctuation_bound()(m["c2"], eta, lam)
    a["tilt"] = abs(dyn.fit_on_eta_lambda(np.log1p(jensen), eta, lam)["log(ηλ)"][0])
    a["wrong"] = {str(e): a["fixed_G"].contains("log(ηλ)", e) for e in WRONG_EXPONENTS}
    return a


def judge(m: dict) -> Judgement:
    a = analysis(m)
    cis, fixed_G, raw, tilt, half = a["cis"], a["fixed_G"], a["raw"], a["tilt"], a["half"]
    _, slope_lo, slope_hi = fixed_G["log(ηλ)"]
    worst = int(np.argmax(np.abs(cis[:, 0]) - m["round"]))
    return Judgement([
        Check("step_angle", "per-step angle", bool(np.all(a["holds"])),
              measured={"worst mean d": float(cis[worst, 0]),
                        "its interval": [float(cis[worst, 1]), float(cis[worst, 2])]},
              tolerance={"rounding bound": float(m["round"][worst])},
              criterion="per configuration, 0 ∈ Bonferroni 95% t-interval of block means of "
                        "d = log cos θ − log(1−2ηλ) − ½log(x_t/x_{t+1}), ± float32 rounding",
              kind="identity"),
        Check("radial_term_negligible", "g ⟂ w: the radial term is negligible",
              bool(np.all(a["radial_share"] <= RADIAL_SHARE)),
              measured={"max |radial term| / |log(1−2ηλ)|": float(a["radial_share"].max())},
              tolerance=f"≤ {RADIAL_SHARE}",
              criterion="per configuration and block, the radial term moves log cos θ by less "
                        f"than {RADIAL_SHARE:.0%} of the predicted log cos θ* = log(1−2ηλ)",
              kind="premise"),
        Check("slope_half_G_divided", "G divided out: slope ½",
              bool(slope_lo - tilt <= half <= slope_hi + tilt),
              measured=_ci(fixed_G), tolerance={"95% t-interval ± fluctuation tilt": tilt},
              criterion=f"{half} ∈ CI of the slope of log(η_e·G_eff/√(1−ηλ)) on log ηλ, "
                        "widened by the slope C5's fluctuation bound √(1+v)−1 has on log ηλ",
              kind="identity"),
        Check("wrong_exponents_rejected", "wrong exponents rejected", not any(a["wrong"].values()),
              measured=a["wrong"], tolerance="95% t-interval",
              criterion="¼ and 1 ∉ the CI of the G-divided slope", kind="control"),
        Check("control_rejected", "control rejected", not bool(np.all(a["mom_holds"])),
              measured={"momentum mean d": [round(float(v), 6) for v in a["mom_cis"][0]]},
              tolerance={"rounding bound": float(m["mom_round"][0])},
              criterion="the momentum run misses the same angle criterion", kind="control"),
        Check("raw_eta_e_sqrt", "raw η_e ∝ √(ηλ)", raw.contains("log(ηλ)", a["raw_pred"]),
              core=False, measured=_ci(raw), tolerance="95% t-interval",
              criterion=f"{a['raw_pred']} ∈ CI of the slope of log η_e on log ηλ (the article's "
                        "statement, G not held fixed)",
              resolution=f"a slope off ½ by > {fmt(raw.halfwidth('log(ηλ)'))} (the interval's "
                         "half-width)"),
    ], conditions=[
        Check("G_moves_with_eta_lambda", "G moves with ηλ",
              not a["g_fit"].contains("log(ηλ)", 0.0), measured=_ci(a["g_fit"]),
              tolerance="95% t-interval", criterion="0 ∉ CI of the slope of log G_eff on log ηλ")])


def present(m: dict, verdict) -> Presentation:
    a = analysis(m)
    s, cis, fixed_G, raw, g_fit = a["s"], a["cis"], a["fixed_G"], a["raw"], a["g_fit"]
    theta_meas = np.arccos(np.exp(np.mean(m["logcos"], axis=1)))
    rows = ["| η | λ | ηλ | η_e = η/x̄ | G_eff | η_e·G_eff | 2√(ηλ(1−ηλ)) | mean d [CI] | "
            "θ measured | arccos(1−2ηλ) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {e:.3g} | {lam:.3g} | {e * lam:.2g} | {fmt(h)} | {fmt(g)} | {fmt(h * g)} | "
             f"{fmt(2 * np.sqrt(e * lam * (1 - e * lam)))} | {c[0]:.2e} [{c[1]:.2e}, {c[2]:.2e}] | "
             f"{fmt(t)} | {fmt(float(a['theta_fn'](e * lam)))} |"
             for e, lam, h, g, c, t in zip(m["eta"], m["lam"], m["eta_e"], m["G_eff"], cis,
                                           theta_meas, strict=True)]
    hw = float(np.max((cis[:, 2] - cis[:, 1]) / 2 + m["round"]))
    return Presentation(
        expected="cos θ_t = (1−2ηλ)‖w_t‖/‖w_{t+1}‖; slope of log(η_e G/√(1−ηλ)) on log ηλ = ½",
        predicted={"G divided out": a["half"], "raw (fixed G)": a["raw_pred"], "mean d": 0.0},
        measured={"headline": fixed_G["log(ηλ)"][0], "G divided out": _ci(fixed_G),
                  "raw η_e": _ci(raw), "G_eff": _ci(g_fit),
                  "max |mean d|": float(np.max(np.abs(cis[:, 0])))},
        tolerance={"slopes": "95% t-intervals", "angle": "Bonferroni t-interval ± rounding"},
        tolerance_reason="slopes: 95% t-intervals of OLS over the grid (wd_claims.stats.ols); "
                         f"angle: t-interval over {N_BLOCKS} blocks of the window per "
                         "configuration, Bonferroni over configurations, widened by the a-priori "
                         "float32 rounding bound of the update (γ₃ per entry)",
        control={"description": f"exponents ¼ and 1 in the G-divided fit; momentum "
                                f"{m['momentum']:g} (λ = 0) under the angle criterion",
                 "measured": {"wrong exponents inside CI": a["wrong"],
                              "momentum mean d": [float(v) for v in a["mom_cis"][0]]}},
        resolves=f"a per-step log-cosine shift of {hw:.1e} (a factor-2 slip of λ shifts it by "
                 f"2ηλ ≥ {2 * float(s.min()):.0e}); G-divided exponents ½ ± "
                 f"{fixed_G.halfwidth('log(ηλ)'):.3f}",
        tables=["\n".join(rows)],
        notes=[f"raw slope of log η_e: {_ci(raw)}; slope of log G_eff: {_ci(g_fit)}; with G "
               f"divided out: {_ci(fixed_G)}",
               "G_eff = √(x̄·mean(G²/x)) is the G of the map x' = (1−2ηλ)²x + η²G²/x averaged "
               "over the window (the RMS of G_t is recorded beside it as G_rms)"],
        context={"model": str(m.get("model", "resnet8"))})


def figure(m: dict, verdict):
    theta_fn = derivation(theory.c08_effective_lr).fn("theta_star", theory.s_el)
    s = m["eta"] * m["lam"]
    fig, ax = canvas(1, 2, size=(10, 3.8))
    ax[0].loglog(s, m["eta_e"], "o", label="η_e = η/x̄")
    ax[0].loglog(s, m["eta_e"] * m["G_eff"], "s", label="η_e·G_eff")
    grid = np.geomspace(s.min(), s.max(), 50)
    ax[0].loglog(grid, 2 * np.sqrt(grid * (1 - grid)), "k-", lw=1, label="2√(ηλ(1−ηλ)) (sympy)")
    ax[0].set(xlabel="ηλ", title="η_e: √(ηλ) only once G is divided out")
    ax[1].loglog(s, np.arccos(np.exp(np.mean(m["logcos"], axis=1))), "o",
                 label="θ from the geometric-mean cos θ_t")
    ax[1].loglog(grid, theta_fn(grid), "k-", lw=1, label="arccos(1 − 2ηλ) (sympy)")
    ax[1].set(xlabel="ηλ", ylabel="per-step angle (rad)", title="the angle scales as √(ηλ)")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def test_effective_lr_times_G_and_the_step_angle_scale_as_sqrt_eta_lambda(verify, model_spec):
    verify(__name__, model_spec)
