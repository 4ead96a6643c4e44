"""C9 — one SGD step of 2η carries twice the noise variance of two steps of η.

Article (section "Increased effective learning rate → regularization"): the noise
variance scales as 4η² for one iteration with 2η and as 2η² for two iterations with η, "by
independence of each iteration"; so a larger (effective) learning rate means more noise.

Expected (sympy, wd_claims.theory.c09_noise_variance): Var(2ηξ)/Var(ηξ₁ + ηξ₂) = 4η²σ²/2η²σ² = 2 for
independent noise; 2(N − b)/(N − 2b) for two disjoint batches of one epoch (N examples, batch b);
two *consecutive* steps on curvature h give 4/(1 + (1 − ηh)²) ≈ 2 + 2ηh, below 2 for ηh > 2 (the
argument's first-order idealization omits this); the same batch twice (perfectly correlated noise)
gives 4/(2 − ηh)² ≈ 1.

Measurement: a real ResNet-8 run of the budget's width (the budget grid's middle (η, λ), plain SGD,
PyTorch weight_decay = 2λ, batch and augmentation of the budget) trained by wd_claims.train for one
epoch; at 3 checkpoints (start, a quarter, the end) many draws of two disjoint random mini-batches
of the probe size (BN in training mode, no augmentation, no weight decay in the probed steps,
η = the run's η); the noise is the displacement of *all* trainable parameters minus its mean over
draws, its total variance the trace of the covariance (wd_claims.noise). Ratio of total variances,
95 % BCa interval over draws (scipy.stats.bootstrap), Bonferroni-corrected over the checkpoints.
Budget: draws smoke 16, quick 64, full 256; about a minute at quick on a CPU.

Verdict: pass when the ratio of one 2η step to two real consecutive η steps contains the epoch
prediction 2(N − b)/(N − 2b) at every checkpoint. When it does not, but the curvature-free ratio
(both gradients at the same point, which differs from the real steps only by where the second
gradient is taken) does, the verdict is a documented expected failure: the article's idealization
("independence of each iteration"), not the noise algebra.

Control: the same mini-batch for both small steps, at a small probe step η/10 where the first-order
picture holds (its ratio 4/(2 − ηh/10)² is then ≈ 1); the same criterion must reject it. The same
batch at the run's η is reported too: there the batch's own curvature pulls it towards 2. So are
two real steps of η/10 (independent batches), where the first-order picture should restore 2.
"""

import numpy as np
import pytest
import sympy as sp

from wd_claims import theory
from wd_claims.cache import Cache
from wd_claims.config import torch_weight_decay
from wd_claims.data import DeviceData
from wd_claims.noise import bootstrap_interval, draw_displacements, variance_ratio
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.train import TrainConfig, train

pytestmark = pytest.mark.c09

QUOTE = ("the noise variance scales as 4η² when performing one iteration with learning rate 2η, "
         "while it scales as 2η² — by independence of each iteration — when performing two "
         "iterations with learning rate η")
DRAWS = {"smoke": 16, "quick": 64, "full": 256}
ALPHA = 0.05                       # family-wise: each checkpoint's interval at 1 − α/3
SMALL_STEP = 0.1                   # the control's step, in units of the run's η
KINDS = {"two_steps": "two real η steps (B₁ then B₂)",
         "two_steps_small_step": "two real steps, step η/10",
         "two_steps_frozen": "two η gradients at w₀ (no curvature)",
         "same_batch_small_step": "control: B₁ twice, step η/10",
         "two_steps_same_batch": "B₁ twice, step η"}


