"""What the geometry claims (C1–C3) share: the probe's inputs, the per-tensor float64 criterion,
the negative control, the verdict of a model they do not apply to, and each claim's probe.

- :func:`probe_inputs` — the model at the budget's width and the probe batch, the verdict's
  setting given (:meth:`wd_claims.session.Context.stands_on`).
- :func:`bounded` — "every tested tensor's worst deviation ≤ the rounding tolerance", as a Check.
- :func:`control_rejected` — the same criterion on the control, as the Check ``control_rejected``.
- :func:`control_report` — a verdict's ``control`` entry (or "no control available").
- :func:`check_of` — a verdict's check by id.
- :func:`no_tensor_reason` — why C2 and C3 do not apply to a model: a verdict without checks
  keeps the status "skip", its ``present`` gives the reason, and the claim's test skips with it.
- the probes: :func:`worst_deviation`, :func:`invariance_cause`, :func:`invariance_map_table`
  (C1), :func:`cosines_along_sgd` (C2), :func:`gradient_scaling` (C3).
"""

from __future__ import annotations

import numpy as np

from wd_claims.claim import control_status, table
from wd_claims.verdict import Check, Verdict, fmt
from wd_claims.zoo import NO_CONTROL, at_width, probe_setting

# the precision of C1's and C2's probes, as the setting states it
FLOAT64_AND_FLOAT32 = "float64, ε = 1e-30 (float32, ε = 1e-5 reported beside)"
NOT_DECLARED = "no expected invariant set declared: the tensors are the detected ones"
CONTROL = ("same tensors, normalization removed (the model's declared control, else every "
           "absorbing normalization replaced by the identity)")


def probe_inputs(ctx, model, precision: str, **extra):
    """(spec, x, y, data name): ``model`` at the budget's width (ResNet-8's stage-1 channels) and
    the probe batch; the verdict stands on :func:`wd_claims.zoo.probe_setting` (``extra``: the
    optimizer and steps of a probe that trains)."""
    spec = at_width(model, ctx.budget.width)
    x, y, data_name = ctx.probe_data
    ctx.stands_on(probe_setting(spec, data_name, len(x), precision, **extra))
    return spec, x, y, data_name


def bounded(check_id: str, name: str, worst, names, tol: float, criterion: str) -> Check:
    """``worst`` (one value per tensor of ``names``) ≤ ``tol`` for every tensor; measured: the
    largest, and the tensors over the tolerance."""
    worst = np.asarray(worst, dtype=float)
    return Check(check_id, name, bool(np.all(worst <= tol)),
                 measured={"worst": float(worst.max()),
                           "over tolerance": [str(n) for n, w in zip(names, worst, strict=True)
                                              if not w <= tol]},
                 tolerance=tol, criterion=criterion)


def control_rejected(least, names, tol: float, holds: bool,
                     criterion: str = "the same criterion misses on every tensor of the control"
                     ) -> Check:
    """The control's Check: ``holds`` when the criterion missed on every tensor (``least``: the
    control's deviation per tensor of ``names``)."""
    least = np.asarray(least, dtype=float)
    return Check("control_rejected", "control rejected", holds,
                 measured={"least": float(np.min(least)),
                           "not rejected": [str(n) for n, c in zip(names, least, strict=True)
                                            if c <= tol]},
                 tolerance=f"> {fmt(tol)} for every tensor", criterion=criterion)


def check_of(verdict: Verdict, check_id: str) -> Check | None:
    return next((c for c in verdict.checks if c.id == check_id), None)


def control_report(verdict: Verdict, description: str = CONTROL) -> dict:
    """The verdict's ``control``: what the control is, its least deviation, whether it was
    rejected; "no control available" where the claim judged none."""
    c = check_of(verdict, "control_rejected")
    if c is None:
        return {"description": NO_CONTROL, "measured": None, "status": "no control available"}
    return {"description": description, "measured": c.measured["least"],
            "status": control_status(c)}


