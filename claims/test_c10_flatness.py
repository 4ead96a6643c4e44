"""C10 — a larger λ raises η_e, and SGD then ends in flatter regions of the sphere (Labatie 2020,
"Weight decay + scale invariance"). Sympy (``theory.c10_flatness``; docs/claims.md): GD on ½hz²
is stable iff 0 < ηh < 2; on the sphere sharpness·η_e < 2, and 2/η_e* falls as λ grows.

Measured (:mod:`wd_claims.regularization_checks`): ResNet-8, four λ at the budget's middle η and
three more sharing the second one's ηλ, two seeds, only the scale-invariant kernels train; at the
end, the sharpness on the unit sphere (Lanczos over HVPs), λ_max(D^½PHPD^½), D = diag(η_e,i), and
the drift fraction ‖ḡ‖²/E‖g_B‖² (0 at a minimum). The article's statement: Spearman ρ(λ,
sharpness) < 0, one-sided permutation p < α. Control: the four equal-ηλ configurations (same η_e*,
λ over the main's 8×: the same design, so the same test could reach the level) find no falling
order. Prediction: the stability number ≤ 2 (declared to miss where the drift fraction puts the
end points away from any minimum).
"""

import numpy as np

from wd_claims import claim, stats, theory
from wd_claims.claim import Claim, Judgement, Presentation, table
from wd_claims.regularization_checks import (
    falling_rank_test,
    per_seed_rows,
    sharpness_grid,
    sharpness_run_measure,
    sharpness_runs,
    sharpness_sizes,
)
from wd_claims.verdict import Check, fmt

CLAIM = Claim(
    id="C10", title="larger λ → larger η_e → flatter end point; sharpness·η_e < 2",
    quote="increased stochasticity favors the convergence to “flat” regions … An increase of the "
          "weight decay strength λ is therefore still a form of regularization",
    derive=theory.c10_flatness, models=("resnet8",),
    sizes=("sharpness_steps", "sharpness_batch", "sharpness_tol", "sharpness_eval_images"),
    runs=sharpness_runs, run_measure=sharpness_run_measure, expected_failures=("linear_stability",))
ALPHA = 0.05          # one-sided level of the rank tests


def measure(ctx, model) -> dict:
    """One row per (seed, configuration): the arrays of ``measure_sharpness`` (the workers'),
    ``seed`` and ``main``; then the level and the budget's sizes."""
    s = sharpness_sizes(ctx.budget)
    ctx.describe(probe=f"sharpness on the first {s['eval_batch']} training images, float32 "
                       "Hessian-vector products")
    per_seed = {c.seed: ctx.measured(c, sharpness_run_measure(ctx.budget))
                for c in sharpness_runs(ctx.budget, ctx.images, model.name)}
    return {**per_seed_rows(per_seed, sharpness_grid(ctx.budget)[2]), "alpha": ALPHA, **s,
            "model": model.name}


def falls(lams, values, alpha: float) -> tuple[bool, float, float]:
    """The criterion: (ρ < 0 and one-sided p < α, ρ, p)."""
    rho, p = falling_rank_test(lams, values)
    return bool(rho < 0 and p < alpha), rho, p


def analysis(m: dict) -> dict:
    """The rank tests of the main configurations and of the control, the stability numbers."""
    main = np.asarray(m["main"], bool)
    lam, eta, sharp = (np.asarray(m[k], float) for k in ("lam", "eta", "sharpness"))
    # the control: the equal-ηλ configurations plus the main one at the second λ, per seed
    ctrl = ~main | (main & np.isclose(lam, np.unique(lam[main])[1], rtol=0, atol=0))
    el = eta[ctrl] * lam[ctrl]
    product = np.asarray(m["product"], float)[main]
    return dict(main=main, lam=lam, eta=eta, sharp=sharp, product=product,
                falls=falls(lam[main], sharp[main], m["alpha"]),
                control=falls(lam[ctrl], sharp[ctrl], m["alpha"]),
                el_spread=float(np.ptp(el) / np.mean(el)), worst=float(np.max(product)),
                bound=float(claim.derivation(theory.c10_flatness).exprs["eta_h_max"]))  # 2


