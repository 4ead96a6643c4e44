"""The pytest plugin, the package's one ``pytest11`` entry point: every hook and fixture.

The machinery lives elsewhere, each part in one module: the options (:mod:`wd_claims.options`),
the :class:`~wd_claims.session.Session` kept in ``config.stash`` (budget, device, folders,
models, the run scheduler, the report collector), the claim interface (:mod:`wd_claims.claim`).
The plugin is inert until used: ``pytest_configure`` only registers markers, and the session is
opened when the command line names one of the options, in xdist sessions, or when collection
finds a claim. An unrelated project's pytest session with the package installed pays nothing.

Several processes at once: verdicts travel in ``item.user_properties``, so under pytest-xdist the
controller receives every worker's verdicts and alone writes the report; each worker uses
``cores // workers`` torch threads, and worker ``gwK`` narrows ``CUDA_VISIBLE_DEVICES`` to the
K-th listed GPU (:func:`wd_claims.machine.worker_gpu`)::

    CUDA_VISIBLE_DEVICES=0,1,2,3 pytest claims/ -n 4 --device cuda --budget full

On the CPU outside xdist the session's runs train in worker processes while the claims that train
nothing run first (:class:`wd_claims.scheduler.Scheduler`; docs/design.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wd_claims.claim import CLAIM_IDS, Claim, marker_name
from wd_claims.config import usable_cores
from wd_claims.machine import pin_worker_gpu
from wd_claims.options import add_options, asked_for

if TYPE_CHECKING:
    from wd_claims.session import Session

# The session's module (and with it the scheduler, the engine, torch) is imported only once the
# suite is used: an unrelated project's pytest session must not pay for it.
SESSION = pytest.StashKey["Session"]()
CLAIM_FIXTURES = frozenset({"claims_session", "record_verdict", "verify", "images", "probe_data",
                  "model_spec", "run_claim"})


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; open the session now only if the command line asked for it."""
    pin_worker_gpu()
    for cid in CLAIM_IDS:
        config.addinivalue_line("markers", f"{marker_name(cid)}: claim {cid} (docs/claims.md)")
    if asked_for(config):
        activate(config)


def activate(config: pytest.Config) -> Session:
    """The session of ``config``, opened once."""
    if SESSION not in config.stash:
        from wd_claims.session import open_session

        session = config.stash[SESSION] = open_session(config)
        if session.collector is not None:
            config.pluginmanager.register(_ReportHooks(config), "wd-claims-report")
    return config.stash[SESSION]


def _session(config: pytest.Config) -> Session | None:
    return config.stash.get(SESSION, None)


