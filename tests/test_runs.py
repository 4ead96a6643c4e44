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

TWO_CORES = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                               reason="the workers need two cores")


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    # the smoke budget's runs at 16 steps: what is tested is who trains them, not for how long;
    # this process's memo of runs starts empty (the session's own claims may have filled it)
    monkeypatch.setattr(runs, "_MEMO", {})
    monkeypatch.setattr(runs, "_PREFETCHED", set())
    monkeypatch.setattr(runs, "_MEASURE_OF", {})
    budget = shrunk(BUDGETS["smoke"], {"epochs": 0.5})
    images = (standin_cifar(budget.n_train), standin_cifar(budget.n_test, train=False))
    suite = SimpleNamespace(budget=budget, device="cpu", cache_dir=Path(tmp_path / "cache"),
                            fresh=False)
    return suite, images


@TWO_CORES
def test_runs_trained_by_the_parallel_workers_equal_the_same_runs_trained_here(smoke):
    suite, images = smoke
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


def final_sqnorms(result, train_data) -> dict:
    """A registered measure for these tests: each configuration's last squared norms, and the
    number of training images it was handed."""
    return {"sqnorm": np.asarray(result.metrics["sqnorm"][:, -1]), "n": np.array(len(train_data))}


@TWO_CORES
def test_a_registered_measure_is_made_by_the_worker_and_equals_the_same_measure_made_here(smoke):
    suite, images = smoke
    starts, momentum = (runs.configs(suite, images, w, "resnet8")[0]
                        for w in ("starts", "momentum"))
    runs._MEASURE_OF[starts] = final_sqnorms
    runs.start(suite, images, [starts, momentum])
    try:
        by_worker = runs.measured(suite, images, starts, final_sqnorms)
    finally:
        runs.shutdown(cancel=True)
    assert len(list(suite.cache_dir.glob("*.json"))) == 3   # two runs and the measurement
    here = final_sqnorms(runs.run(suite, images, starts), DeviceData.from_images(images[0]))
    assert set(by_worker) == set(here)
    for name, values in here.items():
        np.testing.assert_array_equal(by_worker[name], values, err_msg=name)


def test_a_measure_without_workers_is_made_here_once_and_then_read_from_the_cache(smoke):
    suite, images = smoke
    (momentum,) = runs.configs(suite, images, "momentum", "resnet8")
    first = runs.measured(suite, images, momentum, final_sqnorms)
    runs._MEMO.clear()                                    # a later session: only the disk cache
    entries = sorted(suite.cache_dir.glob("*.json"))
    again = runs.measured(suite, images, momentum, final_sqnorms)
    assert sorted(suite.cache_dir.glob("*.json")) == entries and len(entries) == 2
    np.testing.assert_array_equal(first["sqnorm"], again["sqnorm"])


def test_a_user_model_is_never_sent_to_a_worker(smoke, monkeypatch):
    suite, images = smoke
    from wd_claims import zoo

    monkeypatch.setitem(zoo.MODELS, "mine", zoo.MODELS["conv_groupnorm"].__class__(
        "mine", zoo.MODELS["conv_groupnorm"].factory))
    wanted = runs.configs(suite, images, "grid", "mine") + runs.configs(suite, images, "starts",
                                                                        "mine")
    runs.prefetch(suite, images, wanted)
    assert not list(suite.cache_dir.glob("*.json"))  # nothing trained out of process


@TWO_CORES
def test_runs_started_in_the_background_are_waited_for_not_trained_twice(smoke):
    suite, images = smoke
    starts, momentum = (runs.configs(suite, images, w, "resnet8")[0]
                        for w in ("starts", "momentum"))
    before = torch.get_num_threads()
    runs.start(suite, images, [starts, momentum])
    try:
        assert len(runs._PENDING) == 2            # returned at once, the workers train
        assert torch.get_num_threads() == 1       # this process steps aside meanwhile
        # moved to shared memory here, not by the pool's feeder thread while a claim reads them
        assert all(data.x.is_shared() and data.y.is_shared() for data in images)
        result = runs.run(suite, images, momentum)
        assert runs._key(suite, momentum) not in runs._PENDING
        assert result.config == momentum
        assert len(list(suite.cache_dir.glob("*.json"))) >= 1   # the worker's entry, served
    finally:
        runs.shutdown(cancel=True)
    assert torch.get_num_threads() == before and not runs._PENDING and not runs._POOL


@TWO_CORES
def test_the_end_of_an_interrupted_session_stops_the_workers_and_leaves_no_partial_run(smoke):
    suite, images = smoke
    before = torch.get_num_threads()
    wanted = [c for w in runs.MAKE for c in runs.configs(suite, images, w, "resnet8")]
    runs.start(suite, images, wanted)                 # three runs for two workers
    processes = list(runs._POOL[0]._processes.values())
    runs.shutdown(cancel=True)                        # what the plugin does at the session's end
    assert torch.get_num_threads() == before and not runs._PENDING and not runs._POOL
    assert not any(p.is_alive() for p in processes)
    entries = list(suite.cache_dir.glob("*.json"))
    assert all(e.with_suffix(".npz").exists() for e in entries)   # whole runs, if any


@TWO_CORES
def test_a_warm_pool_waits_idle_for_its_jobs_and_start_hands_it_the_runs(smoke):
    suite, images = smoke
    before = torch.get_num_threads()
    starts, momentum = (runs.configs(suite, images, w, "resnet8")[0]
                        for w in ("starts", "momentum"))
    runs.warm(2)
    try:
        (pool,) = runs._POOL
        assert len(pool._processes) == 2             # spawned now, before there is any job
        assert torch.get_num_threads() == before     # this process keeps its threads meanwhile
        runs.start(suite, images, [starts, momentum])
        assert runs._POOL == [pool] and len(runs._PENDING) == 2
        assert torch.get_num_threads() == 1
        assert runs.run(suite, images, momentum).config == momentum
    finally:
        runs.shutdown(cancel=True)
    assert torch.get_num_threads() == before and not runs._POOL and not runs._PENDING


def test_a_shrunk_budget_caps_the_shared_runs_evaluation_and_an_unshrunk_one_reads_every_image():
    full = BUDGETS["full"]
    capped = shrunk(full, {"n_train": 512, "max_images": 16})
    for make in runs.MAKE.values():
        assert make(full, 0, "CIFAR-10").eval_images == 0          # 0: every image
        assert make(capped, 0, "CIFAR-10").eval_images == 16
    # the quick budget's shared runs keep their configuration (and so their cache keys)
    assert runs.grid_config(BUDGETS["quick"], 0, "stand-in").eval_images == 0
