"""The monitor's overhead on a user's loop, measured side by side in the same process.

Three real models, each trained by a plain loop on data resident on the device: ResNet-8
(width 16, batch 128, the suite's stand-in images), torchvision's ResNet-18 (10 classes, batch 64,
32×32 stand-in images) with ``SGD(momentum=0.9, weight_decay=5e-4)``, and the GPT example of
``examples/monitor_hf_trainer.py`` (two pre-LN blocks with QK-norm, width 64, context 32, batch 32,
``AdamW(weight_decay=0.1)``). Per model: the bare loop, the loop with
``wd_claims.monitor.Monitor`` recording every step, and every 10th step. Rounds alternate between
the three so that a change in the machine's load hits all of them alike. The overheads
(monitored/bare − 1, min over rounds) are stored in ``extra_info`` and printed; never asserted
(``tox -e bench``; targets: ≤ 10 % every step, ≤ 2 % every 10th).
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F

from wd_claims.data import standin_cifar
from wd_claims.monitor import Monitor

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROUNDS = 3
THREADS = int(os.environ.get("WD_BENCH_THREADS", "1"))
VARIANTS = {"bare": None, "every step": 1, "every 10th step": 10}


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _images(batch: int, steps: int):
    d = standin_cifar(batch * steps)
    x = d.x.float().div(255).sub(0.5).div(0.25).to(DEVICE)
    return x.view(steps, batch, 3, 32, 32), d.y.to(DEVICE).view(steps, batch)


def resnet8_setup():
    from wd_claims.models import resnet8

    model = resnet8().to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    return model, opt, {"input_shape": (3, 32, 32)}, 128, 200 if DEVICE == "cuda" else 20


def resnet18_setup():
    from torchvision.models import resnet18

    model = resnet18(num_classes=10).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    return model, opt, {"input_shape": (3, 32, 32)}, 64, 100 if DEVICE == "cuda" else 10


def gpt_setup():
    from examples.monitor_hf_trainer import CONTEXT, WIDTH, CharGPT
    from wd_claims.invariance import scale_invariant_names

    model = CharGPT(vocab=96).to(DEVICE)
    names = ["blocks." + n for n in scale_invariant_names(model.blocks.cpu(), (CONTEXT, WIDTH))]
    model.to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    return model, opt, {"tensors": names}, 32, 400 if DEVICE == "cuda" else 60


SETUPS = {"resnet8": resnet8_setup, "resnet18": resnet18_setup, "gpt_qk_norm": gpt_setup}


def loop(name: str, every: int | None, tensors: list[str]) -> float:
    """Seconds for the model's steps of a plain loop, with a monitor recording every ``every``-th
    step of ``tensors`` (None: no monitor); the detector ran once before (28.8 s on ResNet-18:
    scripts/monitor_inner_products.py --detector)."""
    torch.manual_seed(0)
    model, opt, _, batch, steps = SETUPS[name]()
    monitor = Monitor(model, opt, every=every, tensors=tensors) if every is not None else None
    if name == "gpt_qk_norm":
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 96, (steps, batch, 33), generator=g).to(DEVICE)
        batches = [(x[t, :, :-1], x[t, :, 1:]) for t in range(steps)]
    else:
        xs, ys = _images(batch, steps)
        batches = list(zip(xs, ys, strict=True))
    _sync()
    t0 = time.perf_counter()
    for inp, target in batches:
        out = model(inp)
        out = out["logits"] if isinstance(out, dict) else out
        loss = F.cross_entropy(out.flatten(0, -2), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if monitor is not None:
        monitor.records()   # the last chunk reaches the host: part of the cost
    _sync()
    return time.perf_counter() - t0


@pytest.fixture(scope="module", autouse=True)
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(SETUPS))
def test_monitor_overhead_against_the_bare_loop_side_by_side(benchmark, name):
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    model, opt, kwargs, _, _ = SETUPS[name]()
    tensors = [t.name for t in Monitor(model, opt, **kwargs).tracked]

    def interleaved():
        for _ in range(ROUNDS):
            for variant, every in VARIANTS.items():
                times[variant].append(loop(name, every, tensors))

    benchmark.pedantic(interleaved, rounds=1, iterations=1)
    bare = min(times["bare"])
    benchmark.extra_info.update({
        "model": name, "tracked tensors": len(tensors), "rounds": ROUNDS, "device": DEVICE,
        "threads": THREADS,
        "load_average_1min": os.getloadavg()[0],
        **{f"seconds {v}": min(t) for v, t in times.items()},
        **{f"overhead {v}": min(t) / bare - 1 for v, t in times.items() if v != "bare"}})
    print(f"\n{name}: bare {bare:.3f} s; monitor overhead (min over rounds): " + ", ".join(
        f"{v} {min(t) / bare - 1:+.1%}" for v, t in times.items() if v != "bare"))
