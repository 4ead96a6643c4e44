"""C3 — the gradient scales as 1/‖w‖, so a scale-invariant loss is not Lipschitz.

Article (Labatie 2020, "Normalization → scale invariance"): ∇L(w) scales as 1/‖w‖, "which
explains why scale-invariant functions cannot be Lipschitz". Derivation (sympy,
``theory.c03_gradient_scaling``; docs/claims.md): for f(w) = F(w/‖w‖), ∇f(ρw) = ∇f(w)/ρ; the
log-log slope of ‖∇f(ρw)‖ on ρ is −1 and ‖∇f(ρw)‖ → ∞ as ρ → 0⁺.

Measurement: for every tensor declared scale-invariant or found so, ∇L(ρw) for ρ over 10⁻⁶ … 10²
by decades (float64, ε ≈ 0, BN in training mode, the probe batch); a tensor invariant up to ε (C1)
again at s·w, where the ε is 100× below the tolerance, judged there. The article's statements:
(1) max ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ ≤ δ = λ·6·depth·√n·u (``probes.rounding_tolerance``); (2)
the slope of log‖∇L(ρw)‖ on log ρ within δ's least-squares image of −1 (:func:`slope_tolerance`);
(3) ‖∇L‖ grows ≥ 10⁶(1 − δ) from ρ = 1 to 10⁻⁶. Control: the same tensors with normalization
removed must all miss (1) (none for a reparametrization: the verdict says so).
"""

import numpy as np
import pytest

from wd_claims import theory
from wd_claims.claim import Claim, Judgement, Presentation, canvas, derivation, table
from wd_claims.geometry_checks import (
    NOT_DECLARED,
    bounded,
    check_of,
    control_rejected,
    control_report,
    epsilon_judged,
    epsilon_notes,
    epsilon_probe,
    gradient_scaling,
    no_tensor_reason,
    probe_inputs,
    with_up_to_epsilon,
)
from wd_claims.invariance import float64_exact
from wd_claims.probes import loglog_slope, rounding_tolerance, rounding_tolerance_reason
from wd_claims.verdict import Check, fmt
from wd_claims.zoo import geometry_probe

CLAIM = Claim(id="C3", title="∇L(ρw) = ∇L(w)/ρ; not Lipschitz",
              quote="∇L(w) scales as 1/∥w∥ … scale-invariant functions cannot be Lipschitz",
              derive=theory.c03_gradient_scaling, sizes=("probe_batch", "width"))
RHOS = np.logspace(-6, 2, 9)  # 10⁻⁶ … 10² by decades; ρ → 0 shows the blow-up
ONE = list(RHOS).index(1.0)
PASSES = 6                    # two gradients compared, each forward + two-reduction backward


def measure(ctx, model) -> dict:
    return probe(*probe_inputs(ctx, model, "float64, ε = 1e-30"))


def probe(spec, x, y, data_name: str, model=None) -> dict:
    """Errors and norms of the declared and detected invariant tensors of ``model`` (default:
    ``spec`` built under seed 0), and of the same tensors in the control (NaN when none)."""
    model, tested, control, m = geometry_probe(spec, x, data_name, model)
    m["rhos"] = RHOS
    if not tested:
        return m
    nan = np.full((len(tested), len(RHOS)), np.nan)
    m["control_errors"], m["control_norms"] = nan, nan   # unless there is a control

    def scaling(net, prefix: str) -> None:   # base and ε-free gradients of net, into m
        e = epsilon_probe(net, x.double(), y, tested, m["depth"], m["reduction"], RHOS.min())
        m.update({prefix + k: v for k, v in e.items()})
        m[prefix + "errors"], m[prefix + "norms"] = gradient_scaling(net, x.double(), y, tested,
                                                                     RHOS)
        m[prefix + "errors_shift"], m[prefix + "norms_shift"] = gradient_scaling(
            net, x.double(), y, tested, RHOS, e["eps_shift"])

    for net, prefix in [(model, "")] + [(control, "control_")] * (control is not None):
        scaling(float64_exact(net), prefix)
    return m


