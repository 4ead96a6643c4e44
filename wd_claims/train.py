"""Multi-configuration SGD training that records what the claims talk about.

CONTRACT (used by claims C4–C10). K configurations (η_k, λ_k) of one model train *at once*, from
the same initial weights (same seed) on the same sequence of batches (common random numbers:
differences between configurations are due to (η, λ) alone).

Convention: the article's loss term λ‖w‖²; the update is plain SGD w ← w − η(g + 2λw), i.e.
PyTorch ``weight_decay = 2λ`` (``wd_claims.config.torch_weight_decay``, the one conversion point),
applied to every trained parameter. With ``momentum = μ > 0`` the update is PyTorch's coupled SGD
with momentum (buf ← μ·buf + g + 2λw; w ← w − η·buf). ``freeze_non_invariant``: only the
scale-invariant tensors train (then (η, λ, w₀) and (c²η, λ/c², c·w₀) give the same directions).

Recorded per step t (before the update), per configuration k, per *tracked tensor* p (every
scale-invariant tensor found by ``wd_claims.invariance``, plus the concatenation of all 3x3 conv
kernels, named ``ALL_3X3``, always last; NaN when the model has none), all as float64 numpy arrays
of shape (K, T, P) in ``TrainResult.metrics``:

- ``sqnorm``     ‖w_t‖²
- ``gnorm``      ‖g_t‖, g_t = ∇L(w_t | B_t), the loss gradient *without* the decay term
- ``cos_gw``     ⟨g_t, w_t⟩ / (‖g_t‖‖w_t‖)
- ``cos_step``   cos of the angle between w_t and w_{t+1} (measured from the parameters)
- ``du_pred``    ‖η g_t / ((1 − 2ηλ)‖w_t‖)‖ = η_e·G_t, the first-order prediction of ‖u_{t+1} − u_t‖
- ``du_resid``   ‖(u_{t+1} − u_t) + η g_t / ((1 − 2ηλ)‖w_t‖)‖   (exact first-order factor)
- ``du_resid_article``  ‖(u_{t+1} − u_t) + η g_t / ‖w_t‖‖           (the article's η/‖w_t‖²)

and of shape (K, T): ``loss`` (mini-batch loss at w_t) and ``accuracy`` (mini-batch accuracy), BN
in training mode. The metrics are computed in float64 from exact float64 copies of the actual
parameters before and after each optimizer step (a float32 model adds no rounding of its own).
A configuration whose loss or parameters become NaN/inf at step t stops there: its parameters and
BN statistics are frozen at w_t, its entries from t on are NaN, ``TrainResult.diverged[k]`` names
the step and the configuration, and its final ``test``/``train_eval`` are NaN; the others go on.

At the end: ``test`` and ``train_eval`` = {"loss", "accuracy"}: (K,) on ``test_data`` and on the
(un-augmented) training set, BN in eval mode with its running statistics (the standard way to
evaluate; batch statistics of a large evaluation batch would be a different network).
``checkpoints[s][k]`` is configuration k's ``state_dict`` (NCHW numpy arrays) after s updates, for
every s in ``config.checkpoints`` and for s = T; ``result.model(k, s)`` rebuilds the network.

DESIGN. The K configurations are a loop over K model copies on one shared (augmented) batch, in
channels_last for float32 convolutional networks: on the CPU this beat ``torch.func.vmap`` and one
K-grouped network by 3–7× (docs/performance.md, with every figure and the command that reproduces
it). Each copy's parameters, gradients and BN statistics live in three flat buffers (the modules
hold views), so one ``torch.optim.SGD`` step, the float64 metric copies, the finiteness check and
the freeze of a diverged configuration are single tensor operations. Metrics stay on the device and
reach the host once per ``CHUNK`` steps. ``python -m wd_claims.train [threads]`` prints the
engine's steady-state rate; ``tox -e bench`` compares it with a typical user's loop.

NUMERICS. ``precision="bf16-autocast"`` (opt-in) runs only the forward and backward passes under
bf16 autocast; the float32 parameters, the SGD update and the float64 metrics are unchanged, but
the gradient carries bf16 rounding. C1–C4 check identities to float precision and must stay
float32/float64 (the default); C5–C8 and C10 may use it (docs/performance.md, "Numerics").
``compile=True`` (opt-in) wraps the forward + loss in ``torch.compile``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wd_claims.config import torch_weight_decay
from wd_claims.data import DeviceData, augment, epoch_indices
from wd_claims.invariance import NoScaleInvariantTensor, scale_invariant_names
from wd_claims.zoo import MODELS, factory_identity

ALL_3X3 = "all 3x3 conv kernels"                 # the joint column: Fig. 2's w …
ALL_INVARIANT = "all scale-invariant tensors"    # … or, for a model without 3x3 kernels, every
JOINT_LABELS = (ALL_3X3, ALL_INVARIANT)          # scale-invariant tensor (and the label says so)
METRICS_KTP = ("sqnorm", "gnorm", "cos_gw", "cos_step", "du_pred", "du_resid", "du_resid_article")
METRICS_KT = ("loss", "accuracy")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = ("float32", "bf16-autocast")   # TrainConfig.precision (see the module docstring)
CHUNK = 64          # steps between copies of the metrics to the host (and divergence checks)
EVAL_BATCH = 1000   # images per forward pass of the final evaluation


@dataclass(frozen=True)
class TrainConfig:
    """One training run of K configurations. Hyperparameters in the theory's terms (λ, not wd)."""

    etas: tuple[float, ...]                    # learning rate η per configuration
    lams: tuple[float, ...]                    # λ of the loss term λ‖w‖², per configuration
    steps: int                                 # SGD steps per configuration
    batch_size: int = 128                      # images per step
    model: str = "resnet8"                     # wd_claims.zoo.MODELS name
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
    precision: str = "float32"                 # "bf16-autocast": forward/backward under bf16
                                               # autocast (parameters, update, metrics unchanged);
                                               # never for C1–C4 (module docstring, "Numerics")
    compile: bool = False                      # torch.compile the forward + loss (opt-in; did not
                                               # pay on the 2-core CPU, unmeasured on CUDA)

    def __post_init__(self):
        if len(self.etas) != len(self.lams):
            raise ValueError(f"{len(self.etas)} learning rates for {len(self.lams)} λ values")
        if self.init_scales is not None and len(self.init_scales) != len(self.etas):
            raise ValueError("init_scales needs one entry per configuration")
        for eta, lam in zip(self.etas, self.lams, strict=True):
            if not (eta > 0 and lam >= 0 and 2 * eta * lam < 1):
                raise ValueError(f"(η, λ) = ({eta}, {lam}) outside 0 < η, 0 ≤ λ, 2ηλ < 1")
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} is not in wd_claims.zoo.MODELS: {list(MODELS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose one of {list(DTYPES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {list(PRECISIONS)}")
        if self.precision != "float32" and self.dtype != "float32":
            raise ValueError(f"precision {self.precision!r} needs dtype float32, not {self.dtype}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum {self.momentum} outside [0, 1)")
        if self.steps < 1 or any(not 0 <= s <= self.steps for s in self.checkpoints):
            raise ValueError(f"checkpoints {self.checkpoints} outside 0 … steps = {self.steps}")
        if self.init_scales is not None and not all(s > 0 for s in self.init_scales):
            raise ValueError(f"init_scales {self.init_scales} must be positive")

    @property
    def k(self) -> int:
        return len(self.etas)

    def asdict(self) -> dict:
        return asdict(self)

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


# --- the network and what is tracked ---------------------------------------------------------

def build_model(config: TrainConfig) -> nn.Module:
    """The initial network shared by every configuration (before ``init_scales``): the zoo's
    factory under ``torch.manual_seed(config.seed)`` (global RNG restored), eps overridden by
    ``config.norm_eps``, cast to ``config.dtype``."""
    spec = MODELS[config.model]
    kwargs = {"width": config.width} if config.model == "resnet8" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = spec.build(**kwargs)
    if config.norm_eps is not None:
        for module in model.modules():
            if isinstance(getattr(module, "eps", None), float):
                module.eps = config.norm_eps
    return model.to(DTYPES[config.dtype])


def tracked_tensors(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """(invariant, joint): the scale-invariant parameter names in ``named_parameters`` order and
    those that form the joint column: the 3x3 convolution kernels (Fig. 2's w, ALL_3X3), or every
    scale-invariant tensor when the model has no 3x3 kernel (ALL_INVARIANT; see joint_label)."""
    invariant = scale_invariant_names(model, input_shape)
    conv3 = {f"{name}.weight" for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
    return invariant, [n for n in invariant if n in conv3] or list(invariant)


def joint_label(joint: list[str], model: nn.Module) -> str:
    """ALL_3X3 when the joint column holds ``model``'s 3x3 kernels, ALL_INVARIANT when it fell
    back to every scale-invariant tensor (:func:`tracked_tensors`)."""
    conv3 = {f"{name}.weight" for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
    return ALL_3X3 if conv3 & set(joint) else ALL_INVARIANT


@dataclass(frozen=True)
class Segments:
    """Where each tracked tensor lies in the concatenation of the tracked tensors (n entries)."""

    matrix: torch.Tensor   # (n, P) float64 0/1: column p selects tracked tensor p, the last
                           # column every 3x3 kernel (ALL_3X3)
    index: torch.Tensor    # (n,) int64: the tracked tensor (column < P − 1) of every entry
    empty: torch.Tensor    # (P,) bool: columns that select nothing (ALL_3X3 of an MLP)

    @classmethod
    def build(cls, sizes: list[int], in_3x3: list[bool], device) -> Segments:
        n = sum(sizes)
        index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes).long())
        matrix = torch.zeros(n, len(sizes) + 1, dtype=torch.float64)
        matrix[torch.arange(n), index] = 1
        matrix[:, -1] = torch.tensor(in_3x3, dtype=torch.bool)[index].double()
        return cls(matrix.to(device), index.to(device), (matrix.sum(0) == 0).to(device))


def uses_channels_last(model: nn.Module, dtype: torch.dtype) -> bool:
    """channels_last pays for float32 convolutional networks only (docs/performance.md), and is
    used only when every convolution has at least 8 output channels: with 4 (ResNet-8 at width
    4), oneDNN's channels_last backward crashes the process (segmentation fault, torch 2.14.1 on
    the CPU; the NCHW layout runs)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return dtype == torch.float32 and bool(convs) and min(m.out_channels for m in convs) >= 8


# --- the metrics -----------------------------------------------------------------------------

def step_metrics(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, segments: Segments,
                 eta: torch.Tensor, lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """The METRICS_KTP of one SGD step for K configurations.

    w, g, v: (K, n) float64, the tracked tensors concatenated: w_t, g_t (the loss gradient without
    the decay term) and w_{t+1}; eta, lam: (K,). Returns {name: (K, P)}. Every quantity is a sum
    over a tensor's entries, a matrix product with ``segments.matrix``, so the per-tensor columns
    and ALL_3X3 come out of the same products.
    """
    ww, gg, gw, vv, vw = torch.stack([w * w, g * g, g * w, v * v, v * w]) @ segments.matrix
    wn, gn, vn = ww.sqrt(), gg.sqrt(), vv.sqrt()
    exact = (eta / (1 - 2 * eta * lam))[:, None]           # η/(1 − 2ηλ): exact first-order factor
    coefs = torch.stack([exact, eta[:, None]])             # (2, K, 1): exact, the article's
    index = segments.index
    per_tensor = _residual_sqnorms(w, g, v, wn[:, index], vn[:, index], coefs,
                                   segments.matrix[:, :-1])
    joint = _residual_sqnorms(w, g, v, wn[:, -1:], vn[:, -1:], coefs, segments.matrix[:, -1:])
    resid = torch.cat([per_tensor, joint], 2).sqrt()      # (2, K, P)
    out = {"sqnorm": ww, "gnorm": gn, "cos_gw": gw / (gn * wn), "cos_step": vw / (vn * wn),
           "du_pred": exact * gn / wn, "du_resid": resid[0], "du_resid_article": resid[1]}
    return {name: value.masked_fill(segments.empty, torch.nan) for name, value in out.items()}


def _residual_sqnorms(w, g, v, w_norm, v_norm, coefs, matrix):
    """(C, K, S): ‖(v/‖v‖ − w/‖w‖) + c·g/‖w‖‖² per segment (the S columns of ``matrix``), for
    the C coefficients c (coefs: (C, K, 1)). w_norm, v_norm: (K, n) or (K, 1), the norms of the
    tensor each entry belongs to. Computed entry by entry, not by expanding the square: the
    residual is second order in η_e and the expansion would cancel it away."""
    du = v / v_norm - w / w_norm
    return (du + coefs * (g / w_norm)).square() @ matrix


# --- one configuration's network, on flat buffers --------------------------------------------

@dataclass
class Replica:
    """One configuration's network. The modules' parameters, their gradients and the floating-
    point buffers (BN running statistics) are views of three flat buffers, so that the update,
    the float64 copies and the freeze of a diverged configuration are single tensor operations."""

    model: nn.Module
    params: torch.Tensor      # (n_all,) tracked tensors first, then the other trained ones, frozen
    grads: torch.Tensor       # (n_trained,) autograd accumulates into views of it
    stats: torch.Tensor       # (m,) running means and variances
    optimizer: torch.optim.SGD

    @property
    def trained(self) -> torch.Tensor:
        return self.params[: self.grads.numel()]


def _shaped(flat: torch.Tensor, shape: torch.Size, channels_last: bool) -> torch.Tensor:
    """A view of ``flat`` with ``shape``; 4-d views in channels_last layout when asked."""
    if channels_last and len(shape) == 4:
        n, c, h, w = shape
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)
    return flat.view(shape)


def make_replica(model: nn.Module, order: list[str], n_trained: int, channels_last: bool,
                 eta: float, lam: float, momentum: float) -> Replica:
    """Move ``model``'s parameters (in ``order``; the first ``n_trained`` train) and float buffers
    into flat buffers, and build its ``torch.optim.SGD`` with weight_decay = 2λ."""
    named = dict(model.named_parameters())
    sizes = [named[n].numel() for n in order]
    ref = named[order[0]]
    params = torch.empty(sum(sizes), dtype=ref.dtype, device=ref.device)
    grads = torch.zeros(sum(sizes[:n_trained]), dtype=ref.dtype, device=ref.device)
    offset = 0
    for i, (name, size) in enumerate(zip(order, sizes, strict=True)):
        p = named[name]
        view = _shaped(params[offset: offset + size], p.shape, channels_last)
        view.copy_(p.detach())
        p.data = view
        p.requires_grad_(i < n_trained)
        if i < n_trained:
            p.grad = _shaped(grads[offset: offset + size], p.shape, channels_last)
        offset += size
    floats = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    stats = torch.cat([b.reshape(-1) for _, b in floats]) if floats else params.new_zeros(0)
    offset = 0
    for name, b in floats:
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, stats[offset: offset + b.numel()].view(b.shape))
        offset += b.numel()
    flat = nn.Parameter(params[: grads.numel()])          # aliases the modules' parameters
    flat.grad = grads
    optimizer = torch.optim.SGD([flat], lr=eta, momentum=momentum,
                                weight_decay=torch_weight_decay(lam))
    return Replica(model, params, grads, stats, optimizer)


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """``model.state_dict()`` as host numpy copies in the default (NCHW) layout."""
    return {n: t.detach().clone(memory_format=torch.contiguous_format).cpu().numpy()
            for n, t in model.state_dict().items()}


# --- data ------------------------------------------------------------------------------------

def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one random stream (1: batch order, 2: augmentation) of ``seed``;
    distinct from the initialization's ``torch.manual_seed(seed)``."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def batch_stream(config: TrainConfig, data: DeviceData):
    """Yields (x, y) for steps 0 … T−1, the same for every configuration and every run with this
    seed: shuffled epochs (``wd_claims.data.epoch_indices``), augmented on the device when
    ``config.augment``. x: (B, 3, 32, 32) in ``config.dtype``, y: (B,) int64."""
    device = data.x.device
    order = epoch_indices(len(data), config.batch_size, config.steps, _generator(config.seed, 1),
                          device)
    aug = _generator(config.seed, 2)
    dtype = DTYPES[config.dtype]
    for idx in order:
        x = data.x[idx]
        if config.augment:
            x = augment(x, aug)
        yield x.to(dtype), data.y[idx]


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, channels_last: bool = False,
             precision: str = "float32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``, BN in eval mode; mode restored.
    ``precision``: as ``TrainConfig.precision`` (the forward pass under bf16 autocast or not)."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    loss = torch.zeros((), dtype=torch.float64, device=data.x.device)
    correct = torch.zeros((), dtype=torch.long, device=data.x.device)
    for i in range(0, len(data), EVAL_BATCH):
        x = data.x[i: i + EVAL_BATCH].to(dtype=dtype, memory_format=fmt)
        y = data.y[i: i + EVAL_BATCH]
        with torch.autocast(x.device.type, dtype=torch.bfloat16,
                            enabled=precision == "bf16-autocast"):
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
    model.train(was_training)
    return float(loss) / len(data), float(correct) / len(data)


# --- the engine ------------------------------------------------------------------------------

def train(config: TrainConfig, train_data, test_data=None, *, device: str = "cpu",
          cache=None, progress: bool = True) -> TrainResult:
    """Train ``config`` on ``train_data`` (a ``wd_claims.data.DeviceData``); evaluate on
    ``test_data`` and on the training set at the end (``result.test`` / ``result.train_eval``).
    ``cache``: a ``wd_claims.cache.Cache`` or None. The final state is always in ``checkpoints``."""
    _check_data(config, train_data)
    train_data, test_data = _on(train_data, device), _on(test_data, device)
    fields = cache_fields(config, train_data, test_data, device) if cache is not None else None
    if cache is not None:
        hit = cache.load(fields)
        if hit is not None:
            try:
                return result_from_arrays(config, test_data is not None, *hit)
            except (KeyError, ValueError) as exc:
                cache.discard(cache.key(fields), f"unexpected content: {exc}")
    started = time.perf_counter()
    with _deterministic_kernels(train_data.x.device):
        result = _run(config, train_data, test_data, progress)
    result.seconds = time.perf_counter() - started
    if cache is not None:
        cache.store(fields, *result_arrays(result))
    return result


@contextmanager
def _deterministic_kernels(device: torch.device):
    """On CUDA, cuDNN's autotuner and its atomics-based kernels would make two runs of the same
    seed differ in the last bits; ask for its deterministic kernels while training (restored)."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _check_data(config: TrainConfig, data: DeviceData) -> None:
    if config.data and config.data != data.name:
        raise ValueError(f"config.data = {config.data!r} but the data is {data.name!r}")
    if config.n_train and config.n_train != len(data):
        raise ValueError(f"config.n_train = {config.n_train} but the data has {len(data)} images")


def _on(data: DeviceData | None, device: str) -> DeviceData | None:
    if data is None or data.x.device == torch.device(device):
        return data
    return DeviceData(data.x.to(device), data.y.to(device), data.name, data.real)


def _setup(config: TrainConfig, device: torch.device):
    """(replicas, tracked tensor names, Segments, channels_last, the joint column's label) for a
    run of ``config``."""
    base = build_model(config)          # on the CPU: the invariance probe's inputs live there
    invariant, kernels_3x3 = _tracked_for(MODELS[config.model], config.model, config.width,
                                          config.seed, config.norm_eps, config.dtype)
    invariant, kernels_3x3 = list(invariant), list(kernels_3x3)     # the memo's lists stay intact
    if config.freeze_non_invariant and not invariant:
        raise NoScaleInvariantTensor(f"{config.model} has no scale-invariant tensor to train")
    base = base.to(device)
    params = dict(base.named_parameters())
    others = [n for n in params if n not in invariant]
    n_trained = len(invariant) if config.freeze_non_invariant else len(params)
    channels_last = uses_channels_last(base, DTYPES[config.dtype])
    scales = config.init_scales or (1.0,) * config.k
    replicas = [make_replica(_copy_scaled(base, invariant, scales[k]), invariant + others,
                             n_trained, channels_last, config.etas[k], config.lams[k],
                             config.momentum) for k in range(config.k)]
    segments = Segments.build([params[n].numel() for n in invariant],
                              [n in kernels_3x3 for n in invariant], device)
    return replicas, invariant, segments, channels_last, joint_label(kernels_3x3, base)


@functools.lru_cache(maxsize=64)
def _tracked_for(spec, model: str, width: int, seed: int, norm_eps: float | None,
                 dtype: str) -> tuple[list[str], list[str]]:
    """:func:`tracked_tensors` of the network these fields build (``spec`` = MODELS[model], in
    the key so that a re-registered name is probed again), probed once per process: the probe
    costs 1.4–2.7 s, a third of a short run, and its answer is a function of these fields."""
    config = TrainConfig(etas=(0.1,), lams=(0.0,), steps=1, model=model, width=width,
                         seed=seed, norm_eps=norm_eps, dtype=dtype)
    return tracked_tensors(build_model(config), spec.input_shape)


def _forward(config: TrainConfig, device: torch.device):
    """forward(model, x, y) → (logits, mean cross-entropy loss): the part of a step that
    ``config.precision`` and ``config.compile`` change (the update and the metrics stay float32 /
    float64 outside it). compile uses mode "reduce-overhead" (CUDA graphs on CUDA; on the CPU the
    same call compiles without graphs), the same code path on both devices."""
    bf16 = config.precision == "bf16-autocast"

    def forward(model, x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            return out, F.cross_entropy(out, y)

    if not config.compile:
        return forward
    compiled = torch.compile(forward, dynamic=False, mode="reduce-overhead")

    def step_forward(model, x, y):
        torch.compiler.cudagraph_mark_step_begin()   # the previous replica's outputs are consumed
        return compiled(model, x, y)

    return step_forward


def _run(config: TrainConfig, train_data: DeviceData, test_data: DeviceData | None,
         progress: bool) -> TrainResult:
    device = train_data.x.device
    replicas, invariant, segments, channels_last, label = _setup(config, device)
    n_tracked = segments.index.numel()
    recorder = Recorder(config, len(invariant) + 1, device)
    checkpoints = {}
    f64 = dict(dtype=torch.float64, device=device)
    # One allocation per configuration and per quantity, and the metrics computed one configuration
    # at a time: BLAS sums the rows of a matrix product in orders that depend on the row and its
    # memory alignment, and a configuration's numbers must not depend on its neighbours (the
    # (c²η, λ/c², c·w₀) symmetry holds bit for bit, tests/test_scale_symmetry.py).
    w, g, v = ([torch.zeros(1, n_tracked, **f64) for _ in range(config.k)] for _ in range(3))
    eta, lam = torch.tensor(config.etas, **f64), torch.tensor(config.lams, **f64)
    steps = set(config.checkpoints)
    active = list(range(config.k))
    bar = _progress(config, progress)
    forward = _forward(config, device)
    for t, (x, y) in enumerate(batch_stream(config, train_data)):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if t in steps:
            checkpoints[t] = [state_arrays(r.model) for r in replicas]
        for k in active:
            rep = replicas[k]
            before, stats_before = rep.trained.clone(), rep.stats.clone()
            rep.grads.zero_()
            out, loss = forward(rep.model, x, y)
            loss.backward()
            w[k][0].copy_(rep.params[:n_tracked])
            g[k][0].copy_(rep.grads[:n_tracked])
            rep.optimizer.step()
            v[k][0].copy_(rep.params[:n_tracked])
            loss = loss.detach()
            finite = torch.isfinite(loss) & torch.isfinite(rep.trained).all()
            recorder.config_step(k, t, loss, (out.argmax(1) == y).double().mean(), finite)
            rep.trained.copy_(torch.where(recorder.alive[k], rep.trained, before))
            rep.stats.copy_(torch.where(recorder.alive[k], rep.stats, stats_before))
        per_config = [step_metrics(w[k], g[k], v[k], segments, eta[k: k + 1], lam[k: k + 1])
                      for k in range(config.k)]
        recorder.step(t, {m: torch.cat([c[m] for c in per_config]) for m in METRICS_KTP})
        if recorder.flushed:
            alive = recorder.alive.tolist()
            active = [k for k in active if alive[k]]
            bar.set_postfix_str(f"loss {np.nanmean(recorder.loss_now()):.3f}", refresh=False)
        bar.update()
    bar.close()
    checkpoints[config.steps] = [state_arrays(r.model) for r in replicas]
    result = TrainResult(config, invariant + [label], recorder.metrics,
                         recorder.diverged_messages(), checkpoints)
    if config.evaluate:
        sets = {"train_eval": train_data, "test": test_data}
        for label, data in sets.items():
            if data is not None:
                scores = np.array([evaluate(r.model, data, channels_last, config.precision)
                                   for r in replicas])
                scores[[d is not None for d in result.diverged]] = np.nan
                setattr(result, label, {"loss": scores[:, 0], "accuracy": scores[:, 1]})
    return result


@torch.no_grad()
def _copy_scaled(base: nn.Module, names: list[str], scale: float) -> nn.Module:
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    for n in names:
        params[n].mul_(scale)
    return model


def _progress(config: TrainConfig, enabled: bool):
    from tqdm import tqdm

    # disable=None: tqdm stays quiet when stderr is not a terminal (CI logs, pytest capture)
    return tqdm(total=config.steps, disable=None if enabled else True, file=sys.stderr,
                desc=f"{config.model} K={config.k}", unit="step", leave=False)


class Recorder:
    """The metrics of a run, gathered in device buffers of CHUNK steps and copied to host numpy
    arrays once per chunk (no host synchronisation per step); tracks which configurations live."""

    def __init__(self, config: TrainConfig, p: int, device):
        self.config, self.device = config, device
        k, t = config.k, config.steps
        self.metrics = {m: np.full((k, t, p), np.nan) for m in METRICS_KTP}
        self.metrics.update({m: np.full((k, t), np.nan) for m in METRICS_KT})
        f64 = dict(dtype=torch.float64, device=device)
        self.chunk = {m: torch.full((k, CHUNK, p), torch.nan, **f64) for m in METRICS_KTP}
        self.chunk.update({m: torch.full((k, CHUNK), torch.nan, **f64) for m in METRICS_KT})
        self.now = {m: torch.full((k,), torch.nan, **f64) for m in METRICS_KT}
        self.alive = torch.ones(k, dtype=torch.bool, device=device)
        self.died_at = torch.full((k,), -1, dtype=torch.long, device=device)
        self.died_loss = torch.zeros(k, **f64)
        self.flushed = False
        self._last_loss = np.full(k, np.nan)

    def config_step(self, k: int, t: int, loss, accuracy, finite) -> None:
        """Configuration k at step t: its mini-batch loss and accuracy, and whether its loss and
        updated parameters are finite (0-d device tensors)."""
        newly_dead = self.alive[k] & ~finite
        self.died_at[k] = torch.where(newly_dead, t, self.died_at[k])
        self.died_loss[k] = torch.where(newly_dead, loss.double(), self.died_loss[k])
        self.alive[k] = self.alive[k] & finite
        self.now["loss"][k] = loss
        self.now["accuracy"][k] = accuracy

    def step(self, t: int, values: dict[str, torch.Tensor]) -> None:
        i = t % CHUNK
        for m in METRICS_KTP:
            self.chunk[m][:, i] = torch.where(self.alive[:, None], values[m], torch.nan)
        for m in METRICS_KT:
            self.chunk[m][:, i] = torch.where(self.alive, self.now[m], torch.nan)
        self.flushed = i == CHUNK - 1 or t == self.config.steps - 1
        if self.flushed:
            start = t - i
            for m, buf in self.chunk.items():
                self.metrics[m][:, start: t + 1] = buf[:, : i + 1].cpu().numpy()
            self._last_loss = self.metrics["loss"][:, t]

    def loss_now(self) -> np.ndarray:
        return self._last_loss

    def diverged_messages(self) -> list[str | None]:
        died_at, died_loss = self.died_at.tolist(), self.died_loss.tolist()
        out = []
        for k, (t, loss) in enumerate(zip(died_at, died_loss, strict=True)):
            if t < 0:
                out.append(None)
                continue
            what = (f"loss = {loss}" if not np.isfinite(loss)
                    else f"parameters non-finite after the update (loss = {loss:.4g})")
            out.append(f"config {k} (η={self.config.etas[k]:g}, λ={self.config.lams[k]:g}) "
                       f"diverged at step {t}: {what}")
        return out


# --- caching ---------------------------------------------------------------------------------

# In wd_claims/. The zoo is not among them: a run's model enters its key through the identity of
# its factory (module, qualified name, source hash; cache_fields), so registering or describing a
# model does not invalidate every cached run, and a user's model never shares a zoo model's entry.
CODE_FILES = ("train.py", "data.py", "invariance.py", "config.py")


def code_version() -> str:
    """sha256 of the source that determines a run's numbers: this engine, the data pipeline, the
    invariance detector, the budgets' conversion, and every file of ``wd_claims.models``."""
    from wd_claims import models

    package = Path(__file__).resolve().parent
    files = [package / f for f in CODE_FILES] + sorted(Path(models.__file__).parent.glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + _code_only(path.read_text()) + b"\0")
    return digest.hexdigest()


def _code_only(source: str) -> bytes:
    """The code of a module without its docstrings and comments (``ast.dump`` of the parse tree
    with every docstring removed): editing documentation must not invalidate cached runs."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def cache_fields(config: TrainConfig, train_data: DeviceData, test_data: DeviceData | None,
                 device) -> dict:
    """Everything a run's numbers depend on: the full configuration, the data, the device kind,
    the precision, the library version and the code."""
    return {"config": config.asdict(), "train_data": [train_data.name, len(train_data)],
            "test_data": None if test_data is None else [test_data.name, len(test_data)],
            "device": torch.device(device).type, "dtype": config.dtype,
            "torch": torch.__version__, "numpy": np.__version__, "code": code_version(),
            "factory": factory_identity(MODELS[config.model].factory)}


def result_arrays(result: TrainResult) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta): a result as plain numeric arrays (for .npz) and JSON-able metadata."""
    arrays = {f"metrics/{m}": a for m, a in result.metrics.items()}
    for label in ("test", "train_eval"):
        arrays.update({f"{label}/{m}": a for m, a in getattr(result, label).items()})
    for step, states in result.checkpoints.items():
        for k, state in enumerate(states):
            arrays.update({f"checkpoints/{step}/{k}/{n}": a for n, a in state.items()})
    meta = {"tensors": result.tensors, "diverged": result.diverged, "seconds": result.seconds,
            "evaluated": sorted(label for label in ("test", "train_eval")
                                if getattr(result, label))}
    return arrays, meta


def result_from_arrays(config: TrainConfig, has_test: bool, arrays: dict[str, np.ndarray],
                       meta: dict) -> TrainResult:
    """Inverse of :func:`result_arrays`; KeyError/ValueError when anything is missing or has the
    wrong shape (then the cache entry is not trusted)."""
    tensors, k, t = list(meta["tensors"]), config.k, config.steps
    if not tensors or tensors[-1] not in JOINT_LABELS or len(meta["diverged"]) != k:
        raise ValueError("tracked tensors or divergence record malformed")
    expect = {f"metrics/{m}": (k, t, len(tensors)) for m in METRICS_KTP}
    expect.update({f"metrics/{m}": (k, t) for m in METRICS_KT})
    labels = [lb for lb, wanted in (("train_eval", True), ("test", has_test)) if wanted]
    if config.evaluate:
        expect.update({f"{lb}/{m}": (k,) for lb in labels for m in ("loss", "accuracy")})
    template = {n: tuple(a.shape) for n, a in build_model(config).state_dict().items()}
    for step in config.checkpoint_steps():
        for j in range(k):
            expect.update({f"checkpoints/{step}/{j}/{n}": s for n, s in template.items()})
    for key, shape in expect.items():
        if key not in arrays:
            raise KeyError(f"missing array {key}")
        if arrays[key].shape != shape:
            raise ValueError(f"{key} has shape {arrays[key].shape}, expected {shape}")
    result = TrainResult(config, tensors,
                         {m: arrays[f"metrics/{m}"] for m in METRICS_KTP + METRICS_KT},
                         list(meta["diverged"]), from_cache=True)
    result.checkpoints = {s: [{n: arrays[f"checkpoints/{s}/{j}/{n}"] for n in template}
                              for j in range(k)] for s in config.checkpoint_steps()}
    if config.evaluate:
        for lb in labels:
            setattr(result, lb, {m: arrays[f"{lb}/{m}"] for m in ("loss", "accuracy")})
    return result


def _benchmark(k: int = 9, width: int = 16, batches=(128, 64, 32), threads: int = 1) -> None:
    """Prints the engine's steady-state model-images/s (K ResNet-8, stand-in data): the time of
    12 steps minus that of 4, so setup (invariance probing, copies) is not counted."""
    from wd_claims.data import standin_cifar

    torch.set_num_threads(threads)
    data = DeviceData.from_images(standin_cifar(2048))
    for batch in batches:
        seconds = []
        for steps in (4, 12):
            config = TrainConfig(etas=(0.1,) * k, lams=(1e-3,) * k, steps=steps,
                                 batch_size=batch, width=width, evaluate=False)
            seconds.append(train(config, data, progress=False).seconds)
        rate = k * batch * 8 / (seconds[1] - seconds[0])
        print(f"K={k} ResNet-8 width {width}, batch {batch}, {threads} thread(s): "
              f"{rate:.0f} model-images/s", flush=True)


if __name__ == "__main__":
    _benchmark(threads=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
