"""C4 — without weight decay, SGD spirals out: ‖w‖ grows and the gradient vanishes.

Article (section "Weight decay + scale invariance"): "SGD without weight decay … w_t would 'spiral
out' to ‖w_t‖ → ∞, causing gradients to vanish: ‖∇L(w_t|B_t)‖ ∝ 1/‖w_t‖ → 0".

Expected (sympy, ``wd_claims.theory.c04_spiral_out``): ‖w − ηg‖² = ‖w‖² − 2η⟨g, w⟩ + η²‖g‖², so with
C2's ⟨g, w⟩ = 0 each plain-SGD step adds exactly η²‖g_t‖² (Pythagoras): the norm never decreases.
With ‖g‖ = G/‖w‖ (C3), dx/dt = η²G²/x for x = ‖w‖²: x(t) = √(x₀² + 2η²G²t), ‖w‖ ∝ t^¼ at
stationary G; ‖g‖ = G/‖w‖ falls.

Measurement: ResNet-8 at λ = 0 (``wd_claims.runs.starts_config``: the grid's middle η, started at
‖w₀‖ × ¼, 1, 4), every step, for the concatenation of all 3x3 kernels and for each scale-invariant
tensor: the residual Δx_t − η²‖g_t‖² against a per-step tolerance (float rounding of the update plus
the measured BN-ε cross term 2η|⟨g, w⟩|, see :func:`identity_tolerance`); monotone norm; ‖g‖ and
G = ‖g‖‖w‖ early vs late; the continuum law with the measured G.

Control: momentum 0.9 (PyTorch's SGD, λ = 0). The step is −η·buf with buf carrying past gradients,
which are not orthogonal to the current w: the same per-step criterion must reject it.

Budget: quick — stand-in data unless CIFAR-10 is configured, 768 steps of batch 32; full — CIFAR-10.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from wd_claims import runs, stats, theory  # noqa: E402
from wd_claims.report import Verdict, fmt, save_figure  # noqa: E402

pytestmark = pytest.mark.c04

QUOTE = "w_t would “spiral out” to ∥w_t∥→ ∞, causing gradients to vanish"
EDGE = 0.1  # "early" and "late" are the first and last 10% of the run


def identity_tolerance(x, gnorm, cos_gw, eta, n_elements, dtype="float32"):
    """(K, T−1) per-step bound on |Δx_t − η²‖g_t‖²| for plain SGD at λ = 0.

    - rounding: w_{t+1} = fl(w_t − η·g_t) rounds each entry at most twice (the product and the
      sum), |δ| ≤ 2u per entry, so ‖w_{t+1}‖² is off by ≤ (4u + 4u²)x_{t+1}; the norms are sums of
      n squares, off by ≤ γ_m·x with m = ⌈log₂ n⌉ + 1 (pairwise summation) in the same dtype;
    - the C2 term: BN's ε = 1e-5 leaves ⟨g, w⟩ slightly nonzero (C2 measures it); the step then
      adds −2η⟨g_t, w_t⟩ = −2η‖g_t‖‖w_t‖cos(g_t, w_t), taken from the measured cosine.
    """
    u = stats.unit_roundoff(dtype)
    m = math.ceil(math.log2(n_elements)) + 1
    gamma = m * u / (1 - m * u)
    rounding = (4 * u + 4 * u**2) * x[:, 1:] + gamma * (x[:, 1:] + x[:, :-1])
    c2_term = 2 * eta[:, None] * gnorm[:, :-1] * np.sqrt(x[:, :-1]) * np.abs(cos_gw[:, :-1])
    return rounding + c2_term


def identity_check(result, p, n_elements):
    """For tensor index p: (residual/η²‖g‖² (K,T−1), |residual|/tolerance (K,T−1), C2 share)."""
    eta = np.asarray(result.config.etas)
    x = result.metrics["sqnorm"][:, :, p]
    g = result.metrics["gnorm"][:, :, p]
    cos = result.metrics["cos_gw"][:, :, p]
    increment = eta[:, None] ** 2 * g[:, :-1] ** 2
    resid = np.diff(x, axis=1) - increment
    tol = identity_tolerance(x, g, cos, eta, n_elements, result.config.dtype)
    c2 = 2 * eta[:, None] * g[:, :-1] * np.sqrt(x[:, :-1]) * np.abs(cos[:, :-1])
    return resid / increment, np.abs(resid) / tol, c2 / increment


def tensor_sizes(result) -> list[int]:
    """Number of entries of each tracked tensor (from the shapes in the final checkpoint)."""
    from wd_claims.train import ALL_3X3

    state = result.checkpoints[max(result.checkpoints)][0]
    sizes = []
    for name in result.tensors:
        if name == ALL_3X3:
            sizes.append(sum(int(np.prod(v.shape)) for k, v in state.items()
                             if v.ndim == 4 and v.shape[-1] == 3))
        else:
            sizes.append(int(np.prod(state[name].shape)))
    return sizes


def lambda_zero(result):
    """Indices of the λ = 0 configurations of a run."""
    return [k for k, lam in enumerate(result.config.lams) if lam == 0]


def figure(result, zero, suite, model_name):
    steps = np.arange(result.metrics["sqnorm"].shape[1])
    x = runs.series(result, "sqnorm")
    G = runs.grad_norm_on_sphere(result)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in zero:
        scale = result.config.init_scales[k]
        eta = result.config.etas[k]
        # the continuum law with the measured G: x(t)² = x₀² + 2η²Σ_{s<t} G_s²
        law = np.sqrt(x[k, 0] ** 2 + 2 * eta**2 * np.concatenate([[0], np.cumsum(G[k, :-1] ** 2)]))
        ax[0].plot(steps, x[k], label=f"‖w₀‖×{scale:g}")
        ax[0].plot(steps, law, "k:", lw=1)
        ax[1].plot(steps, runs.series(result, "gnorm")[k], label=f"‖g‖, ‖w₀‖×{scale:g}")
        ax[1].plot(steps, G[k], "--", lw=1, label=f"G = ‖g‖‖w‖, ‖w₀‖×{scale:g}")
    ax[0].set(xlabel="step", ylabel="‖w_t‖² (all 3x3 kernels)", yscale="log",
              title="λ = 0: ‖w‖² grows (dotted: √(x₀² + 2η²ΣG²))")
    ax[1].set(xlabel="step", yscale="log", title="‖g‖ falls; G = ‖g‖‖w‖ drifts less")
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=6)
    fig.tight_layout()
    figure_path = save_figure(fig, suite.report_dir, f"C4-{model_name}.png")
    plt.close(fig)
    return figure_path


def test_without_weight_decay_each_step_adds_exactly_eta_squared_grad_squared(
        suite, images, record_verdict):
    derivation = theory.c04_spiral_out()
    assert all(derivation.proved.values()), derivation.text

    (result,) = runs.results(suite, images, "starts")
    (control,) = runs.results(suite, images, "momentum")
    zero = lambda_zero(result)
    sizes = tensor_sizes(result)

    # 1. the per-step identity, every tracked tensor, every λ = 0 configuration
    worst, rel, c2_share = {}, [], []
    for p, name in enumerate(result.tensors):
        r, ratio, share = identity_check(result, p, sizes[p])
        worst[name] = float(np.nanmax(ratio[zero]))
        rel.append(np.nanmax(np.abs(r[zero])))
        c2_share.append(np.nanmedian(share[zero]))
    identity_ok = max(worst.values()) <= 1.0

    # 2. monotone norm, falling gradient, norm growth dominating the gradient's fall
    x, g = runs.series(result, "sqnorm")[zero], runs.series(result, "gnorm")[zero]
    G = runs.grad_norm_on_sphere(result)[zero]
    T = x.shape[1]
    early, late = slice(0, max(1, int(EDGE * T))), stats.late_window(T, EDGE)
    p_all = runs.tensor_index(result)
    tol = identity_tolerance(*(result.metrics[m][:, :, p_all] for m in ("sqnorm", "gnorm",
                             "cos_gw")), np.asarray(result.config.etas), sizes[p_all])[zero]
    monotone = bool(np.all(np.diff(x, axis=1) >= -tol))
    g_fall = g[:, late].mean(1) / g[:, early].mean(1)
    G_drift = G[:, late].mean(1) / G[:, early].mean(1)
    w_growth = np.sqrt(x[:, late].mean(1) / x[:, early].mean(1))
    # The spiral-out regime: where the growth term 2η²ΣG² of x(t)² = x₀² + 2η²ΣG² (sympy's
    # ``growth`` with the measured G) exceeds x₀², i.e. ‖w‖ grew by ≥ 2^¼. From larger starts the
    # norm barely moves within the run, and G's own early drift decides the sign of ‖g‖'s change.
    eta0 = result.config.etas[zero[0]]
    growth_term = 2 * eta0**2 * np.nansum(G[:, :-1] ** 2, axis=1)
    spiral = growth_term >= x[:, 0] ** 2
    g_falls = bool(np.any(spiral) and np.all(g_fall[spiral] < 1))
    norm_dominates = bool(np.all(np.abs(np.log(G_drift[spiral])) < np.log(w_growth[spiral])))
    # the growth exponent d log‖w‖ / d log t over the second half (¼ when G is stationary and
    # 2η²G²t ≫ x₀²; the ‖w₀‖/4 start is the one in that regime)
    t = np.arange(T) + 1
    half = slice(T // 2, T)
    exps = [stats.ols(0.5 * np.log(x[i, half]), {"log t": np.log(t[half])})["log t"][0]
            for i in range(len(zero))]

    # control: momentum, the same per-step criterion
    _, ctrl_ratio, _ = identity_check(control, runs.tensor_index(control), sizes[p_all])
    ctrl_violating = float(np.mean(ctrl_ratio[0] > 1.0))
    rejected = ctrl_violating > 0.5

    # The identity and the monotone norm are exact consequences of C2: the claim's core.
    # "Causing gradients to vanish" needs G = ‖g‖‖w‖ stationary (‖g‖ = G/‖w‖): early in training G
    # can grow faster than ‖w‖, and then ‖g‖ rises for a while — the article's statement is
    # asymptotic, and the suite says so when the run shows it.
    status, reason = "pass", ""
    if not rejected:
        status, reason = "fail", "the momentum control was not rejected: the check cannot fail"
    elif not (identity_ok and monotone):
        status, reason = "fail", (f"per-step identity within bound: {identity_ok}; monotone "
                                  f"norm: {monotone}")
    elif not (g_falls and norm_dominates):
        status, reason = "xfail", (
            f"Δ‖w‖² = η²‖g‖² at every step and ‖w‖ grows ({fmt(list(w_growth))}×), but ‖g‖ does "
            f"not vanish in this run: ‖g‖ late/early = {fmt(list(g_fall))} because G = ‖g‖‖w‖ "
            f"grew {fmt(list(G_drift))}× as the network learned; ‖g‖ ∝ 1/‖w‖ only at "
            "stationary G")
    scales = [result.config.init_scales[k] for k in zero]
    rows = ["| start ‖w₀‖× | 2η²ΣG²/x₀² | ‖g‖ late/early | G late/early | ‖w‖ late/early | "
            "d log‖w‖/d log t (2nd half) |", "|---|---|---|---|---|---|"]
    rows += [f"| {s:g} | {fmt(r)} | {fmt(a)} | {fmt(b)} | {fmt(c)} | {fmt(d)} |"
             for s, r, a, b, c, d in zip(scales, growth_term / x[:, 0] ** 2, g_fall, G_drift,
                                         w_growth, exps, strict=True)]
    record_verdict(Verdict(
        id="C4", title="λ = 0: ‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖², the norm spirals out", quote=QUOTE,
        expected="Δ‖w‖² = η²‖g‖² per step; ‖w‖ ∝ t^¼ at stationary G",
        derivation=derivation.text,
        predicted={"residual": 0.0, "growth exponent": float(derivation.exprs["norm_exponent"])},
        measured={"headline": max(worst.values()), "worst |residual|/tolerance": worst,
                  "max |residual|/η²‖g‖²": float(max(rel)),
                  "median C2 term/η²‖g‖²": float(np.median(c2_share)),
                  "‖g‖ late/early": g_fall, "G late/early": G_drift,
                  "growth exponents": exps},
        tolerance=1.0,
        tolerance_reason="per step, |Δx − η²‖g‖²| ≤ (4u+4u²)x_{t+1} + γ_m(x_t + x_{t+1}) "
                         "(float32 rounding of the update, u = 2⁻²⁴; pairwise sums of n squares, "
                         "m = ⌈log₂ n⌉ + 1) + 2η‖g‖‖w‖|cos(g, w)| (BN ε's C2 term, measured); "
                         "the measured number is the worst ratio |residual|/bound",
        status=status, reason=reason,
        control={"description": f"momentum {runs.MOMENTUM} (λ = 0): fraction of steps whose "
                                "residual exceeds the same bound",
                 "measured": ctrl_violating, "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure(result, zero, suite, "resnet8")],
        tables=["\n".join(rows)],
        notes=[f"monotone ‖w_t‖² in every λ = 0 run: {monotone}",
               "‖g‖ falling and the norm's growth outpacing G's drift are asserted for the starts "
               "in the spiral-out regime 2η²ΣG² ≥ x₀² (the table's second column ≥ 1)",
               f"the norm's growth outpaces G's drift (‖g‖ falls because ‖w‖ grows): "
               f"{norm_dominates}",
               "the t^¼ law needs stationary G and 2η²G²t ≫ x₀²; the exponents above are "
               "reported, not asserted (G drifts as the network learns)",
               f"tensors checked: {len(result.tensors)} (every scale-invariant kernel and their "
               "3x3 concatenation)"],
        context={"model": "resnet8", "data": images[0].name, "seed": result.config.seed,
                 "dtype": result.config.dtype}))
    assert rejected, f"momentum control not rejected: only {ctrl_violating:.0%} of steps violate"
    assert identity_ok, f"per-step identity violated beyond the bound: {worst}"
    assert monotone, "‖w_t‖² decreased at λ = 0"
    if status == "xfail":
        pytest.xfail(reason)
