"""The training runs the dynamics claims (C4–C8) share, per budget, trained once per session.

Three runs, all ResNet-8 at the budget's width, plain SGD in the article's convention (λ of the loss
term λ‖w‖², PyTorch weight_decay = 2λ inside :mod:`wd_claims.train`):

- :func:`grid_config` — the Fig. 2 grid: every (η, λ) of ``budget.etas × budget.lams``, one run
  per seed. C5, C6, C7 and C8 read it; :func:`results` trains it once and memoizes it.
- :func:`starts_config` — the grid's middle (η, λ) started at ‖w₀‖ scaled by 1/4, 1 and 4, and the
  same three starts with λ = 0 (C4's spiral out, C5's control: no fixed point).
- :func:`momentum_config` — λ = 0 with momentum 0.9, a quarter of the steps (C4's control).

The grid is geometric with the same ratio in η and λ, so the anti-diagonals share ηλ (C7's
equal-ηλ comparison).

Two layers of reuse: this module's memo (one process) and the engine's disk cache (across
processes; ``--fresh`` ignores it).
"""

from __future__ import annotations

from wd_claims.config import Budget, usable_cores
from wd_claims.invariance import EXACT_EPS
from wd_claims.train import TrainConfig, TrainResult, train

START_SCALES = (0.25, 1.0, 4.0)    # ‖w₀‖ multipliers of the scale-invariant tensors (C4, C5)
MOMENTUM = 0.9                     # C4's control: the usual value


def _common(budget: Budget, seed: int, data_name: str, model: str) -> dict:
    return dict(steps=budget.steps, batch_size=budget.batch_size, model=model,
                width=budget.width, seed=seed, augment=budget.augment, data=data_name,
                n_train=budget.n_train, evaluate=budget.extra.get("evaluate_shared_runs", True),
                eval_images=budget.eval_images,
                freeze_non_invariant=bool(budget.extra.get("freeze_non_invariant", False)))


def grid_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8") -> TrainConfig:
    """K = len(etas)·len(lams) configurations; configuration k = i·len(lams) + j is (η_i, λ_j).
    Starts at ‖w₀‖ × ``budget.extra["grid_init_scale"]`` when the budget sets it (CPU budgets)."""
    pairs = [(e, lam) for e in budget.etas for lam in budget.lams]
    scale = budget.extra.get("grid_init_scale")
    return TrainConfig(etas=tuple(e for e, _ in pairs), lams=tuple(lam for _, lam in pairs),
                       init_scales=None if scale is None else (float(scale),) * len(pairs),
                       **_common(budget, seed, data_name, model))


def middle(budget: Budget) -> tuple[float, float]:
    """The grid's central (η, λ)."""
    return budget.etas[len(budget.etas) // 2], budget.lams[len(budget.lams) // 2]


def starts_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8"
                  ) -> TrainConfig:
    """Six configurations: (η, λ) then (η, 0), each from START_SCALES; η, λ = :func:`middle`."""
    eta, lam = middle(budget)
    n = len(START_SCALES)
    common = _common(budget, seed, data_name, model)
    # The grid's full length: the map alone relaxes in ~1/(8ηλ) steps, but x* moves while G
    # drifts early in training; a starts run of half the grid's length once left no settled
    # window (C5); at quick's 384 steps the ‖w₀‖×4 start settles by step ≈ 136.
    # Normalizations' eps ≈ 0 (EXACT_EPS): C4's identity Δ‖w‖² = η²‖g‖² needs ⟨g, w⟩ = 0, which
    # eps = 1e-5 breaks where ‖w‖ is small (measured at ‖w₀‖/4, ResNet-8 width 8: cos(g, w) =
    # −6e-5 on layer3's shortcut, 20× the float32 rounding the identity is held to).
    return TrainConfig(etas=(eta,) * 2 * n, lams=(lam,) * n + (0.0,) * n,
                       init_scales=START_SCALES * 2, norm_eps=EXACT_EPS, **common)


