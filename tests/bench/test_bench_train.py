"""Throughput of the training engine against the loop a typical user writes, in the same process.

Both train ResNet-8 (width 16) for the same number of steps at batch 128 on the same device, for
K = 9 (η, λ) configurations (the Fig. 2 grid), with the same number of threads:

- baseline: torchvision's ``CIFAR10`` dataset class, ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` through a ``DataLoader``,
  ``torch.optim.SGD``, one configuration after another;
- engine: ``wd_claims.train.train`` with all K configurations in one run (data on the device,
  augmentation on the device), on the path the claims use: every per-step float64 metric recorded,
  divergence checks, checkpoints of the final state. Only the final evaluation is off
  (``evaluate=False``): the baseline does not evaluate either. Once in float32 (the claims'
  default) and once with ``precision="bf16-autocast"`` (opt-in, see wd_claims/train.py).

Throughput is model-images per second (K × steps × batch / seconds). Not timed: the invariance
probe (once per process, memoized; its seconds are in ``extra_info["probe_s"]``) and the writing of
the stand-in CIFAR files. The ratio engine/baseline is stored in ``extra_info`` and printed at the
end of the session, with the load average (the machine may be shared: compare ratios, not
absolute rates).
Never a timed assertion: these are measurements (``tox -e bench``, or the README's command).
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import torch
from torchvision import transforms
from wd_claims.models import resnet8

from tests.bench.cifar_format import LocalCIFAR10, write_cifar_format
from wd_claims.data import CIFAR_MEAN, CIFAR_STD, DeviceData, standin_cifar

K_ETAS = (0.03, 0.1, 0.3) * 3
K_LAMS = tuple(lam for lam in (8e-5, 2.5e-4, 8e-4) for _ in range(3))
BATCH = 128
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STEPS = 200 if DEVICE == "cuda" else 16     # per configuration; CPU: the session stays ≲ 2 min
N_IMAGES = BATCH * STEPS
# Threads for both loops: WD_BENCH_THREADS, default 1. On a shared machine two threads per process
# spin-wait against the other processes (docs/design.md, "Threads": a run 50x slower was seen here);
# on a machine of one's own set WD_BENCH_THREADS to the number of cores.
THREADS = int(os.environ.get("WD_BENCH_THREADS", "1"))
RESULTS: dict[str, float] = {}
FRACTIONS: dict[str, float] = {}   # name → fraction of the same-precision matmul peak


def baseline_run(root, device: str) -> float:
    """Train the K configurations one after another the usual way; returns seconds."""
    from wd_claims.benchmark import typical_loop

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = LocalCIFAR10(str(root), train=True, transform=tf)
    return typical_loop(dataset, list(zip(K_ETAS, K_LAMS, strict=True)), STEPS, BATCH, device)


def engine_config(data: DeviceData, steps: int = STEPS, precision: str = "float32",
                  path: str = "loop"):
    from wd_claims.train import TrainConfig

    return TrainConfig(etas=K_ETAS, lams=K_LAMS, steps=steps, batch_size=BATCH,
                       data=data.name, n_train=len(data), evaluate=False, precision=precision,
                       path=path)


def engine_run(data: DeviceData, precision: str, path: str = "loop") -> float:
    from wd_claims.train import train

    _sync(data.x.device.type)
    t0 = time.perf_counter()
    train(engine_config(data, precision=precision, path=path), data, device=DEVICE,
          progress=False)
    _sync(data.x.device.type)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module", autouse=True)
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def peak(threads):
    """(FLOPs per image of ResNet-8 width 16, {precision: matmul FLOP/s}), measured here."""
    from wd_claims.benchmark import matmul_peak_flops, training_flops_per_image

    return training_flops_per_image(resnet8()), {
        "float32": matmul_peak_flops(DEVICE, torch.float32),
        "bf16-autocast": matmul_peak_flops(DEVICE, torch.bfloat16)}


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    return write_cifar_format(tmp_path_factory.mktemp("cifar"), n_train=N_IMAGES)


@pytest.fixture(scope="module")
def engine_data():
    """The stand-in images on the device, and the engine warmed up outside the timing: one step
    (the invariance probe, memoized per process, and the kernels' first-call setup)."""
    from wd_claims.train import train

    data = DeviceData.from_images(standin_cifar(N_IMAGES), DEVICE)
    t0 = time.perf_counter()
    train(engine_config(data, steps=1), data, device=DEVICE, progress=False)
    return data, time.perf_counter() - t0


def _record(benchmark, name: str, seconds: float, peak=None, precision: str = "float32") -> None:
    rate = len(K_ETAS) * STEPS * BATCH / seconds
    RESULTS[name] = rate
    if peak is not None:
        flops, peaks = peak
        FRACTIONS[name] = rate * flops / peaks[precision]
        benchmark.extra_info.update({"flops_per_image": flops, "peak_flops": peaks[precision],
                                     "fraction_of_peak": FRACTIONS[name]})
    benchmark.extra_info.update({
        "model_images_per_s": rate, "configurations": len(K_ETAS), "steps": STEPS,
        "batch": BATCH, "model": "resnet8 width 16", "device": DEVICE, "threads": THREADS,
        "device_name": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu",
        "load_average_1min": os.getloadavg()[0]})
    if name != "baseline" and "baseline" in RESULTS:
        benchmark.extra_info["ratio_engine_over_baseline"] = rate / RESULTS["baseline"]


def test_baseline_per_configuration_loop_throughput(benchmark, cifar_folder, peak):
    seconds = benchmark.pedantic(baseline_run, args=(cifar_folder, DEVICE), rounds=1,
                                 iterations=1)
    _record(benchmark, "baseline", seconds, peak)


@pytest.mark.parametrize("precision,path", [("float32", "loop"), ("float32", "fused"),
                                            ("bf16-autocast", "loop")])
def test_engine_throughput_and_ratio_to_the_baseline(benchmark, engine_data, peak, precision,
                                                    path):
    data, probe_seconds = engine_data
    seconds = benchmark.pedantic(engine_run, args=(data, precision, path), rounds=1,
                                 iterations=1)
    benchmark.extra_info.update({"precision": precision, "path": path, "probe_s": probe_seconds})
    _record(benchmark, f"engine {path} {precision}", seconds, peak, precision)


FLOORS: dict[str, float] = {}   # name → seconds measured / seconds of the FLOP floor


def test_engine_at_the_article_budgets_size_against_its_flop_floor(benchmark, threads):
    """The article budget's configuration-step (ResNet-8 at its width, its batch, every parameter
    training, the K = 9 grid, the digits) as a multiple of its FLOP floor: the step's FLOPs
    (torch.utils.flop_counter) at the float32 matmul peak measured in this process."""
    from wd_claims.benchmark import matmul_peak_flops, training_flops_per_image
    from wd_claims.config import BUDGETS
    from wd_claims.datasets import load_digits_split
    from wd_claims.recipes import grid_config
    from wd_claims.train import train

    budget = BUDGETS["article"]
    images, _ = load_digits_split(budget.n_train, 1)
    data = DeviceData.from_images(images, DEVICE)
    steps = 16 if DEVICE == "cpu" else 200
    full = grid_config(budget, 0, data.name)
    config = dataclasses.replace(full, steps=steps, evaluate=False)
    train(dataclasses.replace(config, steps=2), data, device=DEVICE, progress=False)  # warm-up
    seconds = benchmark.pedantic(lambda: train(config, data, device=DEVICE,
                                               progress=False).seconds, rounds=1, iterations=1)
    per_step = seconds / (steps * config.k)
    flops = training_flops_per_image(resnet8(width=budget.width)) * budget.batch_size
    floor = flops / matmul_peak_flops(DEVICE, torch.float32)
    FLOORS["article"] = per_step / floor
    benchmark.extra_info.update({
        "ms_per_configuration_step": 1000 * per_step, "floor_ms": 1000 * floor,
        "times_floor": per_step / floor, "width": budget.width, "batch": budget.batch_size,
        "configurations": config.k, "steps": steps, "threads": THREADS, "device": DEVICE})
