"""The session's scheduler: runs trained in parallel worker processes, served as if trained here.

Each test holds its own :class:`~wd_claims.scheduler.Scheduler`; nothing is patched.
"""

import dataclasses
import os
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch

from wd_claims import recipes
from wd_claims.config import BUDGETS, shrunk
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.scheduler import ClaimRuns, Scheduler, measure_run
from wd_claims.train import train
from wd_claims.zoo import MODELS

TWO_CORES = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                               reason="the workers need two cores")


@pytest.fixture
def smoke(tmp_path):
    # the smoke budget's runs at 16 steps: what is tested is who trains them, not for how long
    budget = shrunk(BUDGETS["smoke"], {"epochs": 0.5})
    images = (standin_cifar(budget.n_train), standin_cifar(budget.n_test, train=False))
    scheduler = Scheduler(budget=budget, device="cpu", cache_dir=Path(tmp_path / "cache"),
                          models=MODELS, selected={"C4", "C5"})
    return scheduler, images


def shared(scheduler, images, which):
    return scheduler.shared(images, which, "resnet8")


@TWO_CORES
def test_runs_trained_by_the_parallel_workers_equal_the_same_runs_trained_here(smoke):
    scheduler, images = smoke
    (starts,) = scheduler.results(images, "starts", "resnet8")   # prefetches all three runs
    assert len(list(scheduler.cache_dir.glob("*.json"))) == 3    # all three, by the workers
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
    """A claim's run measure for these tests: each configuration's last squared norms, and the
    number of training images it was handed."""
    return {"sqnorm": np.asarray(result.metrics["sqnorm"][:, -1]), "n": np.array(len(train_data))}


@TWO_CORES
def test_a_registered_measure_is_made_by_the_worker_and_equals_the_same_measure_made_here(smoke):
    scheduler, images = smoke
    (starts,), (momentum,) = (shared(scheduler, images, w) for w in ("starts", "momentum"))
    scheduler.claims = {"C9": ClaimRuns(lambda budget, images, model: [starts],
                                        lambda budget: final_sqnorms)}
    scheduler.selected = {"C9"}
    scheduler.session_configs(images, "resnet8")
    scheduler.start(images, [starts, momentum])
    try:
        by_worker = scheduler.measured(images, starts, final_sqnorms)
    finally:
        scheduler.shutdown(cancel=True)
    assert len(list(scheduler.cache_dir.glob("*.json"))) == 3   # two runs and the measurement
    here = measure_run(final_sqnorms, scheduler.run(images, starts),
                       DeviceData.from_images(images[0]))
    assert set(by_worker) == set(here) == {"sqnorm", "n", "run_augmented", "run_flipped"}
    for name, values in here.items():
        np.testing.assert_array_equal(by_worker[name], values, err_msg=name)


def test_a_measure_without_workers_is_made_here_once_and_then_read_from_the_cache(smoke):
    scheduler, images = smoke
    (momentum,) = shared(scheduler, images, "momentum")
    first = scheduler.measured(images, momentum, final_sqnorms)
    later = dataclasses.replace(scheduler, written=set())   # a later session: only the disk
    later._memo = {}
    entries = sorted(scheduler.cache_dir.glob("*.json"))
    again = later.measured(images, momentum, final_sqnorms)
    assert sorted(scheduler.cache_dir.glob("*.json")) == entries and len(entries) == 2
    np.testing.assert_array_equal(first["sqnorm"], again["sqnorm"])


def test_a_user_model_is_held_by_the_session_and_never_sent_to_a_worker(smoke):
    scheduler, images = smoke
    mine = dataclasses.replace(MODELS["conv_groupnorm"], name="mine")
    scheduler.models = MappingProxyType({**MODELS, "mine": mine})
    assert "mine" not in MODELS                       # the zoo stays as shipped
    wanted = scheduler.shared(images, "grid", "mine") + scheduler.shared(images, "starts", "mine")
    assert all(c.spec is mine for c in wanted)        # the configs carry the session's factory
    scheduler.start(images, wanted)
    assert not scheduler._pending                     # nothing handed to a worker
    assert not list(scheduler.cache_dir.glob("*.json"))  # nothing trained out of process


@TWO_CORES
def test_runs_started_in_the_background_are_waited_for_not_trained_twice(smoke):
    scheduler, images = smoke
    (starts,), (momentum,) = (shared(scheduler, images, w) for w in ("starts", "momentum"))
    before = torch.get_num_threads()
    scheduler.start(images, [starts, momentum])
    try:
        assert len(scheduler._pending) == 2      # returned at once, the workers train
        assert torch.get_num_threads() == 1       # this process steps aside meanwhile
        # moved to shared memory here, not by the pool's feeder thread while a claim reads them
        assert all(data.x.is_shared() and data.y.is_shared() for data in images)
        result = scheduler.run(images, momentum)
        assert momentum not in scheduler._pending
        assert result.config == momentum
        assert len(list(scheduler.cache_dir.glob("*.json"))) >= 1   # the worker's entry, served
    finally:
        scheduler.shutdown(cancel=True)
    assert torch.get_num_threads() == before and not scheduler._pending
    assert scheduler._pool is None


@TWO_CORES
def test_the_end_of_an_interrupted_session_stops_the_workers_and_leaves_no_partial_run(smoke):
    scheduler, images = smoke
    before = torch.get_num_threads()
    wanted = [c for w in recipes.MAKE for c in shared(scheduler, images, w)]
    scheduler.start(images, wanted)                   # three runs for two workers
    processes = list(scheduler._pool._processes.values())
    scheduler.shutdown(cancel=True)                   # what the plugin does at the session's end
    assert torch.get_num_threads() == before and not scheduler._pending
    assert scheduler._pool is None and not any(p.is_alive() for p in processes)
    entries = list(scheduler.cache_dir.glob("*.json"))
    assert all(e.with_suffix(".npz").exists() for e in entries)   # whole runs, if any


@TWO_CORES
def test_a_warm_pool_waits_idle_for_its_jobs_and_start_hands_it_the_runs(smoke):
    scheduler, images = smoke
    before = torch.get_num_threads()
    (starts,), (momentum,) = (shared(scheduler, images, w) for w in ("starts", "momentum"))
    scheduler.warm(2)
    try:
        pool = scheduler._pool
        assert len(pool._processes) == 2             # spawned now, before there is any job
        assert torch.get_num_threads() == before     # this process keeps its threads meanwhile
        scheduler.start(images, [starts, momentum])
        assert scheduler._pool is pool and len(scheduler._pending) == 2
        assert torch.get_num_threads() == 1
        assert scheduler.run(images, momentum).config == momentum
    finally:
        scheduler.shutdown(cancel=True)
    assert torch.get_num_threads() == before and scheduler._pool is None
    assert not scheduler._pending


def test_a_shrunk_budget_caps_the_shared_runs_evaluation_and_an_unshrunk_one_reads_every_image():
    full = BUDGETS["full"]
    capped = shrunk(full, {"n_train": 512, "max_images": 16})
    for make in recipes.MAKE.values():
        assert make(full, 0, "CIFAR-10").eval_images == 0          # 0: every image
        assert make(capped, 0, "CIFAR-10").eval_images == 16
    # the quick budget's shared runs keep their configuration (and so their cache keys)
    assert recipes.grid_config(BUDGETS["quick"], 0, "stand-in").eval_images == 0
