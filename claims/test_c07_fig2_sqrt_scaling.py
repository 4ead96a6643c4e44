"""C7 — Fig. 2: ‖w_t‖² at equilibrium scales as the square root of η/λ.

Article (Labatie 2020, "Weight decay + scale invariance", Fig. 2: ResNet-8 on CIFAR-10, w_t = all
3x3 conv kernels, 100 epochs): "∥w_t∥² at equilibrium scales as the square root of η/λ".

Derivation (sympy, ``theory.c07_norm_scaling``, from C5; docs/claims.md): with q = η/λ, s = ηλ,
x* = (G/2)√(q/(1−s)): d log x*/d log q = ½ at fixed s and G, and x*/√(η/λ) = G/(2√(1−ηλ)).

Measurement: the Fig. 2 grid (:func:`wd_claims.recipes.grid_config`; the anti-diagonals share ηλ),
every seed; x̄ = mean ‖w‖² and G = RMS of G_t = ‖g_t‖‖w_t‖ over the last quarter of each run.
The article's statement (core): b in the article's own fit log x̄ = a + b·log(η/λ) + c·log ηλ
(OLS, 95% t-interval, G not divided out): ½ ∈ b's interval, resolved to ±0.10 (two seeds at
quick). Identity: the same fit of log x̄ − log(G/(2√(1−ηλ))), the measured G divided out (½ plus
C5's residual slope). Prediction: the prefactor (a = 0 within its interval plus C5's fluctuation
bound). Statement that may be declared: "the ratio ‖w*‖²/√(η/λ) varies far less than ‖w*‖²"
(expected to miss where G drifts with ηλ). Control: the statement's interval must reject ¼ and 1.
"""

import numpy as np

from wd_claims import stats, theory
from wd_claims.claim import Claim, Judgement, Presentation, canvas, control_status, derivation
from wd_claims.dynamics_checks import fluctuation_bound
from wd_claims.series import LATE, grad_norm_on_sphere, series
from wd_claims.setting import ARTICLE_EPOCH
from wd_claims.verdict import Check, fmt

CLAIM = Claim(
    id="C7", title="Fig. 2: ‖w*‖² ∝ √(η/λ)",
    quote="∥w_t∥² at equilibrium scales as the square root of η/λ",
    derive=theory.c07_norm_scaling, models=("resnet8",), shared_runs=True,
    expected_failures=("ratio_less_spread",))
WRONG_EXPONENTS = (0.25, 1.0)
RESOLUTION = 0.10    # the slope interval's half-width must be at most this (issue: quick ≤ 0.10)
SPREAD_FACTOR = 0.5  # "far less": the ratio keeps at most half of ‖w*‖²'s log-spread, i.e.
                     # √(η/λ) accounts for at least 3/4 of the variance of log ‖w*‖²


def measure(ctx, model) -> dict:
    """Per configuration of the grid (all seeds): η, λ, seed, x̄ (mean ‖w‖²) and G (RMS of G_t)
    over the window, c² = Var(G_t²)/G⁴ there; the first seed's ‖w_t‖² series (K, T)."""
    grid = ctx.results("grid", model.name)
    ctx.describe(w=str(grid[0].tensors[-1]))
    window = stats.late_window(grid[0].config.steps, LATE)
    G = np.concatenate([grad_norm_on_sphere(r)[:, window] for r in grid])
    return {
        "etas": np.concatenate([r.config.etas for r in grid]),
        "lams": np.concatenate([r.config.lams for r in grid]),
        "seeds": np.concatenate([[r.config.seed] * len(r.config.etas) for r in grid]),
        "xbar": np.concatenate([np.nanmean(series(r, "sqnorm")[:, window], axis=1)
                                for r in grid]),
        "G": stats.rms(G), "c2": np.nanvar(G**2, axis=1) / np.nanmean(G**2, axis=1) ** 2,
        "series": series(grid[0], "sqnorm"), "steps": grid[0].config.steps,
        "model": model.name, "joint": grid[0].tensors[-1], "width": grid[0].config.width,
        "data": ctx.data_name,
    }


def _ratio():
    """sympy's x*/√(η/λ) = G/(2√(1−ηλ)) as a function of (G, ηλ)."""
    return derivation(theory.c07_norm_scaling).fn("ratio", theory.G, theory.s_el)


def _predicted() -> float:
    return float(derivation(theory.c07_norm_scaling).exprs["exponent"])


