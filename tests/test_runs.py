"""The shared dynamics runs: trained in parallel worker processes, served as if trained here."""

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wd_claims import runs
from wd_claims.config import BUDGETS, shrunk
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.train import train


@pytest.fixture
def smoke(tmp_path):
    # the smoke budget's runs at 16 steps: what is tested is who trains them, not for how long
    budget = shrunk(BUDGETS["smoke"], {"epochs": 0.5})
    images = (standin_cifar(budget.n_train), standin_cifar(budget.n_test, train=False))
    suite = SimpleNamespace(budget=budget, device="cpu", cache_dir=Path(tmp_path / "cache"),
                            fresh=False)
    return suite, images


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the workers need two cores")
def test_runs_trained_by_the_parallel_workers_equal_the_same_runs_trained_here(smoke,
                                                                              monkeypatch):
    suite, images = smoke
    monkeypatch.setattr(runs, "_MEMO", {})
    monkeypatch.setattr(runs, "_PREFETCHED", set())
    (starts,) = runs.results(suite, images, "starts")      # prefetches grid, starts, momentum
    assert len(list(suite.cache_dir.glob("*.json"))) == 3   # all three, by the workers
    before = torch.get_num_threads()
    torch.set_num_threads(1)                                # as the workers train
    try:
        here = train(starts.config, DeviceData.from_images(images[0]),
                     DeviceData.from_images(images[1]), progress=False)
    finally:
        torch.set_num_threads(before)
    for name, values in here.metrics.items():
        np.testing.assert_array_equal(starts.metrics[name], values, err_msg=name)


def test_a_user_model_is_never_sent_to_a_worker(smoke, monkeypatch):
    suite, images = smoke
    monkeypatch.setattr(runs, "_MEMO", {})
    monkeypatch.setattr(runs, "_PREFETCHED", set())
    from wd_claims import zoo

    monkeypatch.setitem(zoo.MODELS, "mine", zoo.MODELS["conv_groupnorm"].__class__(
        "mine", zoo.MODELS["conv_groupnorm"].factory))
    wanted = runs.configs(suite, images, "grid", "mine") + runs.configs(suite, images, "starts",
                                                                        "mine")
    runs.prefetch(suite, images, wanted)
    assert not list(suite.cache_dir.glob("*.json"))  # nothing trained out of process
