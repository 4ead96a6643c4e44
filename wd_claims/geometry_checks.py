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
- ε (issue 24): :func:`epsilon_probe` measures, for every tensor whose loss changes under
  w → ρw beyond C1's rounding tolerance, how that change fades with ρ (:mod:`wd_claims.epsilon`)
  and the power-of-two scale at which the claim measures its identity ε-free;
  :func:`epsilon_judged` (pure) picks, per tensor, the value the claim judges and its kind
  ("exact", "up to ε", "not scale-invariant").
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


def bounded(check_id: str, name: str, worst, names, tol: float, criterion: str,
            kind: str = "statement") -> Check:
    """``worst`` (one value per tensor of ``names``) ≤ ``tol`` for every tensor; measured: the
    largest, and the tensors over the tolerance. A statement resolves a deviation over ``tol``
    (the a-priori rounding bound)."""
    worst = np.asarray(worst, dtype=float)
    return Check(check_id, name, bool(np.all(worst <= tol)),
                 measured={"worst": float(worst.max()),
                           "over tolerance": [str(n) for n, w in zip(names, worst, strict=True)
                                              if not w <= tol]},
                 tolerance=tol, criterion=criterion, kind=kind,
                 resolution=f"a relative deviation > {fmt(tol)} (rounding bound)"
                 if kind == "statement" else "")


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
                 tolerance=f"> {fmt(tol)} for every tensor", criterion=criterion, kind="control")


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


# --- ε told apart from non-invariance (C1–C3) -----------------------------------------------

C1_GRID = (2.0**-7, 2.0**7)   # the screen for "does the loss change under w → ρw at all"


def epsilon_probe(model, x, y, names, depth: int, n: int, grid_min: float) -> dict:
    """Measurements (``model`` float64, training mode, the one the claim judges): the worst
    relative loss/logit change of each tensor of ``names`` at ρ = 2^±7, and for those over C1's
    rounding tolerance the ε scan (:func:`wd_claims.epsilon.scan`) and the shift that puts a grid
    starting at ``grid_min`` where the fitted ε effect is 100× below it. Arrays: "eps_screen"
    (len(names),), "eps_scan" (len(names), len(SCAN_RHOS)) NaN where not scanned, "eps_shift"
    (len(names),) 1 where not shifted; "eps_tol": C1's tolerance, the fit window's floor."""
    from wd_claims import epsilon
    from wd_claims.probes import rounding_tolerance

    tol = rounding_tolerance(2, depth, n)
    screen = np.asarray(worst_deviation(model, x, y, names, C1_GRID), dtype=float)
    scans = np.full((len(names), len(epsilon.SCAN_RHOS)), np.nan)
    shifts = np.ones(len(names))
    for i, name in enumerate(names):
        if not screen[i] <= tol:
            scans[i] = epsilon.scan(model, x, name)
            shifts[i] = epsilon.shift(epsilon.law(epsilon.SCAN_RHOS, scans[i], tol), grid_min)
    return {"eps_screen": screen, "eps_scan": scans, "eps_shift": shifts, "eps_tol": tol}


def epsilon_judged(base, at_shift, scans, eps_tol: float, tol: float, *others):
    """(judged values, kind per tensor, law per tensor, *judged others): where a tensor's
    deviation fades as a normalization's ε does, the claim judges its identity at the shifted
    scale (the ε-free statement, measured), elsewhere at the tensor's own scale (pure). ``base``,
    ``at_shift``: one row (or value) per tensor, its worst over the row decides the kind;
    ``others``: (base, at shift) pairs of more per-tensor arrays chosen the same way."""
    from wd_claims import epsilon

    base, at_shift = np.asarray(base, float), np.asarray(at_shift, float)
    laws = [epsilon.law(epsilon.SCAN_RHOS, s, eps_tol) for s in np.atleast_2d(scans)]
    fades = np.array([law.fades for law in laws], dtype=bool).reshape(-1, *[1] * (base.ndim - 1))
    worst = base.reshape(len(laws), -1).max(1), at_shift.reshape(len(laws), -1).max(1)
    kinds = [epsilon.kind(b, law, a, tol) for b, a, law in zip(*worst, laws, strict=True)]
    return (np.where(fades, at_shift, base), kinds, laws,
            *(np.where(fades, np.asarray(a, float), np.asarray(b, float)) for b, a in others))