def exponent_fit(m: dict, divide_out_G: bool = True) -> stats.Fit:
    """OLS of log x̄ (minus log of C5's prefactor G/(2√(1−ηλ)) when ``divide_out_G``) on
    log(η/λ) and the centred log ηλ. Coefficients: intercept, log(η/λ), log(ηλ)."""
    etas, lams = m["etas"], m["lams"]
    y = np.log(m["xbar"])
    if divide_out_G:
        y = y - np.log(_ratio()(m["G"], etas * lams))
    log_s = np.log(etas * lams)
    return stats.ols(y, {"log(η/λ)": np.log(etas / lams), "log(ηλ)": log_s - log_s.mean()})


def analysis(m: dict) -> dict:
    """The fits (G divided out, raw, log G on log ηλ), the spreads and C5's fluctuation bound."""
    etas, lams, xbar = m["etas"], m["lams"], m["xbar"]
    fit, raw = exponent_fit(m), exponent_fit(m, divide_out_G=False)
    ratio = xbar / np.sqrt(etas / lams)
    return {"fit": fit, "raw": raw, "ratio": ratio,
            "fluct": float(np.mean(fluctuation_bound()(m["c2"], etas, lams))),
            "spread_x": stats.log_spread(xbar), "spread_ratio": stats.log_spread(ratio),
            "g_fit": stats.ols(np.log(m["G"]), {"log(ηλ)": np.log(etas * lams)}),
            "wrong": {e: raw.contains("log(η/λ)", e) for e in WRONG_EXPONENTS}}


def judge(m: dict, exponent: float | None = None) -> Judgement:
    """``exponent``: the prediction (sympy's ½ unless given: the fault tests give a wrong one)."""
    exponent = _predicted() if exponent is None else exponent
    a = analysis(m)
    fit, raw, fluct, wrong = a["fit"], a["raw"], a["fluct"], a["wrong"]
    b, lo, hi = fit["log(η/λ)"]
    raw_b, raw_lo, raw_hi = raw["log(η/λ)"]
    icpt, a_lo, a_hi = fit["intercept"]
    return Judgement([
        Check("raw_exponent_half", "Fig. 2: exponent of η/λ in ‖w*‖² is ½",
              raw.contains("log(η/λ)", exponent) and raw.halfwidth("log(η/λ)") <= RESOLUTION,
              measured=raw_b, tolerance=[raw_lo, raw_hi],
              criterion=f"{exponent:g} ∈ 95% t-interval of b in the article's fit of log x̄ on "
                        "log(η/λ), log ηλ (G not divided out), half-width ≤ "
                        f"{RESOLUTION} (measured {fmt(raw.halfwidth('log(η/λ)'))})",
              resolution=f"an exponent off ½ by > {RESOLUTION}"),
        Check("control_rejected", "control rejected", not any(wrong.values()),
              measured={str(e): v for e, v in wrong.items()}, kind="control",
              tolerance=[raw_lo, raw_hi], criterion="¼ and 1 outside the statement's interval"),
        Check("exponent_half_G_divided", "exponent ½ with the measured G divided out",
              fit.contains("log(η/λ)", exponent), measured=b, tolerance=[lo, hi], kind="identity",
              criterion=f"{exponent:g} ∈ 95% t-interval of b (G divided out: ½ plus C5's "
                        "residual slope)"),
        Check("prefactor", "prefactor G/(2√(1−ηλ))", a_lo - fluct <= 0 <= a_hi + fluct,
              core=False, measured=icpt, tolerance=[a_lo - fluct, a_hi + fluct],
              kind="prediction",
              criterion="0 ∈ the intercept's interval widened by C5's fluctuation bound"),
        Check("ratio_less_spread", "ratio far less spread than ‖w*‖²",
              a["spread_ratio"] <= SPREAD_FACTOR * a["spread_x"], core=False,
              measured={"ratio": a["spread_ratio"], "‖w*‖²": a["spread_x"]},
              tolerance=f"ratio ≤ {SPREAD_FACTOR} × ‖w*‖² (log-std)",
              criterion="the article's reading of Fig. 2",
              resolution="a ratio keeping more than half of ‖w*‖²'s log-spread"),
    ], conditions=[
        Check("G_drifts_with_eta_lambda", "G drifts with ηλ",
              not a["g_fit"].contains("log(ηλ)", 0.0),
              measured={"slope of log G on log ηλ": list(a["g_fit"]["log(ηλ)"])},
              criterion="0 ∉ 95% interval of the slope of log G on log ηλ")])


