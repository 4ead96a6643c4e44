"""C3 — the gradient scales as 1/‖w‖, so a scale-invariant loss is not Lipschitz.

Article (Labatie 2020, section "Normalization → scale invariance", second implication): ∇L(w)
scales as 1/‖w‖, "which explains why scale-invariant functions cannot be Lipschitz". Catalogue:
docs/claims.md, C3.

Expected (sympy, wd_claims.theory.c03_gradient_scaling, f(w) = F(w/‖w‖), F arbitrary): ∇f(ρw) =
∇f(w)/ρ, homogeneity of degree −1; the log-log slope of ‖∇f(ρw)‖ against ρ is −1 and ‖∇f(ρw)‖ →
∞ as ρ → 0⁺, so no Lipschitz constant bounds the gradient on any ball around 0.

Measurement: for every tensor the model declares scale-invariant (``ModelSpec.expected_invariant``)
or the probing detector finds, ∇L(ρw) for ρ over 10⁻⁶ … 10² by decades (float64, ε numerically
zero, BN in training mode, the probe batch): the relative error ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ and the
norms ‖∇L(ρw)‖.

Criteria (all core): (1) max relative error ≤ δ = λ·6·depth·√n·u (wd_claims.probes.
rounding_tolerance: two gradients, each a forward and a two-reduction backward pass), ≈ 4e-11 for
ResNet-8 at batch 16; (2) least-squares slope of log‖∇L(ρw)‖ on log ρ within δ·Σ|ℓ − ℓ̄|/Σ(ℓ − ℓ̄)²
of −1 (ℓ = log ρ: a relative error δ in each norm moves the fitted slope by at most that); (3) the
gradient grows by ≥ 10⁶(1 − δ) from ρ = 1 to ρ = 10⁻⁶ (the non-Lipschitz corollary).

Control: the same tensors with normalization removed (the spec's control, else every absorbing
normalization replaced by the identity): criterion (1) must reject every tensor. Where removing
normalizations changes nothing (invariance by reparametrization), the verdict says "no control
available" and the claim's own criteria stand. Budgets: ResNet-8 at the budget's width (smoke and
quick 8, full 16) and the probe batch (smoke 16, quick 16, full 128 images).
"""

import functools

import matplotlib
import numpy as np
import pytest

from wd_claims import theory
from wd_claims.invariance import float64_exact
from wd_claims.judge import Check
from wd_claims.probes import (
    gradients,
    gradients_under_rescaling,
    loglog_slope,
    rounding_tolerance,
    rounding_tolerance_reason,
)
from wd_claims.report import Verdict, fmt, save_figure
from wd_claims.zoo import NO_CONTROL, at_width, geometry_probe, probe_setting

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

pytestmark = pytest.mark.c03


@functools.cache
def derive():
    """The sympy derivation (pure, slow to prove: computed once per process)."""
    return theory.c03_gradient_scaling()


QUOTE = "∇L(w) scales as 1/∥w∥ … scale-invariant functions cannot be Lipschitz"
RHOS = np.logspace(-6, 2, 9)  # 10⁻⁶ … 10² by decades; ρ → 0 shows the blow-up
ONE = list(RHOS).index(1.0)
PASSES = 6                    # two gradients compared, each forward + two-reduction backward


def scaling_measurements(model, x, y, names) -> tuple[np.ndarray, np.ndarray]:
    """(errors, norms), each (len(names), len(RHOS)): ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ and ‖∇L(ρw)‖."""
    errors, norms = np.empty((len(names), len(RHOS))), np.empty((len(names), len(RHOS)))
    at_one = gradients(model, x, y, names)   # ρ = 1 is the same point for every tensor
    for i, n in enumerate(names):
        grads = gradients_under_rescaling(model, x, y, n, RHOS, at_one=at_one[n])
        base = grads[ONE]
        errors[i] = [float((r * g - base).norm() / base.norm())
                     for r, g in zip(RHOS, grads, strict=True)]
        norms[i] = [float(g.norm()) for g in grads]
    return errors, norms


