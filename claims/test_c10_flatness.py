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

Verdict (wd_claims.judge): the falling rank order and the rejected control are core (either
missing is a FAIL); the control configurations must share ηλ to float rounding (core: a
factor-2 slip in one λ breaks the control). The stability bound max λ_max(D^½PHPD^½) ≤ 2 is a
sharper, non-core statement: at the quick budget it misses (up to ≈ 4.5) while the networks are
far from any minimum (training accuracy < ½ at every end point that exceeds the bound: SGD
diffuses rather than settles where a quadratic's linear stability applies) — a declared, strict
expected failure (wd_claims.expected), never a loosened bound.

Budget: smoke — seconds; quick — 128 steps of batch 16 (width 8) per configuration, 6
configurations × 2 seeds, 64-image sharpness batch (the stability Lanczos run starts from the
sharpness's Ritz vector); full — CIFAR-10, the budget's 100 epochs, 1024-image sharpness batch.
"""

from dataclasses import dataclass

import matplotlib
import numpy as np
import pytest
import torch

from wd_claims import runs, stats, theory
from wd_claims.data import DeviceData
from wd_claims.judge import Check
from wd_claims.probes import sharpness_on_sphere
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.setting import merge, of_run
from wd_claims.train import TrainConfig

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
    eval_images: int = 0  # of each set, for the reported generalization gap (0: every image)


def setting(budget) -> Setting:
    # quick: 128 steps hold 3.2 relaxation times 1/(8ηλ) of the slowest configuration (ηλ ≈ 3e-3);
    # each configuration costs ~2 Lanczos runs of ~12 Hessian-vector products on top of training,
    # on 64 images (128 cost ~140 of the quick suite's ~700 s on a 2-core CPU).
    # CPU budgets evaluate the reported gap on as many training images as held-out ones (the
    # first n_test): all 8,192 + 2,048 cost more than the 128 training steps (≈ 24 of 45 s a run).
    seeds = tuple(budget.seeds) if len(budget.seeds) >= 2 else (0, 1)
    return {"smoke": Setting(64, 64, seeds, torch.float32, 1e-2, eval_images=budget.n_test),
            "quick": Setting(128, 64, seeds, torch.float32, 1e-2, eval_images=budget.n_test),
            "full": Setting(budget.steps, budget.cap_images(1024), seeds, torch.float32,
                            1e-3)}[budget.name]


def grid(budget) -> tuple[list[float], list[float], list[str]]:
    """(etas, lams, roles): N_LAMS λ at the budget's middle η ("main"), then the two other
    configurations sharing the ηλ of the second λ ("control")."""
    eta = budget.etas[len(budget.etas) // 2]
    lams = [budget.lams[0] * LAM_RATIO**k for k in range(N_LAMS)]
    etas = [eta] * N_LAMS + [eta / 2, 2 * eta]
    lams = lams + [2 * lams[1], lams[1] / 2]
    return etas, lams, ["main"] * N_LAMS + ["control"] * 2


def c10_config(budget, seed: int, data_name: str, model: str = "resnet8") -> TrainConfig:
    etas, lams, _ = grid(budget)
    return TrainConfig(etas=tuple(etas), lams=tuple(lams), steps=setting(budget).steps,
                       batch_size=budget.batch_size, model=model, width=budget.width,
                       seed=seed, augment=budget.augment, data=data_name, n_train=budget.n_train,
                       freeze_non_invariant=True, eval_images=setting(budget).eval_images)


def c10_configs(suite, images, model: str) -> list[TrainConfig]:
    """One run per seed of :func:`setting`; trained with the shared runs (wd_claims.runs.EXTRA)."""
    return [c10_config(suite.budget, seed, images[0].name, model)
            for seed in setting(suite.budget).seeds]


def measure_run(result, train_data: DeviceData, s: Setting, roles: tuple[str, ...]) -> dict:
    """:func:`measure_one` of every configuration of one seed's run, on the first
    ``s.eval_batch`` training images (un-augmented): arrays over configurations. A pure function
    of the run, so the worker that trained it measures it (wd_claims.runs.register)."""
    x, y = train_data.x[: s.eval_batch].cpu(), train_data.y[: s.eval_batch].cpu()
    rows = [measure_one(result, k, x, y, s, roles[k] == "main") for k in range(result.config.k)]
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


def run_measure(budget):
    """The picklable measure of a C10 run at ``budget`` (what the workers compute)."""
    import functools

    return functools.partial(measure_run, s=setting(budget), roles=tuple(grid(budget)[2]))


runs.register("C10", c10_configs, measure=run_measure)


def effective_lrs(model, names: list[str], eta: float, lam: float) -> np.ndarray:
    """η_e,i = η/((1 − 2ηλ)‖w_i‖²) per tensor (P,), C6's exact first-order factor, at the
    model's current point."""
    params = dict(model.named_parameters())
    sq = np.array([float(params[n].detach().double().pow(2).sum()) for n in names])
    return eta / ((1 - 2 * eta * lam) * sq)


def measure_one(result, k: int, x, y, s: Setting, stability: bool) -> dict:
    """Sharpness of configuration k at the end of training and, if ``stability``, the exact
    stability product λ_max(D^½PHPD^½), D = diag(η_e,i): the sharpness each tensor's own η_e
    sees (per-tensor η_e differ up to ~10×, so no single η_e times the sharpness is exact); its
    Lanczos run starts from the sharpness's Ritz vector (D^-½v), which saves products."""
    names = list(result.tensors[:-1])  # the tracked tensors (the joint column is last)
    model = result.model(k)
    eta, lam = result.config.etas[k], result.config.lams[k]
    sharp = sharpness_on_sphere(model, x, y, names, dtype=s.dtype, tol=s.tol, ncv=s.ncv)
    eta_e = effective_lrs(model, names, eta, lam)
    product, matvecs = float("nan"), sharp.matvecs
    if stability:
        sizes = [dict(model.named_parameters())[n].numel() for n in names]
        v0 = sharp.vector / np.repeat(np.sqrt(eta_e), sizes)
        prod = sharpness_on_sphere(model, x, y, names, dtype=s.dtype, tol=s.tol, ncv=s.ncv,
                                   scales=np.sqrt(eta_e), v0=v0)
        product, matvecs = prod.value, matvecs + prod.matvecs
    return {"eta": eta, "lam": lam, "sharpness": sharp.value, "residual": sharp.residual,
            "matvecs": matvecs, "eta_e_min": float(eta_e.min()), "eta_e_max": float(eta_e.max()),
            "eta_e_median": float(np.median(eta_e)), "product": product,
            "train_loss": float(result.train_eval["loss"][k]),
            "train_acc": float(result.train_eval["accuracy"][k]),
            "test_loss": float(result.test["loss"][k]),
            "test_acc": float(result.test["accuracy"][k]),
            "diverged": result.diverged[k] is not None}


def measure(per_seed: dict, s: Setting, roles: list[str]) -> dict:
    """Every configuration of every seed's run (per_seed: seed → :func:`measure_run`'s arrays),
    as a flat dict of arrays over rows (seed, configuration)."""
    keys = list(next(iter(per_seed.values())))
    m = {key: np.concatenate([np.asarray(a[key]) for a in per_seed.values()]) for key in keys}
    m["seed"] = np.concatenate([np.full(len(roles), seed) for seed in per_seed])
    m["main"] = np.array([role == "main" for _ in per_seed for role in roles])
    m.update(alpha=ALPHA, steps=s.steps, eval_batch=s.eval_batch, tol=s.tol,
             eval_images=s.eval_images)
    return m


def spearman_rho(x, y, axis=-1):
    """Spearman's ρ of ``x`` and ``y`` along ``axis`` (any leading shape; ties get average ranks),
    as scipy.stats.spearmanr computes it: the Pearson correlation of the ranks. Vectorized, so
    that the permutation test below evaluates all its pairings in one call."""
    from scipy import stats as st

    rx = st.rankdata(np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(y))), axis=axis)
    ry = st.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    return np.sum(rx * ry, axis=axis) / np.sqrt(np.sum(rx**2, axis=axis) * np.sum(ry**2, axis=axis))


