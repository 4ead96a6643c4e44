"""C7 — Fig. 2: ‖w_t‖² at equilibrium scales as the square root of η/λ.

Article (section "Weight decay + scale invariance", Fig. 2: ResNet-8 on CIFAR-10, w_t = all 3x3
conv kernels, 100 epochs): "∥w_t∥² at equilibrium scales as the square root of η/λ".

Expected (sympy, ``wd_claims.theory.c07_norm_scaling``, from C5): in the coordinates q = η/λ and
s = ηλ, x* = (G/2)√(q/(1−s)), so d log x*/d log q = ½ at fixed s and G, and the ratio
x*/√(η/λ) = G/(2√(1−ηλ)) depends on (η, λ) only through ηλ (and G, which moves with ηλ).

Measurement: the Fig. 2 grid (``wd_claims.runs.grid_config``: η and λ each over 10×, the same ratio
√10, so the anti-diagonals share ηλ), every seed of the budget; x̄ = mean ‖w‖² over the last quarter.
Fit log x̄ = a + b·log(η/λ) + c·log(ηλ) (``wd_claims.stats.ols``, t-interval); pass when ½ is in b's
interval. The article's "ratio x̄/√(η/λ) far less spread than x̄" (here: at most half the std of the
logs) is checked too; where it fails it is a documented expected failure, since the ratio is
G/(2√(1−ηλ)) and G drifts with ηλ. Equal-ηλ configurations: the deviation of their ratios is
reported (at quick only the scale-invariant kernels train; at full the classifier and BN affine
parameters train too, so the (c²η, λ/c²) symmetry is not exact there).

Control: the same fit must reject the exponents ¼ and 1.

Budget: quick — 768 steps of batch 32, η ∈ [0.1, 1], λ ∈ [0.01, 0.1], stand-in data unless CIFAR-10
is configured; full — CIFAR-10, batch 128, 100 epochs, η ∈ [0.1, 1], λ ∈ [2.5e-4, 2.5e-3], 2 seeds.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wd_claims import runs, stats, theory  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402

pytestmark = pytest.mark.c07

QUOTE = "∥w_t∥² at equilibrium scales as the square root of η/λ"
WRONG_EXPONENTS = (0.25, 1.0)
SPREAD_FACTOR = 0.5  # "far less": the ratio keeps at most half of ‖w*‖²'s log-spread, i.e.
                     # √(η/λ) accounts for at least 3/4 of the variance of log ‖w*‖²


def late_means(result):
    """(K,) mean ‖w‖² (all 3x3 kernels) over the equilibrium window."""
    x = runs.series(result, "sqnorm")
    return np.nanmean(x[:, stats.late_window(x.shape[1], runs.LATE)], axis=1)


def figure(results, budget, suite):
    """The article's Fig. 2: ‖w_t‖² and ‖w_t‖²/√(η/λ) against epochs, one line per (η, λ)."""
    r = results[0]
    x = runs.series(r, "sqnorm")
    epochs = np.arange(x.shape[1]) * r.config.batch_size / r.config.n_train
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    styles = ["-", "--", ":"]
    for k, (eta, lam) in enumerate(zip(r.config.etas, r.config.lams, strict=True)):
        color = f"C{budget.etas.index(eta)}"
        ls = styles[budget.lams.index(lam) % 3]
        label = f"η={eta:.3g}, λ={lam:.3g}"
        ax[0].plot(epochs, x[k], color=color, ls=ls, label=label)
        ax[1].plot(epochs, x[k] / np.sqrt(eta / lam), color=color, ls=ls, label=label)
    ax[0].set(xlabel="epoch", ylabel="‖w_t‖²", yscale="log", title="‖w_t‖², all 3x3 conv kernels")
    ax[1].set(xlabel="epoch", ylabel="‖w_t‖² / √(η/λ)", yscale="log",
              title="‖w_t‖² / √(η/λ)")
    ax[1].legend(fontsize=7, ncol=1, loc="upper right")
    fig.suptitle(f"ResNet-8 (width {r.config.width}), {budget.name} budget, seed {r.config.seed}",
                 fontsize=9)
    fig.tight_layout()
    figure_path = save_figure(fig, suite.report_dir, "C7-resnet8.png")
    plt.close(fig)
    return figure_path


