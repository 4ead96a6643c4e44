"""C1 — normalization makes the loss scale-invariant in every kernel that feeds it.

Article (Labatie 2020, "Normalization → scale invariance"): the output with weights w equals the
output with weights ρw, hence L(ρw) = L(w) for ρ > 0, per tensor that feeds a normalization.
Derivation (sympy, ``theory.c01_scale_invariance``; docs/claims.md): Norm(ρx) = Norm(x) exactly for
ε = 0; with the layer's ε the relative deviation is ≈ (ε/2σ²)(1 − 1/ρ²).

Measurement: the scale-invariant tensors found by probing (:mod:`wd_claims.invariance`), held to
the set the model declares (``ModelSpec.expected_invariant``), each with its cause; for every
declared or found tensor, the relative change of logits and loss under w → ρw, ρ ∈ 10⁻² … 10²
(BN in training mode, the probe batch, float64, ε ≈ 0); float32, ε = 1e-5, reported, not judged.
Criterion (core): the declared and found sets agree; the worst change ≤ λ·2·depth·√n·u
(:func:`wd_claims.probes.rounding_tolerance`); a tensor whose deviation fades as an ε's does
(exponent 1 or 2, :mod:`wd_claims.epsilon`) is judged "up to ε" at s·w, ε 100× below the
tolerance. Control: the same tensors with normalization removed must all miss it (none where the
invariance is a reparametrization: the verdict says so).
"""

import numpy as np
import pytest
import sympy
import torch

from wd_claims import invariance, theory
from wd_claims.claim import Claim, Judgement, Presentation, derivation, table
from wd_claims.geometry_checks import (
    CONTROL,
    FLOAT64_AND_FLOAT32,
    bounded,
    check_of,
    control_rejected,
    control_report,
    epsilon_judged,
    epsilon_notes,
    epsilon_probe,
    invariance_cause,
    invariance_map_table,
    probe_inputs,
    with_up_to_epsilon,
    worst_at_shift,
    worst_deviation,
)
from wd_claims.invariance import float64_exact, joint_invariant_groups, scale_invariance_map
from wd_claims.probes import forward_footprint, rounding_tolerance, rounding_tolerance_reason
from wd_claims.verdict import Check, fmt
from wd_claims.zoo import negative_control, tensors_to_test

CLAIM = Claim(
    id="C1", title="loss invariant under w → ρw",
    quote="the output of the neural network with weights w is always equal to the output of the "
          "neural network with weights ρw",
    derive=theory.c01_scale_invariance, sizes=("probe_batch", "width"))
RHOS = tuple(r for r in np.logspace(-2, 2, 9) if r != 1.0)  # ρ = 1 says nothing
PASSES = 2  # two forward evaluations compared: f(ρw) and f(w)
EPS = 1e-5  # the float32 layers' own ε (PyTorch's default)
CRITERION = "max over ρ of |L(ρw) − L(w)|/|L(w)| and ‖f(ρw) − f(w)‖/‖f(w)‖ ≤ tolerance"


def measure(ctx, model) -> dict:
    return probe(*probe_inputs(ctx, model, FLOAT64_AND_FLOAT32))


def probe(spec, x, y, data_name: str, model=None) -> dict:
    """Probe ``model`` (default: ``spec`` built under seed 0) on (x, y). Per parameter tensor:
    detected, expected, tested, cause, the detector's deviation; for tested tensors the float64
    (ε≈0), float32 (ε = 1e-5) and control deviations (NaN elsewhere, and with no control)."""
    torch.manual_seed(0)
    model = spec.build() if model is None else model
    tensor_map = scale_invariance_map(model, spec.input_shape)
    groups = joint_invariant_groups(model, spec.input_shape, reports=tensor_map)
    tested, expected = tensors_to_test(spec, model, [r.name for r in tensor_map if r.invariant])
    names = [r.name for r in tensor_map]
    depth, n = forward_footprint(model, x)

    order, x64 = [k for k in names if k in set(tested)], x.double()   # tested, in names' order

    def per_tensor(net, xs) -> np.ndarray:   # the worst deviation of each tested tensor in net
        full = dict(zip(tested, worst_deviation(net, xs, y, tested, RHOS), strict=True))
        return np.array([full.get(k, np.nan) for k in names], dtype=float)

    def up_to_eps(net) -> dict:   # the ε scans and the deviations at the ε-free scale
        e = epsilon_probe(net, x64, y, order, depth, n, min(RHOS))
        e["at_shift"] = worst_at_shift(net, x64, y, order, RHOS, e["eps_shift"])
        return e

    control = negative_control(spec, model)
    first_order = derivation(theory.c01_scale_invariance).fn(
        "first_order", theory.rho, theory.eps, sympy.Symbol("sigma2", positive=True))
    has_control = control is not None
    exact_model, control64 = float64_exact(model), has_control and float64_exact(control)
    return {
        "model": spec.name, "data": data_name, "batch": len(x),
        "names": np.array(names, dtype=str),
        "shapes": np.array([str(tuple(r.shape)) for r in tensor_map], dtype=str),
        "detected": np.array([r.invariant for r in tensor_map], dtype=bool),
        "declared": expected is not None,
        "expected": np.array([k in set(expected or ()) for k in names], dtype=bool),
        "tested": np.array([k in set(tested) for k in names], dtype=bool),
        "cause": np.array([invariance_cause(model, r) if r.invariant else "" for r in tensor_map],
                          dtype=str),
        "probe_deviation": np.array([r.deviation for r in tensor_map], dtype=float),
        "exact": per_tensor(exact_model, x64),
        **up_to_eps(exact_model),
        "float32": per_tensor(invariance.deterministic_train(model), x),
        "control_available": has_control,
        "control": per_tensor(control64, x64) if has_control else np.full(len(names), np.nan),
        **({f"control_{k}": v for k, v in up_to_eps(control64).items()} if has_control else {}),
        "joint_names": np.array([", ".join(g.names) for g in groups], dtype=str),
        "joint_normalization": np.array([g.normalization for g in groups], dtype=str),
        "joint_deviation": np.array([g.deviation for g in groups], dtype=float),
        "depth": depth, "reduction": n, "rhos": np.array(RHOS),
        "eps_term": abs(float(first_order(RHOS[0], EPS, 1.0))),  # ρ = 10⁻², σ² = 1 (BN at init)
    }


