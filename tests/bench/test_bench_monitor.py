"""The monitor's overhead on a user's loop, measured side by side in the same process.

ResNet-8 (width 16) at batch 128 with ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4)`` on
stand-in images resident on the device: the bare loop, the same loop with
``wd_claims.monitor.Monitor`` recording every step, and recording every 10th step. Rounds
alternate between the three so that a change in the machine's load hits all of them alike.
The overheads (monitored/bare − 1) are stored in ``extra_info`` and printed at the end of the
session; never asserted (``tox -e bench``; the targets: ≤ 10 % every step, ≤ 2 % every 10th).
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F
from wd_claims.models import resnet8

from wd_claims.data import DeviceData, standin_cifar
from wd_claims.monitor import Monitor

BATCH = 128
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STEPS = 200 if DEVICE == "cuda" else 20
ROUNDS = 3
THREADS = int(os.environ.get("WD_BENCH_THREADS", "1"))
VARIANTS = {"bare": None, "every step": 1, "every 10th step": 10}
TIMES: dict[str, list[float]] = {name: [] for name in VARIANTS}


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def loop(every: int | None, data: DeviceData) -> float:
    """Seconds for STEPS steps of a plain loop, with a monitor recording every ``every``-th step
    (None: no monitor). The detector's probe runs before the clock starts."""
    torch.manual_seed(0)
    model = resnet8().to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    monitor = (Monitor(model, opt, input_shape=(3, 32, 32), every=every)
               if every is not None else None)
    x = data.x[:BATCH * STEPS].reshape(STEPS, BATCH, *data.x.shape[1:])
    y = data.y[:BATCH * STEPS].reshape(STEPS, BATCH)
    _sync()
    t0 = time.perf_counter()
    for t in range(STEPS):
        loss = F.cross_entropy(model(x[t]), y[t])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if monitor is not None:
        monitor.records()   # the last chunk reaches the host: part of the cost
    _sync()
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def data():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield DeviceData.from_images(standin_cifar(BATCH * STEPS), DEVICE)
    torch.set_num_threads(before)


def test_monitor_overhead_against_the_bare_loop_side_by_side(benchmark, data):
    def interleaved():
        for _ in range(ROUNDS):
            for name, every in VARIANTS.items():
                TIMES[name].append(loop(every, data))

    benchmark.pedantic(interleaved, rounds=1, iterations=1)
    bare = min(TIMES["bare"])
    benchmark.extra_info.update({
        "steps": STEPS, "batch": BATCH, "rounds": ROUNDS, "device": DEVICE, "threads": THREADS,
        "load_average_1min": os.getloadavg()[0],
        **{f"seconds {n}": min(v) for n, v in TIMES.items()},
        **{f"overhead {n}": min(v) / bare - 1 for n, v in TIMES.items() if n != "bare"}})
    print("\nmonitor overhead (min over rounds): " + ", ".join(
        f"{n} {min(v) / bare - 1:+.1%}" for n, v in TIMES.items() if n != "bare"))
