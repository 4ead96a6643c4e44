"""C1 — normalization makes the loss scale-invariant in every kernel that feeds it.

Article (section "Normalization → scale invariance"): the network's output with weights w equals its
output with weights ρw, hence L(ρw) = L(w) for ρ > 0, per tensor that feeds a normalization.

Expected: Norm(ρx) = Norm(x) exactly for ε = 0 (sympy, on a symbolic vector); with the layer's ε the
relative deviation is ρ√(σ²+ε)/√(ρ²σ²+ε) − 1 ≈ (ε/2σ²)(1 − 1/ρ²).

Measurement: for every tensor the probing detector finds scale-invariant, multiply it by ρ over
10⁻² … 10² (BN in training mode, a batch of real or stand-in images) and record the relative change
of the logits and of the loss. Exact check in float64 with ε numerically zero (tolerance: float64
rounding, torch.testing's float64 rtol); the float32, ε = 1e-5 deviation is reported beside the
first-order ε term it should be of the order of.

Control: the same tensor in the same network with every normalization replaced by the identity.
The same criterion must reject it.
"""

import numpy as np
import pytest
import torch

from wd_claims import theory
from wd_claims.invariance import (
    FLOAT64_RTOL,
    control_model,
    float64_exact,
    joint_invariant_groups,
    scale_invariance_map,
)
from wd_claims.probes import rescale_deviations
from wd_claims.report import Verdict, fmt

pytestmark = pytest.mark.c01

QUOTE = ("the output of the neural network with weights w is always equal to the output of the "
         "neural network with weights ρw")
RHOS = [r for r in np.logspace(-2, 2, 9) if r != 1.0]  # 10⁻², 10^-1.5, …, 10²; ρ = 1 says nothing


def worst_deviation(model, x, y, names):
    """{name: max over ρ of the relative logit/loss change} for each tensor name."""
    out = {}
    for n in names:
        dev = rescale_deviations(model, x, y, n, RHOS)
        out[n] = max(max(dev["output"]), max(dev["loss"]))
    return out


def invariance_map_table(tensor_map, groups) -> str:
    """Markdown: every parameter tensor, invariant or not and through which normalization, then
    the groups that are invariant only jointly."""
    rows = ["| parameter tensor | shape | scale-invariant | normalization | probe deviation |",
            "|---|---|---|---|---|"]
    rows += [f"| `{r.name}` | {tuple(r.shape)} | {'yes' if r.invariant else 'no'} | "
             f"{r.normalization or '–'} | {fmt(r.deviation)} |" for r in tensor_map]
    rows += [f"| jointly: {', '.join(f'`{n}`' for n in g.names)} | – | jointly | "
             f"{g.normalization} | {fmt(g.deviation)} |" for g in groups]
    return "**Scale-invariance map** (found by probing, float64):\n\n" + "\n".join(rows)


def test_loss_is_invariant_to_rescaling_every_normalized_kernel(model_spec, probe_data,
                                                                  record_verdict):
    derivation = theory.c01_scale_invariance()
    assert all(derivation.proved.values()), derivation.text

    torch.manual_seed(0)
    model = model_spec.build()
    tensor_map = scale_invariance_map(model, model_spec.input_shape)
    groups = joint_invariant_groups(model, model_spec.input_shape, reports=tensor_map)
    invariant = {r.name: r.normalization for r in tensor_map if r.invariant and r.normalization}
    if not invariant:  # the claim does not apply; the report still shows the map
        reason = (f"model {model_spec.name!r} has no scale-invariant parameter tensor: none of "
                  f"its {len(tensor_map)} tensors feeds a normalization alone "
                  f"({len(groups)} jointly invariant groups)")
        record_verdict(Verdict(id="C1", title="loss invariant under w → ρw", quote=QUOTE,
                               status="skip", reason=reason,
                               tables=[invariance_map_table(tensor_map, groups)],
                               context={"model": model_spec.name, "dtype": "float64"}))
        pytest.skip(reason)
    x, y, data_name = probe_data

    # Measurement: float64, ε ≈ 0 → exact up to rounding.
    exact = worst_deviation(float64_exact(model), x.double(), y, invariant)
    # The realistic setting: float32, the model's own ε = 1e-5; of the size of the ε term.
    realistic = worst_deviation(model.train(), x, y, invariant)
    first_order = derivation.fn("first_order", theory.rho, theory.eps,
                                __import__("sympy").Symbol("sigma2", positive=True))
    eps_term = abs(first_order(RHOS[0], 1e-5, 1.0))  # ρ = 10⁻², σ² = 1 (BN input at init)

    # Control: the same tensors, normalization removed everywhere.
    control = float64_exact(control_model(model_spec, model))
    ctrl = worst_deviation(control, x.double(), y, invariant)

    worst = max(exact.values())
    ctrl_best = min(ctrl.values())  # the control must fail for *every* tensor
    passed, rejected = worst <= FLOAT64_RTOL, ctrl_best > FLOAT64_RTOL
    rows = ["| tensor | normalization | float64 ε≈0 | float32 ε=1e-5 | control (no norm) |",
            "|---|---|---|---|---|"]
    rows += [f"| `{n}` | {invariant[n]} | {fmt(exact[n])} | {fmt(realistic[n])} | {fmt(ctrl[n])} |"
             for n in invariant]
    record_verdict(Verdict(
        id="C1", title="loss invariant under w → ρw", quote=QUOTE,
        expected="L(ρw) = L(w), ρ ∈ [1e-2, 1e2]", derivation=derivation.text,
        predicted=0.0, measured={"headline": worst, "per tensor": exact},
        tolerance=FLOAT64_RTOL,
        tolerance_reason="float64 with ε = 1e-30 (σ²+ε rounds to σ²): only rounding remains; "
                         "torch.testing's float64 rtol (1e-7) bounds it with ~1e9 ulps to spare",
        status="pass" if passed and rejected else "fail",
        reason="" if rejected else "the control was not rejected: the check cannot fail",
        control={"description": "same tensors, every normalization replaced by the identity",
                 "measured": ctrl_best, "status": "rejected" if rejected else "NOT rejected"},
        tables=["\n".join(rows), invariance_map_table(tensor_map, groups)],
        notes=[f"max relative change over ρ ∈ {{{', '.join(f'{r:.3g}' for r in RHOS)}}} of the "
               "logits and of the loss, BN in training mode",
               f"float32 with ε = 1e-5: worst {fmt(max(realistic.values()))}; the first-order ε "
               f"term (ε/2σ²)(1 − 1/ρ²) at ρ = 1e-2, σ² = 1 is {fmt(eps_term)} (sympy)",
               f"{len(invariant)} scale-invariant tensors found by probing; "
               f"{len(tensor_map) - len(invariant)} other parameter tensors"],
        context={"model": model_spec.name, "data": data_name, "dtype": "float64 (and float32)",
                 "seed": 0}))
    assert rejected, f"control not rejected: min deviation {ctrl_best:.3g} ≤ {FLOAT64_RTOL}"
    assert passed, f"worst relative change {worst:.3g} > {FLOAT64_RTOL}: {exact}"
