"""Who trains which run, when: the session's memo, its disk cache, and worker processes.

One :class:`Scheduler` per claims session (a field of :class:`wd_claims.session.Session`); nothing
here lives at module level. Two layers of reuse: the memo (this process) and the engine's disk
cache (across processes and sessions; ``--fresh`` ignores entries this session did not write).

Why workers: at the quick budget a second torch thread adds little to one process
(docs/performance.md), while two processes train two runs in the time of one. The plugin starts
the session's runs when its first test starts (:meth:`Scheduler.start`) and orders the claims that
train nothing first, so that they run while the workers train; this process drops to one torch
thread and one BLAS thread meanwhile (three processes on two cores: OpenMP and OpenBLAS threads
spin-waiting for a busy core made C0 4× slower) and gets them back once the workers are done.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from wd_claims.cache import Cache
from wd_claims.config import Budget, usable_cores
from wd_claims.recipes import SHARED_BY, all_shared_configs, shared_configs
from wd_claims.run_config import TrainConfig, TrainResult
from wd_claims.storage import cache_fields
from wd_claims.train import train
from wd_claims.zoo import ModelSpec


@dataclass(frozen=True)
class ClaimRuns:
    """A claim's own runs, trained with the shared ones by the same workers: ``make(budget,
    images, model)`` → configurations; ``measure(budget)`` (optional) → the claim's pure
    measurement of one run, ``(result, train_data) → dict of arrays``, a picklable module-level
    function or partial of one, which the worker computes right after training, into the cache."""

    make: Callable
    measure: Callable | None = None


@dataclass
class Scheduler:
    """The session's training runs: memoized, cached on disk, trained ahead by worker processes.

    ``models``: the session's registry (the zoo and any ``--model`` factories); ``claims``: the
    selected claims' own runs (claim id → :class:`ClaimRuns`); ``selected``: the claim ids of the
    session's selected tests."""

    budget: Budget
    device: str
    cache_dir: Path
    fresh: bool = False
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    claims: dict[str, ClaimRuns] = field(default_factory=dict)
    selected: set[str] = field(default_factory=set)
    written: set[tuple[str, str]] = field(default_factory=set)   # (folder, key) it wrote
    _memo: dict = field(default_factory=dict, repr=False)            # (config, device) → result
    _data: dict = field(default_factory=dict, repr=False)            # id(images) → DeviceData
    _measure_of: dict = field(default_factory=dict, repr=False)      # config → its measure
    _considered: set = field(default_factory=set, repr=False)        # configs handed over once
    _pending: dict = field(default_factory=dict, repr=False)         # config → worker's Future
    _shared: set = field(default_factory=set, repr=False)            # the shared runs among them
    _pool: object = field(default=None, repr=False)                  # ProcessPoolExecutor
    _threads: tuple | None = field(default=None, repr=False)         # (torch threads, BLAS limits)

    # --- what runs there are ------------------------------------------------------------------

    @property
    def training(self) -> set[str]:
        """The claims that read a run: the shared runs' and those that declared their own."""
        return set(SHARED_BY) | set(self.claims)

    def with_spec(self, config: TrainConfig) -> TrainConfig:
        """``config`` carrying its model's spec when the model is not the zoo's (a --model)."""
        from wd_claims.zoo import MODELS

        spec = self.models.get(config.model)
        if spec is None or spec is MODELS.get(config.model) or config.spec is spec:
            return config
        return replace(config, spec=spec)

    def shared(self, images, which: str, model: str) -> list[TrainConfig]:
        return [self.with_spec(c) for c in shared_configs(self.budget, images[0].name, which,
                                                          model)]

    def session_configs(self, images, model: str, shared: bool | None = None
                        ) -> list[TrainConfig]:
        """Every run the selected claims will ask for on ``model``: the shared runs if ``shared``
        (default: when a claim of SHARED_BY is selected), and the selected claims' own runs."""
        made = ([self.with_spec(c) for c in all_shared_configs(self.budget, images[0].name,
                                                               model)]
                if shared or shared is None and self.selected & SHARED_BY else [])
        self._shared.update(made)
        own = []
        for cid, runs in self.claims.items():
            if cid in self.selected:
                configs = [self.with_spec(c) for c in runs.make(self.budget, images, model)]
                own += configs
                if runs.measure is not None:
                    self._measure_of.update((c, runs.measure(self.budget)) for c in configs)
        return made + own

    # --- training in this process -------------------------------------------------------------

    def cache(self) -> Cache:
        return Cache(self.cache_dir, fresh=self.fresh, written=self.written)

    def device_data(self, images):
        """(train, test) as :class:`wd_claims.data.DeviceData`, converted once per session."""
        from wd_claims.data import DeviceData

        key = (id(images), self.device)
        if key not in self._data:
            train_images, test_images = images
            self._data[key] = (DeviceData.from_images(train_images, self.device),
                               DeviceData.from_images(test_images, self.device))
        return self._data[key]

    def run(self, images, config: TrainConfig) -> TrainResult:
        """Train ``config`` once per session (memo), through the disk cache; a run the workers
        are training is waited for, not trained twice."""
        config = self.with_spec(config)
        key = (config, self.device)
        if key not in self._memo:
            self.wait([config])
            train_data, test_data = self.device_data(images)
            self._memo[key] = train(config, train_data, test_data, device=self.device,
                                    cache=self.cache(), progress=True)
        return self._memo[key]

    def results(self, images, which: str, model: str) -> list[TrainResult]:
        """One result per seed for ``which`` ∈ {grid, starts, momentum} of ``model``. The first
        call trains every shared run of the model not cached yet, in parallel, with the
        selected claims' own runs."""
        from wd_claims.run_config import joined

        self.prefetch(images, self.session_configs(images, model, shared=True))
        out = [self.run(images, c) for c in self.shared(images, which, model)]
        parts = self.budget.grid_parts if which == "grid" else 1
        return [joined(out[i: i + parts]) for i in range(0, len(out), parts)]

    def measured(self, images, config: TrainConfig, measure) -> dict:
        """``measure(result, train_data)`` of the run ``config``: the workers' (waited for), the
        cache's, or computed here (and cached) — the same function on the same run either way."""
        config = self.with_spec(config)
        self.wait([config])
        train_data, test_data = self.device_data(images)
        cache = self.cache()
        fields = measurement_fields(config, train_data, test_data, self.device, measure)
        hit = cache.load(fields)
        if hit is not None:
            return hit[0]
        arrays = measure_run(measure, self.run(images, config), train_data)
        cache.store(fields, arrays, {"measurement": fields["measurement"]})
        return arrays

    # --- the worker processes -----------------------------------------------------------------

    def prefetch(self, images, wanted: list[TrainConfig]) -> None:
        """Train the configurations of ``wanted`` that are neither memoized nor cached, one
        process per core, into the disk cache; return when they are in."""
        self.start(images, wanted)
        self.wait(wanted)

    def start(self, images, wanted: list[TrainConfig]) -> None:
        """Hand the configurations of ``wanted`` that need training to the worker pool and return
        at once (:meth:`wait` collects them). Only on the CPU, only for zoo models (a --model
        factory lives in the user's process), only with ≥ 2 cores and ≥ 2 runs to train."""
        cores = usable_cores()
        todo = [c for c in wanted if (c, self.device) not in self._memo
                and c not in self._considered]
        if (self.device != "cpu" or cores < 2 or len(todo) < 2
                or any(c.spec is not None for c in todo)):
            return
        cache = self.cache()
        train_data, test_data = self.device_data(images)
        missing = [c for c in todo if cache.load(cache_fields(c, train_data, test_data, "cpu"))
                   is None or c in self._measure_of and cache.load(measurement_fields(
                       c, train_data, test_data, "cpu", self._measure_of[c])) is None]
        self._considered.update(todo)
        if len(missing) < 2:
            return
        import torch
        from threadpoolctl import threadpool_limits

        if self._pool is None:
            self._pool = _new_pool(min(cores, len(missing)))
        if self._threads is None:
            self._threads = (torch.get_num_threads(), threadpool_limits(limits=1))
            torch.set_num_threads(1)
        # The jobs carry the images as torch tensors, which the pool's feeder thread pickles by
        # moving their storage to shared memory: done there, the move raced this thread reading
        # the same tensors (a segmentation fault). Moved here first, the feeder only shares them.
        for data in images:
            data.x.share_memory_()
            data.y.share_memory_()
        for c in sorted(missing, key=self._submission_order):
            self._pending[c] = self._pool.submit(
                _train_into_cache, (c, images, str(self.cache_dir), self.fresh,
                                    self._measure_of.get(c)))

    def _submission_order(self, config: TrainConfig) -> tuple:
        """The claims' own short runs first (their claims then measure while the workers train
        the shared runs), then the shared runs; longest first within each."""
        return (config in self._shared, -config.k * config.steps)

    def warm(self, workers: int) -> None:
        """Start ``workers`` worker processes now, before there are jobs: a spawned interpreter
        importing torch and the engine takes seconds, which they spend while this process is
        still collecting. Idle workers cost nothing; the pool closes with the session."""
        if self._pool is not None or workers < 2:
            return
        self._pool = _new_pool(workers)
        for _ in range(workers):   # each submission spawns a process while none is idle
            self._pool.submit(_ready)

    def wait(self, wanted: list[TrainConfig]) -> None:
        """Block until the workers hold none of ``wanted`` (a worker's error is raised here);
        when they hold nothing, close the pool and give this process its threads back."""
        for c in wanted:
            future = self._pending.get(c)
            if future is not None:
                keys = future.result()
                del self._pending[c]
                cache = self.cache()        # trained for this session: trusted under --fresh
                self.written.update(cache.entry(key) for key in keys)
        if not self._pending:
            self.shutdown()

    def reap(self) -> None:
        """Between tests: once the workers have trained everything they hold, give this process
        its threads back (their results, or errors, wait for the claims that read them)."""
        if self._pending and all(f.done() for f in self._pending.values()):
            self._restore_threads()

    def shutdown(self, cancel: bool = False) -> None:
        """Close the pool and restore this process's threads. ``cancel`` (the session's end, e.g.
        an interrupted one): stop the workers too, dropping every run not yet cached (a run is
        cached whole or not at all)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if cancel:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=cancel)
        self._pending.clear()
        self._restore_threads()

    def _restore_threads(self) -> None:
        if self._threads is not None:
            import torch

            (threads, blas), self._threads = self._threads, None
            torch.set_num_threads(threads)
            blas.restore_original_limits()


def _new_pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def _ready() -> None:
    """A warm worker's first job: nothing, once this module (torch, the engine) is imported."""


