"""C2 — the gradient of a scale-invariant loss is orthogonal to the weights.

Article (Labatie 2020, section "Normalization → scale invariance", first implication): since L
does not change along w, ∇L(w) is orthogonal to w; per tensor, ⟨∇L(w), w⟩ = 0. Catalogue:
docs/claims.md, C2.

Expected: Euler's relation for a function homogeneous of degree 0 (sympy,
wd_claims.theory.c02_orthogonality, for f(w) = F(w/‖w‖) with F arbitrary): ⟨∇f(w), w⟩ =
d/dρ f(ρw)|_{ρ=1} = 0, so cos(∇L, w) = 0.

Measurement: cos(∇L, w) for every tensor the model declares scale-invariant
(``ModelSpec.expected_invariant``) or the probing detector finds, at initialization and along a
short plain SGD run (the probe batch's two halves alternately, BN in training mode), in float64
with ε numerically zero; the float32, ε = 1e-5 values are reported beside, not judged.

Criterion: max |cos| ≤ λ·3·depth·√n·u (wd_claims.probes.rounding_tolerance: a gradient is a
forward and a backward pass, the backward reducing twice per layer, for the inputs and the
weights; n the largest layer input or tested tensor), ≈ 2e-11 for ResNet-8 at batch 16. No term of
the tolerance is built from a measured cosine.

Control: the same tensors with normalization removed (the spec's control, else every absorbing
normalization replaced by the identity), at initialization; the same criterion must reject every
tensor. Where removing normalizations changes nothing (invariance by reparametrization), the
verdict says "no control available" and the claim's own criterion stands. Budgets: ResNet-8 at
the budget's width (smoke and quick 8, full 16), the probe batch (smoke 16, quick 16, full 128
images); 10 SGD steps.
"""

import functools

import numpy as np
import pytest
import torch

from wd_claims import theory
from wd_claims.config import torch_weight_decay
from wd_claims.invariance import float64_exact
from wd_claims.judge import Check
from wd_claims.probes import (
    gradients,
    named_param,
    rounding_tolerance,
    rounding_tolerance_reason,
)
from wd_claims.report import Verdict, fmt
from wd_claims.zoo import NO_CONTROL, at_width, geometry_probe, probe_setting

pytestmark = pytest.mark.c02


@functools.cache
def derive():
    """The sympy derivation (pure, slow to prove: computed once per process)."""
    return theory.c02_orthogonality()


QUOTE = "∇L(w) is orthogonal to w"
SGD_STEPS = 10          # steps of the short run along which orthogonality is re-measured
ETA, LAM = 0.1, 5e-4    # the article's setting (λ of the loss term; SGD weight_decay = 2λ)
PASSES = 3              # forward + backward (input and weight gradients) per layer


