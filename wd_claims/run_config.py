"""A training run's configuration and result (the engine is :mod:`wd_claims.train`).

:class:`TrainConfig` holds one run of K (η, λ) configurations in the theory's terms (λ of the loss
term λ‖w‖²); :class:`TrainResult` what :func:`wd_claims.train.train` recorded (the metrics are
described in that module's docstring); :func:`build_model` the network both start from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from wd_claims.zoo import MODELS, ModelSpec

ALL_3X3 = "all 3x3 conv kernels"                 # the joint column: Fig. 2's w …
ALL_INVARIANT = "all scale-invariant tensors"    # … or, for a model without 3x3 kernels, every
JOINT_LABELS = (ALL_3X3, ALL_INVARIANT)          # scale-invariant tensor (and the label says so)
METRICS_KTP = ("sqnorm", "gnorm", "cos_gw", "cos_step", "du_pred", "du_resid", "du_resid_article")
METRICS_KT = ("loss", "accuracy")
DTYPES = MappingProxyType({"float32": torch.float32, "float64": torch.float64})
PRECISIONS = ("float32", "bf16-autocast")   # TrainConfig.precision (wd_claims.train, "Numerics")
PATHS = ("auto", "loop", "fused")            # TrainConfig.path
CHUNK = 64          # steps between copies of the metrics to the host (and divergence checks)
EVAL_BATCH = 1000   # images per forward pass of the final evaluation


@dataclass(frozen=True)
class TrainConfig:
    """One training run of K configurations. Hyperparameters in the theory's terms (λ, not wd)."""

    etas: tuple[float, ...]                    # learning rate η per configuration
    lams: tuple[float, ...]                    # λ of the loss term λ‖w‖², per configuration
    steps: int                                 # SGD steps per configuration
    batch_size: int = 128                      # images per step
    model: str = "resnet8"                     # wd_claims.zoo.MODELS name, or ``spec``'s
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
    norm_eps: float | None = None              # override every normalization's eps (None: the
                                               # model's own; wd_claims.invariance.EXACT_EPS makes
                                               # scale invariance exact in float64)
    evaluate: bool = True                      # final test / train-set evaluation
    eval_images: int = 0                       # evaluate on the first this many images of each
                                               # set (0: all of them)
    precision: str = "float32"                 # "bf16-autocast": forward/backward under bf16
                                               # autocast (parameters, update, metrics unchanged);
                                               # never for C1–C4 (module docstring, "Numerics")
    compile: bool = False                      # torch.compile the forward + loss (opt-in; did not
                                               # pay on the 2-core CPU, unmeasured on CUDA)
    path: str = "auto"                         # "loop" over K copies, "fused" (one vmap over the
                                               # K; wd_claims.fused), "auto": the device's measured
                                               # default (wd_claims.fused.DEFAULT_PATH)
    spec: ModelSpec | None = field(default=None, compare=False, repr=False)
                                               # a model outside the zoo (a --model factory,
                                               # held by the session); not part of equality or
                                               # the cache key, whose "factory" entry names it

    def __post_init__(self):
        if len(self.etas) != len(self.lams):
            raise ValueError(f"{len(self.etas)} learning rates for {len(self.lams)} λ values")
        if self.init_scales is not None and len(self.init_scales) != len(self.etas):
            raise ValueError("init_scales needs one entry per configuration")
        for eta, lam in zip(self.etas, self.lams, strict=True):
            if not (eta > 0 and lam >= 0 and 2 * eta * lam < 1):
                raise ValueError(f"(η, λ) = ({eta}, {lam}) outside 0 < η, 0 ≤ λ, 2ηλ < 1")
        if self.spec is not None and self.spec.name != self.model:
            raise ValueError(f"spec {self.spec.name!r} given for model {self.model!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose one of {list(DTYPES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {list(PRECISIONS)}")
        if self.path not in PATHS:
            raise ValueError(f"path {self.path!r}: choose one of {list(PATHS)}")
        if self.path == "fused" and (self.precision != "float32" or self.compile):
            raise ValueError("the fused path runs float32/float64 without compile; use "
                             "path='loop' for bf16 autocast or torch.compile")
        if self.precision != "float32" and self.dtype != "float32":
            raise ValueError(f"precision {self.precision!r} needs dtype float32, not {self.dtype}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum {self.momentum} outside [0, 1)")
        if self.steps < 1 or any(not 0 <= s <= self.steps for s in self.checkpoints):
            raise ValueError(f"checkpoints {self.checkpoints} outside 0 … steps = {self.steps}")
        if self.eval_images < 0:
            raise ValueError(f"eval_images {self.eval_images} must be ≥ 0 (0: every image)")
        if self.init_scales is not None and not all(s > 0 for s in self.init_scales):
            raise ValueError(f"init_scales {self.init_scales} must be positive")

    @property
    def k(self) -> int:
        return len(self.etas)

    @property
    def model_spec(self) -> ModelSpec:
        """The spec this run builds: ``spec`` if given, else the zoo's (a session attaches a
        --model factory's spec before training: :meth:`wd_claims.scheduler.Scheduler.with_spec`)."""
        if self.spec is not None:
            return self.spec
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} is not in wd_claims.zoo.MODELS: {list(MODELS)}"
                             " and the configuration carries no spec of its own")
        return MODELS[self.model]

    def asdict(self) -> dict:
        """The configuration as plain data (the cache key's part; ``spec`` is not data)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "spec"}

    def checkpoint_steps(self) -> list[int]:
        """The steps kept in ``TrainResult.checkpoints``: the requested ones and the final one."""
        return sorted(set(self.checkpoints) | {self.steps})


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
    augmented: float = float("nan")            # measured: the fraction of the training images
                                               # the augmentation changed (what ran, whatever
                                               # ``config.augment`` asked for)
    flipped: float = float("nan")              # measured: the fraction it mirrored (0 on data
                                               # that is not mirror-symmetric, e.g. digits)

    def model(self, k: int, step: int | None = None) -> nn.Module:
        """A fresh nn.Module (CPU, training mode, ``config.dtype``, ``config.norm_eps``) holding
        configuration k's parameters and BN statistics at ``step`` (default: final)."""
        step = self.config.steps if step is None else step
        if step not in self.checkpoints:
            raise KeyError(f"no checkpoint at step {step}; kept: {sorted(self.checkpoints)} "
                           "(ask for it with TrainConfig.checkpoints)")
        model = build_model(self.config)
        state = self.checkpoints[step][k]
        model.load_state_dict({n: torch.from_numpy(a) for n, a in state.items()})
        return model


