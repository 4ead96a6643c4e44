"""C6 — on the sphere, one SGD step is an SGD step with the effective learning rate η_e.

Article (Labatie 2020): the update of w_t/∥w_t∥ "is approximately equal to −η_e∇L(w_t/∥w_t∥|B_t)",
η_e = η/∥w_t∥². Derivation (sympy, ``theory.c06_direction_update``; docs/claims.md): with
w' = (1−2ηλ)w − ηg and ⟨g, w⟩ = 0, u' = (s, −s·p) in the basis (u, ∇L(u|B)/G), p = η_e·G,
s = 1/√(1+p²), exact factor η_e = η/((1−2ηλ)‖w‖²): ‖u' − u + η_e∇L(u|B)‖ = √(1+p²) − 1 =
p²/2 + O(p⁴). The article's η/‖w‖² = a·η_e, a = 1−2ηλ, is the same statement to first order.

Measurement: the engine's per-step p_t and residuals with the exact and the article's factor, all
3x3 kernels, every configuration of the Fig. 2 grid, as geometric block means; f_t = τ_t/(s_t p_t)
(τ the tangential component of u' − u read off the two residuals, less sympy's first-order share
of the measured cos(g, w)): 1 for the exact factor, a for the article's. The statement: sympy's
slope of √(1+p²) − 1, per step and block-averaged like the residual, ∈ the t-interval of the
slope of log residual on log p. Identity: at the largest ηλ, 1 ∈ the t-interval of f's block means
(premise: narrower than the gap 1 − a). The article's factor: a ∈ it (declared to miss past the
ηλ at which sympy resolves the two). Control: the zeroth-order u' − u ≈ 0 must miss the slope.
No band: every tolerance is an interval (docs/claims.md, C6).
"""

import numpy as np
import sympy as sp

from wd_claims import stats, theory
from wd_claims.claim import Claim, Judgement, Presentation, canvas, derivation
from wd_claims.dynamics_checks import LEVEL, block_intervals, concat_runs
from wd_claims.series import series
from wd_claims.verdict import Check, fmt

CLAIM = Claim(
    id="C6", title="u_{t+1} − u_t = −η_e∇L(u_t|B_t) + O(η_e²), η_e = η/((1−2ηλ)‖w‖²)",
    quote="the update during iteration t of the projection w_t/∥w_t∥ on the unit sphere is "
          "approximately equal to -η_e∇L(w_t/∥w_t∥|B_t)",
    derive=theory.c06_direction_update, models=("resnet8",), shared_runs=True,
    expected_failures=("article_factor",))
N_BLOCKS = 8  # per configuration: the points of the regression


def factor_series(p, r_exact, r_article, a):
    """(K, T) measured first-order factor f_t = τ_t/(s_t p_t), in units of η/((1−2ηλ)‖w‖²)."""
    a = a[:, None]
    tau = 0.5 * ((r_exact**2 - r_article**2) / ((a - 1) * p) + (1 + a) * p)
    return tau * np.sqrt(1 + p**2) / p


def factor_rounding(p, r_exact, r_article, gap):
    """(K, T) a-priori bound of what float32 storage of w_{t+1} does to f_t: u' = v/‖v‖ is off by
    ≤ √2·u (u = 2⁻²⁴ per entry of v), so each residual by as much, and f = τ√(1+p²)/p with τ read
    off (r_e² − r_a²)/(2ηλ·p) moves by ≤ √2·u·(r_e + r_a)·√(1+p²)/(2ηλ·p²)."""
    return np.sqrt(2) * 2.0**-24 * (r_exact + r_article) * np.sqrt(1 + p**2) / (gap * p**2)


def measure(ctx, model) -> dict:
    """Per (configuration, block) geometric means p, exact, article, zeroth (K·S, NB); the factor
    blocks f (K·S, NB); eta, lam per configuration (seeds concatenated)."""
    def columns(r):
        eta, lam = np.asarray(r.config.etas), np.asarray(r.config.lams)
        p, e, a = (series(r, k) for k in ("du_pred", "du_resid", "du_resid_article"))
        geometric = {"p": p, "exact": e, "article": a, "pred": closed(p),
                     "zeroth": np.sqrt(np.clip(2 - 2 * series(r, "cos_step"), 0, None))}
        radial = radial_slope(p) * series(r, "cos_gw")   # f's first-order share of cos(g, w)
        gap = 2 * eta * lam
        return {**{k: np.exp(stats.block_means(np.log(v), N_BLOCKS)) for k, v in geometric.items()},
                "f": stats.block_means(factor_series(p, e, a, 1 - gap) - radial, N_BLOCKS),
                "f_radial": stats.block_means(radial, N_BLOCKS),
                "f_round": stats.block_means(factor_rounding(p, e, a, gap[:, None]), N_BLOCKS),
                "eta": eta, "lam": lam}

    d = derivation(theory.c06_direction_update)
    closed, radial_slope = (d.fn(k, theory.p_e) for k in ("resid_exact", "factor_radial_slope"))
    return {**concat_runs([columns(r) for r in ctx.results("grid", model.name)]),
            "model": model.name}