def claim_of(item: pytest.Item) -> Claim | None:
    """The claim an item verifies: its module's ``CLAIM`` (or, for ``parametrize_with_claims``,
    the claim module of its ``claim_check``)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    module = getattr(params.get("claim_check"), "__module__", None)
    if module is not None:
        import sys

        return getattr(sys.modules.get(module), "CLAIM", None)
    claim = getattr(getattr(item, "module", None), "CLAIM", None)
    return claim if isinstance(claim, Claim) else None


def claim_id(item: pytest.Item) -> str | None:
    claim = claim_of(item)
    if claim is not None:
        return claim.id
    return next((cid for cid in CLAIM_IDS if marker_name(cid) in item.keywords), None)


def _is_claim(item: pytest.Item) -> bool:
    return (claim_id(item) is not None
            or bool(CLAIM_FIXTURES & set(getattr(item, "fixturenames", ()))))


def _in_claims_package(path: Path) -> bool:
    import wd_claims.claims

    return any(Path(p).resolve() == path.resolve().parent for p in wd_claims.claims.__path__)


def trains_in_background(config: pytest.Config) -> bool:
    """Worker processes train while other claims run: on the CPU, not under xdist."""
    session = _session(config)
    return (session is not None and session.device == "cpu"
            and not hasattr(config, "workerinput")
            and not getattr(config.option, "numprocesses", None))


def may_train_in_background(config: pytest.Config) -> bool:
    """What :func:`trains_in_background` will say, known before the session is open."""
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None):
        return False
    device = config.getoption("--device", "auto")
    if device not in ("cpu", "auto") or usable_cores() < 2:
        return False
    if device == "auto":   # torch: the claim module about to be collected imports it anyway
        import torch

        return not torch.cuda.is_available()
    return True


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> None:
    """The first claim module of :mod:`wd_claims.claims` collected starts the worker processes:
    they import torch and the engine (≈ 3 s each) on the core this process's collection leaves
    idle; their jobs come when the first test starts."""
    config = parent.config
    if (file_path.suffix != ".py" or not file_path.name.startswith("test_")
            or not _in_claims_package(file_path) or not may_train_in_background(config)):
        return None
    session = activate(config)
    session.scheduler.warm(usable_cores())
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    """Open the session when a claim is collected; mark every claim's items with its marker
    (``-m c05``), before pytest's own selection reads the markers."""
    for item in items:
        claim = claim_of(item)
        if claim is not None and claim.marker not in item.keywords:
            item.add_marker(getattr(pytest.mark, claim.marker))
    if SESSION not in config.stash and any(_is_claim(item) for item in items):
        try:
            activate(config)
        except pytest.UsageError as exc:  # too late for argparse's path: a clean exit
            pytest.exit(f"wd-claims: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


def _stage(item: pytest.Item, session: Session) -> int:
    """0: trains nothing; 1: reads only its own runs (the workers train them first); 2: reads
    the shared runs (the workers' longest)."""
    from wd_claims.recipes import SHARED_BY

    cid = claim_id(item)
    training = session.scheduler.training
    return 0 if cid not in training else 2 if cid in SHARED_BY else 1


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """The selected claims (after -k/-m) go to the scheduler; on the CPU, the claims that train
    nothing run first, while the workers train."""
    claims_session = _session(session.config)
    if claims_session is None:
        return
    claims_session.select({cid: claim_of(item) for item in session.items
                           if (cid := claim_id(item)) is not None})
    if trains_in_background(session.config):
        session.items.sort(key=lambda item: _stage(item, claims_session))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_spec`` over the session's models: the --model ones, else those the
    claim declares, else the zoo."""
    if "model_spec" not in metafunc.fixturenames or "claim_check" in metafunc.fixturenames:
        return  # (claim_check: parametrize_with_claims already chose the models)
    from wd_claims.zoo import MODELS

    session = _session(metafunc.config)
    models = session.models if session is not None else MODELS
    claim = getattr(metafunc.module, "CLAIM", None)
    declared = claim.models if isinstance(claim, Claim) else None
    names = (list(session.user_models) if session is not None and session.user_models
             else list(declared or models))
    unknown = [n for n in names if n not in models]
    if unknown:  # a typo in a claim's models: say which names exist rather than KeyError
        pytest.fail(f"{metafunc.definition.nodeid}: unknown model(s) "
                    f"{', '.join(map(repr, unknown))}; the zoo has {', '.join(models)}",
                    pytrace=False)
    metafunc.parametrize("model_spec", [models[n] for n in names], ids=names)


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = _session(config)
    if session is None:
        return []
    lines = [f"wd-claims: budget {session.budget.name}, device {session.device_name}"]
    if session.data_note:
        lines.append(f"wd-claims: WARNING: {session.data_note}")
    return lines


def pytest_runtest_setup(item: pytest.Item) -> None:
    session = _session(item.config)
    if session is not None:
        session.scheduler.reap()   # the workers are done: this process gets its threads back


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """A claim handed a model with no scale-invariant tensor does not apply to it: skip, with
    the reason, rather than error."""
    if _session(pyfuncitem.config) is None:  # not a claim session: stay out of the way
        return (yield)
    from wd_claims.invariance import NoScaleInvariantTensor

    try:
        return (yield)
    except NoScaleInvariantTensor as exc:
        pytest.skip(f"the claim does not apply: {exc}")


# --- the report: the session's collector, fed by these hooks ----------------------------------

def _collector(config: pytest.Config):
    session = _session(config)
    return session.collector if session is not None else None


class _ReportHooks:
    """The report hooks (their hooks get no ``config``, so they are an object's methods,
    registered by :func:`activate` in the process that writes the report)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        collector = _collector(self.config)
        if collector is not None:
            collector.logreport(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        collector = _collector(self.config)
        if collector is not None:
            collector.collectreport(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        collector = _collector(self.config)
        if collector is not None:
            collector.finish(session, exitstatus)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int) -> None:
        collector = _collector(self.config)
        if collector is not None:
            collector.summary(terminalreporter, exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The worker pool closes with the session, used or not; an interrupted session stops its
    workers (a run is cached whole or not at all)."""
    session = _session(config)
    if session is not None:
        session.scheduler.shutdown(cancel=True)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def claims_session(pytestconfig: pytest.Config) -> Session:
    """The session's budget, device, data, models, scheduler and report."""
    return activate(pytestconfig)


def _resolve_or_skip(session: Session, n_train: int, n_test: int, require_real: bool):
    """(train, test) ImageData, or :func:`pytest.skip` with the reason."""
    from wd_claims.data import DataUnavailable
    from wd_claims.datasets import load

    try:
        return load(session.data_source, session.data_dir, download=session.download,
                    n_train=n_train, n_test=n_test, require_real=require_real)
    except DataUnavailable as exc:
        if session.data_source not in ("auto", "standin"):   # asked for by name: never skipped
            pytest.fail(f"--data {session.data_source}: {exc}", pytrace=False)
        if require_real:
            pytest.skip(f"needs real images at the {session.budget.name} budget: {exc}")
        pytest.skip(f"the CIFAR-10 folder given cannot be used, and a folder given explicitly is "
                    f"never replaced by the stand-in: {exc}")


@pytest.fixture(scope="session")
def images(claims_session: Session):
    """(train, test) :class:`~wd_claims.data.ImageData` for the budget. Skips the requesting claim,
    with the reason, when the budget needs CIFAR-10 and it cannot be had, or when a data folder
    was given and is broken."""
    b = claims_session.budget
    return _resolve_or_skip(claims_session, b.n_train, b.n_test, b.needs_cifar)


@pytest.fixture(scope="session")
def probe_data(claims_session: Session):
    """(x, y, data name): ``budget.probe_batch`` training images (CPU, float32, normalized) for the
    geometry probes. These hold for any input, so the stand-in serves when CIFAR-10 is absent (but
    not when a data folder was given and is broken: then the claim is skipped with the reason)."""
    from wd_claims.data import DeviceData

    train, _ = _resolve_or_skip(claims_session, claims_session.budget.probe_batch, 0,
                                require_real=False)
    batch = DeviceData.from_images(train)
    return batch.x, batch.y, batch.name


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest, claims_session: Session):
    """``record_verdict(verdict, measurements=None)``: decide, file, and raise the outcome
    (:meth:`wd_claims.session.Session.record`); returns only for a pass."""

    def record(verdict, measurements: dict | None = None):
        return claims_session.record(verdict, request.node, measurements)

    return record


@pytest.fixture
def verify(request: pytest.FixtureRequest, claims_session: Session):
    """``verify(__name__, model_spec, **params)``: the whole life of one verdict. The claim
    module measures (``measure(ctx, model)``), judges, presents and draws; the verdict is
    assembled (:func:`wd_claims.claim.assemble`), given its setting and figure, decided, filed,
    and ends the test with its outcome."""
    from wd_claims.claim import assemble, claim_module
    from wd_claims.collector import measurement_name
    from wd_claims.files import save_figure
    from wd_claims.session import Context

    def run(module, model_spec=None, **params):
        module = claim_module(module)
        ctx = Context(claims_session, request, params)
        m = module.measure(ctx, model_spec)
        verdict = assemble(module, m)
        if model_spec is not None:
            verdict.context.setdefault("model", model_spec.name)
        if ctx.configs:   # the data its runs trained on
            verdict.context.setdefault("data", ctx.data_name)
        draw = getattr(module, "figure", None)
        fig = draw(m, verdict) if draw is not None else None
        if fig is not None:
            import matplotlib.pyplot as plt

            name = measurement_name(verdict.id, verdict.context.get("model", ""))
            verdict.figures = [save_figure(fig, claims_session.report_dir, f"{name}.png")]
            plt.close(fig)
        verdict.setting = ctx.setting()
        return claims_session.record(verdict, request.node, measurements=m)

    return run


@pytest.fixture
def run_claim(request: pytest.FixtureRequest):
    """``run_claim(check, model_spec)`` runs a claim test function, resolving its other fixtures
    (``parametrize_with_claims``)."""
    import inspect

    def run(check, model_spec):
        kwargs = {p: model_spec if p == "model_spec" else request.getfixturevalue(p)
                  for p in inspect.signature(check).parameters}
        return check(**kwargs)

    return run


@pytest.fixture(autouse=True, scope="session")
def _workers_train_while_other_claims_run(request: pytest.FixtureRequest):
    """When the session's first test starts, hand every training run its selected claims will
    read to the worker processes; the claims that train nothing run meanwhile. At the end the
    pool is closed; an interrupted session's workers are stopped."""
    if not trains_in_background(request.config):   # e.g. no claim here: torch stays unimported
        yield
        return
    session = request.config.stash[SESSION]
    scheduler = session.scheduler
    if scheduler.selected & scheduler.training:
        models = sorted({item.callspec.params["model_spec"].name for item in request.session.items
                         if claim_id(item) in scheduler.training
                         and "model_spec" in getattr(getattr(item, "callspec", None), "params",
                                                     {})})
        try:
            images = request.getfixturevalue("images") if models else None
        except pytest.skip.Exception:   # the claims that need them skip with the reason
            models = []
        for model in models:
            scheduler.start(images, scheduler.session_configs(images, model))
    yield
    scheduler.shutdown(cancel=True)
