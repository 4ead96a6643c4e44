"""One configuration's network on flat buffers, and which of its tensors are tracked.

Each copy's parameters, gradients and BN statistics live in three flat buffers (the modules hold
views), so one ``torch.optim.SGD`` step, the float64 metric copies, the finiteness check and the
freeze of a diverged configuration are single tensor operations (docs/performance.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wd_claims.config import torch_weight_decay
from wd_claims.invariance import scale_invariant_names
from wd_claims.run_config import ALL_3X3, ALL_INVARIANT


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


def uses_channels_last(model: nn.Module, dtype: torch.dtype) -> bool:
    """channels_last pays for float32 convolutional networks only (docs/performance.md), and is
    used only when every convolution has at least 8 output channels: with 4 (ResNet-8 at width
    4), oneDNN's channels_last backward crashes the process (segmentation fault, torch 2.14.1 on
    the CPU; the NCHW layout runs)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return dtype == torch.float32 and bool(convs) and min(m.out_channels for m in convs) >= 8


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


@torch.no_grad()
def _copy_scaled(base: nn.Module, names: list[str], scale: float) -> nn.Module:
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    for n in names:
        params[n].mul_(scale)
    return model