def run_config(budget, data: DeviceData) -> TrainConfig:
    """One epoch of ResNet-8 at the budget grid's middle (η, λ), checkpoints at 0, ¼ and 1 epoch."""
    steps = len(data) // budget.batch_size
    eta, lam = budget.etas[len(budget.etas) // 2], budget.lams[len(budget.lams) // 2]
    return TrainConfig(etas=(eta,), lams=(lam,), steps=steps, batch_size=budget.batch_size,
                       model="resnet8", width=budget.width, seed=0, augment=budget.augment,
                       checkpoints=(0, steps // 4, steps), data=data.name, n_train=len(data))


def measure(model, data: DeviceData, eta: float, batch: int, draws: int, seed: int,
            level: float) -> dict:
    """Ratios one-2η-step / each two-step kind, and the curvature factor, with their intervals."""
    noise = draw_displacements(model, data.x, data.y, eta=eta, batch_size=batch, draws=draws,
                               seed=seed, small_eta=SMALL_STEP * eta)
    out = {kind: bootstrap_interval(lambda g, k=kind: variance_ratio(g, "one_step_2eta", k),
                                    noise.grams, level=level, seed=seed) for kind in KINDS}
    # Real / curvature-free two-step variance: 1 − 2ηh-like (wd_claims.theory ratio_sequential).
    out["curvature"] = bootstrap_interval(
        lambda g: variance_ratio(g, "two_steps", "two_steps_frozen"), noise.grams, level=level,
        seed=seed)
    out["n_params"] = noise.n_params
    return out


def contains(interval, value: float) -> bool:
    _, lo, hi = interval
    return lo <= value <= hi


def plot(steps, results, predicted, report_dir, title) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for i, (kind, label) in enumerate(KINDS.items()):
        est = np.array([results[s][kind] for s in steps])
        x = np.arange(len(steps)) + (i - 2) * 0.07
        ax.errorbar(x, est[:, 0], yerr=[est[:, 0] - est[:, 1], est[:, 2] - est[:, 0]], fmt="o",
                    capsize=3, label=label)
    ax.axhline(2.0, color="k", lw=1, label="article: 2")
    ax.axhline(predicted, color="k", ls="--", lw=1, label=f"epoch: 2(N−b)/(N−2b) = {predicted:.4f}")
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="perfectly correlated: 1")
    ax.set_xticks(range(len(steps)), [f"step {s}" for s in steps])
    ax.set_ylabel("Var(one 2η step) / Var(two η steps)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    figure = save_figure(fig, report_dir, "C9-resnet8.png")
    plt.close(fig)
    return figure


def test_one_double_step_has_twice_the_noise_variance_of_two_single_steps(suite, images,
                                                                           record_verdict):
    derivation = theory.c09_noise_variance()
    assert all(derivation.proved.values()), derivation.text
    budget = suite.budget
    train_images, _ = images
    data = DeviceData.from_images(train_images, suite.device)
    config = run_config(budget, data)
    run = train(config, data, device=suite.device,
                cache=Cache(suite.cache_dir, fresh=suite.fresh), progress=False)
    assert run.diverged == [None], run.diverged
    eta, lam, b = config.etas[0], config.lams[0], budget.probe_batch
    predicted = float(derivation.fn("ratio_epoch", theory.N_pool, theory.b_size)(len(data), b))
    ideal = float(derivation.exprs["ratio"])
    r_sym = sp.Symbol("r", positive=True)
    eta_h = [derivation.fn(k, r_sym) for k in ("eta_h_from_ratio", "eta_h_from_ratio_other_root")]

    steps = list(config.checkpoints)
    level = 1 - ALPHA / len(steps)
    results = {}
    for s in steps:
        model = run.model(0, s).to(suite.device)
        results[s] = measure(model, data, eta, b, DRAWS[budget.name], seed=s, level=level)

    real_ok = {s: contains(r["two_steps"], predicted) for s, r in results.items()}
    frozen_ok = {s: contains(r["two_steps_frozen"], predicted) for s, r in results.items()}
    control_ok = {s: contains(r["same_batch_small_step"], predicted) for s, r in results.items()}
    passed, rejected = all(real_ok.values()), not all(control_ok.values())
    status = "pass" if passed else ("xfail" if all(frozen_ok.values()) else "fail")
    worst = max(results.values(), key=lambda r: abs(r["two_steps"][0] - predicted))

    # At η/10 the quadratic model's small root is unambiguous: ηh = (η_s h)/(η_s/η).
    small_eta_h = {s: float(eta_h[0](r["two_steps_small_step"][0])) / SMALL_STEP
                   for s, r in results.items()}

    figure = plot(steps, results, predicted, suite.report_dir,
         f"C9: ResNet-8 w{budget.width}, η = {eta:.3g}, b = {b}, {DRAWS[budget.name]} draws, "
         f"{100 * level:.1f} % BCa")
    rows = ["| step | real two steps [CI] | ∋ pred. | curvature-free [CI] | ∋ pred. | "
            "real, step η/10 [CI] | control: same batch, η/10 [CI] | same batch, η [CI] | "
            "real/frozen variance [CI] | ηh from η/10 steps | ηh from η steps |",
            "|---" * 11 + "|"]
    for s, r in results.items():
        cells = [f"{fmt(r[k][0], 4)} [{fmt(r[k][1], 4)}, {fmt(r[k][2], 4)}]"
                 for k in ("two_steps", "two_steps_frozen", "two_steps_small_step",
                           "same_batch_small_step", "two_steps_same_batch", "curvature")]
        roots = " or ".join(fmt(float(f(r["two_steps"][0]))) for f in eta_h)
        rows.append(f"| {s} | {cells[0]} | {real_ok[s]} | {cells[1]} | {frozen_ok[s]} | "
                    f"{cells[2]} | {cells[3]} | {cells[4]} | {cells[5]} | "
                    f"{fmt(small_eta_h[s])} | {roots} |")
    off = [s for s, ok in real_ok.items() if not ok]
    small_ok = [s for s, r in results.items() if contains(r["two_steps_small_step"], predicted)]
    reason = {"pass": "",
              "xfail": (f"two real consecutive steps at η = {eta:.3g} miss the ratio at steps "
                        f"{off} "
                        f"(worst {fmt(worst['two_steps'][0], 4)} [{fmt(worst['two_steps'][1], 4)}"
                        f", {fmt(worst['two_steps'][2], 4)}]): the curvature between the steps "
                        "changes their variance (real/frozen variance in the table: < 1 for "
                        "0 < ηh < 2, > 1 beyond the stability edge ηh > 2), which the article's "
                        "'independence of each iteration' omits; with both gradients at one "
                        "point the ratio holds at every checkpoint. Real steps of η/10 hold it "
                        f"only at steps {small_ok}: their first-order correction ≈ 2η_s·h gives "
                        "a noise-weighted curvature ηh ≈ "
                        f"{', '.join(fmt(v) for v in small_eta_h.values())} at the checkpoints, "
                        "not small against the stability edge ηh = 2"),
              "fail": (f"the ratio misses {fmt(predicted, 4)} at steps {off} and the "
                       "curvature-free ratio does not rescue it: "
                       f"{ {s: fmt(r['two_steps_frozen'][0], 4) for s, r in results.items()} }")}
    record_verdict(Verdict(
        id="C9", title="one 2η step has twice the noise variance of two η steps", quote=QUOTE,
        expected="Var(2ηξ)/Var(ηξ₁+ηξ₂) = 2; disjoint batches 2(N−b)/(N−2b)",
        derivation=derivation.text,
        predicted={"article (independent)": ideal, "epoch (disjoint batches)": predicted},
        measured={"headline": worst["two_steps"][0],
                  **{f"real, step {s}": r["two_steps"][0] for s, r in results.items()},
                  **{f"frozen, step {s}": r["two_steps_frozen"][0] for s, r in results.items()}},
        tolerance=f"{100 * level:.1f} % BCa interval ∋ {fmt(predicted, 4)} at every checkpoint",
        tolerance_reason=f"ratio of total variances over {DRAWS[budget.name]} draws: BCa "
                         "interval from scipy.stats.bootstrap resampling draws jointly for every "
                         f"kind; Bonferroni over {len(steps)} checkpoints (α = {ALPHA})",
        status=status if rejected else "fail",
        reason=reason[status] if rejected else "the control was not rejected: the check "
                                               "cannot tell correlated noise from independent",
        control={"description": "the same mini-batch for both steps (perfectly correlated "
                                "noise), probe step η/10",
                 "measured": {f"step {s}": r["same_batch_small_step"][0]
                              for s, r in results.items()},
                 "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure], tables=["\n".join(rows)],
        notes=[f"run: ResNet-8 width {budget.width}, η = {eta:.4g}, λ = {lam:.4g} (PyTorch "
               f"weight_decay = {torch_weight_decay(lam):.4g}), batch {budget.batch_size}, "
               f"{config.steps} steps (one epoch), "
               f"augment = {budget.augment}; trained in {fmt(run.seconds)} s"
               + (" (cached)" if run.from_cache else ""),
               f"probe: N = {len(data)} images, b = {b}, {DRAWS[budget.name]} draws per "
               f"checkpoint, all {results[steps[0]]['n_params']} trainable parameters, BN in "
               "training mode, no augmentation, no weight decay in the probed steps",
               "'ηh from … steps' inverts the quadratic model's 4/(1 + (1 − ηh)²) (sympy; two "
               "roots, symmetric about 1, for the η steps; the small root, divided by 1/10, for "
               "the η/10 steps): the curvature along the noise that would explain the real "
               "ratio; a ratio below 2 needs ηh > 2 (beyond linear stability) or h < 0",
               "the same batch twice at the run's η (column 'same batch, η') is not near 1: "
               "one step on a batch already lowers that batch's own gradient (self-curvature), "
               "so at this step size the first-order picture behind the article's argument "
               "does not hold",
               f"the epoch correction 2(N−b)/(N−2b) − 2 = {fmt(predicted - ideal)} is far below "
               "the interval widths here; with BN the batch gradient is not exactly a mean of "
               "per-example gradients, so that formula is itself approximate"],
        context={"model": f"resnet8 (width {budget.width})", "data": data.name,
                 "seed": 0, "dtype": "float32"}))
    assert rejected, f"control not rejected: {results}"
    if status == "xfail":
        pytest.xfail(reason[status])
    assert passed, reason[status]
