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

PARTS. :mod:`wd_claims.run_config` (TrainConfig, TrainResult, build_model),
:mod:`wd_claims.replicas` (one configuration's network on flat buffers, what is tracked),
:mod:`wd_claims.metrics` (step_metrics, the Recorder), :mod:`wd_claims.storage` (the cache's key
and arrays); this module: the batches, the loop, the evaluation.

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

import sys
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch.nn import functional as F

from wd_claims.data import DeviceData
from wd_claims.invariance import NoScaleInvariantTensor
from wd_claims.metrics import Recorder, Segments, step_metrics
from wd_claims.replicas import (
    _copy_scaled,
    joint_label,
    make_replica,
    state_arrays,
    tracked_tensors,
    uses_channels_last,
)
from wd_claims.run_config import (
    ALL_3X3,
    ALL_INVARIANT,
    CHUNK,
    DTYPES,
    EVAL_BATCH,
    JOINT_LABELS,
    METRICS_KT,
    METRICS_KTP,
    PRECISIONS,
    TrainConfig,
    TrainResult,
    build_model,
)
from wd_claims.run_parts import (
    augmented_fraction,
    batch_stream,
    evaluate,
    evaluation_sets,
    progress_bar,
    tracked_for,
)
from wd_claims.storage import cache_fields, code_version, result_arrays, result_from_arrays

__all__ = ["ALL_3X3", "ALL_INVARIANT", "CHUNK", "DTYPES", "EVAL_BATCH", "JOINT_LABELS",
           "METRICS_KT", "METRICS_KTP", "PRECISIONS", "TrainConfig", "TrainResult",
           "batch_stream", "build_model", "cache_fields", "code_version", "evaluate",
           "result_arrays", "result_from_arrays", "train", "tracked_tensors"]

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
    from wd_claims.fused import DEFAULT_PATH, run_fused

    path = DEFAULT_PATH[train_data.x.device.type] if config.path == "auto" else config.path
    with _deterministic_kernels(train_data.x.device):
        result = (run_fused if path == "fused" else _run)(config, train_data, test_data,
                                                          progress)
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
    return replace(data, x=data.x.to(device), y=data.y.to(device))


def _setup(config: TrainConfig, device: torch.device):
    """(replicas, tracked tensor names, Segments, channels_last, the joint column's label) for a
    run of ``config``."""
    base = build_model(config)          # on the CPU: the invariance probe's inputs live there
    invariant, kernels_3x3 = tracked_for(config)
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
    bar = progress_bar(config, progress)
    forward = _forward(config, device)
    tally: dict = {}
    for t, (x, y) in enumerate(batch_stream(config, train_data, tally)):
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
                         recorder.diverged_messages(), checkpoints,
                         augmented=augmented_fraction(tally),
                         flipped=augmented_fraction(tally, "flipped"))
    if config.evaluate:
        for label, data in evaluation_sets(config, train_data, test_data).items():
            scores = np.array([evaluate(r.model, data, channels_last, config.precision)
                               for r in replicas])
            scores[[d is not None for d in result.diverged]] = np.nan
            setattr(result, label, {"loss": scores[:, 0], "accuracy": scores[:, 1]})
    return result


def step_ms(k: int = 9, width: int = 16, batch: int = 32) -> float:
    """The engine's steady-state ms per configuration-step (K ResNet-8, stand-in data, the
    threads in force): the time of 16 steps minus that of 4, after a warm-up run (the invariance
    probe is memoized per process: without the warm-up the first run pays it and the difference
    overstates the rate)."""
    from wd_claims.data import standin_cifar

    data = DeviceData.from_images(standin_cifar(2048))
    seconds = {}
    for steps in (2, 4, 16):
        config = TrainConfig(etas=(0.1,) * k, lams=(1e-3,) * k, steps=steps,
                             batch_size=batch, width=width, evaluate=False)
        seconds[steps] = train(config, data, progress=False).seconds
    return 1000 * (seconds[16] - seconds[4]) / 12 / k


def _benchmark(k: int = 9, width: int = 16, batches=(128, 64, 32), threads: int = 1) -> None:
    """Prints :func:`step_ms` and the model-images/s it means, for each batch size."""
    torch.set_num_threads(threads)
    for batch in batches:
        ms = step_ms(k, width, batch)
        print(f"K={k} ResNet-8 width {width}, batch {batch}, {threads} thread(s): "
              f"{1000 * batch / ms:.0f} model-images/s ({ms:.1f} ms per configuration-step)",
              flush=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    _benchmark(threads=args[0] if args else 1, width=args[1] if len(args) > 1 else 16,
               batches=tuple(args[2:]) or (128, 64, 32))
