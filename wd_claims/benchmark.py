"""What a throughput figure is measured against: the loop a typical user writes, the device's
matmul peak and a model's FLOPs.

A training rate (model-images/s) says little across machines; as a fraction of the same device's
measured peak it says how much of the device the engine uses. Both the peak and the FLOPs are
measured in the process that reports them (``tox -e bench``, ``scripts/gpu_check.py``), never
taken from a data sheet.
"""

from __future__ import annotations

import time

import torch
from torch import nn


def typical_loop(dataset, configs, steps: int, batch: int, device: str = "cpu",
                 num_workers: int = 0) -> float:
    """Seconds to train ResNet-8 (width 16) the usual way, one (η, λ) of ``configs`` after
    another: a DataLoader over ``dataset`` (a torchvision dataset with its transforms: the CPU does
    the augmentation), ``torch.optim.SGD(weight_decay=2λ)``, ``steps`` steps of ``batch`` each.
    The baseline of ``tox -e bench`` and of ``scripts/gpu_check.py``."""
    import itertools

    from torch.utils.data import DataLoader

    from wd_claims.config import torch_weight_decay
    from wd_claims.models import resnet8

    _sync(device)
    t0 = time.perf_counter()
    for eta, lam in configs:
        torch.manual_seed(0)
        model = resnet8().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=eta, weight_decay=torch_weight_decay(lam))
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                            num_workers=num_workers, pin_memory=device == "cuda")
        for x, y in itertools.islice(loader, steps):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - t0


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