def order_criterion(m, which):
    """(fit, predicted slope, holds): OLS slope of log residual on log p over every
    (configuration, block), the slope of sympy's √(1+p²) − 1 evaluated per step and block-averaged
    the same way (so Jensen's effect of the block means is in the prediction, not in a band), and
    whether the prediction lies in the slope's 95 % t-interval."""
    p, y = m["p"].ravel(), m[which].ravel()
    ok = np.isfinite(np.log(y)) & np.isfinite(np.log(p))
    fit = stats.ols(np.log(y[ok]), {"log p": np.log(p[ok])})
    pred = stats.ols(np.log(m["pred"].ravel()[ok]), {"log p": np.log(p[ok])})["log p"][0]
    return fit, pred, fit.contains("log p", pred)


def analysis(m: dict) -> dict:
    """The three slope criteria; the factor's intervals at the grid's largest ηλ (Bonferroni over
    its configurations and seeds) of f less its share of the measured radial component; the ηλ
    from which sympy says the interval tells the two factors apart."""
    d = derivation(theory.c06_direction_update)
    closed = d.fn("resid_exact", theory.p_e)
    s = m["eta"] * m["lam"]
    a = {"closed": closed, "s": s, "fits": {}, "preds": {}, "ok": {}}
    for key in ("exact", "article", "zeroth"):
        a["fits"][key], a["preds"][key], a["ok"][key] = order_criterion(m, key)
    a_top = a["a_top"] = 1 - 2 * s.max()
    cis = a["cis"] = block_intervals(m["f"][np.flatnonzero(np.isclose(s, s.max()))])
    rnd = a["round"] = float(np.max(m["f_round"][np.flatnonzero(np.isclose(s, s.max()))]))
    a["exact_ok"] = bool(np.all((cis[:, 1] - rnd <= 1) & (1 <= cis[:, 2] + rnd)))
    a["article_ok"] = bool(np.all((cis[:, 1] - rnd <= a_top) & (a_top <= cis[:, 2] + rnd)))
    a["width"] = float(np.max(cis[:, 2] - cis[:, 1])) + 2 * rnd
    a["resolving"] = float(d.fn("eta_lambda_resolving_factors", sp.Symbol("width",
                                                                          positive=True))(a["width"]))
    a["slopes"] = {k: [round(v, 4) for v in f["log p"]] for k, f in a["fits"].items()}
    return a


def judge(m: dict) -> Judgement:
    a = analysis(m)
    s, slopes, cis, a_top = a["s"], a["slopes"], a["cis"], a["a_top"]
    resolved = a["width"] < 1 - a_top
    return Judgement([
        Check("second_order", "second order", a["ok"]["exact"], measured=slopes["exact"],
              tolerance={"predicted on the design": round(a["preds"]["exact"], 4)},
              criterion="sympy's slope of √(1+p²)−1, per step and block-averaged as the residual "
                        "is, ∈ the 95% t-interval of the slope of log residual (exact factor) on "
                        "log p", resolution=f"an error order off it by > half the interval, "
                                            f"{fmt(a['fits']['exact'].halfwidth('log p'))}"),
        Check("exact_factor", "exact factor η/((1−2ηλ)‖w‖²)", a["exact_ok"],
              measured={"ηλ": float(s.max()), "f [low, high]": cis.round(7).tolist()},
              tolerance=f"Bonferroni {LEVEL:.0%} t-interval over {N_BLOCKS} blocks ± float32 "
                        f"rounding {a['round']:.1e}",
              criterion="1 ∈ interval of the block means of f at the largest ηλ, f less its "
                        "share of the measured cos(g, w) (sympy's df/dc, first order), ± the "
                        "a-priori float32 bound of f",
              kind="identity"),
        Check("factors_resolved", "factors resolved", resolved,
              measured={"interval width": a["width"]}, tolerance={"gap 1 − a = 2ηλ": 1 - a_top},
              criterion="the interval of f is narrower than the gap between the two factors",
              kind="premise"),
        Check("control_rejected", "control rejected", not a["ok"]["zeroth"],
              measured=slopes["zeroth"],
              tolerance={"predicted": round(a["preds"]["zeroth"], 4)},
              criterion="the zeroth-order prediction misses the same slope criterion",
              kind="control"),
        Check("article_factor", "article's factor η/‖w‖²", a["article_ok"], core=False,
              measured={"f [low, high]": cis.round(5).tolist()},
              tolerance={"a = 1 − 2ηλ": a_top},
              criterion="a ∈ interval of the block means of f at the largest ηλ",
              resolution="a factor off 1 − 2ηλ by more than the interval"),
    ], conditions=[
        Check("eta_lambda_resolves_factors", "ηλ past the one at which sympy resolves the "
              "factors", float(s.max()) > a["resolving"],
              measured={"largest ηλ": float(s.max()), "ηλ* (sympy)": a["resolving"],
                        "predicted miss a − 1": a_top - 1},
              tolerance="largest ηλ > ηλ*",
              criterion="ηλ* solves 1/(1 − 2ηλ) − 1 = the factor interval's width (sympy): past "
                        "it the article's factor must miss, by 1 − a = 2ηλ, downward")])