def present(m: dict, verdict) -> Presentation:
    a = analysis(m)
    fit, raw, g_fit, fluct = a["fit"], a["raw"], a["g_fit"], a["fluct"]
    b, lo, hi = fit["log(η/λ)"]
    icpt, a_lo, a_hi = fit["intercept"]
    etas, lams, xbar, ratio_fn = m["etas"], m["lams"], m["xbar"], _ratio()
    rows = ["| η | λ | ηλ | η/λ | mean ‖w‖² (late) | ‖w‖²/√(η/λ) | G/(2√(1−ηλ)) (C5) |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {e:.3g} | {lam:.3g} | {e * lam:.2g} | {e / lam:.3g} | {fmt(x)} | {fmt(r)} | "
             f"{fmt(float(ratio_fn(g, e * lam)))} |"
             for e, lam, x, r, g in zip(etas, lams, xbar, a["ratio"], m["G"], strict=True)]
    return Presentation(
        expected="exponent of η/λ in ‖w*‖² = ½ (the article's fit; with G divided out, exactly ½)",
        predicted=_predicted(),
        measured={"headline": raw["log(η/λ)"][0], "raw slope (no G)": list(raw["log(η/λ)"]),
                  "slope, G divided out": b, "95% CI, G divided out": [lo, hi],
                  "intercept": [icpt, a_lo, a_hi],
                  "log-spread of ‖w*‖²": a["spread_x"],
                  "log-spread of the ratio": a["spread_ratio"]},
        tolerance={"CI": list(raw["log(η/λ)"][1:]), "resolution": RESOLUTION},
        tolerance_reason=f"95% t-interval of the OLS slope over {xbar.size} configurations × "
                         f"seeds (df = {raw.df}); the exponent must be resolved to ±{RESOLUTION}",
        control={"description": "the same interval against the exponents ¼ and 1",
                 "measured": {str(e): v for e, v in a["wrong"].items()},
                 "status": control_status(verdict.checks[1])},
        resolves=f"the article's exponent ½ ± {raw.halfwidth('log(η/λ)'):.3f}; with G divided "
                 f"out ½ ± {fit.halfwidth('log(η/λ)'):.3f}; a constant factor in x* of "
                 f"{np.expm1(a_hi - a_lo + 2 * fluct):.1%}",
        tables=["\n".join(rows)],
        notes=[f"G divided out: slope {b:.4f} [{lo:.4f}, {hi:.4f}]; the article's raw fit: "
               f"{raw['log(η/λ)'][0]:.3f} [{raw['log(η/λ)'][1]:.3f}, {raw['log(η/λ)'][2]:.3f}]",
               f"log G moves with log ηλ at slope {g_fit['log(ηλ)'][0]:.3f} "
               f"[{g_fit['log(ηλ)'][1]:.3f}, {g_fit['log(ηλ)'][2]:.3f}]: the ratio follows G"],
        context={"model": str(m["model"]), "data": str(m["data"]),
                 "seed": sorted({int(s) for s in m["seeds"]})})


def figure(m: dict, verdict):
    """The article's Fig. 2: ‖w_t‖² and ‖w_t‖²/√(η/λ) against training time in the article's
    epochs (391 steps: its steps are the theory's clock, whatever the data's size), one line per
    (η, λ)."""
    x = m["series"]
    K = x.shape[0]
    epochs = np.arange(x.shape[1]) / ARTICLE_EPOCH
    etas, lams = m["etas"][:K], m["lams"][:K]
    eta_levels, lam_levels = sorted(set(etas)), sorted(set(lams))
    fig, ax = canvas(1, 2, size=(11, 4))
    for k in range(K):
        style = dict(color=f"C{eta_levels.index(etas[k])}",
                     ls=["-", "--", ":", "-."][lam_levels.index(lams[k]) % 4],
                     label=f"η={etas[k]:.3g}, λ={lams[k]:.3g}")
        ax[0].plot(epochs, x[k], **style)
        ax[1].plot(epochs, x[k] / np.sqrt(etas[k] / lams[k]), **style)
    axis = f"article epochs ({ARTICLE_EPOCH} steps)"
    ax[0].set(xlabel=axis, ylabel="‖w_t‖²", yscale="log", title=f"‖w_t‖², {m['joint']}")
    ax[1].set(xlabel=axis, ylabel="‖w_t‖² / √(η/λ)", yscale="log", title="‖w_t‖² / √(η/λ)")
    ax[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{m['model']} (width {int(m['width'])}) on {str(m['data']).split(' (')[0]}, "
                 "first seed", fontsize=9)
    fig.tight_layout()
    return fig


def test_equilibrium_norm_scales_as_the_square_root_of_eta_over_lambda(verify, model_spec):
    verify(__name__, model_spec)
