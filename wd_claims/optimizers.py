"""The equilibrium angle each optimizer's update rule predicts, from sympy, in its own convention.

What the monitor (:mod:`wd_claims.monitor`) judges a tracked tensor against. Every prediction is a
steady state of the update rule for a scale-invariant w (its gradient orthogonal to w, C2), at the
hyperparameters in force at that step (a schedule is followed step by step):

- ``sgd`` — ``SGD(lr=η, weight_decay=wd)``, coupled, wd = 2λ of the loss term λ‖w‖²:
  cos θ* = 1 − η·wd (C8's 1 − 2ηλ), θ* ≈ √(2η·wd).
- ``sgd-momentum`` — the same with ``momentum=μ``: cos θ* = 1 − η·wd/(1+μ) (E1, Wan et al.
  2021), θ* ≈ √(2η·wd/(1+μ)).
- ``sgdw`` — ``SGD(momentum=μ)`` after the loop's own w ← (1−ηλ_w)w, decoupled λ_w:
  cos θ* = (a+μ)/(1+μa), a = 1 − ηλ_w (E2), θ* ≈ √(2ηλ_w(1−μ)/(1+μ)).
- ``adamw`` — ``AdamW(lr=η, weight_decay=λ_w, betas=(β₁, β₂))``, decoupled: cos θ* =
  (a+β₁)/(1+β₁a) (E2; Kosson et al. 2024's rotational equilibrium), θ* ≈ √(2ηλ_w(1−β₁)/(1+β₁)).
- ``lion`` — a ``Lion(lr=η, weight_decay=λ_w, betas=(β₁, β₂))``, decoupled, sign updates:
  cos θ* = a + (1−a²)S/(1+2aS), S the discounted sum of the correlations between successive signs
  that β₁ and β₂ create (:mod:`wd_claims.theory.rules`; epfml/REQ's published formula is its
  small-angle, V → 0 limit). Taking the signs as uncorrelated (cos θ* = a) put a lion-pytorch run
  6× off.

Not derived, so the monitor records and says the prediction is missing: Nesterov momentum, Adam
with coupled L2 decay (``Adam(weight_decay>0)`` without ``decoupled_weight_decay``), any other
class. Relaxation time τ (steps for the norm's distance to its fixed point to shrink by e): C5's
1/(8ηλ(1−ηλ)) for plain SGD; (1−μ)/(8ηλ) with momentum (E1's long-time limit); 1/(1−a²) ≈
1/(2ηλ_w) for decoupled decay (‖w‖² ← a²‖w‖² + η²‖u‖²).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import sympy as sp

from wd_claims import theory
from wd_claims.config import torch_weight_decay
from wd_claims.theory import rules

RULES = ("sgd", "sgd-momentum", "sgdw", "adamw", "lion")
LION_CLASS_NAMES = ("Lion",)   # lion-pytorch's and most ports' class name


@dataclass(frozen=True)
class Hyper:
    """One parameter group's hyperparameters at one step, in the optimizer's own convention."""

    lr: float                # η
    weight_decay: float      # PyTorch's weight_decay (coupled wd, or decoupled λ_w)
    momentum: float = 0.0    # μ (SGD) or β₁ (Adam, Lion)
    beta2: float = 0.0       # Lion's β₂ (its momentum's own decay); unused by the other rules


@functools.cache
def _cos_functions() -> dict:
    """rule → cos θ*(η, weight_decay, μ) as a numpy function, from the derivations' expressions."""
    e1, e2 = theory.e01_momentum_equilibrium(), theory.e02_decoupled_decay()
    for d in (e1, e2, rules.lion_equilibrium()):
        if not all(d.proved.values()):
            raise AssertionError(d.text)
    eta, lam, mu, lam_w = theory.eta, theory.lam, theory.mu, theory.lam_w
    wd = sp.Symbol("wd", positive=True)
    # E1 speaks the article's λ; PyTorch's coupled weight_decay wd = torch_weight_decay(λ) = 2λ
    coupled = e1.exprs["cos_star"].subs(lam, wd / torch_weight_decay(1))
    decoupled = e2.exprs["cos_star"].subs(lam_w, wd)
    make = lambda e: sp.lambdify((eta, wd, mu), e, "math")  # noqa: E731
    return {"sgd": make(coupled.subs(mu, 0)), "sgd-momentum": make(coupled),
            "sgdw": make(decoupled), "adamw": make(decoupled)}


def predicted_cos(rule: str, h: Hyper) -> float:
    """cos θ* of ``rule`` at the hyperparameters ``h`` (see the module's table)."""
    if rule not in RULES:
        raise ValueError(f"no prediction for rule {rule!r}; known: {RULES}")
    if h.weight_decay <= 0:
        return float("nan")    # no decay: no equilibrium (C4's spiral out)
    if rule == "lion":
        return rules.lion_cos(h.lr, h.weight_decay, h.momentum, h.beta2)
    return float(_cos_functions()[rule](h.lr, h.weight_decay, h.momentum))