def epsilon_notes(names, kinds, laws) -> list[str]:
    """One report line per tensor judged up to ε or found not scale-invariant after a scan."""
    return [f"`{n}`: {law.describe()}" for n, k, law in zip(names, kinds, laws, strict=True)
            if k != "exact" and (law.fades or law.points or k == "not scale-invariant")]


def with_up_to_epsilon(name: str, kinds) -> str:
    """A check's statement, saying "up to ε" where some tensor was judged so."""
    return f"{name}, up to ε (ε-free at large ρ)" if "up to ε" in list(kinds) else name


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


def worst_at_shift(model, x, y, names, rhos, shifts) -> np.ndarray:
    """:func:`worst_deviation` of each tensor measured at s·w (s its entry of ``shifts``), NaN
    where s = 1 (not shifted)."""
    from wd_claims.probes import rescaled

    out = np.full(len(names), np.nan)
    for i, (name, s) in enumerate(zip(names, shifts, strict=True)):
        if s != 1.0:
            with rescaled(model, name, float(s)):
                out[i] = worst_deviation(model, x, y, [name], rhos)[0]
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

def cosines_along_sgd(model, x, y, names, steps: int, eta: float, lam: float,
                      shifts=None) -> tuple[np.ndarray, np.ndarray]:
    """(cos, cos at the shifted scale), each (len(names), steps + 1): cos(∇L, w) at the initial
    point and after each of ``steps`` plain SGD steps (η = ``eta``, loss term λ‖w‖² with
    λ = ``lam``), and, for a tensor whose entry of ``shifts`` is s ≠ 1, cos(∇L(s·w), w) at the
    same points of the run (NaN elsewhere). The batch is split in two halves used alternately
    (C2)."""
    import torch

    from wd_claims.config import torch_weight_decay
    from wd_claims.probes import gradients, named_param, rescaled

    shifts = np.ones(len(names)) if shifts is None else np.asarray(shifts, float)
    opt = torch.optim.SGD(model.parameters(), lr=eta, weight_decay=torch_weight_decay(lam))
    halves = [(x[: len(x) // 2], y[: len(y) // 2]), (x[len(x) // 2:], y[len(y) // 2:])]
    params = dict(model.named_parameters())
    wanted = list(params) + [n for n in names if n not in params]
    out, at_shift = np.empty((len(names), steps + 1)), np.full((len(names), steps + 1), np.nan)

    def cos(g, w):
        return float((g * w).sum() / (g.norm() * w.norm()))

    for t in range(steps + 1):
        xb, yb = halves[t % 2]
        # one backward pass per step: the gradient that is measured is the one the step applies
        grads = gradients(model, xb, yb, wanted)
        for i, n in enumerate(names):
            w = named_param(model, n).detach()
            out[i, t] = cos(grads[n], w)
            if shifts[i] != 1.0:
                with rescaled(model, n, float(shifts[i])):
                    at_shift[i, t] = cos(gradients(model, xb, yb, [n])[n], w)
        if t < steps:
            opt.zero_grad()
            for n, p in params.items():
                p.grad = grads[n]
            opt.step()
    return out, at_shift


def gradient_scaling(model, x, y, names, rhos, shifts=None) -> tuple[np.ndarray, np.ndarray]:
    """(errors, norms), each (len(names), len(rhos)): ‖ρ∇L(ρw) − ∇L(w)‖/‖∇L(w)‖ and ‖∇L(ρw)‖
    (C3; ``rhos`` contains 1). ``shifts``: one s per tensor; the same measured with w replaced
    by s·w where s ≠ 1, NaN rows elsewhere (the ε-free statement)."""
    from wd_claims.probes import gradients, gradients_under_rescaling, rescaled

    errors, norms = np.full((len(names), len(rhos)), np.nan), np.full((len(names), len(rhos)),
                                                                       np.nan)
    if shifts is not None:
        for i, (name, s) in enumerate(zip(names, shifts, strict=True)):
            if s != 1.0:
                with rescaled(model, name, float(s)):
                    errors[i], norms[i] = (a[0] for a in gradient_scaling(model, x, y, [name],
                                                                          rhos))
        return errors, norms
    one = list(rhos).index(1.0)
    at_one = gradients(model, x, y, names)   # ρ = 1 is the same point for every tensor
    for i, n in enumerate(names):
        grads = gradients_under_rescaling(model, x, y, n, rhos, at_one=at_one[n])
        base = grads[one]
        errors[i] = [float((r * g - base).norm() / base.norm())
                     for r, g in zip(rhos, grads, strict=True)]
        norms[i] = [float(g.norm()) for g in grads]
    return errors, norms