def test_equilibrium_norm_scales_as_the_square_root_of_eta_over_lambda(
        suite, images, record_verdict):
    derivation = theory.c07_norm_scaling()
    assert all(derivation.proved.values()), derivation.text
    exponent = float(derivation.exprs["exponent"])

    results = runs.results(suite, images, "grid")
    etas = np.concatenate([r.config.etas for r in results])
    lams = np.concatenate([r.config.lams for r in results])
    xbar = np.concatenate([late_means(r) for r in results])
    fit = stats.ols(np.log(xbar), {"log(η/λ)": np.log(etas / lams), "log(ηλ)": np.log(etas * lams)})
    b, lo, hi = fit["log(η/λ)"]
    ratio = xbar / np.sqrt(etas / lams)
    spread_x, spread_ratio = stats.log_spread(xbar), stats.log_spread(ratio)
    flat = spread_ratio <= SPREAD_FACTOR * spread_x
    wrong = {e: fit.contains("log(η/λ)", e) for e in WRONG_EXPONENTS}
    rejected = not any(wrong.values())

    # equal ηλ (anti-diagonals): deviation of the ratio within each group, per seed
    groups = {}
    for i, s in enumerate(np.round(np.log10(etas * lams), 6)):
        groups.setdefault(s, []).append(i)
    within = {f"ηλ={10**s:.2g}": float(np.ptp(np.log(ratio[idx])))
              for s, idx in groups.items() if len(idx) > 1}
    # the ratio G/(2√(1−ηλ)) that C5 predicts from the measured G: does it explain the drift?
    G = np.concatenate([stats.rms(runs.grad_norm_on_sphere(r)[:, stats.late_window(
        r.metrics["sqnorm"].shape[1], runs.LATE)]) for r in results])
    ratio_fn = derivation.fn("ratio", theory.G, theory.s_el)
    rows = ["| η | λ | ηλ | η/λ | mean ‖w‖² (late) | ‖w‖²/√(η/λ) | G/(2√(1−ηλ)) (C5) |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {e:.3g} | {lam:.3g} | {e * lam:.2g} | {e / lam:.3g} | {fmt(x)} | {fmt(r)} | "
             f"{fmt(float(ratio_fn(g, e * lam)))} |"
             for e, lam, x, r, g in zip(etas, lams, xbar, ratio, G, strict=True)]
    # The slope is the claim. "The ratio is far less spread than ‖w*‖²" is the article's
    # imprecise reading of Fig. 2 (CLAIMS.md): the ratio is G/(2√(1−ηλ)), constant only where G is.
    slope_ok = fit.contains("log(η/λ)", exponent)
    status, reason = "pass", ""
    if not rejected:
        status, reason = "fail", f"the fit does not reject the wrong exponents: {wrong}"
    elif not slope_ok:
        status, reason = "fail", f"slope {b:.3f}, CI [{lo:.3f}, {hi:.3f}] does not contain ½"
    elif not flat:
        status, reason = "xfail", (
            f"the slope is ½ (CI [{lo:.3f}, {hi:.3f}]), but the ratio ‖w*‖²/√(η/λ) spreads "
            f"{spread_ratio:.3g} in log, not far less than ‖w*‖² ({spread_x:.3g}): it is "
            f"G/(2√(1−ηλ)) and G drifts with ηλ across this grid (ηλ spans "
            f"{float(np.ptp(np.log10(etas * lams))):.1f} decades); see the last column")
    record_verdict(Verdict(
        id="C7", title="Fig. 2: ‖w*‖² ∝ √(η/λ)", quote=QUOTE,
        expected="slope of log‖w*‖² on log(η/λ) = ½ (log ηλ as second regressor)",
        derivation=derivation.text, predicted=exponent,
        measured={"headline": b, "slope": b, "95% CI": [lo, hi],
                  "log ηλ coefficient": list(fit["log(ηλ)"]),
                  "log-spread of ‖w*‖²": spread_x, "log-spread of the ratio": spread_ratio,
                  "equal-ηλ ratio deviation (log range)": within},
        tolerance={"CI": [lo, hi], "spread factor": SPREAD_FACTOR},
        tolerance_reason=f"95% t-interval of the OLS slope over {xbar.size} configurations × "
                         f"seeds (df = {fit.df}); 'far less' spread: ratio's log-std ≤ "
                         f"{SPREAD_FACTOR} × ‖w*‖²'s, i.e. √(η/λ) explains ≥ 75% of its variance",
        status=status, reason=reason,
        control={"description": "the same fit with exponents ¼ and 1 (inside the CI?)",
                 "measured": {str(e): v for e, v in wrong.items()},
                 "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure(results, suite.budget, suite)], tables=["\n".join(rows)],
        notes=[f"slope {b:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] (sympy: {exponent})",
               f"the ratio drifts with ηλ through G (coefficient of log ηλ: "
               f"{fit['log(ηλ)'][0]:.3f}); equal-ηλ configurations: {fmt(within)} (log range; "
               + ("only the scale-invariant kernels train at this budget, so by the (c²η, "
                  "λ/c², c·w₀) symmetry equal-ηλ runs differ only by their start w₀ vs c·w₀, "
                  "which the equilibrium forgets)"
                  if results[0].config.freeze_non_invariant else
                  "exact equality needs every trained tensor scale-invariant; here the classifier "
                  "and BN affine parameters train too)"),
               f"equilibrium window: the last {runs.LATE:.0%} of {results[0].config.steps} steps"],
        context={"model": "resnet8", "data": images[0].name,
                 "seed": [r.config.seed for r in results]}))
    assert rejected, f"wrong exponents not rejected: CI [{lo:.3f}, {hi:.3f}]"
    assert slope_ok, f"slope {b:.3f}, CI [{lo:.3f}, {hi:.3f}] ∌ ½"
    if status == "xfail":
        pytest.xfail(reason)
