"""C2 — the gradient of a scale-invariant loss is orthogonal to the weights.

Article (Labatie 2020, "Normalization → scale invariance", first implication): since L does not
change along w, ∇L(w) is orthogonal to w; per tensor, ⟨∇L(w), w⟩ = 0.
Derivation (sympy, ``theory.c02_orthogonality``; docs/claims.md): Euler's relation for f(w) =
F(w/‖w‖), homogeneous of degree 0: ⟨∇f(w), w⟩ = d/dρ f(ρw)|_{ρ=1} = 0, so cos(∇L, w) = 0.

Measurement: cos(∇L, w) for every tensor the model declares scale-invariant or the detector finds,
at initialization and along 10 plain SGD steps (the probe batch's halves alternately, BN in
training mode), float64 with ε ≈ 0; float32 with ε = 1e-5 is reported beside, not judged.
Criterion (core): max |cos| ≤ λ·3·depth·√n·u (:func:`wd_claims.probes.rounding_tolerance`; no term
built from a measured cosine); a tensor invariant up to ε (C1) is judged at s·w, ε-free.
Control: the same tensors with normalization removed, at initialization, must all miss it (none
where the invariance is a reparametrization: it says so).
"""

import numpy as np
import pytest

from wd_claims import theory
from wd_claims.claim import Claim, Judgement, Presentation, table
from wd_claims.config import torch_weight_decay
from wd_claims.geometry_checks import (
    CONTROL,
    FLOAT64_AND_FLOAT32,
    NOT_DECLARED,
    bounded,
    check_of,
    control_rejected,
    control_report,
    cosines_along_sgd,
    epsilon_judged,
    epsilon_notes,
    epsilon_probe,
    no_tensor_reason,
    probe_inputs,
    with_up_to_epsilon,
)
from wd_claims.invariance import deterministic_train, float64_exact
from wd_claims.probes import rounding_tolerance, rounding_tolerance_reason
from wd_claims.verdict import fmt
from wd_claims.zoo import geometry_probe

CLAIM = Claim(id="C2", title="∇L ⟂ w for every normalized kernel",
              quote="∇L(w) is orthogonal to w", derive=theory.c02_orthogonality,
              sizes=("probe_batch", "width"))
SGD_STEPS = 10          # steps of the short run along which orthogonality is re-measured
ETA, LAM = 0.1, 5e-4    # the article's setting (λ of the loss term; SGD weight_decay = 2λ)
PASSES = 3              # forward + backward (input and weight gradients) per layer


def measure(ctx, model) -> dict:
    return probe(*probe_inputs(
        ctx, model, FLOAT64_AND_FLOAT32, steps=SGD_STEPS,
        optimizer=f"plain SGD, η = {ETA}, weight_decay = 2λ = {torch_weight_decay(LAM):g}"))


def probe(spec, x, y, data_name: str, model=None) -> dict:
    """cos(∇L, w) of the declared and detected invariant tensors of ``model`` (default: ``spec``
    built under seed 0): float64 ε≈0 along the SGD run, float32 ε = 1e-5 along the same run,
    and the control at initialization (NaN when no control is available)."""
    model, tested, control, m = geometry_probe(spec, x, data_name, model)
    m["steps"] = SGD_STEPS
    if not tested:
        return m
    x64 = x.double()

    def cosines(net, steps, prefix=""):   # float64 ε≈0, with the ε scans and ε-free cosines
        e = epsilon_probe(net, x64, y, tested, m["depth"], m["reduction"], 1.0)
        cos, at_shift = cosines_along_sgd(net, x64, y, tested, steps, ETA, LAM, e["eps_shift"])
        m.update({prefix + k: v for k, v in e.items()})
        m[prefix + "cos_shift"] = at_shift
        return cos

    m["cos"] = cosines(float64_exact(model), SGD_STEPS)
    m["cos_float32"] = cosines_along_sgd(deterministic_train(model), x, y, tested, SGD_STEPS,
                                         ETA, LAM)[0]
    m["control_cos"] = (cosines(float64_exact(control), 0, "control_")[:, 0]
                        if control is not None else np.full(len(tested), np.nan))
    if control is not None:
        m["control_cos_shift"] = m["control_cos_shift"][:, 0]
    return m


