"""C1 — normalization makes the loss scale-invariant in every kernel that feeds it.

Article (Labatie 2020, section "Normalization → scale invariance"): the network's output with
weights w equals its output with weights ρw, hence L(ρw) = L(w) for ρ > 0, per tensor that feeds a
normalization. Catalogue: docs/claims.md, C1.

Expected (sympy, wd_claims.theory.c01_scale_invariance): Norm(ρx) = Norm(x) exactly for ε = 0 on a
symbolic vector; with the layer's ε the relative deviation is ρ√(σ²+ε)/√(ρ²σ²+ε) − 1 ≈
(ε/2σ²)(1 − 1/ρ²).

Measurement: (1) which tensors are scale-invariant, found by probing (wd_claims.invariance), held
to the set the model declares (``ModelSpec.expected_invariant``; ResNet-8: every conv kernel): a
tensor the article says is invariant and the detector does not find (a lost normalization), or one
found that was not declared, is listed; the cause of each found tensor is reported (the
normalization that absorbs the scale, or a reparametrization inside the layer itself, such as
weight standardization). (2) For every declared or detected tensor, the relative change of the
logits and of the loss when it is multiplied by ρ over 10⁻² … 10² (BN in training mode, the
probe batch), in float64 with ε numerically zero. The float32, ε = 1e-5 deviation is reported
beside the first-order ε term, not judged.

Criterion: the declared and detected sets agree (when a set is declared), and the worst relative
change is within float64 rounding: λ·2·depth·√n·u (wd_claims.probes.rounding_tolerance; two
forward passes compared, depth and n from the model's shapes), ≈ 1e-11 for ResNet-8 at batch 16.

Control: the same tensors in the same network with normalization removed (the spec's control, or
every absorbing normalization replaced by the identity); the same criterion must reject every
tensor. Where removing normalizations changes nothing (a reparametrization), no control is
available and the verdict says so. Budgets: ResNet-8 at the budget's width (smoke and quick 8, full
16) and the probe batch (smoke 16, quick 16, full 128 images).
"""

import functools

import numpy as np
import pytest
import sympy
import torch

from wd_claims import theory
from wd_claims.invariance import float64_exact, joint_invariant_groups, scale_invariance_map
from wd_claims.judge import Check
from wd_claims.probes import (
    forward_footprint,
    loss_and_output,
    rescale_deviations,
    rounding_tolerance,
    rounding_tolerance_reason,
)
from wd_claims.report import Verdict, fmt
from wd_claims.zoo import NO_CONTROL, at_width, negative_control, probe_setting, tensors_to_test

pytestmark = pytest.mark.c01


@functools.cache
def derive():
    """The sympy derivation (pure, slow to prove: computed once per process)."""
    return theory.c01_scale_invariance()


QUOTE = ("the output of the neural network with weights w is always equal to the output of the "
         "neural network with weights ρw")
RHOS = [r for r in np.logspace(-2, 2, 9) if r != 1.0]  # 10⁻², 10^-1.5, …, 10²; ρ = 1 says nothing
PASSES = 2  # two forward evaluations compared: f(ρw) and f(w)
EPS = 1e-5  # the float32 layers' own ε (PyTorch's default)


def worst_deviation(model, x, y, names) -> list[float]:
    """[max over ρ of the relative logit/loss change] for each tensor name."""
    with torch.no_grad():
        base = loss_and_output(model, x, y)   # the unrescaled point: the same for every tensor
    out = []
    for n in names:
        dev = rescale_deviations(model, x, y, n, RHOS, base=base)
        out.append(max(max(dev["output"]), max(dev["loss"])))
    return out


def _cause(model, report) -> str:
    """Why a found tensor is invariant: the absorbing normalization, or the layer it lives in."""
    if report.normalization:
        return report.normalization
    owner = report.name.rpartition(".")[0]
    module = model.get_submodule(owner) if owner else model
    return (f"reparametrization inside {owner or 'the model'} ({type(module).__name__}): no "
            "normalization module absorbs the scale, the layer's own output does not change")


