"""C9's measurement: the noise of one SGD step of 2η against two steps of η, from one point.

From the parameters w₀ of a model, each *draw* j takes two disjoint random mini-batches B₁, B₂ (the
first 2b indices of a fresh permutation: two consecutive batches of an epoch) and records four
displacements of the parameters (plain SGD, no weight decay, BN in training mode):

- ``one_step_2eta``         −2η g(w₀, B₁)
- ``two_steps``             −η g(w₀, B₁) − η g(w₁, B₂), w₁ = w₀ − η g(w₀, B₁)   (the real thing)
- ``two_steps_frozen``      −η g(w₀, B₁) − η g(w₀, B₂)    (both gradients at w₀: no curvature)
- ``two_steps_same_batch``  −η g(w₀, B₁) − η g(w₁, B₁)    (the control: perfectly correlated noise)
- ``same_batch_small_step`` −η g(w₀, B₁) − η g(w₀ − η_s g(w₀, B₁), B₁) and
  ``two_steps_small_step``  −η g(w₀, B₁) − η g(w₀ − η_s g(w₀, B₁), B₂): the control and the real
  steps at a small step η_s, scaled by η/η_s so that they compare with the same one-step
  reference (only when ``small_eta`` is given)

The noise of a kind is its displacement minus the mean over draws; its *total variance* is the
trace of the displacements' sample covariance. Only the (draws × draws) Gram matrices ⟨D_i, D_j⟩
are kept (float64): every total variance, and every bootstrap resample of one, is a function of
them, so a resample costs O(draws²) instead of O(draws · parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from wd_claims.replicas import uses_channels_last

KINDS = ("one_step_2eta", "two_steps", "two_steps_frozen", "two_steps_same_batch")
SMALL_STEP_KINDS = ("same_batch_small_step", "two_steps_small_step")


@dataclass
class NoiseDraws:
    """Gram matrices of the displacements of each kind at one point, and how they were drawn."""

    grams: dict[str, np.ndarray]   # kind → (draws, draws) float64, ⟨D_i, D_j⟩
    eta: float                     # η of the small steps (the big one is 2η)
    batch_size: int                # b
    n_pool: int                    # N, the examples the batches are drawn from
    n_params: int                  # entries of the measured parameter vector
    names: list[str]               # the measured parameter tensors

    @property
    def draws(self) -> int:
        return next(iter(self.grams.values())).shape[0]

    def total_variance(self, kind: str) -> float:
        return total_variance(self.grams[kind])


def total_variance(gram: np.ndarray) -> float:
    """tr Cov of n vectors from their (n, n) Gram matrix K: (tr K − 1ᵀK1/n)/(n − 1).

    Equal to Σᵢ‖Dᵢ − D̄‖²/(n − 1), the unbiased estimate of the trace of the covariance.
    """
    n = gram.shape[0]
    return float((np.trace(gram) - gram.sum() / n) / (n - 1))


def _flat_grad(model: nn.Module, params: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor],
               x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """∇ of the mean cross-entropy at ``params`` (the other tensors held at ``fixed``)."""
    out = functional_call(model, {**params, **fixed}, (x,))
    return list(torch.autograd.grad(F.cross_entropy(out, y), list(params.values())))


def _step(params: dict[str, torch.Tensor], grads: list[torch.Tensor], eta: float):
    """w − η g for every tensor, as new leaves that require grad."""
    return {n: (p - eta * g).detach().requires_grad_()
            for (n, p), g in zip(params.items(), grads, strict=True)}


def draw_displacements(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eta: float,
                       batch_size: int, draws: int, seed: int = 0,
                       measure: list[str] | None = None,
                       small_eta: float | None = None) -> NoiseDraws:
    """The displacements of every kind, per draw (module docstring), from the model's current point.

    x (N, …), y (N,): the pool of examples; every trainable parameter takes the steps, and the
    tensors named in ``measure`` (default: all) make up the measured vector. The model's
    parameters, buffers and mode are left as they were (steps run on copies through
    ``torch.func.functional_call``).
    """
    n_pool = x.shape[0]
    if 2 * batch_size > n_pool:
        raise ValueError(f"two disjoint batches of {batch_size} need ≥ {2 * batch_size} examples")
    was_training = model.training
    model.train()  # batch statistics: the noise of real training steps
    w0 = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()
          if p.requires_grad}
    measure = list(w0) if measure is None else list(measure)
    # Buffers are copies: BN's running statistics update in place and must not leak out.
    fixed = {n: b.detach().clone() for n, b in model.named_buffers()}
    gen = torch.Generator().manual_seed(seed)
    kinds = KINDS + (SMALL_STEP_KINDS if small_eta is not None else ())
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    keep = [i for i, n in enumerate(w0) if n in measure]

    def flat(grads: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([grads[i].reshape(-1) for i in keep])

    try:
        for _ in range(draws):
            perm = torch.randperm(n_pool, generator=gen)[: 2 * batch_size].to(x.device)
            b1, b2 = perm[:batch_size], perm[batch_size:]
            g01 = _flat_grad(model, w0, fixed, x[b1], y[b1])
            g02 = _flat_grad(model, w0, fixed, x[b2], y[b2])
            w1 = _step(w0, g01, eta)
            g12 = _flat_grad(model, w1, fixed, x[b2], y[b2])
            g11 = _flat_grad(model, w1, fixed, x[b1], y[b1])
            f01, f02, f12, f11 = (flat(g) for g in (g01, g02, g12, g11))
            rows["one_step_2eta"].append(-2 * eta * f01)
            rows["two_steps"].append(-eta * (f01 + f12))
            rows["two_steps_frozen"].append(-eta * (f01 + f02))
            rows["two_steps_same_batch"].append(-eta * (f01 + f11))
            if small_eta is not None:
                w1s = _step(w0, g01, small_eta)
                for kind, b in zip(SMALL_STEP_KINDS, (b1, b2), strict=True):
                    rows[kind].append(-eta * (f01 + flat(_flat_grad(model, w1s, fixed, x[b],
                                                                    y[b]))))
    finally:
        model.train(was_training)
    grams = {}
    for kind, vectors in rows.items():
        d = torch.stack(vectors).double()  # float64 Gram: the centring subtracts large sums
        grams[kind] = (d @ d.T).cpu().numpy()
    return NoiseDraws(grams=grams, eta=eta, batch_size=batch_size, n_pool=n_pool,
                      n_params=int(rows["one_step_2eta"][0].numel()), names=measure)


def variance_ratio(grams: dict[str, np.ndarray], num: str, den: str) -> float:
    """tr Cov(num) / tr Cov(den) for two kinds measured on the same draws."""
    return total_variance(grams[num]) / total_variance(grams[den])


def bootstrap_interval(statistic: Callable[[dict[str, np.ndarray]], float],
                       grams: dict[str, np.ndarray], *, level: float = 0.95, seed: int = 0,
                       n_resamples: int = 4999) -> tuple[float, float, float]:
    """(estimate, low, high): scipy.stats.bootstrap (BCa) over *draws* of a statistic of the Gram
    matrices. Draws are resampled jointly for every kind (the kinds share their mini-batches)."""
    def on_draws(idx):
        idx = np.asarray(idx, dtype=int)
        return statistic({k: g[np.ix_(idx, idx)] for k, g in grams.items()})

    n = next(iter(grams.values())).shape[0]
    res = stats.bootstrap((np.arange(n),), on_draws, vectorized=False, confidence_level=level,
                          n_resamples=n_resamples, method="BCa",
                          random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return statistic(grams), float(ci.low), float(ci.high)


# --- C9 at the claim's budget: per-draw noise contributions --------------------------------------
#
# The claim needs only each draw's contribution to a total variance, aᵢ = ‖Dᵢ − D̄‖²·n/(n − 1)
# (their mean is the unbiased trace of the covariance), so a ratio of total variances is a ratio of
# means of paired per-draw numbers, and its bootstrap over draws is vectorized numpy (O(draws) per
# resample, no Gram matrix kept). The gradients themselves run one mini-batch at a time: on the CPU
# torch.func.vmap over the draws' batches measured 2.5× slower per gradient than the plain loop.

CONTRIBUTION_KINDS = ("one_step_2eta", "two_steps_independent", "two_steps_disjoint",
                      "two_steps_real", "two_steps_predicted")


def contributions(d: torch.Tensor) -> np.ndarray:
    """aᵢ = ‖Dᵢ − D̄‖²·n/(n − 1) of n displacement vectors d (n, P), float64: mean(a) = tr Cov."""
    d = d.double()
    n = d.shape[0]
    return ((d - d.mean(0)).pow(2).sum(1) * n / (n - 1)).cpu().numpy()


def draw_contributions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eta: float,
                       batch_size: int, draws: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-draw contributions (draws,) of five displacements from the model's point w₀, over the
    pool x (N, …), y (N,), every trainable parameter measured, no weight decay, BN in training
    mode (running statistics on a copy):

    - ``one_step_2eta``          −2η g(w₀, B₁)
    - ``two_steps_independent``  −η g(w₀, B₁) − η g(w₀, B₂'), B₂' drawn independently of B₁
    - ``two_steps_disjoint``     −η g(w₀, B₁) − η g(w₀, B₂), B₂ disjoint from B₁ (one epoch)
    - ``two_steps_real``         −η g(w₀, B₁) − η g(w₁, B₂'), w₁ = w₀ − η g(w₀, B₁)
    - ``two_steps_predicted``    −η g(w₀, B₁) − η (g(w₀, B₂') − η H(B₂')·g(w₀, B₁)): the
      independent pair plus the curvature's first-order response along the actual first step
      (a Hessian-vector product at w₀, double backward: no second step is taken), the prediction
      of the real steps by the quadratic model

    and ``curvature_num``, ``curvature_den``: per draw ⟨ξ, Hξ⟩ and ‖ξ‖² (ξ the first gradient's
    deviation from the draws' mean, Hξ the HVP's deviation from theirs), whose ratio of means is
    the curvature h along the noise that the quadratic model's derivation assumes positive.

    B₁, B₂: the first 2b indices of a random permutation of the pool; B₂': the first b of another.
    The model's parameters, buffers and mode are left as they were."""
    n_pool = x.shape[0]
    if 2 * batch_size > n_pool:
        raise ValueError(f"two disjoint batches of {batch_size} need ≥ {2 * batch_size} examples")
    was_training = model.training
    model.train()
    # The engine's layout (channels_last for a float32 convolutional network: 2.5 against 3.0 s
    # per 16 draws of ResNet-8 at width 8, batch 32); the gradients agree to float32 rounding.
    fmt = (torch.channels_last if uses_channels_last(model, x.dtype)
           else torch.contiguous_format)
    x = x.contiguous(memory_format=fmt)
    w0 = {n: _laid_out(p.detach().clone(), fmt).requires_grad_()
          for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: b.detach().clone() for n, b in model.named_buffers()}
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in CONTRIBUTION_KINDS}
    curvature: list[torch.Tensor] = []

    def flat(grads):
        return torch.cat([g.reshape(-1) for g in grads])

    try:
        for _ in range(draws):
            perm = torch.randperm(n_pool, generator=gen).to(x.device)
            b1, b2 = perm[:batch_size], perm[batch_size: 2 * batch_size]
            b2i = torch.randperm(n_pool, generator=gen)[:batch_size].to(x.device)
            g01 = _flat_grad(model, w0, fixed, x[b1], y[b1])
            f01 = flat(g01)
            f02 = flat(_flat_grad(model, w0, fixed, x[b2], y[b2]))
            f02i = flat(_flat_grad(model, w0, fixed, x[b2i], y[b2i]))
            f12 = flat(_flat_grad(model, _step(w0, g01, eta), fixed, x[b2i], y[b2i]))
            hv = flat(_hvp(model, w0, fixed, x[b2i], y[b2i], g01))
            curvature.append(hv)
            rows["one_step_2eta"].append(-2 * eta * f01)
            rows["two_steps_predicted"].append(-eta * (f01 + f02i - eta * hv))
            rows["two_steps_independent"].append(-eta * (f01 + f02i))
            rows["two_steps_disjoint"].append(-eta * (f01 + f02))
            rows["two_steps_real"].append(-eta * (f01 + f12))
    finally:
        model.train(was_training)
    out = {k: contributions(torch.stack(v)) for k, v in rows.items()}
    xi = torch.stack(rows["one_step_2eta"]).double() / (-2 * eta)
    hxi = torch.stack(curvature).double()
    xi, hxi = xi - xi.mean(0), hxi - hxi.mean(0)
    n = xi.shape[0]
    out["curvature_num"] = ((xi * hxi).sum(1) * n / (n - 1)).cpu().numpy()
    out["curvature_den"] = ((xi * xi).sum(1) * n / (n - 1)).cpu().numpy()
    return out


