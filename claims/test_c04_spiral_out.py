"""C4 — without weight decay, SGD spirals out: ‖w‖ grows and the gradient vanishes.

Article (Labatie 2020, "Weight decay + scale invariance"): "SGD without weight decay … w_t would
'spiral out' to ‖w_t‖ → ∞, causing gradients to vanish: ‖∇L(w_t|B_t)‖ ∝ 1/‖w_t‖ → 0".

Derivation (sympy, ``theory.c04_spiral_out``; docs/claims.md): ‖w − ηg‖² = ‖w‖² − 2η⟨g, w⟩ +
η²‖g‖², so with C2's ⟨g, w⟩ = 0 each plain step adds exactly η²‖g_t‖²; with ‖g‖ = G/‖w‖ (C3),
x(t) = √(x₀² + 2η²G²t) and ‖g‖ falls at stationary G.

Measurement: the λ = 0 starts of :func:`wd_claims.recipes.starts_config` (middle η, ‖w₀‖ × ¼, 1,
4), every step, every scale-invariant tensor and their 3x3 concatenation: x = ‖w‖², ‖g‖, cos(g, w).
Criteria (core): the step is plain, |Δx − η²‖g‖² + 2η⟨g, w⟩| ≤ the a-priori float32 rounding bound
(:func:`wd_claims.dynamics_checks.plain_step_rounding`) at every step; 0 ∈ the Bonferroni
t-interval of the block means of (Δx − η²‖g‖²)/η²‖g‖², ± the relative rounding bound only; Δx ≥
−rounding (identities). The article's statement, "causing gradients to vanish": ‖g‖ late/early
< 1 in the spiral-out regime (expected to miss where G, probed on a fixed batch at the run's two
ends, outgrows ‖w‖). Control: momentum 0.9 must fail the identities.
"""

import numpy as np

from wd_claims import stats, theory
from wd_claims.claim import Claim, Judgement, Presentation, canvas, derivation
from wd_claims.dynamics_checks import probe_G, spiral_step_criteria, tensor_sizes
from wd_claims.recipes import EDGE, edge_middles
from wd_claims.verdict import Check, fmt

CLAIM = Claim(
    id="C4", title="λ = 0: ‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖², the norm spirals out",
    quote="w_t would “spiral out” to ∥w_t∥→ ∞, causing gradients to vanish",
    derive=theory.c04_spiral_out, models=("resnet8",), shared_runs=True,
    expected_failures=("gradient_vanishes",))
N_BLOCKS = 8
PROBE_IMAGES = 512  # the fixed batch on which G is probed at the start and the end


def measure(ctx, model) -> dict:
    """The λ = 0 starts' (K0, P, T) series x, g, cos; the same for the λ > 0 starts (``wd_*``,
    for the weight-decay fault) and the momentum run (``mom_*``)."""
    (result,) = ctx.results("starts", model.name)
    (momentum,) = ctx.results("momentum", model.name)
    ctx.stands_on_runs([result])  # the starts only
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
        x, g, c = (np.moveaxis(res.metrics[k][ks], 2, 1) for k in ("sqnorm", "gnorm", "cos_gw"))
        m.update({f"{prefix}x": x, f"{prefix}g": g, f"{prefix}cos": c})
    data = ctx.train_data
    probe = (data.x[:PROBE_IMAGES].cpu(), data.y[:PROBE_IMAGES].cpu())
    ends = [[probe_G(result, int(k), s, *probe) for s in edge_middles(result.config.steps)]
            for k in zero]
    m["probe"] = np.array(ends)          # (K0, 2 [early, late], 2 [G, ‖w‖])
    m["model"] = model.name
    return m


def analysis(m: dict) -> dict:
    """The criteria on the λ = 0 starts and the momentum run; ‖g‖, G = ‖g‖‖w‖ and ‖w‖ late/early
    on all 3x3 kernels (the last tensor); the spiral-out regime 2η²ΣG² ≥ x₀² (‖w‖ grew ≥ 2^¼)."""
    a = spiral_step_criteria(m["x"], m["g"], m["cos"], m["eta"], m["n_elements"], m["u"])
    a["mom"] = spiral_step_criteria(m["mom_x"], m["mom_g"], m["mom_cos"], m["mom_eta"],
                             m["n_elements"], m["u"])
    x, g = m["x"][:, -1], m["g"][:, -1]
    G = g * np.sqrt(x)
    T = x.shape[1]
    early, late = slice(0, max(1, int(EDGE * T))), stats.late_window(T, EDGE)
    a["g_fall"] = g[:, late].mean(1) / g[:, early].mean(1)
    a["G_drift"] = G[:, late].mean(1) / G[:, early].mean(1)
    a["w_growth"] = np.sqrt(x[:, late].mean(1) / x[:, early].mean(1))
    a["growth"] = 2 * m["eta"] ** 2 * np.nansum(G[:, :-1] ** 2, axis=1)
    a["spiral"] = a["growth"] >= x[:, 0] ** 2
    a["worst_ci"] = np.unravel_index(np.argmax(np.abs(a["ci"][..., 0])), a["ci"].shape[:2])
    p = np.asarray(m["probe"], float)
    a["G_probe"] = p[:, 1, 0] / p[:, 0, 0]
    a["g_probe"] = a["G_probe"] * p[:, 0, 1] / p[:, 1, 1]
    return a