def measure(spec, x, y, data_name: str, model=None) -> dict:
    """Probe ``model`` (default: ``spec`` built under seed 0) on the batch (x, y) (float32 images,
    labels). Per parameter tensor (arrays over ``names``): detected, expected, tested, cause,
    the detector's deviation; for tested tensors the float64 (ε≈0), float32 (ε = 1e-5) and
    control deviations (NaN elsewhere, and for the control when none is available)."""
    torch.manual_seed(0)
    model = spec.build() if model is None else model
    tensor_map = scale_invariance_map(model, spec.input_shape)
    groups = joint_invariant_groups(model, spec.input_shape, reports=tensor_map)
    detected = [r.name for r in tensor_map if r.invariant]
    tested, expected = tensors_to_test(spec, model, detected)
    names = [r.name for r in tensor_map]
    depth, n = forward_footprint(model, x)

    def per_tensor(values: list[float]) -> np.ndarray:
        full = dict(zip(tested, values, strict=True))
        return np.array([full.get(k, np.nan) for k in names], dtype=float)

    control = negative_control(spec, model)
    first_order = derive().fn("first_order", theory.rho, theory.eps,
                                                   sympy.Symbol("sigma2", positive=True))
    return {
        "model": spec.name, "data": data_name, "batch": len(x),
        "names": np.array(names, dtype=str),
        "shapes": np.array([str(tuple(r.shape)) for r in tensor_map], dtype=str),
        "detected": np.array([r.invariant for r in tensor_map], dtype=bool),
        "declared": expected is not None,
        "expected": np.array([k in set(expected or ()) for k in names], dtype=bool),
        "tested": np.array([k in set(tested) for k in names], dtype=bool),
        "cause": np.array([_cause(model, r) if r.invariant else "" for r in tensor_map], dtype=str),
        "probe_deviation": np.array([r.deviation for r in tensor_map], dtype=float),
        "exact": per_tensor(worst_deviation(float64_exact(model), x.double(), y, tested)),
        "float32": per_tensor(worst_deviation(model.train(), x, y, tested)),
        "control_available": control is not None,
        "control": (per_tensor(worst_deviation(float64_exact(control), x.double(), y, tested))
                    if control is not None else np.full(len(names), np.nan)),
        "joint_names": np.array([", ".join(g.names) for g in groups], dtype=str),
        "joint_normalization": np.array([g.normalization for g in groups], dtype=str),
        "joint_deviation": np.array([g.deviation for g in groups], dtype=float),
        "depth": depth, "reduction": n, "rhos": np.array(RHOS),
        "eps_term": abs(float(first_order(RHOS[0], EPS, 1.0))),  # ρ = 10⁻², σ² = 1 (BN at init)
    }


def invariance_map_table(m: dict) -> str:
    """Markdown: every parameter tensor, declared / found invariant and why, then the groups that
    are invariant only jointly."""
    rows = ["| parameter tensor | shape | declared invariant | found invariant | cause | "
            "probe deviation |", "|---|---|---|---|---|---|"]
    declared = (lambda e: "yes" if e else "no") if m["declared"] else (lambda e: "–")
    rows += [f"| `{n}` | {s} | {declared(e)} | {'yes' if d else 'no'} | {c or '–'} | {fmt(p)} |"
             for n, s, e, d, c, p in zip(m["names"], m["shapes"], m["expected"], m["detected"],
                                         m["cause"], m["probe_deviation"], strict=True)]
    rows += [f"| jointly: {', '.join(f'`{n}`' for n in g.split(', '))} | – | – | jointly | {nm} | "
             f"{fmt(d)} |" for g, nm, d in zip(m["joint_names"], m["joint_normalization"],
                                               m["joint_deviation"], strict=True)]
    return "**Scale-invariance map** (found by probing, float64):\n\n" + "\n".join(rows)


def invariance_check(deviations: np.ndarray, names, tol: float, name: str,
                     criterion: str) -> Check:
    """The criterion, on the measurement or on its control: every deviation ≤ ``tol``."""
    over = [str(n) for n, d in zip(names, deviations, strict=True) if not d <= tol]
    return Check(name, not over, measured={"worst": float(np.max(deviations)),
                                           "over tolerance": over},
                 tolerance=tol, criterion=criterion)