def _hvp(model: nn.Module, params: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor],
         x: torch.Tensor, y: torch.Tensor, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """H·v, the Hessian of the mean cross-entropy on (x, y) at ``params`` along ``v`` (double
    backward: exact, no finite difference)."""
    out = functional_call(model, {**params, **fixed}, (x,))
    grads = torch.autograd.grad(F.cross_entropy(out, y), list(params.values()), create_graph=True)
    dot = sum((g * d.detach()).sum() for g, d in zip(grads, v, strict=True))
    return list(torch.autograd.grad(dot, list(params.values())))


def _laid_out(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``t`` in the memory format ``fmt`` where it applies (4-d tensors), else as it is."""
    return t.contiguous(memory_format=fmt) if t.dim() == 4 else t


def ratio_interval(num, den, *, level: float = 0.95, seed: int = 0,
                   n_resamples: int = 9999) -> tuple[float, float, float]:
    """(mean(num)/mean(den), low, high): BCa interval (scipy.stats.bootstrap, paired over draws) of
    a ratio of total variances from per-draw contributions num, den (n,) of the same draws."""
    num, den = np.asarray(num, float), np.asarray(den, float)

    def ratio(a, b, axis=-1):
        return a.mean(axis=axis) / b.mean(axis=axis)

    res = stats.bootstrap((num, den), ratio, paired=True, vectorized=True,
                          confidence_level=level, n_resamples=n_resamples, method="BCa",
                          random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(ratio(num, den)), float(ci.low), float(ci.high)
