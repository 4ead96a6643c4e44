"""C4 — without weight decay, SGD spirals out: ‖w‖ grows and the gradient vanishes.

Article (Labatie 2020, section "Weight decay + scale invariance"): "SGD without weight decay … w_t
would 'spiral out' to ‖w_t‖ → ∞, causing gradients to vanish: ‖∇L(w_t|B_t)‖ ∝ 1/‖w_t‖ → 0".

Expected (sympy, ``wd_claims.theory.c04_spiral_out``; docs/claims.md): ‖w − ηg‖² = ‖w‖² −
2η⟨g, w⟩ + η²‖g‖², so with C2's ⟨g, w⟩ = 0 each plain-SGD step adds exactly η²‖g_t‖²: the norm
never decreases; with ‖g‖ = G/‖w‖ (C3), x(t) = √(x₀² + 2η²G²t) and ‖g‖ falls at stationary G.

Measurement: ResNet-8 at λ = 0 (``wd_claims.runs.starts_config``: the grid's middle η, started at
‖w₀‖ × ¼, 1, 4), every step, every scale-invariant tensor and their 3x3 concatenation: Δx_t,
η²‖g_t‖², ⟨g_t, w_t⟩; ‖g‖ and G = ‖g‖‖w‖ early vs late.

Criteria (core): (1) the step is a plain λ = 0 step: |Δx − η²‖g‖² + 2η⟨g, w⟩| ≤ the a-priori
float32 rounding bound of the update (:func:`rounding_bound`) at every step; (2) ⟨g, w⟩ = 0 in
effect: per configuration and tensor, 0 ∈ the Bonferroni t-interval of the block means of the
relative residual (Δx − η²‖g‖²)/η²‖g‖², widened only by the relative rounding bound — no
tolerance contains the measured cos(g, w); (3) Δx ≥ −rounding at every step. Non-core, the
article's "causing gradients to vanish": ‖g‖ late/early < 1 from every start in the spiral-out
regime (declared expected failure where G = ‖g‖‖w‖ grows by a measured factor > 1).

Control: momentum 0.9 (PyTorch's SGD, λ = 0, ``runs.momentum_config``): criteria (1)–(2) must
reject it.

Budget: quick — stand-in data unless CIFAR-10 is configured, 384 steps of batch 16 at width 8; full
— CIFAR-10.
"""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wd_claims import runs, setting, stats, theory  # noqa: E402
from wd_claims.judge import Check  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402

pytestmark = pytest.mark.c04

QUOTE = "w_t would “spiral out” to ∥w_t∥→ ∞, causing gradients to vanish"
EDGE = 0.1  # "early" and "late" are the first and last 10% of the run
N_BLOCKS = 8
LEVEL = 0.95


def rounding_bound(x, gnorm, eta, n_elements, u):
    """(…, T−1) a-priori bound on |Δx_t − η²‖g_t‖² + 2η⟨g_t, w_t⟩| for a plain λ = 0 step.

    v = fl(w − fl(η)·g) rounds η to the parameters' dtype, the product and the sum: ‖v − ṽ‖ ≤ e
    with e = γ₂η‖g‖ + u‖ṽ‖ (ṽ = w − ηg exact), so |‖v‖² − ‖ṽ‖²| ≤ 2‖ṽ‖e + e²; the float64 sums of
    n squares (x_t, x_{t+1}, ‖g‖²) add γ_n^{(64)}(x_t + x_{t+1} + η²‖g‖²). ‖ṽ‖ ≤ √x_{t+1} + e."""
    g2 = 2 * u / (1 - 2 * u)
    u64 = stats.unit_roundoff("float64")
    gam = n_elements * u64 / (1 - n_elements * u64)
    inc = eta**2 * gnorm[..., :-1] ** 2
    vn = np.sqrt(x[..., 1:])
    e = g2 * eta * gnorm[..., :-1] + u * vn
    e = e + u * e
    return 2 * (vn + e) * e + e**2 + gam * (x[..., 1:] + x[..., :-1] + inc)


def tensor_sizes(result) -> np.ndarray:
    """Number of entries of each tracked tensor (from the shapes in the final checkpoint); the
    joint column (last) holds the 3x3 kernels among them, or all of them (its label says)."""
    from wd_claims.train import ALL_3X3

    state = result.checkpoints[max(result.checkpoints)][0]
    names = result.tensors[:-1]
    sizes = [int(np.prod(state[n].shape)) for n in names]
    in_joint = [result.tensors[-1] != ALL_3X3 or tuple(state[n].shape[-2:]) == (3, 3)
                for n in names]
    return np.array(sizes + [sum(s for s, j in zip(sizes, in_joint, strict=True) if j)])


def _series(result, ks):
    """(K', P, T) arrays x, gnorm, cos_gw for configurations ks."""
    return [np.moveaxis(result.metrics[k][ks], 2, 1) for k in ("sqnorm", "gnorm", "cos_gw")]