def cosines_along_sgd(model, x, y, names, steps: int) -> np.ndarray:
    """cos(∇L, w), shape (len(names), steps + 1): at the initial point and after each of
    ``steps`` plain SGD steps. The batch is split in two halves used alternately."""
    opt = torch.optim.SGD(model.parameters(), lr=ETA, weight_decay=torch_weight_decay(LAM))
    halves = [(x[: len(x) // 2], y[: len(y) // 2]), (x[len(x) // 2:], y[len(y) // 2:])]
    params = dict(model.named_parameters())
    wanted = list(params) + [n for n in names if n not in params]
    out = np.empty((len(names), steps + 1))
    for t in range(steps + 1):
        xb, yb = halves[t % 2]
        # one backward pass per step: the gradient that is measured is the one the step applies
        grads = gradients(model, xb, yb, wanted)
        for i, n in enumerate(names):
            g, w = grads[n], named_param(model, n).detach()
            out[i, t] = float((g * w).sum() / (g.norm() * w.norm()))
        if t < steps:
            opt.zero_grad()
            for n, p in params.items():
                p.grad = grads[n]
            opt.step()
    return out


def measure(spec, x, y, data_name: str, model=None) -> dict:
    """cos(∇L, w) of the declared and detected invariant tensors of ``model`` (default: ``spec``
    built under seed 0): float64 ε≈0 along the SGD run, float32 ε = 1e-5 along the same run,
    and the control at initialization (NaN when no control is available)."""
    model, tested, control, m = geometry_probe(spec, x, data_name, model)
    m["steps"] = SGD_STEPS
    if not tested:
        return m
    m["cos"] = cosines_along_sgd(float64_exact(model), x.double(), y, tested, SGD_STEPS)
    m["cos_float32"] = cosines_along_sgd(model.train(), x, y, tested, SGD_STEPS)
    m["control_cos"] = (cosines_along_sgd(float64_exact(control), x.double(), y, tested, 0)[:, 0]
                        if control is not None else np.full(len(tested), np.nan))
    return m


def orthogonal(cos: np.ndarray, names, tol: float, name: str) -> Check:
    """The criterion, on the measurement or on its control: |cos(∇L, w)| ≤ ``tol`` everywhere."""
    worst = np.max(np.abs(cos.reshape(len(names), -1)), axis=1)
    return Check(name, bool(np.all(worst <= tol)),
                 measured={"worst": float(worst.max()),
                           "over tolerance": [str(n) for n, w in zip(names, worst, strict=True)
                                              if not w <= tol]},
                 tolerance=tol, criterion="max |cos(∇L, w)| over tensors and steps ≤ tolerance")


def judge(m: dict) -> Verdict:
    derivation = derive()
    names = [str(n) for n in np.atleast_1d(m["names"])]
    common = dict(id="C2", title="∇L ⟂ w for every normalized kernel", quote=QUOTE,
                  expected="cos(∇L, w) = 0", derivation=derivation.text,
                  context={"model": m["model"], "data": m["data"],
                           "dtype": "float64 (and float32)", "seed": 0})
    if not names:
        return Verdict(**common, status="skip",
                       reason=f"model {m['model']!r} has no scale-invariant parameter tensor "
                              "(none found by probing, none declared), and this claim is about "
                              "such tensors")
    tol = rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))
    cos = np.asarray(m["cos"], float)
    main = orthogonal(cos, names, tol, "cos(∇L, w) = 0 in float64")
    checks = [main]
    worst = np.max(np.abs(cos), axis=1)
    worst32 = np.max(np.abs(np.asarray(m["cos_float32"])), axis=1)
    ctrl = np.abs(np.asarray(m["control_cos"], float))
    if m["control_available"]:
        # The same criterion, per tensor: rejected when |cos| exceeds the tolerance for every one.
        checks.append(Check("control rejected", bool(np.all(ctrl > tol)),
                            measured={"least": float(ctrl.min()),
                                      "not rejected": [n for n, c in zip(names, ctrl, strict=True)
                                                       if c <= tol]},
                            tolerance=f"> {fmt(tol)} for every tensor",
                            criterion="the same criterion misses on every tensor of the control"))
        control = {"description": "same tensors, normalization removed (the model's declared "
                                  "control, else every absorbing normalization replaced by the "
                                  "identity), at initialization",
                   "measured": float(ctrl.min()),
                   "status": "rejected" if checks[-1].holds else "NOT rejected"}
    else:
        control = {"description": NO_CONTROL, "measured": None, "status": "no control available"}
    rows = ["| tensor | float64 ε≈0 | float32 ε=1e-5 | control (at init) |", "|---|---|---|---|"]
    rows += [f"| `{n}` | {fmt(w)} | {fmt(w32)} | "
             f"{fmt(c) if m['control_available'] else '–'} |"
             for n, w, w32, c in zip(names, worst, worst32, ctrl, strict=True)]
    notes = [f"max |cos| over the initial point and {int(m['steps'])} plain SGD steps "
             f"(η = {ETA}, λ = {LAM}, i.e. weight_decay = {torch_weight_decay(LAM)})",
             f"float32 with ε = 1e-5: worst |cos| {fmt(float(worst32.max()))} (ε and float32 "
             "rounding; not judged)"]
    if not m["declared"]:
        notes.append("no expected invariant set declared: the tensors are the detected ones")
    return Verdict(
        **common, predicted=0.0,
        measured={"headline": main.measured["worst"],
                  "per tensor": dict(zip(names, worst.tolist(), strict=True))},
        tolerance=tol,
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"]))
        + "; |cos| errs by the gradient's relative error plus the inner product's √n·u",
        checks=checks, control=control, tables=["\n".join(rows)], notes=notes,
        resolves=f"a radial gradient component of {fmt(tol)}·‖∇L‖ (|cos(∇L, w)| = {fmt(tol)})")


def test_gradient_is_orthogonal_to_every_normalized_kernel(model_spec, probe_data, suite,
                                                            record_verdict):
    x, y, data_name = probe_data
    model_spec = at_width(model_spec, suite.budget.width)   # ResNet-8 at the budget's width
    m = measure(model_spec, x, y, data_name)
    v = judge(m)
    v.setting = probe_setting(model_spec, data_name, len(x), "float64, ε = 1e-30 (float32, "
                              "ε = 1e-5 reported beside)", steps=SGD_STEPS,
                              optimizer=f"plain SGD, η = {ETA}, weight_decay = 2λ = "
                                        f"{torch_weight_decay(LAM):g}")
    record_verdict(v, measurements=m)
    if not v.checks:  # the claim does not apply to this model
        pytest.skip(v.reason)