def no_tensor_reason(model: str) -> str:
    return (f"model {model!r} has no scale-invariant parameter tensor (none found by probing, none "
            "declared), and this claim is about such tensors")



# --- C1's probes --------------------------------------------------------------------------------

def worst_deviation(model, x, y, names, rhos) -> list[float]:
    """[max over ρ in ``rhos`` of the relative logit/loss change] for each tensor name (C1)."""
    import torch

    from wd_claims.probes import loss_and_output, rescale_deviations

    with torch.no_grad():
        base = loss_and_output(model, x, y)   # the unrescaled point: the same for every tensor
    out = []
    for n in names:
        dev = rescale_deviations(model, x, y, n, rhos, base=base)
        out.append(max(max(dev["output"]), max(dev["loss"])))
    return out


def invariance_cause(model, report) -> str:
    """Why a found tensor is invariant: the absorbing normalization, or the layer it lives in."""
    if report.normalization:
        return report.normalization
    owner = report.name.rpartition(".")[0]
    module = model.get_submodule(owner) if owner else model
    return (f"reparametrization inside {owner or 'the model'} ({type(module).__name__}): no "
            "normalization module absorbs the scale, the layer's own output does not change")


def invariance_map_table(m: dict) -> str:
    """Markdown: every parameter tensor of C1's measurement ``m``, declared / found invariant and
    why, then the groups that are invariant only jointly."""
    declared = (lambda e: "yes" if e else "no") if m["declared"] else (lambda e: "–")
    rows = [[f"`{n}`", s, declared(e), "yes" if d else "no", c or "–", fmt(p)]
            for n, s, e, d, c, p in zip(m["names"], m["shapes"], m["expected"], m["detected"],
                                        m["cause"], m["probe_deviation"], strict=True)]
    rows += [[f"jointly: {', '.join(f'`{n}`' for n in g.split(', '))}", "–", "–", "jointly", nm,
              fmt(d)] for g, nm, d in zip(m["joint_names"], m["joint_normalization"],
                                          m["joint_deviation"], strict=True)]
    return "**Scale-invariance map** (found by probing, float64):\n\n" + table(
        ["parameter tensor", "shape", "declared invariant", "found invariant", "cause",
         "probe deviation"], rows)


# --- C2's and C3's probes -----------------------------------------------------------------------

def cosines_along_sgd(model, x, y, names, steps: int, eta: float, lam: float) -> np.ndarray:
    """cos(∇L, w), shape (len(names), steps + 1): at the initial point and after each of
    ``steps`` plain SGD steps (η = ``eta``, loss term λ‖w‖² with λ = ``lam``). The batch is split
    in two halves used alternately (C2)."""
    import torch

    from wd_claims.config import torch_weight_decay
    from wd_claims.probes import gradients, named_param

    opt = torch.optim.SGD(model.parameters(), lr=eta, weight_decay=torch_weight_decay(lam))
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


def gradient_scaling(model, x, y, names, rhos) -> tuple[np.ndarray, np.ndarray]:
    """(errors, norms), each (len(names), len(rhos)): ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ and ‖∇L(ρw)‖
    (C3; ``rhos`` contains 1)."""
    from wd_claims.probes import gradients, gradients_under_rescaling

    one = list(rhos).index(1.0)
    errors, norms = np.empty((len(names), len(rhos))), np.empty((len(names), len(rhos)))
    at_one = gradients(model, x, y, names)   # ρ = 1 is the same point for every tensor
    for i, n in enumerate(names):
        grads = gradients_under_rescaling(model, x, y, n, rhos, at_one=at_one[n])
        base = grads[one]
        errors[i] = [float((r * g - base).norm() / base.norm())
                     for r, g in zip(rhos, grads, strict=True)]
        norms[i] = [float(g.norm()) for g in grads]
    return errors, norms
