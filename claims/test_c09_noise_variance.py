"""C9 — one SGD step of 2η carries twice the noise variance of two steps of η.

Article (section "Increased effective learning rate → regularization"): the noise variance scales
as 4η² for one iteration with 2η and as 2η² for two iterations with η, "by independence of each
iteration"; so a larger (effective) learning rate means more noise.

Expected (sympy, wd_claims.theory.c09_noise_variance; docs/claims.md, C9): Var(2ηξ)/Var(ηξ₁ + ηξ₂)
= 4η²σ²/2η²σ² = 2 for independent mini-batches; two *disjoint* batches of one epoch (N examples,
batch b, drawn without replacement) give 2(N − b)/(N − 2b); two *consecutive* steps on curvature
h give 4/(1 + (1 − ηh)²) ≈ 2 + 2ηh (the article's idealization omits this).

Measurement: a real ResNet-8 run of the budget's width (the budget grid's middle (η, λ), plain
SGD, PyTorch weight_decay = 2λ, batch and augmentation of the budget) trained for one epoch; at its
start and its end, many draws from a pool of the first N = 4b training images (b: ``BATCH``, 16,
32 and 128 images at smoke, quick, full; at N = 4b the two predictions 2 and 2(N − b)/(N − 2b) = 3
differ by 50 %), BN in training mode, no augmentation, no weight decay in the probed steps,
η = the run's η. Per draw (wd_claims.noise.draw_contributions): one step −2ηg(w₀, B₁); two
gradients at w₀ on independent batches B₁, B₂'; two at w₀ on disjoint batches B₁, B₂; two real
steps (the second gradient at w₁ = w₀ − ηg(w₀, B₁), on B₂'). The noise is the displacement of
all trainable parameters minus its mean over draws; each draw contributes ‖Dᵢ − D̄‖²·n/(n − 1) to
the total variance.

Criterion (fixed before measuring): at every checkpoint the BCa interval (scipy.stats.bootstrap,
paired over draws, level 1 − α/2 with α = 0.05: Bonferroni over the two checkpoints) of the ratio
one-step/two-steps for independent batches contains 2 and excludes 2(N − b)/(N − 2b) = 3. The
tolerance is that interval: nothing else.

Control: the disjoint (negatively correlated) batches, judged by the same criterion, must miss it
at every checkpoint. Sharper statements (non-core): the disjoint ratio matches 2(N − b)/(N − 2b)
(and excludes 2); two real consecutive steps keep the ratio 2 — the latter misses where the
curvature between the steps is measured (real/frozen two-step variance ≠ 1), a declared expected
failure (wd_claims.expected).

Budget: draws smoke 32, quick 64, full 256; 4 gradients per draw, 2 checkpoints (≈ 1–2 CPU-minutes
at quick).
"""

import numpy as np
import pytest

from wd_claims import runs, setting, theory
from wd_claims.data import DeviceData
from wd_claims.judge import Check
from wd_claims.noise import draw_contributions, ratio_interval
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.train import TrainConfig

pytestmark = pytest.mark.c09

QUOTE = ("the noise variance scales as 4η² when performing one iteration with learning rate 2η, "
         "while it scales as 2η² — by independence of each iteration — when performing two "
         "iterations with learning rate η")
DRAWS = {"smoke": 32, "quick": 64, "full": 256}
BATCH = {"smoke": 16, "quick": 32, "full": 128}   # b, images per probed step (the pool is N = 4b)
ALPHA = 0.05                       # family-wise over the checkpoints (Bonferroni)
POOL_BATCHES = 4                   # N = 4b: 2(N − b)/(N − 2b) = 3 against the article's 2
KINDS = {"two_steps_independent": "independent batches at w₀ (the article)",
         "two_steps_disjoint": "control: disjoint batches at w₀",
         "two_steps_real": "two real consecutive steps"}


