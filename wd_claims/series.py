"""What the claims read off a training run: per-tensor series, G on the sphere."""

from __future__ import annotations

import numpy as np

from wd_claims.run_config import TrainResult

LATE = 0.25        # the last quarter of a run is its equilibrium window (≥ 2 relaxation times of
                   # the slowest configuration at every budget; see docs/performance.md)


def tensor_index(result: TrainResult, name: str | None = None) -> int:
    """Index along P of ``name`` (default: the joint column, last: all 3x3 kernels, Fig. 2's w,
    or every scale-invariant tensor of a model without 3x3 kernels; ``result.tensors[-1]``
    says which)."""
    return result.tensors.index(name) if name else len(result.tensors) - 1


def series(result: TrainResult, metric: str, p: int | None = None) -> np.ndarray:
    """(K, T) float64 array of ``metric`` for tensor ``p`` (default: the joint column)."""
    return result.metrics[metric][:, :, tensor_index(result) if p is None else p]


def grad_norm_on_sphere(result: TrainResult, p: int | None = None) -> np.ndarray:
    """(K, T): G_t = ‖g_t‖·‖w_t‖ = ‖∇L(u_t|B_t)‖ (C3: ∇L(w) = ∇L(u)/‖w‖)."""
    return series(result, "gnorm", p) * np.sqrt(series(result, "sqnorm", p))