def _train_into_cache(job) -> tuple[str, ...]:
    """A worker's job: train one configuration into the cache, and measure it if its claim
    declared a measure; the cache keys written."""
    import torch

    from wd_claims.data import DeviceData

    config, (train_images, test_images), cache_dir, fresh, measure = job
    torch.set_num_threads(1)
    train_data = DeviceData.from_images(train_images)
    test_data = DeviceData.from_images(test_images)
    cache = Cache(cache_dir, fresh=fresh)
    result = train(config, train_data, test_data, device="cpu", cache=cache, progress=False)
    keys = (cache.key(cache_fields(config, train_data, test_data, "cpu")),)
    if measure is None:
        return keys
    fields = measurement_fields(config, train_data, test_data, "cpu", measure)
    if cache.load(fields) is None:
        cache.store(fields, measure_run(measure, result, train_data),
                    {"measurement": fields["measurement"]})
    return keys + (cache.key(fields),)


def measure_run(measure, result, train_data) -> dict:
    """``measure(result, train_data)``, plus ``run_augmented``: what the run's augmentation did
    (``TrainResult.augmented``), so that a cached measurement still says what ran."""
    return {**measure(result, train_data), "run_augmented": np.array(result.augmented),
            "run_flipped": np.array(result.flipped)}


def measurement_fields(config: TrainConfig, train_data, test_data, device: str, measure) -> dict:
    """What a measurement of a run depends on, as cache fields: the run's own, the function
    (its qualified name; its module's source and every module of this package, e.g. the probes
    it calls, so that an edit anywhere measures again) and the partial's arguments."""
    func = getattr(measure, "func", measure)
    digest = hashlib.sha256(inspect.getsource(sys.modules[func.__module__]).encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return {"measurement": f"{func.__module__}.{func.__qualname__}",
            "source_sha256": digest.hexdigest(),
            "arguments": repr((getattr(measure, "args", ()), getattr(measure, "keywords", {}))),
            "run": cache_fields(config, train_data, test_data, device)}