def momentum_config(budget: Budget, seed: int, data_name: str, model: str = "resnet8"
                    ) -> TrainConfig:
    """λ = 0, momentum 0.9, the middle η, the ‖w₀‖/4 start, a quarter of the steps."""
    eta, _ = middle(budget)
    common = _common(budget, seed, data_name, model)
    common["steps"] = max(8, budget.steps // 4)
    return TrainConfig(etas=(eta,), lams=(0.0,), momentum=MOMENTUM,
                       init_scales=(START_SCALES[0],), **common)


_MEMO: dict[tuple, TrainResult] = {}
_DATA: dict[tuple, object] = {}


def _device_data(images, device: str):
    """(train, test) as :class:`wd_claims.data.DeviceData`, converted once per session."""
    from wd_claims.data import DeviceData

    key = (id(images), device)
    if key not in _DATA:
        train_images, test_images = images
        _DATA[key] = (DeviceData.from_images(train_images, device),
                      DeviceData.from_images(test_images, device))
    return _DATA[key]


def _cache(suite):
    """The engine's disk cache under ``suite.cache_dir``; ``--fresh`` ignores older entries."""
    from wd_claims.cache import Cache

    return Cache(suite.cache_dir, fresh=suite.fresh)


def run(suite, images, config: TrainConfig) -> TrainResult:
    """Train ``config`` once per session (memo), through the engine's disk cache; a run the
    workers are training is waited for, not trained twice."""
    key = (config, suite.device)
    if key not in _MEMO:
        wait(suite, [config])
        train_data, test_data = _device_data(images, suite.device)
        _MEMO[key] = train(config, train_data, test_data, device=suite.device,
                           cache=_cache(suite), progress=True)
    return _MEMO[key]


MAKE = {"grid": grid_config, "starts": starts_config, "momentum": momentum_config}
SHARED_BY = frozenset({"C4", "C5", "C6", "C7", "C8"})   # the claims that read MAKE's runs


def configs(suite, images, which: str, model: str) -> list[TrainConfig]:
    """The run(s) of ``which`` for ``model``: one per seed for the grid, the first seed else."""
    seeds = suite.budget.seeds if which == "grid" else suite.budget.seeds[:1]
    return [MAKE[which](suite.budget, seed, images[0].name, model) for seed in seeds]


# Other claims' runs trained together with the shared ones (claim id → (suite, images, model) →
# configs), when that claim is in the session: one pool of workers, balanced (C9, C10 and E1
# register).
EXTRA: dict = {}
SELECTED: set[str] = set()   # claim ids of the session's selected tests (set by the plugin)
TRAINING: set[str] = set(SHARED_BY)   # the claims that read a run (EXTRA's join by register)
MEASURES: dict = {}          # claim id → budget → measure(result, train_data) → {name: array}
_MEASURE_OF: dict = {}       # config → its claim's measure, for the workers (session_configs)


def register(claim_id: str, make, measure=None) -> None:
    """Claim ``claim_id``'s runs (``make(suite, images, model)`` → configs) train with the
    shared ones, in the same workers. ``measure(budget)``, if given, returns the claim's pure
    measurement of one run (a picklable module-level function or partial of one: ``(result,
    train_data) → dict of arrays``), which the worker then computes right after training, into
    the cache (:func:`measured` reads it): this process holds the suite's longest chain of work
    once the workers are done (docs/performance.md), so a measurement it need not make is time
    off the whole session."""
    EXTRA[claim_id] = make
    TRAINING.add(claim_id)
    if measure is not None:
        MEASURES[claim_id] = measure


def session_configs(suite, images, model: str, shared: bool | None = None) -> list[TrainConfig]:
    """Every run the session's selected claims will ask for on ``model``: the shared runs if
    ``shared`` (default: when a claim of SHARED_BY is selected), and the EXTRA runs of the
    selected claims."""
    made = [c for w in MAKE for c in configs(suite, images, w, model)] if (
        shared or shared is None and SELECTED & SHARED_BY) else []
    _SHARED_CONFIGS.update(made)
    extra = []
    for cid, make in EXTRA.items():
        if cid in SELECTED:
            made_here = make(suite, images, model)
            extra += made_here
            if cid in MEASURES:
                _MEASURE_OF.update((c, MEASURES[cid](suite.budget)) for c in made_here)
    return made + extra


def results(suite, images, which: str = "grid", model: str = "resnet8") -> list[TrainResult]:
    """One :class:`TrainResult` per seed of the budget for ``which`` ∈ {grid, starts, momentum},
    of ``model`` (a wd_claims.zoo.MODELS name: the zoo's, or a --model factory's). The first call
    trains every shared run of the model that is not cached yet, in parallel (:func:`prefetch`),
    with the :data:`EXTRA` runs of the selected claims."""
    prefetch(suite, images, session_configs(suite, images, model, shared=True))
    return [run(suite, images, c) for c in configs(suite, images, which, model)]


# --- the worker processes ----------------------------------------------------------------------
#
# Why: at the quick budget a second torch thread adds little to one process (docs/performance.md),
# while two processes train two runs in the time of one. The plugin starts the session's runs
# when its first test starts (start, in the background) and orders the claims that train nothing
# first (C0–C3, E2), so that they run while the workers train; the parent drops to one torch
# thread and one BLAS thread meanwhile (three processes on two cores: OpenMP and OpenBLAS threads
# spin-waiting for a busy core made C0 4× slower) and gets them back once the workers are done.

_PREFETCHED: set[tuple] = set()      # (config, device, cache dir) already considered
_PENDING: dict[tuple, object] = {}   # the same key → the worker's Future (its cache key)
_POOL: list = []                     # the session's ProcessPoolExecutor while it trains
_THREADS: list[tuple] = []           # the parent's torch threads and BLAS limits before it
_SHARED_CONFIGS: set = set()         # the MAKE runs among those handed to the workers


def _key(suite, config: TrainConfig) -> tuple:
    return (config, suite.device, str(suite.cache_dir))


def prefetch(suite, images, wanted: list[TrainConfig]) -> None:
    """Train the configurations of ``wanted`` that are neither memoized nor cached, one process
    per core with one torch thread each, into the disk cache; return when they are in.

    Only on the CPU, only for zoo models (a --model factory lives in the user's process, and a
    spawned worker could not rebuild it), and only with ≥ 2 cores and ≥ 2 runs to train;
    otherwise the runs train one after another in this process, as before. The numbers are the
    engine's own (same code, same configuration, one thread), so the cache serves them as if
    this process had trained them."""
    start(suite, images, wanted)
    wait(suite, wanted)


def start(suite, images, wanted: list[TrainConfig]) -> None:
    """Hand the configurations of ``wanted`` that :func:`prefetch` would train to the worker
    pool (in :func:`_submission_order`) and return at once (:func:`wait` collects them)."""
    from wd_claims.zoo import MODELS, ZOO

    cores = usable_cores()
    todo = [c for c in wanted if (c, suite.device) not in _MEMO
            and _key(suite, c) not in _PREFETCHED]
    if (suite.device != "cpu" or (cores or 1) < 2 or len(todo) < 2
            or any(MODELS.get(c.model) is not ZOO.get(c.model) for c in todo)):
        return
    cache = _cache(suite)
    train_data, test_data = _device_data(images, suite.device)
    from wd_claims.train import cache_fields

    missing = [c for c in todo if cache.load(cache_fields(c, train_data, test_data, "cpu"))
               is None or c in _MEASURE_OF and cache.load(measurement_fields(
                   c, train_data, test_data, "cpu", _MEASURE_OF[c])) is None]
    _PREFETCHED.update(_key(suite, c) for c in todo)
    if len(missing) < 2:
        return
    import torch
    from threadpoolctl import threadpool_limits

    if not _POOL:
        _POOL.append(_new_pool(min(cores, len(missing))))
    if not _THREADS:
        _THREADS.append((torch.get_num_threads(), threadpool_limits(limits=1)))  # + numpy's BLAS
        torch.set_num_threads(1)
    # The jobs carry the images as torch tensors, which the pool's feeder thread pickles by
    # moving their storage to shared memory: done there, the move raced this thread reading the
    # same tensors (a segmentation fault when the session's first claim read its images at once,
    # e.g. `pytest claims/ -m c10`). Moved here first, the feeder only shares them.
    for data in images:
        data.x.share_memory_()
        data.y.share_memory_()
    for c in sorted(missing, key=_submission_order):
        _PENDING[_key(suite, c)] = _POOL[0].submit(
            _train_into_cache, (c, images, str(suite.cache_dir), suite.fresh,
                                _MEASURE_OF.get(c)))


def _new_pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def warm(workers: int) -> None:
    """Start ``workers`` worker processes now, before :func:`start` has jobs for them: a spawned
    interpreter importing torch and the engine takes seconds (≈ 3 s each here), which the plugin
    lets them spend while this process is still collecting the claims, one core busy and the
    other idle (docs/performance.md). Idle workers cost nothing; the pool closes with the session
    (:func:`shutdown`), used or not."""
    if _POOL or workers < 2:
        return
    pool = _new_pool(workers)
    for _ in range(workers):   # each submission spawns a process while none is idle
        pool.submit(_ready)
    _POOL.append(pool)


def _ready() -> None:
    """A warm worker's first job: nothing, once this module (torch, the engine) is imported."""


def _submission_order(config: TrainConfig) -> tuple:
    """The EXTRA claims' own short runs first (their claims then measure while the workers train
    the shared runs; the plugin orders them before C4–C8), then the shared runs; longest first
    (configurations × steps) within each, so that the workers finish together."""
    return (config in _SHARED_CONFIGS, -config.k * config.steps)


def wait(suite, wanted: list[TrainConfig]) -> None:
    """Block until the workers hold none of ``wanted`` any more (a worker's error is raised
    here); when they hold nothing at all, close the pool and give this process its threads
    back."""
    from wd_claims.cache import mark_written

    for c in wanted:
        future = _PENDING.get(_key(suite, c))
        if future is not None:
            keys = future.result()
            del _PENDING[_key(suite, c)]
            for key in keys:   # trained (and measured) for this session: trusted under --fresh
                mark_written(suite.cache_dir, key)
    if not _PENDING:
        shutdown()


def reap() -> None:
    """Between tests: once the workers have trained everything they hold, give this process its
    threads back (their results, or errors, wait for the claims that read them)."""
    if _PENDING and all(f.done() for f in _PENDING.values()):
        _restore_threads()


def shutdown(cancel: bool = False) -> None:
    """Close the worker pool and restore this process's torch threads. ``cancel`` (the end of a
    session, e.g. an interrupted one): stop the workers too, dropping every run not yet cached —
    waiting would keep a Ctrl-C'd session alive for minutes — and a run is cached whole or not at
    all (atomic writes, wd_claims.cache)."""
    if _POOL:
        pool = _POOL.pop()
        if cancel:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=cancel)
    _PENDING.clear()
    _restore_threads()


