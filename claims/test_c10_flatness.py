"""C10 — a larger λ raises η_e, and SGD then ends in flatter regions of the sphere.

Article (section "Weight decay + scale invariance", closing argument): "increased stochasticity
favors the convergence to 'flat' regions … An increase of the weight decay strength λ is therefore
still a form of regularization".

Expected (sympy, ``wd_claims.theory.c10_flatness``): gradient descent on ½hz² multiplies z by
1 − ηh, stable iff 0 < ηh < 2. On the sphere the direction moves with η_e = η/((1 − 2ηλ)‖w‖²)
(C6), so a region is linearly stable only if sharpness·η_e < 2, the sharpness h measured at
‖w‖ = 1. At the equilibrium (C5, C8) 2/η_e* = G(1 − 2ηλ)/√(ηλ(1 − ηλ)): it falls as λ grows at
fixed η (log-log slope → −½) and depends on (η, λ) only through ηλ.

Measurement: ResNet-8 (the budget's width), plain SGD, the article's λ‖w‖² (PyTorch
weight_decay = 2λ), four λ at one η and two seeds; only the scale-invariant kernels train (the
classifier and BN affine stay at their initialisation), so that λ acts on the network through η_e
alone — with everything trained, a large λ shrinks the classifier and BN γ themselves (a classical
L2 effect, not the article's mechanism) and the quick budget's λ kill the network. At the end of
training: the sharpness = top eigenvalue of the Hessian of the loss with respect to every
scale-invariant tensor, projected on the tangent space of each tensor's unit sphere, each tensor
rescaled to unit norm (``wd_claims.probes.sharpness_on_sphere``), by Hessian-vector products and
Lanczos (ARPACK), on a fixed batch of the first training images, un-augmented, BN in training mode
(batch statistics), float32 products. Criterion: Spearman's ρ between λ and the sharpness over
(λ, seed), with its one-sided permutation p-value (scipy.stats.permutation_test); the sharpness
must fall: ρ < 0 and p < α = 0.05. Stability: each tensor moves with its own η_e,i, so the
exact linear-stability number is λ_max(D^½PHPD^½), D = diag(η_e,i) (a second Lanczos run, main
configurations); it must be < 2. The generalization gap (train vs held-out loss and accuracy) is
reported beside.

Control: configurations with the same ηλ as the second λ — (η/2, 2λ), (η, λ), (2η, λ/2) — have
the same η_e* (C8) while λ varies 4×. The same rank criterion on λ must NOT find a falling
ordering there: the ordering follows η_e, not λ itself. Why it can fail: ‖w₀‖ differs relative to
each x* (the runs relax from different distances), and a finite run is not an exact equilibrium:
at the quick budget the equal-ηλ runs end with η_e still rising with η, and their sharpness then
orders the other way (falls with η, rises with λ) — reported, with the rank correlation of the
sharpness against the realized η_e over every configuration.

Where the catalogue's bound does not hold: at the quick budget λ_max(D^½PHPD^½) ends above 2 (the
η_e,i are large, θ* ≈ 2√(ηλ) up to 0.3 rad per step: the run diffuses rather than settles in a
minimum, and a 128-image batch Hessian overestimates the population one). That component is then
a documented expected failure (status xfail, with the numbers), never loosened.

Budget: smoke — seconds; quick — 128 steps of batch 32 per configuration, 6 configurations × 2
seeds, 128-image sharpness batch (~2 CPU-minutes, above the ~1 minute a claim should take at
quick: the two Lanczos runs per configuration dominate); full — CIFAR-10, the budget's 100 epochs,
1024-image sharpness batch.
"""

from dataclasses import dataclass

import matplotlib
import numpy as np
import pytest
import torch

from wd_claims import stats, theory
from wd_claims.data import DeviceData
from wd_claims.probes import sharpness_on_sphere
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.train import ALL_3X3, TrainConfig, train

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

pytestmark = pytest.mark.c10

QUOTE = ("increased stochasticity favors the convergence to “flat” regions … An increase of the "
         "weight decay strength λ is therefore still a form of regularization")
ALPHA = 0.05          # one-sided level of the rank tests
LAM_RATIO = 2.0       # the four λ are λ₀·2ᵏ: η_e* ∝ √λ spans 2^1.5 ≈ 2.8×
N_LAMS = 4


@dataclass(frozen=True)
class Setting:
    """What C10 spends at a budget (the width, batch and λ₀ are the budget's own)."""

    steps: int            # SGD steps per configuration
    eval_batch: int       # training images in the fixed sharpness batch
    seeds: tuple[int, ...]
    dtype: torch.dtype    # of the Hessian-vector products
    tol: float            # ARPACK's relative tolerance on the Ritz residual
    ncv: int = 8          # Lanczos vectors: the top eigenvalue is an outlier, 8 suffice