def judged(m: dict, prefix: str = ""):
    """(worst |cos| per tensor, kind, law): at the ε-free scale where the tensor's deviation fades
    as an ε's does, else at its own scale (pure; ``prefix`` "control_": the control at init)."""
    n = len(np.atleast_1d(m["names"]))
    base = np.abs(np.asarray(m[prefix + "cos"], float)).reshape(n, -1).max(1)
    if prefix + "eps_scan" not in m:
        return base, ["–"] * n, []
    shifted = np.abs(np.asarray(m[prefix + "cos_shift"], float)).reshape(n, -1).max(1)
    return epsilon_judged(base, shifted, m[prefix + "eps_scan"], float(m[prefix + "eps_tol"]),
                          _tol(m))


def _tol(m: dict) -> float:
    return rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))


def judge(m: dict) -> Judgement:
    names = [str(n) for n in np.atleast_1d(m["names"])]
    if not names:   # the claim does not apply to this model
        return Judgement([])
    tol = _tol(m)
    worst, kinds, _ = judged(m)
    checks = [bounded("orthogonal_float64",
                      with_up_to_epsilon("cos(∇L, w) = 0 in float64", kinds),
                      worst, names, tol, "max |cos(∇L, w)| over tensors and steps ≤ tolerance")]
    if m["control_available"]:   # rejected when |cos| exceeds the tolerance for every tensor
        ctrl = judged(m, "control_")[0]
        checks.append(control_rejected(ctrl, names, tol, bool(np.all(ctrl > tol))))
    return Judgement(checks)


def present(m: dict, verdict) -> Presentation:
    common = dict(expected="cos(∇L, w) = 0", context={
        "model": m["model"], "data": m["data"], "dtype": "float64 (and float32)", "seed": 0})
    if not verdict.checks:   # a verdict without checks is skipped, with this reason
        verdict.reason = no_tensor_reason(m["model"])
        return Presentation(**common)
    names, tol = [str(n) for n in np.atleast_1d(m["names"])], _tol(m)
    worst, kinds, laws = judged(m)
    worst32 = np.max(np.abs(np.asarray(m["cos_float32"])), axis=1)
    ctrl = judged(m, "control_")[0]
    rows = table(["tensor", "kind", "float64 ε≈0", "float32 ε=1e-5", "control (at init)"],
                 [[f"`{n}`", k, fmt(w), fmt(w32), fmt(c) if m["control_available"] else "–"]
                  for n, k, w, w32, c in zip(names, kinds, worst, worst32, ctrl, strict=True)])
    notes = [f"max |cos| over the initial point and {int(m['steps'])} plain SGD steps "
             f"(η = {ETA}, λ = {LAM}, i.e. weight_decay = {torch_weight_decay(LAM)})",
             f"float32 with ε = 1e-5: worst |cos| {fmt(float(worst32.max()))} (ε and float32 "
             "rounding; not judged)", *epsilon_notes(names, kinds, laws)]
    notes += [] if m["declared"] else [NOT_DECLARED]
    return Presentation(
        **common, predicted=0.0, tables=[rows], notes=notes,
        measured={"headline": check_of(verdict, "orthogonal_float64").measured["worst"],
                  "per tensor": dict(zip(names, worst.tolist(), strict=True))},
        tolerance=tol,
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"]))
        + "; |cos| errs by the gradient's relative error plus the inner product's √n·u",
        control=control_report(verdict, CONTROL + ", at initialization"),
        resolves=f"a radial gradient component of {fmt(tol)}·‖∇L‖ (|cos(∇L, w)| = {fmt(tol)})")


def test_gradient_is_orthogonal_to_every_normalized_kernel(verify, model_spec):
    verdict = verify(__name__, model_spec)
    if not verdict.checks:  # the claim does not apply to this model
        pytest.skip(verdict.reason)
