"""Check your own training run: attach wd_claims.monitor.Monitor to an ordinary PyTorch loop.

    python examples/monitor_training_loop.py [--steps N] [--out reports/monitor]

Trains the GroupNorm CNN of ``examples/user_models.py`` twice on the suite's stand-in images
(CIFAR-10-shaped; CIFAR-10 itself cannot be downloaded here): with AdamW under a linear warm-up +
cosine schedule, then with SGD + momentum 0.9 and coupled weight decay. The loop is a plain one;
the only added line is ``Monitor(model, optimizer, input_shape=...)``. At the end it prints each
scale-invariant tensor's verdict (measured angle / the optimizer's predicted equilibrium angle,
whether and when the tensor reached equilibrium, the control) and writes
``<out>/<optimizer>/monitor.{md,json,png}``. About a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout, as typed

from examples.user_models import groupnorm_cnn  # noqa: E402
from wd_claims.data import standin_cifar  # noqa: E402
from wd_claims.monitor import Monitor  # noqa: E402

BATCH = 32


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """The learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine to
    ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train(optimizer_name: str, steps: int, out: Path) -> str:
    torch.manual_seed(0)
    data = standin_cifar(4096)
    x_all = data.x.float().div(255).sub(0.5).div(0.25)
    model = groupnorm_cnn()
    if optimizer_name == "adamw":
        # decay on the convolution kernels only (the usual practice: none on norms and biases)
        kernels = [p for n, p in model.named_parameters() if n.startswith("features") and
                   p.dim() == 4]
        others = [p for n, p in model.named_parameters() if not any(p is k for k in kernels)]
        optimizer = torch.optim.AdamW([{"params": kernels, "weight_decay": 0.4},
                                       {"params": others, "weight_decay": 0.0}], lr=0.05,
                                      betas=(0.9, 0.99))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, steps, warmup=steps // 20))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                    weight_decay=1e-2)
        schedule = None
    monitor = Monitor(model, optimizer, input_shape=(3, 32, 32), progress=steps // 4)  # the line
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (BATCH,), generator=gen)
        loss = F.cross_entropy(model(x_all[idx]), data.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    monitor.close()
    title = {"adamw": "AdamW (β = (0.9, 0.99), λ_w = 0.4 on the kernels), warm-up + cosine from "
                      "η = 5e-2 to 5e-3",
             "sgd": "SGD, momentum 0.9, weight_decay 1e-2 (λ = 5e-3), η = 0.1"}[optimizer_name]
    paths = monitor.report(out / optimizer_name, title=f"GroupNorm CNN, {title}")
    return f"## {title}\n\n{monitor.summary()}\n\nreport: {paths['markdown']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700, help="steps per optimizer")
    parser.add_argument("--out", type=Path, default=Path("reports/monitor"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in ("adamw", "sgd"):
        print(train(name, args.steps, args.out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
