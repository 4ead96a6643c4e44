"""Measurements on a model at one point: rescale a tensor, gradient/weight cosine, gradient norms,
sharpness on the unit sphere (top eigenvalue of the projected Hessian, by Lanczos).

All functions leave the model's parameters as they found them (a rescaled tensor is restored from a
copy, never by dividing, which would not be exact for general ρ).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
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
    """Within the block, parameter ``name`` is multiplied by ``rho``; restored exactly
    afterwards."""
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
                       rhos, base=None) -> dict[str, list[float]]:
    """Relative change of the logits and of the loss when ``name`` is multiplied by each ρ.

    Returns {"output": [len(rhos)], "loss": [len(rhos)]}: ‖f(ρw) − f(w)‖/‖f(w)‖ and
    |L(ρw) − L(w)|/|L(w)|. ``base``: (L(w), f(w)) if the caller has it already (the point is the
    same for every tensor of a model: one forward pass less per tensor).
    """
    with torch.no_grad():
        base_loss, base_out = loss_and_output(model, x, y) if base is None else base
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
                              rhos, at_one: torch.Tensor | None = None) -> list[torch.Tensor]:
    """[∇_w L(ρw) for ρ in rhos]: the gradient with respect to tensor ``name`` at the point ρw.
    ``at_one``: ∇_w L(w) if the caller has it already (e.g. from one backward pass for every
    tensor of the model), used for ρ = 1."""
    out = []
    for rho in rhos:
        if at_one is not None and float(rho) == 1.0:
            out.append(at_one)
            continue
        with rescaled(model, name, float(rho)):
            out.append(gradients(model, x, y, [name])[name])
    return out


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y on log x."""
    import numpy as np

    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


# --- rounding tolerances of exact identities in float64 (C1–C3) ----------------------------------
#
# An exact identity (L(ρw) = L(w), ⟨∇L, w⟩ = 0, ρ∇L(ρw) = ∇L(w)) measured in float64 with ε
# numerically zero leaves only rounding. A reduction of n terms in floating point errs by at most
# λ√n·u relative to the sum of the magnitudes with probability ≥ 1 − 2exp(−λ²(1−u)²/2) (Higham &
# Mary 2019, probabilistic rounding error analysis; u = 2⁻⁵³). A network evaluates ``depth`` such
# layers in sequence; the errors add (each layer's relative condition taken as 1: normalized
# activations); an identity compares ``passes`` evaluations (two forwards for C1, a forward and a
# backward per gradient for C2 and C3). Hence the tolerance λ·passes·depth·√n·u, computed from the
# model's shapes before anything is measured. n: the largest number of elements any layer reads
# (every reduction in a layer sums at most that many), an upper bound on the longest reduction.

UNIT_ROUNDOFF = 2.0**-53          # float64
ROUNDING_LAMBDA = 6.0             # 1 − 2exp(−18) ≈ 1 − 3e-8 per reduction