def judged(m: dict, prefix: str = ""):
    """(errors, norms, kinds, laws): each tensor's rows at the ε-free scale where its deviation
    fades as an ε's does, else at its own scale (pure; ``prefix`` "control_")."""
    errors, norms = np.asarray(m[prefix + "errors"], float), np.asarray(m[prefix + "norms"], float)
    if prefix + "eps_scan" not in m:   # no control
        return errors, norms, ["–"] * len(errors), []
    err, kinds, laws, nrm = epsilon_judged(
        errors, m[prefix + "errors_shift"], m[prefix + "eps_scan"], float(m[prefix + "eps_tol"]),
        rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"])),
        (norms, m[prefix + "norms_shift"]))
    return err, nrm, kinds, laws


def slope_tolerance(rhos: np.ndarray, tol: float) -> float:
    """How far a relative error ≤ ``tol`` in every norm can move the least-squares slope:
    Σ|ℓᵢ − ℓ̄|·max|δ log y| / Σ(ℓᵢ − ℓ̄)², with |δ log y| ≤ tol/(1 − tol)."""
    lx = np.log(rhos)
    c = lx - lx.mean()
    return float(np.abs(c).sum() / (c @ c) * tol / (1 - tol))


def analysis(m: dict) -> dict:
    """What the criteria and the report read: tolerances, slopes, growth towards ρ → 0."""
    rhos = np.asarray(m["rhos"], float)
    one, smallest = int(np.argmin(np.abs(np.log(rhos)))), int(np.argmin(rhos))
    tol = rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))
    errors, norms, kinds, laws = judged(m)
    return dict(rhos=rhos, errors=errors, norms=norms, kinds=kinds, laws=laws,
                smallest=smallest, tol=tol, slope_tol=slope_tolerance(rhos, tol),
                slopes=np.array([loglog_slope(rhos, v) for v in norms]),
                growth=norms[:, smallest] / norms[:, one],
                growth_expected=float(rhos[one] / rhos[smallest]),
                slope_expected=float(derivation(theory.c03_gradient_scaling)
                                     .exprs["loglog_slope"]))


def judge(m: dict) -> Judgement:
    names = [str(n) for n in np.atleast_1d(m["names"])]
    if not names:   # the claim does not apply to this model
        return Judgement([])
    a = analysis(m)
    tol, slopes, growth, expected = a["tol"], a["slopes"], a["growth"], a["slope_expected"]
    checks = [
        bounded("homogeneous_float64",
                with_up_to_epsilon("ρ∇L(ρw) = ∇L(w) in float64", a["kinds"]),
                np.max(a["errors"], axis=1), names, tol,
                "max over ρ of ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ ≤ tolerance"),
        Check("loglog_slope", "log-log slope −1",
              bool(np.all(np.abs(slopes - expected) <= a["slope_tol"])),
              measured={"worst deviation": float(np.max(np.abs(slopes - expected)))},
              tolerance=a["slope_tol"],
              criterion="|slope of log‖∇L(ρw)‖ on log ρ − (−1)| ≤ the slope's rounding bound",
              resolution=f"a slope off −1 by > {fmt(a['slope_tol'])}"),
        Check("unbounded_near_zero", "unbounded as ρ → 0",
              bool(np.all(growth >= a["growth_expected"] * (1 - tol))),
              measured=float(growth.min()),
              tolerance=f"≥ {a['growth_expected']:g}·(1 − {fmt(tol)})",
              criterion=f"‖∇L(ρw)‖ grows by 1/ρ from ρ = 1 to ρ = {a['rhos'][a['smallest']]:g}",
              resolution="a growth short of 1/ρ beyond rounding"),
    ]
    if m["control_available"]:   # criterion (1), per tensor: it must miss on every one
        least = np.max(judged(m, "control_")[0], axis=1)
        checks.append(control_rejected(least, names, tol, bool(np.all(least > tol)),
                                       "criterion (1) misses on every tensor of the control"))
    return Judgement(checks)