def judge(m: dict) -> Judgement:
    a = analysis(m)
    ci, mom, spiral, worst = a["ci"], a["mom"], a["spiral"], a["worst_ci"]
    missed = spiral & ~(a["g_fall"] < 1)
    return Judgement([
        Check("plain_step", "plain λ = 0 step", bool(np.all(a["plain"])) and
              bool(np.all(m["lam"] == 0)),
              measured={"worst |Δx − η²‖g‖² + 2η⟨g,w⟩|/bound": a["worst"],
                        "λ": m["lam"].tolist()},
              tolerance=1.0, criterion="at every step and tensor, within the float32 rounding "
                                       "bound of the update (a priori, γ₂ per entry)",
              kind="identity"),
        Check("norm_increment", "Δ‖w‖² = η²‖g‖²", bool(np.all(a["radial_ok"])),
              measured={"tensor": list(m["tensors"])[worst[1]],
                        "start": float(m["scales"][worst[0]]),
                        "mean relative residual [CI]": ci[worst].tolist()},
              tolerance={"relative rounding bound": float(a["rel_bound"][worst])},
              criterion="per configuration and tensor, 0 ∈ Bonferroni 95% t-interval of the "
                        f"{N_BLOCKS} block means of (Δx − η²‖g‖²)/η²‖g‖², ± rounding",
              kind="identity"),
        Check("monotone_norm", "monotone norm", bool(np.all(a["monotone"])),
              measured=bool(np.all(a["monotone"])),
              tolerance="Δx ≥ −rounding bound", criterion="‖w_t‖² never decreases",
              resolution="any decrease of ‖w‖² beyond the rounding bound"),
        Check("control_rejected", "control rejected",
              not (bool(np.all(mom["plain"])) and bool(np.all(mom["radial_ok"]))),
              measured={"plain-step ratio": mom["worst"],
                        "mean relative residual [CI]": mom["ci"][0, -1].tolist()},
              tolerance=1.0, criterion="the momentum run misses the same criteria",
              kind="control"),
        Check("gradient_vanishes", "gradient vanishes",
              bool(np.any(spiral) and np.all(a["g_fall"][spiral] < 1)), core=False,
              measured={"‖g‖ late/early": a["g_fall"].tolist(), "spiral": spiral.tolist()},
              tolerance="< 1", criterion="‖g‖ falls from every start in the spiral-out regime "
                                         "2η²ΣG² ≥ x₀²",
              resolution="any rise of ‖g‖ between the first and last tenth"),
    ], conditions=[
        Check("G_outgrows_the_norm", "G on a fixed batch outgrows ‖w‖ where ‖g‖ did not fall",
              bool(np.any(missed)) and bool(np.all(a["g_probe"][missed] > 1)),
              measured={"predicted ‖g‖ late/early": a["g_probe"].tolist(),
                        "G late/early (probe)": a["G_probe"].tolist()},
              tolerance="> 1 at every spiral-out start whose ‖g‖ did not fall",
              criterion=f"G = ‖∇L‖‖w‖ probed on {PROBE_IMAGES} fixed training images at the "
                        "middles of the first and last tenth (checkpoints, not the recorded "
                        "steps): (G_late/G_early)(‖w_early‖/‖w_late‖) predicts the rise")])


def present(m: dict, verdict) -> Presentation:
    a = analysis(m)
    ci, x0 = a["ci"], m["x"][:, -1, 0]
    rows = ["| start ‖w₀‖× | 2η²ΣG²/x₀² | ‖g‖ late/early | G late/early | ‖w‖ late/early |",
            "|---|---|---|---|---|"]
    rows += [f"| {s:g} | {fmt(r)} | {fmt(g)} | {fmt(G)} | {fmt(w)} |"
             for s, r, g, G, w in zip(m["scales"], a["growth"] / x0**2, a["g_fall"],
                                      a["G_drift"], a["w_growth"], strict=True)]
    return Presentation(
        expected="Δ‖w‖² = η²‖g‖² per step; ‖w‖ ∝ t^¼ at stationary G",
        predicted={"relative residual": 0.0, "growth exponent": float(
            derivation(theory.c04_spiral_out).exprs["norm_exponent"])},
        measured={"headline": float(np.max(np.abs(ci[..., 0]))),
                  "worst plain-step ratio": a["worst"],
                  "max relative rounding bound": float(np.max(a["rel_bound"])),
                  "‖g‖ late/early": a["g_fall"].tolist(), "G late/early": a["G_drift"].tolist()},
        tolerance={"plain step": 1.0, "relative residual": "Bonferroni t-interval ± rounding"},
        tolerance_reason="the a-priori float32 rounding bound of the update v = fl(w − η·g) "
                         "(u = 2⁻²⁴, γ₂ per entry) plus float64 sums of n squares; the relative "
                         "residual's interval is a t-interval over blocks (wd_claims.stats.ols)",
        control={"description": f"momentum {m['momentum']:g} (λ = 0), same criteria",
                 "measured": {"plain-step ratio": a["mom"]["worst"]}},
        resolves=f"a mean relative residual of {float(np.max(ci[..., 2] - ci[..., 1])):.1e} "
                 "(a radial gradient component cos(g, w) ≈ that × p/2)",
        tables=["\n".join(rows)],
        notes=[f"tensors checked: {len(m['tensors'])} (each invariant kernel, their 3x3 concat)"],
        context={"model": str(m.get("model", "resnet8"))})


def figure(m: dict, verdict):
    x, g = m["x"][:, -1], m["g"][:, -1]
    G = g * np.sqrt(x)
    steps = np.arange(x.shape[1])
    fig, ax = canvas(1, 2, size=(10, 3.6))
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
    return fig


def test_without_weight_decay_each_step_adds_exactly_eta_squared_grad_squared(verify, model_spec):
    verify(__name__, model_spec)