def present(m: dict, verdict) -> Presentation:
    a = analysis(m)
    s, closed, slopes, fits, a_top = a["s"], a["closed"], a["slopes"], a["fits"], a["a_top"]
    rows = ["| η | λ | ηλ | median p | residual/(√(1+p²)−1) | f (mean of blocks) | a = 1−2ηλ |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {m['eta'][k]:.3g} | {m['lam'][k]:.3g} | {s[k]:.2g} | "
             f"{fmt(np.median(m['p'][k]))} | {fmt(np.median(m['exact'][k] / closed(m['p'][k])))} "
             f"| {np.mean(m['f'][k]):.5f} | {1 - 2 * s[k]:.4f} |" for k in range(len(s))]
    return Presentation(
        expected="residual = √(1+p²) − 1 (slope on the design); factor 1 (exact), not 1 − 2ηλ",
        predicted={"slope on the design": a["preds"]["exact"], "factor": 1.0,
                   "article's factor at the largest ηλ": a_top},
        measured={"headline": fits["exact"]["log p"][0], "slope, exact": slopes["exact"],
                  "slope, article": slopes["article"], "f at the largest ηλ": a["cis"].tolist(),
                  "p range": [float(m["p"].min()), float(m["p"].max())]},
        tolerance={"slope": "95% t-interval", "factor": f"Bonferroni {LEVEL:.0%} t-interval"},
        tolerance_reason=f"OLS t-interval over {m['p'].size} (configuration, block) points "
                         "(wd_claims.stats.ols), compared with sympy's slope on the same points; "
                         f"factor: t-interval of {N_BLOCKS} block means per configuration",
        control={"description": "zeroth order (u' − u ≈ 0), same points, same slope criterion",
                 "measured": slopes["zeroth"]},
        resolves=f"slopes ± {fits['exact'].halfwidth('log p'):.3f}; first-order factors "
                 f"differing by {a['width']:.1e} (the article's differs by {1 - a_top:.2f} at "
                 f"ηλ = {s.max():.2g})",
        tables=["\n".join(rows)],
        notes=["f is read off the two recorded residuals: R_exact² − R_article² = "
               "(a−1)p(2τ − (1+a)p), τ the measured tangential component of u' − u",
               f"order of the article factor's residual (reported): {slopes['article']}"],
        context={"model": str(m.get("model", "resnet8"))})


def figure(m: dict, verdict):
    closed = derivation(theory.c06_direction_update).fn("resid_exact", theory.p_e)
    fig, ax = canvas(size=(6, 4))
    p = m["p"].ravel()
    grid = np.geomspace(p.min(), p.max(), 50)
    for key, mark in (("exact", "o"), ("article", "x"), ("zeroth", ".")):
        ax.loglog(p, m[key].ravel(), mark, ms=4, label=f"{key} factor" if key != "zeroth"
                  else "zeroth order (u' − u ≈ 0)")
    ax.loglog(grid, closed(grid), "k-", lw=1, label="√(1+p²) − 1 (sympy)")
    ax.set(xlabel="p = η_e·G (block geometric mean)", ylabel="‖u' − u + η_e∇L(u|B)‖",
           title="direction-update residual: exact factor is second order")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def test_direction_update_error_is_second_order_in_the_effective_learning_rate(
        verify, model_spec):
    verify(__name__, model_spec)