def present(m: dict, verdict) -> Presentation:
    expected = float(derivation(theory.c03_gradient_scaling).exprs["loglog_slope"])
    common = dict(expected=f"ρ∇L(ρw) = ∇L(w); slope {expected:g}; ‖∇L‖ → ∞ as ρ → 0",
                  context={"model": m["model"], "data": m["data"], "dtype": "float64", "seed": 0})
    if not verdict.checks:   # a verdict without checks is skipped, with this reason
        verdict.reason = no_tensor_reason(m["model"])
        return Presentation(**common)
    a, names = analysis(m), [str(n) for n in np.atleast_1d(m["names"])]
    tol, slopes, growth, rhos, smallest = (a[k] for k in ("tol", "slopes", "growth", "rhos",
                                                          "smallest"))
    ctrl_err, ctrl_norms = judged(m, "control_")[:2]
    ctrl_slopes = np.array([loglog_slope(rhos, v) if np.all(np.isfinite(v)) else np.nan
                            for v in ctrl_norms])
    rows = table(["tensor", "kind", "max ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖", "log-log slope",
                  "control error", "control slope"],
                 [[f"`{n}`", k, fmt(e), f"{s:.12f}", fmt(ce), f"{cs:.3f}"] for n, k, e, s, ce, cs
                  in zip(names, a["kinds"], a["errors"].max(1), slopes, ctrl_err.max(1),
                         ctrl_slopes, strict=True)])
    notes = [f"ρ over {rhos.min():g} … {rhos.max():g} by decades, BN in training mode",
             f"non-Lipschitz corollary: the gradient norm grows by at least {fmt(growth.min())} "
             f"from ρ = 1 to ρ = {rhos[smallest]:g} (predicted {a['growth_expected']:g}) and keeps "
             "growing as 1/ρ: no finite bound on any ball around w = 0",
             *epsilon_notes(names, a["kinds"], a["laws"])]
    return Presentation(
        **common, predicted={"slope": expected, "error": 0.0, "growth": a["growth_expected"]},
        measured={"headline": check_of(verdict, "homogeneous_float64").measured["worst"],
                  "worst slope deviation": float(np.max(np.abs(slopes - expected))),
                  f"growth from ρ=1 to ρ={rhos[smallest]:g}": float(growth.min())},
        tolerance={"error": tol, "slope": a["slope_tol"]},
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"]))
        + "; the slope's bound follows from it through the least-squares weights",
        control=control_report(verdict), tables=[rows],
        notes=notes + ([] if m["declared"] else [NOT_DECLARED]),
        resolves=f"a relative deviation of {fmt(tol)} from ∇L(ρw) = ∇L(w)/ρ, i.e. an exponent "
                 f"−1 ± {fmt(tol / (6 * np.log(10)))} (the error it makes at ρ = 1e-6)")


def figure(m: dict, verdict):
    """‖∇L(ρw)‖/‖∇L(w)‖ against ρ, log-log, against the sympy prediction 1/ρ."""
    if not verdict.checks:
        return None
    fig, ax = canvas(size=(6, 4))
    for norms, color in ((analysis(m)["norms"], "C0"), (judged(m, "control_")[1], "C3")):
        for v in norms[np.all(np.isfinite(norms), axis=1)]:
            ax.loglog(RHOS, v / v[ONE], color=color, alpha=0.6, lw=1)
    ax.loglog(RHOS, 1 / RHOS, "k--", lw=1, label="sympy: 1/ρ")
    ax.plot([], [], color="C0", label="scale-invariant tensors")
    ax.plot([], [], color="C3", label="control: no normalization")
    ax.set(xlabel="ρ", ylabel="‖∇L(ρw)‖ / ‖∇L(w)‖", title=f"C3 on {m['model']}: ‖∇L(ρw)‖")
    ax.legend()
    fig.tight_layout()
    return fig


def test_gradient_scales_as_inverse_norm_and_is_unbounded_near_zero(verify, model_spec):
    verdict = verify(__name__, model_spec)
    if not verdict.checks:  # the claim does not apply to this model
        pytest.skip(verdict.reason)