def run_config(budget, data_name: str, n_train: int, model: str = "resnet8") -> TrainConfig:
    """One epoch of ResNet-8 at the budget grid's middle (η, λ), checkpoints at start and end."""
    steps = n_train // budget.batch_size
    eta, lam = budget.etas[len(budget.etas) // 2], budget.lams[len(budget.lams) // 2]
    return TrainConfig(etas=(eta,), lams=(lam,), steps=steps, batch_size=budget.batch_size,
                       model=model, width=budget.width, seed=0, augment=budget.augment,
                       checkpoints=(0, steps), data=data_name, n_train=n_train, evaluate=False)


# trained with the shared runs, in their worker processes (wd_claims.runs.EXTRA)
runs.register("C9", lambda suite, images, model: [
    run_config(suite.budget, images[0].name, len(images[0].y), model)])


def measure(run, data: DeviceData, batch: int, draws: int) -> dict:
    """Per-draw contributions of every kind at every checkpoint: arrays (checkpoints, draws)."""
    eta = run.config.etas[0]
    n_pool = POOL_BATCHES * batch
    x, y = data.x[:n_pool], data.y[:n_pool]
    steps = list(run.config.checkpoints)
    per_step = [draw_contributions(run.model(0, s), x, y, eta=eta, batch_size=batch, draws=draws,
                                   seed=s) for s in steps]
    m = {f"a_{k}": np.stack([c[k] for c in per_step]) for k in per_step[0]}
    m.update(checkpoints=np.array(steps), eta=eta, lam=run.config.lams[0], n_pool=n_pool,
             batch=batch, draws=draws, alpha=ALPHA)
    return m


def matches(interval, right: float, wrong: float) -> bool:
    """The criterion: the interval contains ``right`` and excludes ``wrong``."""
    _, lo, hi = interval
    return bool(lo <= right <= hi and not lo <= wrong <= hi)


def intervals(m: dict, level: float) -> dict:
    """kind → per checkpoint (ratio, low, high) of one-step / two-step total variance, and the
    curvature factor Var(real) / Var(independent at w₀)."""
    out = {k: [ratio_interval(m["a_one_step_2eta"][i], m[f"a_{k}"][i], level=level, seed=i)
               for i in range(len(m["checkpoints"]))] for k in KINDS}
    out["curvature"] = [ratio_interval(m["a_two_steps_real"][i], m["a_two_steps_independent"][i],
                                       level=level, seed=i) for i in range(len(m["checkpoints"]))]
    return out


def judge(m: dict) -> Verdict:
    derivation = theory.c09_noise_variance()
    ideal = float(derivation.exprs["ratio"])                                   # 2
    epoch = float(derivation.fn("ratio_epoch", theory.N_pool, theory.b_size)(m["n_pool"],
                                                                               m["batch"]))
    steps = [int(s) for s in m["checkpoints"]]
    level = 1 - m["alpha"] / len(steps)
    ci = intervals(m, level)
    ind = [matches(c, ideal, epoch) for c in ci["two_steps_independent"]]
    ctrl = [matches(c, ideal, epoch) for c in ci["two_steps_disjoint"]]
    dis = [matches(c, epoch, ideal) for c in ci["two_steps_disjoint"]]
    real = [matches(c, ideal, epoch) for c in ci["two_steps_real"]]
    missed = [i for i, ok in enumerate(real) if not ok]
    curved = [not ci["curvature"][i][1] <= 1.0 <= ci["curvature"][i][2] for i in missed]

    def show(kind):
        return {f"step {s}": [round(v, 4) for v in c] for s, c in zip(steps, ci[kind],
                                                                        strict=True)}

    crit = (f"at every checkpoint the {100 * level:.1f} % BCa interval contains {fmt(ideal)} and "
            f"excludes 2(N−b)/(N−2b) = {fmt(epoch, 4)}")
    checks = [
        Check("independent batches: ratio 2", all(ind), measured=show("two_steps_independent"),
              tolerance=f"∋ {fmt(ideal)}, ∌ {fmt(epoch, 4)}", criterion=crit),
        Check("control rejected", not any(ctrl), measured=show("two_steps_disjoint"),
              tolerance="misses the criterion at every checkpoint",
              criterion="disjoint batches judged by the same criterion"),
        Check("disjoint batches: 2(N−b)/(N−2b)", all(dis), core=False,
              measured=show("two_steps_disjoint"), tolerance=f"∋ {fmt(epoch, 4)}, ∌ {fmt(ideal)}",
              criterion="the finite-pool prediction, roles of the two values swapped"),
        Check("real consecutive steps: ratio 2", all(real), core=False,
              measured=show("two_steps_real"), tolerance=f"∋ {fmt(ideal)}, ∌ {fmt(epoch, 4)}",
              criterion=crit),
    ]
    conditions = [Check(
        "curvature between the steps", bool(missed) and all(curved),
        measured={f"step {steps[i]}": [round(v, 4) for v in ci["curvature"][i]] for i in missed},
        tolerance="Var(real two steps)/Var(two gradients at w₀): interval ∌ 1 where the real "
                  "ratio misses",
        criterion="the second gradient, taken at w₁ instead of w₀, changes the variance")]
    widths = [c[2] - c[1] for c in ci["two_steps_independent"]]
    rows = ["| step | independent (article) [CI] | control: disjoint [CI] | real steps [CI] | "
            "Var(real)/Var(at w₀) [CI] |", "|---|---|---|---|---|"]
    for i, s in enumerate(steps):
        cells = [f"{fmt(c[i][0], 4)} [{fmt(c[i][1], 4)}, {fmt(c[i][2], 4)}]"
                 for c in (ci["two_steps_independent"], ci["two_steps_disjoint"],
                           ci["two_steps_real"], ci["curvature"])]
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    return Verdict(
        id="C9", title="one 2η step has twice the noise variance of two η steps", quote=QUOTE,
        expected="Var(2ηξ)/Var(ηξ₁+ηξ₂) = 2 (independent); disjoint batches 2(N−b)/(N−2b)",
        derivation=derivation.text,
        predicted={"article (independent)": ideal, "disjoint batches, N = 4b": epoch},
        measured={"headline": ci["two_steps_independent"][-1][0],
                  **{f"independent, step {s}": c[0]
                     for s, c in zip(steps, ci["two_steps_independent"], strict=True)},
                  **{f"real, step {s}": c[0]
                     for s, c in zip(steps, ci["two_steps_real"], strict=True)}},
        tolerance=f"{100 * level:.1f} % BCa interval ∋ {fmt(ideal)}, ∌ {fmt(epoch, 4)}",
        tolerance_reason=f"ratio of total variances over {m['draws']} draws: BCa interval from "
                         "scipy.stats.bootstrap, draws resampled jointly for both variances; "
                         f"Bonferroni over {len(steps)} checkpoints (α = {m['alpha']})",
        checks=checks, conditions=conditions,
        control={"description": "two disjoint batches of one epoch at w₀ (negatively correlated "
                                "noise), judged by the same criterion",
                 "measured": show("two_steps_disjoint")},
        resolves=f"tells 2 from {fmt(epoch, 4)} (50 %); interval widths "
                 f"{', '.join(fmt(w, 3) for w in widths)}: a ratio off 2 by more than "
                 f"≈ {fmt(max(widths) / 2, 2)} ({fmt(50 * max(widths) / ideal, 2)} %) is rejected",
        tables=["\n".join(rows)],
        notes=[f"probe: pool N = {m['n_pool']} images, b = {m['batch']}, {m['draws']} draws per "
               "checkpoint, 4 gradients per draw, all trainable parameters, BN in training mode, "
               "no augmentation, no weight decay in the probed steps",
               "each draw contributes ‖Dᵢ − D̄‖²·n/(n − 1) (mean: the unbiased trace of the "
               "covariance); the bootstrap holds D̄ fixed (an O(1/n) effect)",
               "with BN a batch gradient is not exactly a mean of per-example gradients, so "
               "2(N−b)/(N−2b) is itself approximate (non-core)"],
        context={"model": str(m.get("model", "resnet8")), "dtype": "float32", "seed": 0})


def plot(m: dict, v_level: float, report_dir, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ci = intervals(m, v_level)
    steps = [int(s) for s in m["checkpoints"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (kind, label) in enumerate(KINDS.items()):
        est = np.array(ci[kind])
        x = np.arange(len(steps)) + (i - 1) * 0.1
        ax.errorbar(x, est[:, 0], yerr=[est[:, 0] - est[:, 1], est[:, 2] - est[:, 0]], fmt="o",
                    capsize=3, label=label)
    ax.axhline(2.0, color="k", lw=1, label="article: 2")
    ax.axhline(3.0, color="k", ls="--", lw=1, label="disjoint: 2(N−b)/(N−2b) = 3")
    ax.set_xticks(range(len(steps)), [f"step {s}" for s in steps])
    ax.set_ylabel("Var(one 2η step) / Var(two η steps)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure = save_figure(fig, report_dir, f"C9-{m.get('model', 'resnet8')}.png")
    plt.close(fig)
    return figure


@pytest.mark.models("resnet8")
def test_one_double_step_has_twice_the_noise_variance_of_two_single_steps(suite, images,
                                                                           record_verdict,
                                                                           model_spec):
    budget = suite.budget
    train_images, _ = images
    data = DeviceData.from_images(train_images, suite.device)
    config = run_config(budget, data.name, len(data), model_spec.name)
    run = runs.run(suite, images, config)   # prefetched with the shared runs when they train
    m = measure(run, data, budget.cap_images(BATCH[budget.name]),
                budget.cap_repeats(DRAWS[budget.name]))
    m["model"] = model_spec.name
    v = judge(m)
    level = 1 - ALPHA / len(config.checkpoints)
    v.figures = [plot(m, level, suite.report_dir,
                      f"C9: {model_spec.name} w{budget.width}, η = {config.etas[0]:.3g}, N = "
                      f"{m['n_pool']}, b = {m['batch']}, {m['draws']} draws, "
                      f"{100 * level:.1f} % BCa")]
    v.setting = setting.of_run(config, data.name, probe=f"pool of N = {m['n_pool']} training "
                               f"images, b = {m['batch']}, {m['draws']} draws at steps "
                               f"{list(config.checkpoints)}")
    v.context["data"] = data.name
    record_verdict(v, measurements=m)