def _tol(m: dict) -> float:
    return rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))


def judged(m: dict, prefix: str = ""):
    """(judged deviation, kind, law) per tested tensor (``prefix`` "control_": the control)."""
    base = np.asarray(m["control" if prefix else "exact"])[np.asarray(m["tested"], dtype=bool)]
    return epsilon_judged(base, m[f"{prefix}at_shift"], m[f"{prefix}eps_scan"],
                          float(m[f"{prefix}eps_tol"]), _tol(m))


def judge(m: dict) -> Judgement:
    names, tested = np.asarray(m["names"]), np.asarray(m["tested"], dtype=bool)
    if not tested.any():   # nothing declared, nothing found: the claim does not apply
        return Judgement([])
    detected, expected = np.asarray(m["detected"], bool), np.asarray(m["expected"], bool)
    tol, (values, kinds, _) = _tol(m), judged(m)
    checks = []
    if m["declared"]:
        missing = [str(n) for n in names[expected & ~detected]]
        extra = [str(n) for n in names[detected & ~expected]]
        checks.append(Check("declared_set_found", "detector finds the declared tensors",
                            not missing and not extra,
                            measured={"missing": missing, "extra": extra},
                            tolerance="no missing and no extra tensor",
                            criterion="the probed invariant set equals the declared one",
                            kind="premise"))
    checks.append(bounded("invariant_float64",
                          with_up_to_epsilon("L(ρw) = L(w) in float64", kinds),
                          values, names[tested], tol, CRITERION))
    if m["control_available"]:   # rejected: the criterion misses on every tested tensor
        control = judged(m, "control_")[0]
        checks.append(control_rejected(control, names[tested], tol,
                                       all(not c <= tol for c in control)))
    return Judgement(checks)


def present(m: dict, verdict) -> Presentation:
    names, tested = np.asarray(m["names"]), np.asarray(m["tested"], dtype=bool)
    common = dict(expected="L(ρw) = L(w), ρ ∈ [1e-2, 1e2], for every declared invariant tensor",
                  context={"model": m["model"], "data": m["data"],
                           "dtype": "float64 (and float32)", "seed": 0})
    if not verdict.checks:   # a verdict without checks is skipped, with this reason
        verdict.reason = (f"model {m['model']!r} has no scale-invariant parameter tensor: none of "
                          f"its {len(names)} tensors is invariant alone ({len(m['joint_names'])} "
                          "jointly invariant groups), and it declares none")
        return Presentation(**common, tables=[invariance_map_table(m)])
    tol, detected = _tol(m), np.asarray(m["detected"], bool)
    found = {str(n): str(c) for n, c, d in zip(names, m["cause"], detected, strict=True) if d}
    exact, kinds, laws = judged(m)
    control = judged(m, "control_")[0] if m["control_available"] else np.full(len(exact), np.nan)
    rows = table(["tensor", "cause", "kind", "float64 ε≈0", "float32 ε=1e-5", "control"],
                 [[f"`{n}`", found.get(str(n), "**not found invariant**"), k, fmt(e), fmt(f),
                   fmt(c) if m["control_available"] else "–"]
                  for n, k, e, f, c in zip(names[tested], kinds, exact,
                                           np.asarray(m["float32"])[tested], control,
                                           strict=True)])
    notes = [f"max relative change over ρ ∈ {{{', '.join(f'{r:.3g}' for r in m['rhos'])}}} of the "
             "logits and of the loss, BN in training mode",
             f"float32 with ε = {EPS:g}: worst {fmt(float(np.nanmax(m['float32'])))}; the "
             f"first-order ε term (ε/2σ²)(1 − 1/ρ²) at ρ = 1e-2, σ² = 1 is {fmt(m['eps_term'])} "
             "(sympy); not judged",
             f"{int(detected.sum())} scale-invariant tensors found by probing, {int(tested.sum())} "
             f"tested, {len(names) - int(tested.sum())} other parameter tensors",
             *epsilon_notes(names[tested], kinds, laws)]
    if not m["declared"]:
        notes.insert(0, "no expected invariant set was declared for this model "
                        "(`factory.expected_invariant`): C1 judges the detected set")
    reparam = ", ".join(f"`{n}`" for n, c in found.items() if c.startswith("reparametrization"))
    notes += [f"invariant by a reparametrization (no normalization): {reparam}"] * bool(reparam)
    return Presentation(
        **common, predicted=0.0, tables=[rows, invariance_map_table(m)], notes=notes,
        measured={"headline": check_of(verdict, "invariant_float64").measured["worst"],
                  "per tensor": dict(zip(map(str, names[tested]), exact.tolist(), strict=True))},
        tolerance=tol,
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"])),
        control=control_report(verdict, CONTROL),
        resolves=f"a relative change of the loss or logits of {fmt(tol)} under w → ρw, and a "
                 "single tensor missing from or added to the declared invariant set")


def test_loss_is_invariant_to_rescaling_every_normalized_kernel(verify, model_spec):
    verdict = verify(__name__, model_spec)
    if not verdict.checks:  # the claim does not apply; the report shows the map and the reason
        pytest.skip(verdict.reason)