def measure(result, momentum) -> dict:
    """Flat dict: the λ = 0 configurations' (K0, P, T) series x, g, cos; the same for the λ > 0
    configurations (``wd_*``, for the weight-decay fault) and the momentum run (``mom_*``)."""
    lams = np.asarray(result.config.lams)
    zero, decayed = np.flatnonzero(lams == 0), np.flatnonzero(lams > 0)
    m = {"tensors": np.array(result.tensors), "n_elements": tensor_sizes(result),
         "u": stats.unit_roundoff(result.config.dtype),
         "eta": np.asarray(result.config.etas)[zero], "lam": lams[zero],
         "scales": np.asarray(result.config.init_scales)[zero],
         "momentum": float(momentum.config.momentum),
         "mom_eta": np.asarray(momentum.config.etas)}
    for prefix, res, ks in (("", result, zero), ("wd_", result, decayed),
                            ("mom_", momentum, np.arange(momentum.config.k))):
        x, g, c = _series(res, ks)
        m.update({f"{prefix}x": x, f"{prefix}g": g, f"{prefix}cos": c})
    return m


def step_criteria(x, g, cos, eta, n_elements, u):
    """The per-step criteria on (K, P, T) series: (plain-step ok (K, P), ⟨g,w⟩ = 0 intervals
    (K, P, 3), ⟨g,w⟩ = 0 ok (K, P), monotone ok (K, P), worst plain-step ratio)."""
    eta = np.asarray(eta, float)[:, None, None]
    n = np.asarray(n_elements, float)[None, :, None]
    inc = eta**2 * g[..., :-1] ** 2
    resid = np.diff(x, axis=-1) - inc
    cross = 2 * eta * g[..., :-1] * np.sqrt(x[..., :-1]) * cos[..., :-1]
    bound = rounding_bound(x, g, eta, n, u)
    ratio = np.abs(resid + cross) / bound
    plain = np.nanmax(ratio, axis=-1) <= 1
    rel = resid / inc
    level = 1 - (1 - LEVEL) / (rel.shape[0] * rel.shape[1])
    blocks = stats.block_means(rel, N_BLOCKS)
    ci = np.array([[stats.ols(b, {}, level=level)["intercept"] for b in row] for row in blocks])
    rel_bound = np.nanmax(bound / inc, axis=-1)
    radial_ok = (ci[..., 1] - rel_bound <= 0) & (0 <= ci[..., 2] + rel_bound)
    monotone = np.all(np.diff(x, axis=-1) >= -bound, axis=-1)
    return plain, ci, radial_ok, monotone, float(np.nanmax(ratio)), rel_bound