@torch.no_grad()
def forward_footprint(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(depth, n): the number of leaf modules one forward pass of ``x`` runs, and the largest
    input (elements, batch included) any of them reads. The model is left as it was (a deep copy
    runs, so batch-norm running statistics do not move)."""
    twin = copy.deepcopy(model)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(
        lambda mod, inp, out: sizes.append(max((t.numel() for t in inp
                                                if isinstance(t, torch.Tensor)), default=0)))
        for m in twin.modules() if not list(m.children())]
    try:
        twin(x)
    finally:
        for h in hooks:
            h.remove()
    return len(sizes), max(sizes, default=1)


def rounding_tolerance(passes: float, depth: int, n: int) -> float:
    """λ·passes·depth·√n·u: the float64 rounding bound of an exact identity (see above)."""
    return float(ROUNDING_LAMBDA * passes * depth * np.sqrt(n) * UNIT_ROUNDOFF)


def rounding_tolerance_reason(passes: float, depth: int, n: int) -> str:
    """The derivation of :func:`rounding_tolerance`, in words, with its numbers."""
    return (f"float64 with ε = 1e-30 (σ²+ε rounds to σ²): only rounding remains. A reduction of "
            f"n terms errs by ≤ λ√n·u (Higham & Mary 2019, probability ≥ 1 − 2e^(−λ²/2), λ = "
            f"{ROUNDING_LAMBDA:g}, u = 2⁻⁵³); {depth} layers in sequence, each read ≤ n = {n:,} "
            f"elements, condition 1 per layer; {passes:g} evaluations compared: tolerance "
            f"λ·{passes:g}·{depth}·√n·u = {rounding_tolerance(passes, depth, n):.3g}, fixed from "
            "the model's shapes before measuring")


# --- sharpness on the unit sphere (C10) -------------------------------------------------------
#
# For a scale-invariant loss the Euclidean Hessian at w has a radial part: differentiating Euler's
# ⟨∇L(w), w⟩ = 0 (C2) gives ∇²L(w)·w = −∇L(w). What the direction dynamics u ← u − η_e∇L(u) (C6)
# feel is the Riemannian Hessian of L on the sphere, P(∇²L − ⟨∇L, u⟩I)P with P = I − uuᵀ; the
# ⟨∇L, u⟩ term vanishes (C2), so it is P∇²L P at ‖u‖ = 1, taken per tensor (a product of spheres).
# Its Hessian at ‖w‖ = r is the one at 1 divided by r² (C3, once more), so ‖w‖ = 1 is the scale at
# which the effective learning rate η_e = η/((1 − 2ηλ)‖w‖²) multiplies it.


@dataclass(frozen=True)
class Sharpness:
    """Top eigenvalue of S·P∇²L·P·S on a product of unit spheres and how it was reached."""

    value: float          # largest algebraic eigenvalue
    residual: float       # ‖Av − value·v‖ / |value| for the returned unit vector v (A the operator)
    matvecs: int          # Hessian-vector products used (the residual's one included)
    converged: bool       # ARPACK met its tolerance within its iteration limit
    dim: int              # coordinates: the total size of the tensors
    tol: float            # ARPACK's relative tolerance
    vector: object = field(default=None, repr=False, compare=False)  # the unit Ritz vector


def tangent_projection(vs: list[torch.Tensor], us: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per tensor, v − ⟨u, v⟩u: the component of v tangent to the sphere at the unit tensor u."""
    return [v - (u * v).sum() * u for v, u in zip(vs, us, strict=True)]


def sphere_hvp(loss_fn, points: list[torch.Tensor], scales=None):
    """The operator v ↦ S P ∇²L P S v at the unit-normalized ``points``, on flat float64 vectors.

    ``loss_fn(tensors) -> scalar`` evaluates the loss at the given tensors (same shapes as
    ``points``); each point is divided by its norm first (the loss is scale-invariant in it).
    ``scales``: one positive number s_i per tensor (default 1): S = diag(s_i I), e.g. s_i = √η_e,i
    gives the operator whose top eigenvalue decides the stability of u_i ← u_i − η_e,i∇_iL.
    Returns (matvec: (dim,) ndarray → (dim,) ndarray, dim). The gradient graph is built once.
    """
    us = [(p.detach() / p.detach().norm()).requires_grad_(True) for p in points]
    grads = torch.autograd.grad(loss_fn(us), us, create_graph=True)
    sizes = [u.numel() for u in us]
    s = [1.0] * len(us) if scales is None else [float(c) for c in scales]
    u0 = [u.detach() for u in us]

    def matvec(v_flat):
        flat = torch.as_tensor(np.asarray(v_flat, dtype=np.float64).ravel())
        vs = [c.view_as(u).to(u.dtype) * si
              for c, u, si in zip(flat.split(sizes), u0, s, strict=True)]
        vs = tangent_projection(vs, u0)
        hv = torch.autograd.grad(grads, us, grad_outputs=vs, retain_graph=True)
        hv = tangent_projection([h.detach() for h in hv], u0)
        out = torch.cat([(h * si).reshape(-1) for h, si in zip(hv, s, strict=True)])
        return out.double().numpy()

    return matvec, sum(sizes)


def top_eigenvalue(matvec, dim: int, *, tol: float = 1e-3, ncv: int = 12, maxiter: int = 20,
                   seed: int = 0, v0=None) -> Sharpness:
    """Largest algebraic eigenvalue of a symmetric operator by Lanczos (ARPACK's eigsh).

    ``matvec``: (dim,) → (dim,). ARPACK stops when its Ritz residual is ≤ tol·|value|; if it has
    not within ``maxiter`` restarts, its best Ritz pair is returned with ``converged=False``. The
    residual reported is recomputed with one more product, so it does not trust ARPACK's estimate.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    count = [0]

    def counted(v):
        count[0] += 1
        return matvec(v)

    op = LinearOperator((dim, dim), matvec=counted, dtype=np.float64)
    # ``v0``: a start vector (e.g. a nearby problem's eigenvector: fewer products); default random.
    v0 = np.random.default_rng(seed).standard_normal(dim) if v0 is None else np.asarray(v0, float)
    converged = True
    try:
        vals, vecs = eigsh(op, k=1, which="LA", tol=tol, ncv=min(ncv, dim - 1), maxiter=maxiter,
                           v0=v0)
    except ArpackNoConvergence as exc:
        converged = False
        vals, vecs = exc.eigenvalues, exc.eigenvectors
        if len(vals) == 0:
            return Sharpness(float("nan"), float("nan"), count[0], False, dim, tol)
    value, vec = float(vals[0]), vecs[:, 0] / np.linalg.norm(vecs[:, 0])
    residual = float(np.linalg.norm(counted(vec) - value * vec) / abs(value))
    return Sharpness(value, residual, count[0], converged, dim, tol, vec)


def sharpness_on_sphere(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str], *,
                        dtype: torch.dtype = torch.float64, scales=None, tol: float = 1e-3,
                        ncv: int = 12, maxiter: int = 20, seed: int = 0, v0=None) -> Sharpness:
    """Sharpness of the cross-entropy on the batch (x, y) over the tensors ``names`` (assumed
    scale-invariant), each rescaled to unit norm: top eigenvalue of S·P∇²L·P·S (see
    :func:`sphere_hvp`). BN runs in training mode (batch statistics of x), on a ``dtype`` copy of
    ``model``; the model itself is untouched. x: (B, …), y: (B,)."""
    twin = copy.deepcopy(model).to(dtype).train()
    xd = x.to(dtype)

    def loss_fn(tensors):
        out = torch.func.functional_call(twin, dict(zip(names, tensors, strict=True)), (xd,))
        return F.cross_entropy(out, y)

    points = [named_param(twin, n) for n in names]
    matvec, dim = sphere_hvp(loss_fn, points, scales)
    return top_eigenvalue(matvec, dim, tol=tol, ncv=ncv, maxiter=maxiter, seed=seed, v0=v0)
