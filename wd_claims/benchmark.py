"""What a throughput figure is measured against: the device's matmul peak and a model's FLOPs.

A training rate (model-images/s) says little across machines; as a fraction of the same device's
measured peak it says how much of the device the engine uses. Both the peak and the FLOPs are
measured in the process that reports them (``tox -e bench``, ``scripts/gpu_check.py``), never
taken from a data sheet.
"""

from __future__ import annotations

import time

import torch
from torch import nn


def matmul_peak_flops(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 1024,
                      reps: int = 4) -> float:
    """FLOP/s of an n×n @ n×n matmul of ``dtype`` on ``device`` (TF32 off), after one warm-up:
    2n³·reps / seconds. With the caller's torch threads (set them first)."""
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        return 2 * n**3 * reps / (time.perf_counter() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32


def training_flops_per_image(model: nn.Module, image_shape=(3, 32, 32), batch: int = 8) -> float:
    """FLOPs of one forward + backward pass per image (torch.utils.flop_counter: matmuls and
    convolutions, which dominate), on a CPU copy of ``model`` in training mode."""
    from copy import deepcopy

    from torch.utils.flop_counter import FlopCounterMode

    twin = deepcopy(model).cpu().float().train()
    x = torch.randn(batch, *image_shape)
    with FlopCounterMode(display=False) as counter:
        twin(x).sum().backward()
    return counter.get_total_flops() / batch


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