def judge(m: dict) -> Verdict:
    derivation = theory.c04_spiral_out()
    names = list(m["tensors"])
    plain, ci, radial_ok, monotone, worst, rel_bound = step_criteria(
        m["x"], m["g"], m["cos"], m["eta"], m["n_elements"], m["u"])
    mp, mci, mrad, _, mworst, _ = step_criteria(
        m["mom_x"], m["mom_g"], m["mom_cos"], m["mom_eta"], m["n_elements"], m["u"])
    zero_lam = bool(np.all(m["lam"] == 0))
    # the sub-statement: ‖g‖ falls; G = ‖g‖‖w‖ (all 3x3 kernels, the last tensor)
    x, g = m["x"][:, -1], m["g"][:, -1]
    G = g * np.sqrt(x)
    T = x.shape[1]
    early, late = slice(0, max(1, int(EDGE * T))), stats.late_window(T, EDGE)
    g_fall = g[:, late].mean(1) / g[:, early].mean(1)
    G_drift = G[:, late].mean(1) / G[:, early].mean(1)
    w_growth = np.sqrt(x[:, late].mean(1) / x[:, early].mean(1))
    growth_term = 2 * m["eta"] ** 2 * np.nansum(G[:, :-1] ** 2, axis=1)
    spiral = growth_term >= x[:, 0] ** 2   # ‖w‖ grew by ≥ 2^¼: the spiral-out regime
    worst_ci = np.unravel_index(np.argmax(np.abs(ci[..., 0])), ci.shape[:2])
    checks = [
        Check("plain λ = 0 step", bool(np.all(plain)) and zero_lam,
              measured={"worst |Δx − η²‖g‖² + 2η⟨g,w⟩|/bound": worst, "λ": m["lam"].tolist()},
              tolerance=1.0, criterion="at every step and tensor, within the float32 rounding "
                                       "bound of the update (a priori, γ₂ per entry)"),
        Check("Δ‖w‖² = η²‖g‖²", bool(np.all(radial_ok)),
              measured={"tensor": names[worst_ci[1]], "start": float(m["scales"][worst_ci[0]]),
                        "mean relative residual [CI]": ci[worst_ci].tolist()},
              tolerance={"relative rounding bound": float(rel_bound[worst_ci])},
              criterion="per configuration and tensor, 0 ∈ Bonferroni 95% t-interval of the "
                        f"{N_BLOCKS} block means of (Δx − η²‖g‖²)/η²‖g‖², ± rounding"),
        Check("monotone norm", bool(np.all(monotone)), measured=bool(np.all(monotone)),
              tolerance="Δx ≥ −rounding bound", criterion="‖w_t‖² never decreases"),
        Check("control rejected", not (bool(np.all(mp)) and bool(np.all(mrad))),
              measured={"plain-step ratio": mworst,
                        "mean relative residual [CI]": mci[0, -1].tolist()},
              tolerance=1.0, criterion="the momentum run misses the same criteria"),
        Check("gradient vanishes", bool(np.any(spiral) and np.all(g_fall[spiral] < 1)),
              core=False, measured={"‖g‖ late/early": g_fall.tolist(), "spiral": spiral.tolist()},
              tolerance="< 1", criterion="‖g‖ falls from every start in the spiral-out regime "
                                         "2η²ΣG² ≥ x₀²"),
    ]
    conditions = [Check("G grows over the run", bool(np.any(spiral) and
                                                      np.all(G_drift[spiral] > 1)),
                        measured={"G late/early": G_drift.tolist()}, tolerance="> 1",
                        criterion="G = ‖g‖‖w‖ grows in the spiral-out starts, so ‖g‖ = G/‖w‖ "
                                  "need not fall")]
    rows = ["| start ‖w₀‖× | 2η²ΣG²/x₀² | ‖g‖ late/early | G late/early | ‖w‖ late/early |",
            "|---|---|---|---|---|"]
    rows += [f"| {s:g} | {fmt(r)} | {fmt(a)} | {fmt(b)} | {fmt(c)} |"
             for s, r, a, b, c in zip(m["scales"], growth_term / x[:, 0] ** 2, g_fall, G_drift,
                                      w_growth, strict=True)]
    return Verdict(
        id="C4", title="λ = 0: ‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖², the norm spirals out", quote=QUOTE,
        expected="Δ‖w‖² = η²‖g‖² per step; ‖w‖ ∝ t^¼ at stationary G",
        derivation=derivation.text,
        predicted={"relative residual": 0.0,
                   "growth exponent": float(derivation.exprs["norm_exponent"])},
        measured={"headline": float(np.max(np.abs(ci[..., 0]))),
                  "worst plain-step ratio": worst,
                  "max relative rounding bound": float(np.max(rel_bound)),
                  "‖g‖ late/early": g_fall.tolist(), "G late/early": G_drift.tolist()},
        tolerance={"plain step": 1.0, "relative residual": "Bonferroni t-interval ± rounding"},
        tolerance_reason="the a-priori float32 rounding bound of the update v = fl(w − η·g) "
                         "(u = 2⁻²⁴, γ₂ per entry) plus float64 sums of n squares; the relative "
                         "residual's interval is a t-interval over blocks (wd_claims.stats.ols)",
        checks=checks, conditions=conditions,
        control={"description": f"momentum {m['momentum']:g} (λ = 0), same criteria",
                 "measured": {"plain-step ratio": mworst}},
        resolves=f"a mean relative residual of {float(np.max(ci[..., 2] - ci[..., 1])):.1e} "
                 "(a radial gradient component cos(g, w) ≈ that × p/2)",
        tables=["\n".join(rows)],
        notes=[f"tensors checked: {len(names)} (every scale-invariant kernel and their 3x3 "
               "concatenation)"],
        context={"model": str(m.get("model", "resnet8"))})


def figure(m, suite):
    x, g = m["x"][:, -1], m["g"][:, -1]
    G = g * np.sqrt(x)
    steps = np.arange(x.shape[1])
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, scale in enumerate(m["scales"]):
        law = np.sqrt(x[k, 0] ** 2 + 2 * m["eta"][k] ** 2
                      * np.concatenate([[0], np.cumsum(G[k, :-1] ** 2)]))
        ax[0].plot(steps, x[k], label=f"‖w₀‖×{scale:g}")
        ax[0].plot(steps, law, "k:", lw=1)
        ax[1].plot(steps, g[k], label=f"‖g‖, ‖w₀‖×{scale:g}")
        ax[1].plot(steps, G[k], "--", lw=1, label=f"G = ‖g‖‖w‖, ‖w₀‖×{scale:g}")
    ax[0].set(xlabel="step", ylabel="‖w_t‖² (all 3x3 kernels)", yscale="log",
              title="λ = 0: ‖w‖² grows (dotted: √(x₀² + 2η²ΣG²))")
    ax[1].set(xlabel="step", yscale="log", title="‖g‖ and G = ‖g‖‖w‖")
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=6)
    fig.tight_layout()
    path = save_figure(fig, suite.report_dir, f"C4-{m.get('model', 'resnet8')}.png")
    plt.close(fig)
    return path


@pytest.mark.models("resnet8")
def test_without_weight_decay_each_step_adds_exactly_eta_squared_grad_squared(
        suite, images, record_verdict, model_spec):
    (result,) = runs.results(suite, images, "starts", model_spec.name)
    (momentum,) = runs.results(suite, images, "momentum", model_spec.name)
    m = measure(result, momentum)
    m["model"] = model_spec.name
    v = judge(m)
    v.context["data"] = images[0].name
    v.figures = [figure(m, suite)]
    v.setting = setting.of_run(result.config, images[0].name)
    record_verdict(v, measurements=m)