def judge(m: dict) -> Judgement:
    a, alpha = analysis(m), m["alpha"]
    (ok, rho, p), (c_ok, c_rho, c_p), bound = a["falls"], a["control"], a["bound"]
    low = np.asarray(m["drift_low"], float)[a["main"]]
    return Judgement([
        Check("sharpness_falls", "sharpness falls as λ grows", ok, measured={"ρ": rho, "p": p},
              tolerance=f"ρ < 0, p < {alpha}",
              criterion=f"Spearman ρ(λ, sharpness) < 0 with one-sided permutation p < {alpha}",
              resolution=f"a fall of sharpness with λ at one-sided level {alpha}"),
        Check("control_rejected", "control rejected", not c_ok, measured={"ρ": c_rho, "p": c_p},
              tolerance="the same criterion misses", kind="control",
              criterion="equal-ηλ configurations (equal η_e*): the main test's design, 4 λ over "
                        "8× and both seeds, so the same test could pass"),
        Check("control_shares_eta_lambda", "control configurations share ηλ",
              a["el_spread"] <= 1e-12, measured=a["el_spread"],
              tolerance="relative spread ≤ 1e-12 (float64 rounding of η·λ)",
              criterion="(max − min)/mean of η·λ over the control", kind="premise"),
        Check("linear_stability", "linear stability: λ_max(D^½PHPD^½) ≤ 2", a["worst"] <= bound,
              core=False, measured=a["worst"], tolerance=f"≤ {bound:g}", kind="prediction",
              criterion="max over the main configurations; the bound is sympy's sup of ηh"),
    ], [Check(
        "far_from_minimum", "end points away from any minimum: resolved drift",
        bool(np.all(low > 0)),
        measured={"drift fraction [low, high]": [
            [round(float(m[k][i]), 3) for k in ("drift", "drift_low", "drift_high")]
            for i in np.flatnonzero(a["main"])]},
        tolerance="95 % lower bound > 0 at every main end point (measured apart from the "
                  "stability number)",
        criterion="d = ‖ḡ‖²/E‖g_B‖² over disjoint batches of b training images (mean of ⟨g_j, "
                  "the others' mean⟩: unbiased whatever the noise) is 0 at a minimum, where a "
                  "quadratic's linear stability would bind")])