def measure(spec, x, y, data_name: str, model=None) -> dict:
    """Errors and norms of the declared and detected invariant tensors of ``model`` (default:
    ``spec`` built under seed 0), and of the same tensors in the control (NaN when none)."""
    model, tested, control, m = geometry_probe(spec, x, data_name, model)
    m["rhos"] = RHOS
    if not tested:
        return m
    m["errors"], m["norms"] = scaling_measurements(float64_exact(model), x.double(), y, tested)
    shape = (len(tested), len(RHOS))
    m["control_errors"], m["control_norms"] = (
        scaling_measurements(float64_exact(control), x.double(), y, tested)
        if control is not None else (np.full(shape, np.nan), np.full(shape, np.nan)))
    return m


def homogeneous(errors: np.ndarray, names, tol: float, name: str) -> Check:
    """Criterion (1), on the measurement or its control: ρ∇L(ρw) = ∇L(w) within ``tol``."""
    worst = np.max(errors, axis=1)
    return Check(name, bool(np.all(worst <= tol)),
                 measured={"worst": float(worst.max()),
                           "over tolerance": [str(n) for n, w in zip(names, worst, strict=True)
                                              if not w <= tol]},
                 tolerance=tol, criterion="max over ρ of ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ ≤ tolerance")


def slope_tolerance(rhos: np.ndarray, tol: float) -> float:
    """How far a relative error ≤ ``tol`` in every norm can move the least-squares slope:
    Σ|ℓᵢ − ℓ̄|·max|δ log y| / Σ(ℓᵢ − ℓ̄)², with |δ log y| ≤ tol/(1 − tol)."""
    lx = np.log(rhos)
    c = lx - lx.mean()
    return float(np.abs(c).sum() / (c @ c) * tol / (1 - tol))


