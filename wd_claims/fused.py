"""The horizontally fused path: the K configurations as one batched network (``torch.func``).

Next to :mod:`wd_claims.train`'s loop over K model copies, this path stacks the K copies'
parameters and buffers (``torch.func.stack_module_state``) and runs one ``vmap`` of
``grad(functional_call(...))`` per step, so every kernel is launched once for all K (the idea of
HFTA's fused models, with PyTorch's own transforms instead of rewritten layers). BatchNorm's
running statistics are stacked too, so they update per configuration inside ``vmap``. The update
is the same coupled SGD, w ← w − η_k(g + 2λ_k·w) (momentum: buf ← μ·buf + g + 2λ_k·w), and the
metrics are the same :func:`wd_claims.metrics.step_metrics` on the same float64 copies, so the two
paths record the same numbers up to float32 kernel rounding (tests/test_fused.py).

Which path is the default on a device is a measured choice (:data:`DEFAULT_PATH`): on the CPU the
loop is faster (docs/performance.md, K = 9, 1 thread: 426 vs 365 model-images/s at width 8, batch
16; 278 vs 121 at width 16, batch 128); on CUDA it is unmeasured here (no GPU was lent), and
``scripts/gpu_check.py`` times both.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import torch
from torch.nn import functional as F

from wd_claims.metrics import Recorder
from wd_claims.replicas import _copy_scaled, joint_label
from wd_claims.run_config import METRICS_KTP, TrainConfig, TrainResult, build_model

# cpu: measured, the loop 1.2–2.3× faster (docs/performance.md); cuda: UNMEASURED (no GPU was
# lent), scripts/gpu_check.py times both
DEFAULT_PATH = MappingProxyType({"cpu": "loop", "cuda": "loop"})


def run_fused(config: TrainConfig, train_data, test_data, progress: bool) -> TrainResult:
    """:func:`wd_claims.train._run` on the fused path: same inputs, same result layout."""
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    from wd_claims.metrics import Segments, step_metrics
    from wd_claims.run_parts import (
        augmented_fraction,
        batch_stream,
        evaluate,
        evaluation_sets,
        progress_bar,
        tracked_for,
    )

    device = train_data.x.device
    base = build_model(config)
    invariant, kernels_3x3 = tracked_for(config)
    invariant, kernels_3x3 = list(invariant), list(kernels_3x3)
    scales = config.init_scales or (1.0,) * config.k
    copies = [_copy_scaled(base, invariant, s).to(device) for s in scales]
    params, buffers = stack_module_state(copies)            # name → (K, *shape)
    params = {n: p.detach() for n, p in params.items()}
    trained = [n for n in params if n in invariant or not config.freeze_non_invariant]
    frozen = {n: p for n, p in params.items() if n not in trained}
    base = base.to("meta")                                   # a stateless template
    segments = Segments.build([params[n][0].numel() for n in invariant],
                              [n in kernels_3x3 for n in invariant], device)

    def loss_fn(train_params, frozen_params, bufs, x, y):
        out = functional_call(base, ({**train_params, **frozen_params}, bufs), (x,))
        return F.cross_entropy(out, y), out

    step_fn = vmap(grad_and_value(loss_fn, has_aux=True), in_dims=(0, 0, 0, None, None))
    f64 = dict(dtype=torch.float64, device=device)
    eta = torch.tensor(config.etas, **f64)
    lam = torch.tensor(config.lams, **f64)
    shape = lambda t: (-1,) + (1,) * (t.dim() - 1)  # noqa: E731 — (K,) broadcast over a tensor
    momentum = {n: torch.zeros_like(params[n]) for n in trained} if config.momentum else {}
    recorder = Recorder(config, len(invariant) + 1, device)
    checkpoints, steps = {}, set(config.checkpoints)
    flat = lambda d: torch.cat([d[n].reshape(config.k, -1) for n in invariant], 1)  # noqa: E731
    bar = progress_bar(config, progress)
    tally: dict = {}
    for t, (x, y) in enumerate(batch_stream(config, train_data, tally)):
        if t in steps:
            checkpoints[t] = _states(params, buffers, config.k)
        train_params = {n: params[n] for n in trained}
        old = {n: p.clone() for n, p in train_params.items()}
        old_buffers = {n: b.clone() for n, b in buffers.items()}
        grads, (loss, out) = step_fn(train_params, frozen, buffers, x, y)
        w = flat(params).double()
        g = torch.cat([grads[n].reshape(config.k, -1) for n in invariant], 1).double()
        with torch.no_grad():
            for n in trained:
                e = eta.to(params[n].dtype).view(shape(params[n]))
                d = torch_wd(lam).to(params[n].dtype).view(shape(params[n]))
                step = grads[n] + d * params[n]
                if config.momentum:
                    momentum[n].mul_(config.momentum).add_(step)
                    step = momentum[n]
                params[n] = params[n] - e * step
        v = flat(params).double()
        finite = torch.isfinite(loss) & torch.stack(
            [torch.isfinite(params[n].reshape(config.k, -1)).all(1) for n in trained]).all(0)
        accuracy = (out.argmax(-1) == y).double().mean(1)
        for k in range(config.k):
            recorder.config_step(k, t, loss[k].detach(), accuracy[k], finite[k])
        alive = recorder.alive
        for n in trained:
            params[n] = torch.where(alive.view(shape(params[n])), params[n], old[n])
        for n, b in buffers.items():
            if b.is_floating_point():
                b.copy_(torch.where(alive.view(shape(b)), b, old_buffers[n]))
        per_config = [step_metrics(w[k:k + 1], g[k:k + 1], v[k:k + 1], segments,
                                   eta[k:k + 1], lam[k:k + 1]) for k in range(config.k)]
        recorder.step(t, {m: torch.cat([c[m] for c in per_config]) for m in METRICS_KTP})
        bar.update()
    bar.close()
    checkpoints[config.steps] = _states(params, buffers, config.k)
    result = TrainResult(config, invariant + [joint_label(kernels_3x3, build_model(config))],
                         recorder.metrics, recorder.diverged_messages(), checkpoints,
                         augmented=augmented_fraction(tally),
                         flipped=augmented_fraction(tally, "flipped"))
    if config.evaluate:
        for label, data in evaluation_sets(config, train_data, test_data).items():
            scores = np.array([evaluate(_model_at(config, checkpoints[config.steps][k], device),
                                        data, False, config.precision) for k in range(config.k)])
            scores[[d is not None for d in result.diverged]] = np.nan
            setattr(result, label, {"loss": scores[:, 0], "accuracy": scores[:, 1]})
    return result


def torch_wd(lam: torch.Tensor) -> torch.Tensor:
    """PyTorch's coupled weight_decay for the article's λ (``config.torch_weight_decay``)."""
    from wd_claims.config import torch_weight_decay

    return lam * torch_weight_decay(1.0)


def _states(params: dict, buffers: dict, k: int) -> list[dict[str, np.ndarray]]:
    """Per configuration, its state_dict as host numpy arrays (NCHW)."""
    return [{**{n: p[j].detach().cpu().numpy().copy() for n, p in params.items()},
             **{n: b[j].detach().cpu().numpy().copy() for n, b in buffers.items()}}
            for j in range(k)]


def _model_at(config: TrainConfig, state: dict, device) -> torch.nn.Module:
    model = build_model(config)
    model.load_state_dict({n: torch.from_numpy(a) for n, a in state.items()})
    return model.to(device)