def _restore_threads() -> None:
    if _THREADS:
        import torch

        threads, blas = _THREADS.pop()
        torch.set_num_threads(threads)
        blas.restore_original_limits()


def _train_into_cache(job) -> tuple[str, ...]:
    """Worker of :func:`prefetch`: train one configuration into the cache, and measure it if
    its claim registered a measure; the cache keys written."""
    import torch

    from wd_claims.cache import Cache
    from wd_claims.data import DeviceData
    from wd_claims.train import cache_fields

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
        cache.store(fields, measure(result, train_data), {"measurement": fields["measurement"]})
    return keys + (cache.key(fields),)


def measurement_fields(config: TrainConfig, train_data, test_data, device: str, measure) -> dict:
    """What a measurement of a run depends on, as cache fields: the run's own, the function
    (its qualified name; its module's source and every module of this package, e.g. the probes
    it calls, so that an edit anywhere measures again) and the partial's arguments."""
    import hashlib
    import inspect
    import sys
    from pathlib import Path

    from wd_claims.train import cache_fields

    func = getattr(measure, "func", measure)
    digest = hashlib.sha256(inspect.getsource(sys.modules[func.__module__]).encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return {"measurement": f"{func.__module__}.{func.__qualname__}",
            "source_sha256": digest.hexdigest(),
            "arguments": repr((getattr(measure, "args", ()), getattr(measure, "keywords", {}))),
            "run": cache_fields(config, train_data, test_data, device)}


def measured(suite, images, config: TrainConfig, measure) -> dict:
    """``measure(result, train_data)`` of the run ``config``: the workers' (waited for), the
    cache's, or computed here (and cached) — the same function on the same run either way."""
    wait(suite, [config])
    train_data, test_data = _device_data(images, suite.device)
    cache = _cache(suite)
    fields = measurement_fields(config, train_data, test_data, suite.device, measure)
    hit = cache.load(fields)
    if hit is not None:
        return hit[0]
    arrays = measure(run(suite, images, config), train_data)
    cache.store(fields, arrays, {"measurement": fields["measurement"]})
    return arrays


# --- what the claims read off a run -----------------------------------------------------------

LATE = 0.25        # the last quarter of a run is its equilibrium window (≥ 2 relaxation times of
                   # the slowest configuration at every budget; see wd_claims.config)


def tensor_index(result: TrainResult, name: str | None = None) -> int:
    """Index along P of ``name`` (default: the joint column, last: all 3x3 kernels, Fig. 2's w,
    or every scale-invariant tensor of a model without 3x3 kernels; ``result.tensors[-1]``
    says which)."""
    return result.tensors.index(name) if name else len(result.tensors) - 1


def series(result: TrainResult, metric: str, p: int | None = None):
    """(K, T) float64 array of ``metric`` for tensor ``p`` (default: the joint column)."""
    return result.metrics[metric][:, :, tensor_index(result) if p is None else p]


def grad_norm_on_sphere(result: TrainResult, p: int | None = None):
    """(K, T): G_t = ‖g_t‖·‖w_t‖ = ‖∇L(u_t|B_t)‖ (C3: ∇L(w) = ∇L(u)/‖w‖)."""
    import numpy as np

    return series(result, "gnorm", p) * np.sqrt(series(result, "sqnorm", p))