def setting(budget) -> Setting:
    # quick: 128 steps hold 3.2 relaxation times 1/(8ηλ) of the slowest configuration (ηλ ≈ 3e-3);
    # each configuration costs ~2 Lanczos runs of ~12 Hessian-vector products on top of training.
    seeds = tuple(budget.seeds) if len(budget.seeds) >= 2 else (0, 1)
    return {"smoke": Setting(64, 64, seeds, torch.float32, 1e-2),
            "quick": Setting(128, 128, seeds, torch.float32, 1e-2),
            "full": Setting(budget.steps, 1024, seeds, torch.float32, 1e-3)}[budget.name]


def grid(budget) -> tuple[list[float], list[float], list[str]]:
    """(etas, lams, roles): N_LAMS λ at the budget's middle η ("main"), then the two other
    configurations sharing the ηλ of the second λ ("control")."""
    eta = budget.etas[len(budget.etas) // 2]
    lams = [budget.lams[0] * LAM_RATIO**k for k in range(N_LAMS)]
    etas = [eta] * N_LAMS + [eta / 2, 2 * eta]
    lams = lams + [2 * lams[1], lams[1] / 2]
    return etas, lams, ["main"] * N_LAMS + ["control"] * 2


def c10_config(budget, seed: int, data_name: str) -> TrainConfig:
    etas, lams, _ = grid(budget)
    return TrainConfig(etas=tuple(etas), lams=tuple(lams), steps=setting(budget).steps,
                       batch_size=budget.batch_size, model="resnet8", width=budget.width,
                       seed=seed, augment=budget.augment, data=data_name, n_train=budget.n_train,
                       freeze_non_invariant=True)


def effective_lrs(model, names: list[str], eta: float, lam: float) -> np.ndarray:
    """η_e,i = η/((1 − 2ηλ)‖w_i‖²) per tensor (P,), C6's exact first-order factor, at the
    model's current point."""
    params = dict(model.named_parameters())
    sq = np.array([float(params[n].detach().double().pow(2).sum()) for n in names])
    return eta / ((1 - 2 * eta * lam) * sq)


def measure(result, k: int, x, y, s: Setting, stability: bool) -> dict:
    """Sharpness of configuration k at the end of training and, if ``stability``, the exact
    stability product λ_max(D^½PHPD^½), D = diag(η_e,i): the sharpness each tensor's own η_e
    sees (per-tensor η_e differ up to ~10×, so no single η_e times the sharpness is exact)."""
    names = [n for n in result.tensors if n != ALL_3X3]
    model = result.model(k)
    eta, lam = result.config.etas[k], result.config.lams[k]
    sharp = sharpness_on_sphere(model, x, y, names, dtype=s.dtype, tol=s.tol, ncv=s.ncv)
    eta_e = effective_lrs(model, names, eta, lam)
    product = float("nan")
    if stability:
        product = sharpness_on_sphere(model, x, y, names, dtype=s.dtype, tol=s.tol, ncv=s.ncv,
                                      scales=np.sqrt(eta_e)).value
    return {"eta": eta, "lam": lam, "sharpness": sharp.value, "residual": sharp.residual,
            "matvecs": sharp.matvecs, "converged": sharp.converged, "dim": sharp.dim,
            "eta_e_min": float(eta_e.min()), "eta_e_max": float(eta_e.max()),
            "eta_e_median": float(np.median(eta_e)),
            "product": product, "eta_e_eff": product / sharp.value,
            "train_loss": float(result.train_eval["loss"][k]),
            "train_acc": float(result.train_eval["accuracy"][k]),
            "test_loss": float(result.test["loss"][k]),
            "test_acc": float(result.test["accuracy"][k]),
            "diverged": result.diverged[k]}


def falling_rank_test(lams, values, seed: int = 0) -> tuple[float, float]:
    """(Spearman ρ of values on λ, one-sided permutation p-value for ρ < 0): both from scipy."""
    from scipy import stats as st

    lams, values = np.asarray(lams, float), np.asarray(values, float)
    rho = float(st.spearmanr(lams, values).statistic)
    res = st.permutation_test((values,), lambda v: st.spearmanr(lams, v).statistic,
                              permutation_type="pairings", alternative="less",
                              n_resamples=9999, random_state=np.random.default_rng(seed))
    return rho, float(res.pvalue)


def plot(rows: list[dict], report_dir, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, seed in enumerate(sorted({r["seed"] for r in rows})):
        main = sorted((r for r in rows if r["seed"] == seed and r["role"] == "main"),
                      key=lambda r: r["lam"])
        ctrl = [r for r in rows if r["seed"] == seed and r["role"] == "control"]
        lam = [r["lam"] for r in main]
        mk = "os^D"[i % 4]
        ax.plot(lam, [r["sharpness"] for r in main], mk + "-", color="C0",
                label=f"sharpness, η = {main[0]['eta']:.3g}, seed {seed}")
        ax.plot([r["lam"] for r in ctrl], [r["sharpness"] for r in ctrl], mk, color="C2",
                mfc="none", label=f"control: same ηλ as λ = {main[1]['lam']:.3g}, seed {seed}")
        ax.plot(lam, [2 / r["eta_e_eff"] for r in main], mk + "--", color="C3", mfc="none",
                label=f"stability bound 2/η_e (sympy's 2), seed {seed}")
    ax.set(xscale="log", yscale="log", xlabel="λ (loss term λ‖w‖²; PyTorch weight_decay = 2λ)",
           ylabel="top eigenvalue of the sphere Hessian", title=title)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    figure = save_figure(fig, report_dir, "C10-resnet8.png")
    plt.close(fig)
    return figure


def test_sharpness_falls_as_weight_decay_raises_the_effective_learning_rate(suite, images,
                                                                            record_verdict):
    derivation = theory.c10_flatness()
    assert all(derivation.proved.values()), derivation.text
    bound = float(derivation.exprs["eta_h_max"])            # 2, from |1 − ηh| < 1
    slope_fn = derivation.fn("loglog_slope_in_lambda", theory.s_el)

    s = setting(suite.budget)
    train_images, test_images = images
    train_data = DeviceData.from_images(train_images, suite.device)
    test_data = DeviceData.from_images(test_images, suite.device)
    x, y = train_data.x[: s.eval_batch].cpu(), train_data.y[: s.eval_batch].cpu()
    from wd_claims.cache import Cache

    cache = Cache(suite.cache_dir, fresh=suite.fresh)
    _, _, roles = grid(suite.budget)
    rows = []
    for seed in s.seeds:
        result = train(c10_config(suite.budget, seed, train_data.name), train_data, test_data,
                       device=suite.device, cache=cache)
        rows += [{**measure(result, k, x, y, s, roles[k] == "main"), "seed": seed,
                  "role": roles[k]} for k in range(result.config.k)]

    main = [r for r in rows if r["role"] == "main"]
    ctrl = [r for r in rows if r["role"] == "control" or (r["role"] == "main" and
                                                          r["lam"] == main[1]["lam"])]
    rho, p = falling_rank_test([r["lam"] for r in main], [r["sharpness"] for r in main])
    c_rho, c_p = falling_rank_test([r["lam"] for r in ctrl], [r["sharpness"] for r in ctrl])
    falls = rho < 0 and p < ALPHA
    rejected = not (c_rho < 0 and c_p < ALPHA)
    e_rho, e_p = falling_rank_test([r["eta_e_median"] for r in rows],
                                   [r["sharpness"] for r in rows])
    worst_product = max(r["product"] for r in main)
    stable = worst_product < bound
    fit = stats.ols(np.log([r["sharpness"] for r in main]), {"log λ": np.log(
        [r["lam"] for r in main])})
    c_fit = stats.ols(np.log([r["sharpness"] for r in ctrl]), {"log λ": np.log(
        [r["lam"] for r in ctrl])})
    s_mid = float(np.exp(np.mean(np.log([r["eta"] * r["lam"] for r in main]))))
    slope_pred = float(slope_fn(s_mid))

    figure = plot(rows, suite.report_dir,
         f"C10: sharpness on the unit sphere at the end of training ({s.steps} steps)")

    if not rejected:
        status, reason = "fail", (f"the control was not rejected: among equal-ηλ configurations "
                                  f"the sharpness falls with λ too (ρ = {c_rho:.2f}, "
                                  f"p = {c_p:.3g}); the ordering is not explained by η_e alone")
    elif not falls:
        status, reason = "xfail", (f"at the {suite.budget.name} budget the sharpness does not fall "
                                   f"significantly as λ grows: ρ = {rho:.2f}, one-sided "
                                   f"permutation p = {p:.3g} ≥ {ALPHA}")
    elif not stable:
        status, reason = "xfail", (
            f"the sharpness falls with λ (ρ = {rho:.2f}, p = {p:.3g}), but the end points are not "
            f"linearly stable: λ_max(D^½PHPD^½) up to {worst_product:.3g} ≥ {bound:g}. At this "
            "budget SGD diffuses with large per-step angles (η_e,i up to "
            f"{max(r['eta_e_max'] for r in main):.3g}) instead of settling in a minimum, where "
            "the bound of a quadratic applies; the small sharpness batch also inflates the top "
            "eigenvalue")
    else:
        status, reason = "pass", ""
    table = ["| seed | role | η | λ | ηλ | sharpness | Lanczos HVPs | residual | η_e,i range | "
             "λ_max(D^½PHPD^½) | train loss / acc | test loss / acc | gap loss / acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['seed']} | {r['role']} | {r['eta']:.3g} | {r['lam']:.3g} | "
              f"{r['eta'] * r['lam']:.3g} | {fmt(r['sharpness'])} | {r['matvecs']} | "
              f"{fmt(r['residual'])} | {fmt(r['eta_e_min'])} … {fmt(r['eta_e_max'])} | "
              f"{fmt(r['product']) if r['role'] == 'main' else '– (not computed)'} | "
              f"{r['train_loss']:.3f} / {r['train_acc']:.3f} | "
              f"{r['test_loss']:.3f} / {r['test_acc']:.3f} | "
              f"{r['test_loss'] - r['train_loss']:.3f} / {r['train_acc'] - r['test_acc']:.3f} |"
              for r in rows]
    record_verdict(Verdict(
        id="C10", title="larger λ → larger η_e → flatter end point; sharpness·η_e < 2",
        quote=QUOTE,
        expected="Spearman ρ(λ, sharpness) < 0 (one-sided p < 0.05); sharpness·η_e < 2",
        derivation=derivation.text,
        predicted={"ρ": "< 0", "sharpness·η_e": f"< {bound:g}",
                   "log-log slope in λ if sharpness ∝ 2/η_e*": slope_pred},
        measured={"headline": rho, "Spearman ρ": rho, "permutation p (one-sided)": p,
                  "max sharpness·η_e": worst_product,
                  "log-log slope in λ (95% CI)": list(fit["log λ"]),
                  "sharpness": {f"λ={r['lam']:.3g}, seed {r['seed']}": r["sharpness"]
                                for r in main}},
        tolerance={"α": ALPHA, "stability bound": bound},
        tolerance_reason="one-sided permutation test of Spearman's ρ (scipy.stats."
                         f"permutation_test, 9999 pairings) at α = {ALPHA}; the bound 2 is "
                         "sympy's sup of the stable ηh; Lanczos to ARPACK tol "
                         f"{s.tol:g} (residuals in the table)",
        status=status, reason=reason,
        control={"description": "equal ηλ (equal η_e*), λ varying 4×: (η/2, 2λ₁), (η, λ₁), "
                                "(2η, λ₁/2); the same rank criterion must find no falling order",
                 "measured": {"Spearman ρ": c_rho, "permutation p": c_p,
                              "log-log slope in λ (95% CI)": list(c_fit["log λ"])},
                 "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure], tables=["\n".join(table)],
        notes=[f"sharpness on a fixed batch of the first {s.eval_batch} training images, "
               "un-augmented, BN in training mode, float32 products, ARPACK Lanczos (float64)",
               f"{s.steps} SGD steps of batch {suite.budget.batch_size} per configuration, width "
               f"{suite.budget.width}, seeds {list(s.seeds)}; only the scale-invariant kernels "
               "train (classifier and BN affine frozen at init)",
               f"log-log slope of the sharpness on λ: {fmt(fit['log λ'][0])} "
               f"[{fmt(fit['log λ'][1])}, {fmt(fit['log λ'][2])}] (t-interval); "
               f"{slope_pred:.3f} if the sharpness followed the bound 2/η_e* (sympy, at the "
               f"grid's geometric-mean ηλ = {s_mid:.3g}); control slope "
               f"{fmt(c_fit['log λ'][0])} [{fmt(c_fit['log λ'][1])}, {fmt(c_fit['log λ'][2])}]",
               f"against the realized η_e (median over tensors of η_e,i at the end), all "
               f"{len(rows)} configurations: Spearman ρ = {e_rho:.2f}, one-sided permutation "
               f"p = {e_p:.3g}; equal ηλ gives equal η_e only at equilibrium — where the "
               "equal-ηλ runs still differ in η_e at the end, their sharpness follows η_e",
               f"stability: max over the main configurations of λ_max(D^½PHPD^½), D = diag(η_e,i),"
               f" = {fmt(worst_product)} (bound {bound:g}); the figure's bound line is "
               "2/η_e with η_e = λ_max(D^½PHPD^½)/sharpness (between min and max η_e,i), so a "
               "point under its line is linearly stable",
               "generalization gap: test − train loss, train − test accuracy (BN in eval mode, "
               "the whole training subset and the held-out images)"],
        context={"model": "resnet8", "data": train_data.name, "dtype": "float32",
                 "seed": list(s.seeds)}))
    assert rejected, reason
    if status == "xfail":
        pytest.xfail(reason)
    assert falls and stable, reason  # unreachable when they fail (xfail above): kept as the spec