def predicted_angle(rule: str, h: Hyper) -> float:
    """θ* = arccos(cos θ*) in radians; NaN without weight decay."""
    c = predicted_cos(rule, h)
    return math.acos(max(-1.0, min(1.0, c))) if math.isfinite(c) else float("nan")


def relaxation_steps(rule: str, h: Hyper) -> float:
    """τ: steps for the norm's distance to its fixed point to shrink by e (module docstring)."""
    if h.weight_decay <= 0:
        return float("inf")
    if rule in ("sgd", "sgd-momentum"):
        lam = h.weight_decay / torch_weight_decay(1)
        return (1 - h.momentum) / (8 * h.lr * lam * (1 - h.lr * lam))
    a = 1 - h.lr * h.weight_decay
    return 1 / (1 - a * a)


@dataclass(frozen=True)
class Recursion:
    """The rule's expected norm recursion x_{t+1} = A·x_t + B·G²/x_t (``gradient``: the update
    scales with the loss gradient, G = ‖g‖‖w‖ measured) or x_{t+1} = A·x_t + B·U² (``scale-free``:
    Adam, Lion, U = ‖u‖ the measured size of the update direction), and the angle it implies:
    θ_t = θ*·(x*/x_t)^power, x* the recursion's fixed point (power 1: θ ∝ G/x; ½: θ ∝ U/√x)."""

    family: str
    A: float
    B: float
    power: float


def recursion(rule: str, h: Hyper) -> Recursion:
    """The norm recursion of ``rule`` at ``h`` (long-time form for momentum: a gradient's total
    displacement η/(1−μ); coupled decay passes through the momentum, decoupled does not)."""
    if rule in ("sgd", "sgd-momentum", "sgdw"):
        mu = h.momentum if rule != "sgd" else 0.0
        decay = h.lr * h.weight_decay / (1 - mu) if rule != "sgdw" else h.lr * h.weight_decay
        return Recursion("gradient", (1 - decay) ** 2, (h.lr / (1 - mu)) ** 2, 1.0)
    a = 1 - h.lr * h.weight_decay
    corr = h.momentum / (1 - a * h.momentum) if rule == "adamw" else \
        rules.lion_sum(a, h.momentum, h.beta2)
    return Recursion("scale-free", a * a, h.lr**2 * (1 + 2 * a * corr), 0.5)


def rule_of(optimizer, group: dict) -> tuple[str | None, str]:
    """(rule, why) for one parameter group of ``optimizer``; rule None when nothing is derived for
    it, with ``why`` saying what is missing."""
    import torch  # here, not at the top: the predictions above are sympy and plain math

    name = type(optimizer).__name__
    if isinstance(optimizer, torch.optim.SGD):
        if group.get("nesterov"):
            return None, "SGD with nesterov=True: no equilibrium derived (plain or heavy-ball only)"
        if group.get("dampening", 0):
            return None, "SGD with dampening > 0: no equilibrium derived"
        return ("sgd-momentum" if group.get("momentum", 0) else "sgd"), "coupled decay, wd = 2λ"
    if isinstance(optimizer, torch.optim.AdamW) or (
            isinstance(optimizer, torch.optim.Adam) and group.get("decoupled_weight_decay")):
        return "adamw", "decoupled decay λ_w = weight_decay (Kosson et al. 2024)"
    if isinstance(optimizer, torch.optim.Adam):
        return None, ("Adam with coupled L2 decay (weight_decay added to the gradient before the "
                      "preconditioner): no equilibrium derived; use AdamW")
    if name in LION_CLASS_NAMES and "betas" in group:
        return "lion", "decoupled decay λ_w = weight_decay, sign updates"
    return None, f"{name}: no prediction derived (known: SGD, SGD+momentum, AdamW, Lion)"


def hyper_of(group: dict, optimizer=None) -> Hyper:
    """The group's current (η, weight_decay, μ or β₁, β₂): read at every recorded step, so a
    learning-rate or weight-decay schedule is followed. lion-pytorch's
    ``Lion(decoupled_weight_decay=True)`` decays by η·wd/η₀ per step (η₀ its initial learning
    rate): λ_w is then wd/η₀."""
    lr = float(group["lr"])
    wd = float(group.get("weight_decay", 0.0))
    if "betas" in group:
        if getattr(optimizer, "decoupled_wd", False) and getattr(optimizer, "_init_lr", None):
            wd = wd / float(optimizer._init_lr)
        beta1, beta2 = (float(b) for b in group["betas"])
        return Hyper(lr, wd, beta1, beta2)
    return Hyper(lr, wd, float(group.get("momentum", 0.0)))


def effective_lr_kind(rule: str | None) -> str:
    """What the recorded effective learning rate is, per family: η/‖w‖² where the update scales
    with the gradient (SGD: a scale-invariant w's gradient shrinks as 1/‖w‖, so the rotation per
    step is η‖∇̃L‖/‖w‖²); η/‖w‖ where it does not (Adam, Lion: the update's size is set by the
    preconditioner, so the rotation is η‖u‖/‖w‖)."""
    return "eta/|w|^2" if rule in ("sgd", "sgd-momentum", "sgdw") else "eta/|w|"