def falling_rank_test(lams, values, seed: int = 0, n_resamples: int = 9999
                      ) -> tuple[float, float]:
    """(Spearman ρ of values on λ, one-sided permutation p-value for ρ < 0): scipy's
    permutation_test of the pairings (exact when they number ≤ 9999)."""
    from scipy import stats as st

    lams, values = np.asarray(lams, float), np.asarray(values, float)
    if np.unique(values).size < 2 or not np.all(np.isfinite(values)):
        return float("nan"), 1.0          # no order at all (e.g. λ-independent sharpness)
    rho = float(st.spearmanr(lams, values).statistic)
    res = st.permutation_test((values,), lambda v, axis=-1: spearman_rho(lams, v, axis=axis),
                              permutation_type="pairings", alternative="less", vectorized=True,
                              n_resamples=n_resamples, random_state=np.random.default_rng(seed))
    return rho, float(res.pvalue)


def falls(lams, values, alpha: float) -> tuple[bool, float, float]:
    """The criterion: (ρ < 0 and one-sided p < α, ρ, p)."""
    rho, p = falling_rank_test(lams, values)
    return bool(rho < 0 and p < alpha), rho, p


FIT_ACC = 0.5         # an end point with training accuracy below this has not fit its data


def judge(m: dict) -> Verdict:
    derivation = theory.c10_flatness()
    bound = float(derivation.exprs["eta_h_max"])            # 2, from |1 − ηh| < 1
    slope_fn = derivation.fn("loglog_slope_in_lambda", theory.s_el)
    alpha = m["alpha"]
    main = np.asarray(m["main"], bool)
    lam, eta, sharp = (np.asarray(m[k], float) for k in ("lam", "eta", "sharpness"))
    # the control: the equal-ηλ configurations plus the main one at the second λ, per seed
    lam1 = np.unique(lam[main])[1]
    ctrl = ~main | (main & np.isclose(lam, lam1, rtol=0, atol=0))
    ok, rho, p = falls(lam[main], sharp[main], alpha)
    c_ok, c_rho, c_p = falls(lam[ctrl], sharp[ctrl], alpha)
    el = eta[ctrl] * lam[ctrl]
    el_spread = float(np.ptp(el) / np.mean(el))
    product = np.asarray(m["product"], float)[main]
    worst = float(np.max(product))
    acc = np.asarray(m["train_acc"], float)[main]
    over = product > bound
    crit = f"Spearman ρ(λ, sharpness) < 0 with one-sided permutation p < {alpha}"
    checks = [
        Check("sharpness falls as λ grows", ok, measured={"ρ": rho, "p": p},
              tolerance=f"ρ < 0, p < {alpha}", criterion=crit),
        Check("control rejected", not c_ok, measured={"ρ": c_rho, "p": c_p},
              tolerance="the same criterion misses",
              criterion="equal-ηλ configurations (equal η_e*), λ varying 4×"),
        Check("control configurations share ηλ", el_spread <= 1e-12, measured=el_spread,
              tolerance="relative spread ≤ 1e-12 (float64 rounding of η·λ)",
              criterion="(max − min)/mean of η·λ over the control"),
        Check("linear stability: λ_max(D^½PHPD^½) ≤ 2", worst <= bound, core=False,
              measured=worst, tolerance=f"≤ {bound:g}",
              criterion="max over the main configurations; the bound is sympy's sup of ηh"),
    ]
    conditions = [Check(
        "end points far from a minimum", bool(over.any()) and bool(np.all(acc[over] < FIT_ACC)),
        measured={"training accuracy where the bound is exceeded": [round(a, 3)
                                                                    for a in acc[over]]},
        tolerance=f"< {FIT_ACC} at every end point above the bound",
        criterion="a network that has not fit half its training set sits at no minimum, "
                  "where a quadratic's linear stability would apply")]
    fit = stats.ols(np.log(sharp[main]), {"log λ": np.log(lam[main])})
    s_mid = float(np.exp(np.mean(np.log(eta[main] * lam[main]))))
    e_rho, e_p = falling_rank_test(m["eta_e_median"], sharp)
    table = ["| seed | role | η | λ | ηλ | sharpness | HVPs | residual | η_e,i range | "
             "λ_max(D^½PHPD^½) | train loss / acc | test loss / acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i in range(len(lam)):
        table.append(
            f"| {m['seed'][i]} | {'main' if main[i] else 'control'} | {eta[i]:.3g} | "
            f"{lam[i]:.3g} | {eta[i] * lam[i]:.3g} | {fmt(sharp[i])} | {m['matvecs'][i]} | "
            f"{fmt(m['residual'][i])} | {fmt(m['eta_e_min'][i])} … {fmt(m['eta_e_max'][i])} | "
            f"{fmt(m['product'][i]) if main[i] else '–'} | "
            f"{m['train_loss'][i]:.3f} / {m['train_acc'][i]:.3f} | "
            f"{m['test_loss'][i]:.3f} / {m['test_acc'][i]:.3f} |")
    return Verdict(
        id="C10", title="larger λ → larger η_e → flatter end point; sharpness·η_e < 2",
        quote=QUOTE,
        expected="Spearman ρ(λ, sharpness) < 0 (one-sided p < 0.05); sharpness·η_e < 2",
        derivation=derivation.text,
        predicted={"ρ": "< 0", "sharpness·η_e": f"< {bound:g}",
                   "log-log slope in λ if sharpness ∝ 2/η_e*": float(slope_fn(s_mid))},
        measured={"headline": rho, "Spearman ρ": rho, "permutation p (one-sided)": p,
                  "max λ_max(D^½PHPD^½)": worst,
                  "log-log slope in λ (95% CI)": list(fit["log λ"])},
        tolerance={"α": alpha, "stability bound": bound},
        tolerance_reason="one-sided permutation test of Spearman's ρ (scipy.stats."
                         f"permutation_test, 9999 pairings) at α = {alpha}, fixed before "
                         "measuring; the bound 2 is sympy's sup of the stable ηh; Lanczos to "
                         f"ARPACK tol {m['tol']:g} (residuals in the table)",
        checks=checks, conditions=conditions,
        control={"description": "equal ηλ (equal η_e*), λ varying 4×: (η/2, 2λ₁), (η, λ₁), "
                                "(2η, λ₁/2); the same rank criterion must find no falling order",
                 "measured": {"Spearman ρ": c_rho, "permutation p": c_p}},
        resolves=f"with {int(main.sum())} (λ, seed) points the one-sided test at α = {alpha} "
                 "rejects 'no order' only for ρ ≲ −0.6 (permutation null); a λ-independent "
                 "sharpness or a reversed order misses",
        tables=["\n".join(table)],
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


def plot(m: dict, report_dir, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    main = np.asarray(m["main"], bool)
    for i, seed in enumerate(sorted(set(m["seed"].tolist()))):
        mk = "os^D"[i % 4]
        sel = main & (m["seed"] == seed)
        order = np.argsort(m["lam"][sel])
        ax.plot(m["lam"][sel][order], m["sharpness"][sel][order], mk + "-", color="C0",
                label=f"sharpness, seed {seed}")
        c = ~main & (m["seed"] == seed)
        ax.plot(m["lam"][c], m["sharpness"][c], mk, color="C2", mfc="none",
                label=f"control (equal ηλ), seed {seed}")
        eta_e = m["product"][sel][order] / m["sharpness"][sel][order]
        ax.plot(m["lam"][sel][order], 2 / eta_e, mk + "--", color="C3", mfc="none",
                label=f"stability bound 2/η_e, seed {seed}")
    ax.set(xscale="log", yscale="log", xlabel="λ (loss term λ‖w‖²; PyTorch weight_decay = 2λ)",
           ylabel="top eigenvalue of the sphere Hessian", title=title)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    figure = save_figure(fig, report_dir, f"C10-{m.get('model', 'resnet8')}.png")
    plt.close(fig)
    return figure


@pytest.mark.models("resnet8")
def test_sharpness_falls_as_weight_decay_raises_the_effective_learning_rate(suite, images,
                                                                            record_verdict,
                                                                            model_spec):
    s = setting(suite.budget)
    train_data = DeviceData.from_images(images[0], suite.device)
    _, _, roles = grid(suite.budget)
    configs = {seed: c for seed, c in zip(s.seeds, c10_configs(suite, images, model_spec.name),
                                          strict=True)}
    runs.prefetch(suite, images, list(configs.values()))   # a no-op after the shared runs'
    m = measure({seed: runs.measured(suite, images, c, run_measure(suite.budget))
                 for seed, c in configs.items()}, s, roles)
    m["model"] = model_spec.name
    v = judge(m)
    v.figures = [plot(m, suite.report_dir,
                      f"C10: sharpness on the unit sphere at the end of training ({s.steps} "
                      "steps)")]
    v.setting = merge([of_run(c, train_data.name, probe=f"sharpness on the first {s.eval_batch} "
                              "training images, float32 Hessian-vector products")
                       for c in configs.values()])
    v.context["data"] = train_data.name
    record_verdict(v, measurements=m)
