"""Measurements on a model at one point: rescale a tensor, gradient/weight cosine, gradient norms.

All functions leave the model's parameters as they found them (a rescaled tensor is restored from a
copy, never by dividing, which would not be exact for general ρ).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


def named_param(model: nn.Module, name: str) -> nn.Parameter:
    params = dict(model.named_parameters())
    if name not in params:
        raise KeyError(f"{type(model).__name__} has no parameter {name!r}")
    return params[name]


@contextmanager
def rescaled(model: nn.Module, name: str, rho: float):
    """Within the block, parameter ``name`` is multiplied by ``rho``; restored exactly afterwards."""
    param = named_param(model, name)
    saved = param.detach().clone()
    with torch.no_grad():
        param.mul_(rho)
    try:
        yield param
    finally:
        with torch.no_grad():
            param.copy_(saved)


def loss_and_output(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """(cross-entropy loss, logits) in the model's current mode."""
    out = model(x)
    return F.cross_entropy(out, y), out


def rescale_deviations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str,
                       rhos) -> dict[str, list[float]]:
    """Relative change of the logits and of the loss when ``name`` is multiplied by each ρ.

    Returns {"output": [len(rhos)], "loss": [len(rhos)]}: ‖f(ρw) − f(w)‖/‖f(w)‖ and
    |L(ρw) − L(w)|/|L(w)|.
    """
    with torch.no_grad():
        base_loss, base_out = loss_and_output(model, x, y)
        out_dev, loss_dev = [], []
        for rho in rhos:
            with rescaled(model, name, rho):
                loss, out = loss_and_output(model, x, y)
            out_dev.append(float((out - base_out).norm() / base_out.norm()))
            loss_dev.append(float((loss - base_loss).abs() / base_loss.abs()))
    return {"output": out_dev, "loss": loss_dev}


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              names: list[str]) -> dict[str, torch.Tensor]:
    """∇L with respect to each named parameter, at the current point (model's mode)."""
    params = [named_param(model, n) for n in names]
    loss, _ = loss_and_output(model, x, y)
    grads = torch.autograd.grad(loss, params)
    return dict(zip(names, grads, strict=True))


def grad_weight_cosines(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        names: list[str]) -> dict[str, float]:
    """cos(∇_w L, w) for each named tensor w: ⟨g, w⟩ / (‖g‖‖w‖)."""
    grads = gradients(model, x, y, names)
    out = {}
    for n, g in grads.items():
        w = named_param(model, n).detach()
        out[n] = float((g * w).sum() / (g.norm() * w.norm()))
    return out


def gradients_under_rescaling(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str,
                              rhos) -> list[torch.Tensor]:
    """[∇_w L(ρw) for ρ in rhos]: the gradient with respect to tensor ``name`` at the point ρw."""
    out = []
    for rho in rhos:
        with rescaled(model, name, float(rho)):
            out.append(gradients(model, x, y, [name])[name])
    return out


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y on log x."""
    import numpy as np

    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])