def judge(m: dict) -> Verdict:
    derivation = derive()
    names = np.asarray(m["names"])
    tested = np.asarray(m["tested"], dtype=bool)
    detected, expected = np.asarray(m["detected"], bool), np.asarray(m["expected"], bool)
    found = {str(n): str(c) for n, c, d in zip(names, m["cause"], detected, strict=True) if d}
    common = dict(id="C1", title="loss invariant under w → ρw", quote=QUOTE,
                  expected="L(ρw) = L(w), ρ ∈ [1e-2, 1e2], for every declared invariant tensor",
                  derivation=derivation.text, tables=[invariance_map_table(m)],
                  context={"model": m["model"], "data": m["data"], "dtype": "float64 (and float32)",
                           "seed": 0})
    if not tested.any():  # nothing declared, nothing found: the claim does not apply
        return Verdict(**common, status="skip",
                       reason=f"model {m['model']!r} has no scale-invariant parameter tensor: "
                              f"none of its {len(names)} tensors is invariant alone "
                              f"({len(m['joint_names'])} jointly invariant groups), and it "
                              "declares none")
    tol = rounding_tolerance(PASSES, int(m["depth"]), int(m["reduction"]))
    exact, control = np.asarray(m["exact"])[tested], np.asarray(m["control"])[tested]
    criterion = "max over ρ of |L(ρw) − L(w)|/|L(w)| and ‖f(ρw) − f(w)‖/‖f(w)‖ ≤ tolerance"
    checks = []
    if m["declared"]:
        missing = [str(n) for n in names[expected & ~detected]]
        extra = [str(n) for n in names[detected & ~expected]]
        checks.append(Check("detector finds the declared tensors", not missing and not extra,
                            measured={"missing": missing, "extra": extra},
                            tolerance="no missing and no extra tensor",
                            criterion="the probed invariant set equals the declared one"))
    invariant = invariance_check(exact, names[tested], tol, "L(ρw) = L(w) in float64", criterion)
    checks.append(invariant)
    rows = ["| tensor | cause | float64 ε≈0 | float32 ε=1e-5 | control |", "|---|---|---|---|---|"]
    rows += [f"| `{n}` | {found.get(str(n), '**not found invariant**')} | {fmt(e)} | {fmt(f)} | "
             f"{fmt(c) if m['control_available'] else '–'} |"
             for n, e, f, c in zip(names[tested], exact, np.asarray(m["float32"])[tested], control,
                                   strict=True)]
    if m["control_available"]:
        ctrl = invariance_check(control, names[tested], tol, "control", criterion)
        # The control is rejected when the criterion misses for *every* tested tensor.
        rejected = Check("control rejected", len(ctrl.measured["over tolerance"]) == len(control),
                         measured={"least": float(np.min(control)),
                                   "not rejected": [str(n) for n, c in zip(names[tested], control,
                                                                           strict=True)
                                                    if c <= tol]},
                         tolerance=f"> {fmt(tol)} for every tensor",
                         criterion="the same criterion misses on every tensor of the control")
        checks.append(rejected)
        control_text = {"description": "same tensors, normalization removed (the model's "
                                       "declared control, else every absorbing normalization "
                                       "replaced by the identity)",
                        "measured": float(np.min(control)),
                        "status": "rejected" if rejected.holds else "NOT rejected"}
    else:
        control_text = {"description": NO_CONTROL, "measured": None,
                        "status": "no control available"}
    notes = [f"max relative change over ρ ∈ {{{', '.join(f'{r:.3g}' for r in m['rhos'])}}} of the "
             "logits and of the loss, BN in training mode",
             f"float32 with ε = {EPS:g}: worst {fmt(float(np.nanmax(m['float32'])))}; the "
             f"first-order ε term (ε/2σ²)(1 − 1/ρ²) at ρ = 1e-2, σ² = 1 is {fmt(m['eps_term'])} "
             "(sympy); not judged",
             f"{int(detected.sum())} scale-invariant tensors found by probing, {int(tested.sum())} "
             f"tested, {len(names) - int(tested.sum())} other parameter tensors"]
    if not m["declared"]:
        notes.insert(0, "no expected invariant set was declared for this model "
                        "(`factory.expected_invariant`): C1 judges the detected set")
    reparam = [n for n, c in found.items() if c.startswith("reparametrization")]
    if reparam:
        notes.append("invariant through a reparametrization (no normalization module): "
                     + ", ".join(f"`{n}`" for n in reparam))
    return Verdict(
        **{**common, "tables": ["\n".join(rows), *common["tables"]]},
        predicted=0.0, measured={"headline": invariant.measured["worst"],
                                 "per tensor": dict(zip(map(str, names[tested]), exact.tolist(),
                                                        strict=True))},
        tolerance=tol,
        tolerance_reason=rounding_tolerance_reason(PASSES, int(m["depth"]), int(m["reduction"])),
        checks=checks, control=control_text,
        resolves=f"a relative change of the loss or logits of {fmt(tol)} under w → ρw, and a "
                 "single tensor missing from or added to the declared invariant set",
        notes=notes)


def test_loss_is_invariant_to_rescaling_every_normalized_kernel(model_spec, probe_data, suite,
                                                                  record_verdict):
    x, y, data_name = probe_data
    model_spec = at_width(model_spec, suite.budget.width)   # ResNet-8 at the budget's width
    m = measure(model_spec, x, y, data_name)
    v = judge(m)
    v.setting = probe_setting(model_spec, data_name, len(x), "float64, ε = 1e-30 (float32, "
                              "ε = 1e-5 reported beside)")
    record_verdict(v, measurements=m)
    if not v.checks:  # the claim does not apply; the report shows the map and the reason
        pytest.skip(v.reason)
