"""Multi-configuration SGD training that records what the claims talk about.

CONTRACT (implemented by the engine; used by claims C4–C10). K configurations (η_k, λ_k) of one
model train *at once*, from the same initial weights (same seed) on the same sequence of batches
(common random numbers: differences between configurations are due to (η, λ) alone).

Convention: the article's loss term λ‖w‖²; the update is plain SGD w ← w − η(g + 2λw), i.e.
PyTorch ``weight_decay = 2λ`` (``harness.config.torch_weight_decay``, the one conversion point).
With ``momentum = μ > 0`` the update is PyTorch's coupled SGD with momentum
(buf ← μ·buf + g + 2λw; w ← w − η·buf).

Recorded per step t (before the update), per configuration k, per *tracked tensor* p (every
scale-invariant tensor found by ``harness.invariance``, plus the concatenation of all 3x3 conv
kernels, named ``ALL_3X3``), all as float64 numpy arrays of shape (K, T, P) in
``TrainResult.metrics``:

- ``sqnorm``     ‖w_t‖²
- ``gnorm``      ‖g_t‖, g_t = ∇L(w_t | B_t), the loss gradient *without* the decay term
- ``cos_gw``     ⟨g_t, w_t⟩ / (‖g_t‖‖w_t‖)
- ``cos_step``   cos of the angle between w_t and w_{t+1} (measured from the parameters)
- ``du_pred``    ‖η g_t / ((1 − 2ηλ)‖w_t‖)‖ = η_e·G_t, the first-order prediction of ‖u_{t+1} − u_t‖
- ``du_resid``   ‖(u_{t+1} − u_t) + η g_t / ((1 − 2ηλ)‖w_t‖)‖   (exact first-order factor)
- ``du_resid_article``  ‖(u_{t+1} − u_t) + η g_t / ‖w_t‖‖           (the article's η/‖w_t‖²)

and of shape (K, T): ``loss`` (mini-batch loss at w_t) and ``accuracy`` (mini-batch accuracy).
A configuration whose loss or parameters become NaN/inf stops at that step: its remaining entries
are NaN, and ``TrainResult.diverged[k]`` names the step and the configuration; the others go on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from torch import nn

ALL_3X3 = "all 3x3 conv kernels"
METRICS_KTP = ("sqnorm", "gnorm", "cos_gw", "cos_step", "du_pred", "du_resid", "du_resid_article")
METRICS_KT = ("loss", "accuracy")


@dataclass(frozen=True)
class TrainConfig:
    """One training run of K configurations. Hyperparameters in the theory's terms (λ, not wd)."""

    etas: tuple[float, ...]                    # learning rate η per configuration
    lams: tuple[float, ...]                    # λ of the loss term λ‖w‖², per configuration
    steps: int                                 # SGD steps per configuration
    batch_size: int = 128                      # images per step
    model: str = "resnet8"                     # harness.zoo.MODELS name
    width: int = 16                            # ResNet-8 stage-1 width (ignored by other models)
    seed: int = 0                              # initial weights, batch order, augmentation
    momentum: float = 0.0                      # μ; 0 is the article's plain SGD
    init_scales: tuple[float, ...] | None = None  # per config: multiply every scale-invariant
                                               # tensor at init by this (C5: different starts)
    freeze_non_invariant: bool = False         # True: only scale-invariant tensors train
    augment: bool = True                       # random crop (pad 4) + flip, on the device
    dtype: str = "float32"                     # "float32" or "float64"
    checkpoints: tuple[int, ...] = ()          # steps whose parameters are kept (0 = init)
    data: str = ""                             # name of the data (part of the cache key)
    n_train: int = 0                           # training images (part of the cache key)

    def __post_init__(self):
        if len(self.etas) != len(self.lams):
            raise ValueError(f"{len(self.etas)} learning rates for {len(self.lams)} λ values")
        if self.init_scales is not None and len(self.init_scales) != len(self.etas):
            raise ValueError("init_scales needs one entry per configuration")
        for eta, lam in zip(self.etas, self.lams, strict=True):
            if not (eta > 0 and lam >= 0 and 2 * eta * lam < 1):
                raise ValueError(f"(η, λ) = ({eta}, {lam}) outside 0 < η, 0 ≤ λ, 2ηλ < 1")

    @property
    def k(self) -> int:
        return len(self.etas)

    def asdict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    config: TrainConfig
    tensors: list[str]                         # the P tracked tensors, ALL_3X3 last
    metrics: dict[str, np.ndarray]             # see the module docstring
    diverged: list[str | None]                 # per config: None, or "config k (η=…, λ=…)
                                               # diverged at step t: loss = nan"
    checkpoints: dict[int, list[dict[str, np.ndarray]]] = field(default_factory=dict)
                                               # step → per config: state_dict as numpy arrays
                                               # (parameters and BN buffers); step T = final
    test: dict[str, np.ndarray] = field(default_factory=dict)  # "loss", "accuracy": (K,) at the end
    train_eval: dict[str, np.ndarray] = field(default_factory=dict)  # same, on the training set
    from_cache: bool = False
    seconds: float = 0.0                       # wall time of the training (0 when cached)

    def model(self, k: int, step: int | None = None) -> nn.Module:
        """A fresh nn.Module holding configuration k's parameters at ``step`` (default: final)."""
        raise NotImplementedError


def train(config: TrainConfig, train_data, test_data=None, *, device: str = "cpu",
          cache=None, progress: bool = True) -> TrainResult:
    """Train ``config`` on ``train_data`` (a ``harness.data.DeviceData``); evaluate on
    ``test_data`` and on the training set at the end (``result.test`` / ``result.train_eval``).
    ``cache``: a ``harness.cache.Cache`` or None. The final state is always in ``checkpoints``."""
    raise NotImplementedError