def present(m: dict, verdict) -> Presentation:
    a, alpha = analysis(m), m["alpha"]
    main, lam, eta, sharp, bound = a["main"], a["lam"], a["eta"], a["sharp"], a["bound"]
    (_, rho, p), (_, c_rho, c_p) = a["falls"], a["control"]
    slope_fn = claim.derivation(theory.c10_flatness).fn("loglog_slope_in_lambda", theory.s_el)
    fit = stats.ols(np.log(sharp[main]), {"log λ": np.log(lam[main])})
    s_mid = float(np.exp(np.mean(np.log(eta[main] * lam[main]))))
    e_rho, e_p = falling_rank_test(m["eta_e_median"], sharp)
    rows = table(["seed", "role", "η", "λ", "ηλ", "sharpness", "HVPs", "residual", "η_e,i range",
                  "λ_max(D^½PHPD^½)", "drift fraction [CI]", "train loss / acc",
                  "test loss / acc"],
                 [[m["seed"][i], "main" if main[i] else "control", f"{eta[i]:.3g}",
                   f"{lam[i]:.3g}", f"{eta[i] * lam[i]:.3g}", fmt(sharp[i]), m["matvecs"][i],
                   fmt(m["residual"][i]), f"{fmt(m['eta_e_min'][i])} … {fmt(m['eta_e_max'][i])}",
                   fmt(m["product"][i]) if main[i] else "–",
                   f"{fmt(m['drift'][i])} [{fmt(m['drift_low'][i])}, {fmt(m['drift_high'][i])}]"
                   if main[i] else "–",
                   f"{m['train_loss'][i]:.3f} / {m['train_acc'][i]:.3f}",
                   f"{m['test_loss'][i]:.3f} / {m['test_acc'][i]:.3f}"] for i in range(len(lam))])
    return Presentation(
        expected="Spearman ρ(λ, sharpness) < 0 (one-sided p < 0.05); sharpness·η_e < 2",
        predicted={"ρ": "< 0", "sharpness·η_e": f"< {bound:g}",
                   "log-log slope in λ if sharpness ∝ 2/η_e*": float(slope_fn(s_mid))},
        measured={"headline": rho, "Spearman ρ": rho, "permutation p (one-sided)": p,
                  "max λ_max(D^½PHPD^½)": a["worst"],
                  "log-log slope in λ (95% CI)": list(fit["log λ"])},
        tolerance={"α": alpha, "stability bound": bound},
        tolerance_reason="one-sided permutation test of Spearman's ρ (scipy.stats."
                         f"permutation_test, 9999 pairings) at α = {alpha}, fixed before "
                         "measuring; the bound 2 is sympy's sup of the stable ηh; Lanczos to "
                         f"ARPACK tol {m['tol']:g} (residuals in the table)",
        control={"description": "equal ηλ (equal η_e*), λ varying 8×: (η/2, 2λ₁), (η, λ₁), "
                                "(2η, λ₁/2), (4η, λ₁/4); the same rank criterion, on the main "
                                "test's design, must find no falling order",
                 "measured": {"Spearman ρ": c_rho, "permutation p": c_p}},
        resolves=f"with {int(main.sum())} (λ, seed) points the one-sided test at α = {alpha} "
                 "rejects 'no order' only for ρ ≲ −0.6 (permutation null); a λ-independent "
                 "sharpness or a reversed order misses",
        tables=[rows],
        notes=[f"sharpness on a fixed batch of the first {m['eval_batch']} training images, "
               "un-augmented, BN in training mode, float32 products, ARPACK Lanczos (float64)",
               f"log-log slope of the sharpness on λ: {fmt(fit['log λ'][0])} "
               f"[{fmt(fit['log λ'][1])}, {fmt(fit['log λ'][2])}] (t-interval); "
               f"{float(slope_fn(s_mid)):.3f} if it followed the bound 2/η_e* (sympy)",
               f"against the realized η_e (median over tensors), all {len(lam)} configurations:"
               f" Spearman ρ = {e_rho:.2f}, one-sided permutation p = {e_p:.3g}",
               "generalization gap: test − train loss and accuracy in the table (BN in eval "
               "mode" + (f"; on the first {m['eval_images']} images of each set)"
                         if m.get("eval_images") else ")")],
        context={"model": str(m.get("model", "resnet8")), "dtype": "float32",
                 "seed": sorted({int(v) for v in m["seed"]})})


def figure(m: dict, verdict):
    fig, ax = claim.canvas(size=(6.5, 4.2))
    main = np.asarray(m["main"], bool)
    for i, seed in enumerate(sorted(set(m["seed"].tolist()))):
        mk, sel, c = "os^D"[i % 4], main & (m["seed"] == seed), ~main & (m["seed"] == seed)
        order = np.argsort(m["lam"][sel])
        ax.plot(m["lam"][sel][order], m["sharpness"][sel][order], mk + "-", color="C0",
                label=f"sharpness, seed {seed}")
        ax.plot(m["lam"][c], m["sharpness"][c], mk, color="C2", mfc="none",
                label=f"control (equal ηλ), seed {seed}")
        eta_e = m["product"][sel][order] / m["sharpness"][sel][order]
        ax.plot(m["lam"][sel][order], 2 / eta_e, mk + "--", color="C3", mfc="none",
                label=f"stability bound 2/η_e, seed {seed}")
    ax.set(xscale="log", yscale="log", xlabel="λ (loss term λ‖w‖²; PyTorch weight_decay = 2λ)",
           ylabel="top eigenvalue of the sphere Hessian",
           title=f"C10: sharpness on the unit sphere at the end of training ({m['steps']} steps)")
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def test_sharpness_falls_as_weight_decay_raises_the_effective_learning_rate(verify, model_spec):
    verify(__name__, model_spec)