def joined(parts: list[TrainResult]) -> TrainResult:
    """One result from runs of the same seed whose configurations split one run's (a budget's
    ``grid_parts``): every per-configuration array concatenated along K, in the parts' order."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    scales = [s for p in parts for s in (p.config.init_scales or (1.0,) * p.config.k)]
    config = replace(first.config, etas=sum((p.config.etas for p in parts), ()),
                     lams=sum((p.config.lams for p in parts), ()),
                     init_scales=None if first.config.init_scales is None else tuple(scales))

    def cat(dicts):
        return {key: np.concatenate([d[key] for d in dicts]) for key in dicts[0]}

    return TrainResult(
        config, first.tensors, cat([p.metrics for p in parts]),
        [d for p in parts for d in p.diverged],
        {step: [s for p in parts for s in p.checkpoints[step]] for step in first.checkpoints},
        cat([p.test for p in parts]) if first.test else {},
        cat([p.train_eval for p in parts]) if first.train_eval else {},
        all(p.from_cache for p in parts), sum(p.seconds for p in parts),
        float(np.mean([p.augmented for p in parts])), float(np.mean([p.flipped for p in parts])))


# --- the network and what is tracked ---------------------------------------------------------

def build_model(config: TrainConfig) -> nn.Module:
    """The initial network shared by every configuration (before ``init_scales``): the zoo's
    factory under ``torch.manual_seed(config.seed)`` (global RNG restored), eps overridden by
    ``config.norm_eps``, cast to ``config.dtype``."""
    spec = config.model_spec
    kwargs = {"width": config.width} if config.model == "resnet8" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = spec.build(**kwargs)
    if config.norm_eps is not None:
        for module in model.modules():
            if isinstance(getattr(module, "eps", None), float):
                module.eps = config.norm_eps
    return model.to(DTYPES[config.dtype])