def plot(m: dict, report_dir):
    """‖∇L(ρw)‖/‖∇L(w)‖ against ρ, log-log, against the sympy prediction 1/ρ."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in np.asarray(m["norms"]):
        ax.loglog(RHOS, v / v[ONE], color="C0", alpha=0.6, lw=1)
    for v in np.asarray(m["control_norms"]):
        if np.all(np.isfinite(v)):
            ax.loglog(RHOS, v / v[ONE], color="C3", alpha=0.6, lw=1)
    ax.loglog(RHOS, 1 / RHOS, "k--", lw=1, label="sympy: 1/ρ")
    ax.plot([], [], color="C0", label="scale-invariant tensors")
    ax.plot([], [], color="C3", label="control: no normalization")
    ax.set(xlabel="ρ", ylabel="‖∇L(ρw)‖ / ‖∇L(w)‖", title=f"C3 on {m['model']}: ‖∇L(ρw)‖")
    ax.legend()
    fig.tight_layout()
    figure = save_figure(fig, report_dir, f"C3-{m['model']}.png")
    plt.close(fig)
    return figure


def judge(m: dict) -> Verdict:
    derivation = derive()
    slope_expected = float(derivation.exprs["loglog_slope"])
    names = [str(n) for n in np.atleast_1d(m["names"])]
    common = dict(id="C3", title="∇L(ρw) = ∇L(w)/ρ; not Lipschitz", quote=QUOTE,
                  expected=f"ρ∇L(ρw) = ∇L(w); slope {slope_expected:g}; ‖∇L‖ → ∞ as ρ → 0",
                  derivation=derivation.text,
                  context={"model": m["model"], "data": m["data"], "dtype": "float64", "seed": 0})
    if not names:
        return Verdict(**common, status="skip",
                       reason=f"model {m['model']!r} has no scale-invariant parameter tensor "
                              "(none found by probing, none declared), and this claim is about "
                              "such tensors")
    rhos = np.asarray(m["rhos"], float)
    one, smallest = int(np.argmin(np.abs(np.log(rhos)))), int(np.argmin(rhos))
    tol = rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))
    slope_tol = slope_tolerance(rhos, tol)
    errors, norms = np.asarray(m["errors"], float), np.asarray(m["norms"], float)
    slopes = np.array([loglog_slope(rhos, v) for v in norms])
    growth = norms[:, smallest] / norms[:, one]
    growth_expected = float(rhos[one] / rhos[smallest])
    main = homogeneous(errors, names, tol, "ρ∇L(ρw) = ∇L(w) in float64")
    checks = [
        main,
        Check("log-log slope −1", bool(np.all(np.abs(slopes - slope_expected) <= slope_tol)),
              measured={"worst deviation": float(np.max(np.abs(slopes - slope_expected)))},
              tolerance=slope_tol,
              criterion="|slope of log‖∇L(ρw)‖ on log ρ − (−1)| ≤ the slope's rounding bound"),
        Check("unbounded as ρ → 0", bool(np.all(growth >= growth_expected * (1 - tol))),
              measured=float(growth.min()), tolerance=f"≥ {growth_expected:g}·(1 − {fmt(tol)})",
              criterion=f"‖∇L(ρw)‖ grows by 1/ρ from ρ = 1 to ρ = {rhos[smallest]:g}"),
    ]
    ctrl_err = np.asarray(m["control_errors"], float)
    ctrl_slopes = np.array([loglog_slope(rhos, v) if np.all(np.isfinite(v)) else np.nan
                            for v in np.asarray(m["control_norms"], float)])
    if m["control_available"]:
        least = np.max(ctrl_err, axis=1)
        # Criterion (1), per tensor: rejected when it misses for every tensor of the control.
        checks.append(Check("control rejected", bool(np.all(least > tol)),
                            measured={"least": float(least.min()),
                                      "not rejected": [n for n, e in zip(names, least, strict=True)
                                                       if e <= tol]},
                            tolerance=f"> {fmt(tol)} for every tensor",
                            criterion="criterion (1) misses on every tensor of the control"))
        control = {"description": "same tensors, normalization removed (the model's declared "
                                  "control, else every absorbing normalization replaced by the "
                                  "identity)", "measured": float(least.min()),
                   "status": "rejected" if checks[-1].holds else "NOT rejected"}
    else:
        control = {"description": NO_CONTROL, "measured": None, "status": "no control available"}
    rows = ["| tensor | max ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ | log-log slope | control error | "
            "control slope |", "|---|---|---|---|---|"]
    rows += [f"| `{n}` | {fmt(e)} | {s:.12f} | {fmt(ce)} | {cs:.3f} |"
             for n, e, s, ce, cs in zip(names, errors.max(1), slopes, ctrl_err.max(1),
                                        ctrl_slopes, strict=True)]
    notes = [f"ρ over {rhos.min():g} … {rhos.max():g} by decades, BN in training mode",
             f"non-Lipschitz corollary: the gradient norm grows by at least {fmt(growth.min())} "
             f"from ρ = 1 to ρ = {rhos[smallest]:g} (predicted {growth_expected:g}) and keeps "
             "growing as 1/ρ: no finite bound on any ball around w = 0"]
    if not m["declared"]:
        notes.append("no expected invariant set declared: the tensors are the detected ones")
    return Verdict(
        **common, predicted={"slope": slope_expected, "error": 0.0,
                             "growth": growth_expected},
        measured={"headline": main.measured["worst"],
                  "worst slope deviation": float(np.max(np.abs(slopes - slope_expected))),
                  f"growth from ρ=1 to ρ={rhos[smallest]:g}": float(growth.min())},
        tolerance={"error": tol, "slope": slope_tol},
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"]))
        + "; the slope's bound follows from it through the least-squares weights",
        checks=checks, control=control, tables=["\n".join(rows)], notes=notes,
        resolves=f"a relative deviation of {fmt(tol)} from ∇L(ρw) = ∇L(w)/ρ, i.e. an exponent "
                 f"−1 ± {fmt(tol / (6 * np.log(10)))} (the error it makes at ρ = 1e-6)")


def test_gradient_scales_as_inverse_norm_and_is_unbounded_near_zero(model_spec, probe_data, suite,
                                                                     record_verdict):
    x, y, data_name = probe_data
    model_spec = at_width(model_spec, suite.budget.width)   # ResNet-8 at the budget's width
    m = measure(model_spec, x, y, data_name)
    v = judge(m)
    if v.checks:
        v.figures = [plot(m, suite.report_dir)]
    v.setting = probe_setting(model_spec, data_name, len(x), "float64, ε = 1e-30")
    record_verdict(v, measurements=m)
    if not v.checks:  # the claim does not apply to this model
        pytest.skip(v.reason)
