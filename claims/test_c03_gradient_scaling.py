"""C3 — the gradient scales as 1/‖w‖, so a scale-invariant loss is not Lipschitz.

Article (section "Normalization → scale invariance", second implication): ∇L(w) scales as 1/‖w‖,
"which explains why scale-invariant functions cannot be Lipschitz".

Expected (sympy, f(w) = F(w/‖w‖), F arbitrary): ∇f(ρw) = ∇f(w)/ρ — homogeneity of degree −1; the
log-log slope of ‖∇f(ρw)‖ against ρ is −1 and ‖∇f(ρw)‖ → ∞ as ρ → 0⁺, so no Lipschitz constant
bounds the gradient on any ball around 0.

Measurement: for every scale-invariant tensor, ρ·∇L(ρw) against ∇L(w) for ρ over 10⁻⁶ … 10²
(float64, ε numerically zero, BN in training mode); the slope of log‖∇L(ρw)‖ on log ρ; the gradient
norm at ρ = 10⁻⁶ relative to ρ = 1 (the non-Lipschitz corollary).

Control: the same tensors without normalization: ρ∇L(ρw) ≠ ∇L(w), rejected by the same criterion.
"""

import matplotlib
import numpy as np
import pytest
import torch

from wd_claims import theory
from wd_claims.invariance import FLOAT64_RTOL, control_model, float64_exact
from wd_claims.probes import gradients_under_rescaling, loglog_slope
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.zoo import require_scale_invariant

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

pytestmark = pytest.mark.c03

QUOTE = "∇L(w) scales as 1/∥w∥ … scale-invariant functions cannot be Lipschitz"
RHOS = np.logspace(-6, 2, 9)  # 10⁻⁶ … 10² by decades; ρ → 0 shows the blow-up
ONE = list(RHOS).index(1.0)


def scaling_measurements(model, x, y, names) -> tuple[dict, dict]:
    """({name: max over ρ of ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖}, {name: [‖∇L(ρw)‖ for ρ in RHOS]})."""
    errors, norms = {}, {}
    for n in names:
        grads = gradients_under_rescaling(model, x, y, n, RHOS)
        base = grads[ONE]
        errors[n] = max(float((r * g - base).norm() / base.norm()) for r, g in zip(RHOS, grads))
        norms[n] = [float(g.norm()) for g in grads]
    return errors, norms


def plot(norms: dict, ctrl_norms: dict, title: str):
    """The figure: ‖∇L(ρw)‖/‖∇L(w)‖ against ρ, log-log, against the sympy prediction 1/ρ."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, v in norms.items():
        ax.loglog(RHOS, np.asarray(v) / v[ONE], color="C0", alpha=0.6, lw=1)
    for n, v in ctrl_norms.items():
        ax.loglog(RHOS, np.asarray(v) / v[ONE], color="C3", alpha=0.6, lw=1)
    ax.loglog(RHOS, 1 / RHOS, "k--", lw=1, label="sympy: 1/ρ")
    ax.plot([], [], color="C0", label="normalized kernels")
    ax.plot([], [], color="C3", label="control: no normalization")
    ax.set(xlabel="ρ", ylabel="‖∇L(ρw)‖ / ‖∇L(w)‖", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def test_gradient_scales_as_inverse_norm_and_is_unbounded_near_zero(model_spec, probe_data, suite,
                                                                     record_verdict):
    derivation = theory.c03_gradient_scaling()
    assert all(derivation.proved.values()), derivation.text
    slope_expected = float(derivation.exprs["loglog_slope"])

    torch.manual_seed(0)
    model = float64_exact(model_spec.build())
    invariant = require_scale_invariant(model_spec, model)  # skips, with the reason, if none
    x, y, data_name = probe_data
    x = x.double()

    errors, norms = scaling_measurements(model, x, y, invariant)
    slopes = {n: loglog_slope(RHOS, v) for n, v in norms.items()}
    blowup = min(v[0] / v[ONE] for v in norms.values())  # ρ = 1e-6 vs ρ = 1

    control = float64_exact(control_model(model_spec, model))
    ctrl_errors, ctrl_norms = scaling_measurements(control, x, y, invariant)
    ctrl_slopes = {n: loglog_slope(RHOS, v) for n, v in ctrl_norms.items()}

    worst, ctrl_least = max(errors.values()), min(ctrl_errors.values())
    passed, rejected = worst <= FLOAT64_RTOL, ctrl_least > FLOAT64_RTOL
    fig = plot(norms, ctrl_norms, f"C3 on {model_spec.name}: ‖∇L(ρw)‖")
    figure = save_figure(fig, suite.report_dir, f"C3-{model_spec.name}.png")
    plt.close(fig)
    rows = ["| tensor | max ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ | log-log slope | control error | "
            "control slope |", "|---|---|---|---|---|"]
    rows += [f"| `{n}` | {fmt(errors[n])} | {slopes[n]:.6f} | {fmt(ctrl_errors[n])} | "
             f"{ctrl_slopes[n]:.3f} |" for n in invariant]
    record_verdict(Verdict(
        id="C3", title="∇L(ρw) = ∇L(w)/ρ; not Lipschitz", quote=QUOTE,
        expected=f"ρ∇L(ρw) = ∇L(w); slope {slope_expected:g}; ‖∇L‖ → ∞ as ρ → 0",
        derivation=derivation.text, predicted={"slope": slope_expected, "error": 0.0},
        measured={"headline": worst, "worst slope deviation":
                  max(abs(s - slope_expected) for s in slopes.values()),
                  "growth from ρ=1 to ρ=1e-6": blowup},
        tolerance=FLOAT64_RTOL,
        tolerance_reason="exact identity in float64 with ε numerically zero: rounding only; "
                         "torch.testing's float64 rtol (1e-7)",
        status="pass" if passed and rejected and blowup >= 1e6 * (1 - FLOAT64_RTOL) else "fail",
        reason="" if rejected else "the control was not rejected: the check cannot fail",
        control={"description": "same tensors, every normalization replaced by the identity",
                 "measured": ctrl_least, "status": "rejected" if rejected else "NOT rejected"},
        figures=[figure], tables=["\n".join(rows)],
        notes=[f"ρ over {RHOS[0]:g} … {RHOS[-1]:g} by decades, BN in training mode",
               f"non-Lipschitz corollary: the gradient norm grows by {fmt(blowup)} from ρ = 1 to "
               "ρ = 1e-6 (predicted 1e6) and keeps growing as 1/ρ: no finite bound on any ball "
               "around w = 0"],
        context={"model": model_spec.name, "data": data_name, "dtype": "float64", "seed": 0}))
    assert rejected, f"control not rejected: smallest error {ctrl_least:.3g} ≤ {FLOAT64_RTOL}"
    assert passed, f"worst error {worst:.3g} > {FLOAT64_RTOL}: {errors}"
    assert blowup >= 1e6 * (1 - FLOAT64_RTOL), f"gradient grew only {blowup:.3g}× as ρ → 1e-6"
