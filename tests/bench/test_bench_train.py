"""Throughput of the training engine against the loop a typical user writes, in the same process.

Both train ResNet-8 (width 16) for the same number of steps at batch 128 on the same device, for
K = 9 (η, λ) configurations (the Fig. 2 grid):

- baseline: torchvision's ``CIFAR10`` dataset class, ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` through a ``DataLoader``, ``torch.optim.SGD``,
  one configuration after another;
- engine: ``harness.train.train`` with all K configurations in one run (data on the device,
  augmentation on the device).

Throughput is model-images per second (K × steps × batch / seconds); the ratio engine/baseline is
stored in ``extra_info`` and printed at the end of the session. Never a timed assertion: these are
measurements (``tox -e bench``, or the README's benchmark command).
"""

from __future__ import annotations

import itertools
import time

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from harness.config import torch_weight_decay
from harness.data import CIFAR_MEAN, CIFAR_STD, DeviceData, standin_cifar
from models import resnet8
from tests.bench.cifar_format import LocalCIFAR10, write_cifar_format

K_ETAS = (0.03, 0.1, 0.3) * 3
K_LAMS = tuple(lam for lam in (8e-5, 2.5e-4, 8e-4) for _ in range(3))
BATCH = 128
STEPS = 8 if torch.cuda.is_available() is False else 200   # per configuration
N_IMAGES = BATCH * STEPS
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RESULTS: dict[str, float] = {}


def baseline_run(root, device: str) -> float:
    """Train the K configurations one after another the usual way; returns seconds."""
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = LocalCIFAR10(str(root), train=True, transform=tf)
    t0 = time.perf_counter()
    for eta, lam in zip(K_ETAS, K_LAMS, strict=True):
        torch.manual_seed(0)
        model = resnet8().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=eta, weight_decay=torch_weight_decay(lam))
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True,
                            num_workers=0, pin_memory=device == "cuda")
        for x, y in itertools.islice(loader, STEPS):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def engine_run(device: str) -> float:
    from harness.train import TrainConfig, train

    data = DeviceData.from_images(standin_cifar(N_IMAGES), device)
    config = TrainConfig(etas=K_ETAS, lams=K_LAMS, steps=STEPS, batch_size=BATCH,
                         data=data.name, n_train=len(data))
    t0 = time.perf_counter()
    train(config, data, device=device, cache=None, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    return write_cifar_format(tmp_path_factory.mktemp("cifar"), n_train=N_IMAGES)


def _record(benchmark, name: str, seconds: float) -> None:
    rate = len(K_ETAS) * STEPS * BATCH / seconds
    RESULTS[name] = rate
    benchmark.extra_info.update({"model_images_per_s": rate, "configurations": len(K_ETAS),
                                 "steps": STEPS, "batch": BATCH, "device": DEVICE,
                                 "device_name": torch.cuda.get_device_name(0)
                                 if DEVICE == "cuda" else "cpu"})


def test_baseline_per_configuration_loop_throughput(benchmark, cifar_folder):
    seconds = benchmark.pedantic(baseline_run, args=(cifar_folder, DEVICE), rounds=1,
                                 iterations=1)
    _record(benchmark, "baseline", seconds)


def test_engine_throughput_and_ratio_to_the_baseline(benchmark):
    seconds = benchmark.pedantic(engine_run, args=(DEVICE,), rounds=1, iterations=1)
    _record(benchmark, "engine", seconds)
    if "baseline" in RESULTS:
        benchmark.extra_info["ratio_engine_over_baseline"] = RESULTS["engine"] / RESULTS["baseline"]
