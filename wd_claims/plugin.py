"""The pytest plugin: options, the ``suite`` and ``record_verdict`` fixtures, the report hook.

Its parts: :mod:`wd_claims.machine` (device, threads, GPU per worker, provenance) and
:mod:`wd_claims.collector` (claim ids, the verdicts gathered from test reports, the report).

Registered through the ``pytest11`` entry point, so ``pytest claims/`` has it once the project is
installed. Options:

``--budget {smoke,quick,full}``   how much compute (default: quick on CPU, full on CUDA)
``--device {auto,cpu,cuda}``      where to run (auto: CUDA if available)
``--report-dir DIR``              where reports go (default: ``reports/`` in the current folder)
``--data-dir DIR``/``--download`` CIFAR-10 (see :mod:`wd_claims.data`)
``--fresh``                       ignore cached training runs
``--cache-dir DIR``               where cached training runs live (default ``.wd-cache/``)

Bad input fails before any claim runs, in one line: an unknown choice is argparse's usage error
naming the valid ones, ``--device cuda`` without CUDA and an unwritable report folder are
:class:`pytest.UsageError`. A data folder given explicitly but unusable is named in the header
and in the report; the claims that need it are skipped with the reason (never run on the stand-in).

Several processes at once. Verdicts travel in ``item.user_properties`` (JSON-able dicts), so under
pytest-xdist (``pytest claims/ -n 2``) the controller receives every worker's verdicts and alone
writes one report; each worker uses ``cores // workers`` torch threads. Two separate pytest
sessions sharing a report folder each write their own ``<time>-<device>-<budget>-<pid>.*``, and
``latest.*`` are replaced atomically, so each is a whole report of one of them.

One worker per GPU (the scale-out path): list the GPUs and start as many workers::

    CUDA_VISIBLE_DEVICES=0,1,2,3 pytest claims/ -n 4 --device cuda --budget full

Worker ``gwK`` narrows ``CUDA_VISIBLE_DEVICES`` to the K-th listed GPU (modulo their number)
before torch touches CUDA (:func:`wd_claims.machine.worker_gpu`), so every worker has a GPU of
its own and sees it as ``cuda:0``. Without a comma-separated ``CUDA_VISIBLE_DEVICES`` all workers
share the default GPU. Claims are distributed per test; ``--dist loadfile`` keeps a claim's models
on one GPU, which lets them share its cached training runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wd_claims.collector import (
    CLAIM_IDS,
    VERDICT_KEY,
    ReportCollector,
    claim_id,
    marker_name,
    measurement_name,
)
from wd_claims.config import BUDGETS, DEVICES, ENV_SHRINK, Budget, shrunk
from wd_claims.machine import (
    device_name,
    pin_worker_gpu,
    provenance,
    resolve_device,
    set_threads,
)
from wd_claims.report import Verdict, utc_now

# The scheduling of the training runs (workers train while other claims run): its own module
pytest_plugins = ["wd_claims.background"]

@dataclass
class Suite:
    """What every claim needs to know about this session."""

    budget: Budget
    device: str                    # "cpu" or "cuda"
    device_name: str               # human name of the processor / GPU
    report_dir: Path
    cache_dir: Path
    data_dir: Path | None
    download: bool
    fresh: bool
    provenance: dict = field(default_factory=dict)
    data_note: str = ""            # what is wrong with an explicitly given data folder, if visible
    started: str = field(default_factory=utc_now)

    def context(self, **extra) -> dict:
        """The ``context`` of a verdict: budget, device, provenance, plus claim-specific entries."""
        ctx = {"budget": self.budget.name, "device": self.device_name, "dtype": "float32",
               "seed": list(self.budget.seeds)}
        ctx.update(extra)
        ctx["provenance"] = self.provenance
        return ctx


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wd-claims", "weight-decay claims suite")
    group.addoption("--budget", choices=tuple(BUDGETS), default=None,
                    help="compute budget: smoke (seconds), quick (CPU default), "
                         "full (CUDA default)")
    group.addoption("--device", choices=DEVICES, default="auto",
                    help="device to run on; auto picks CUDA when available")
    group.addoption("--report-dir", default=None,
                    help="directory for the markdown/JSON report (default: ./reports)")
    group.addoption("--data-dir", default=None,
                    help="folder with torchvision's CIFAR-10 (default: $WD_CLAIMS_DATA)")
    group.addoption("--download", action="store_true", default=False,
                    help="allow torchvision to download CIFAR-10 into the data folder")
    group.addoption("--fresh", action="store_true", default=False,
                    help="ignore cached training runs (they are recomputed and re-cached)")
    group.addoption("--cache-dir", default=None,
                    help="directory of cached training runs (default: ./.wd-cache)")


def _check_writable(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(f"{what} {directory} is not writable ({exc.strerror or exc}); "
                                f"pass a writable directory") from exc


def _data_note(data_dir: Path | None, download: bool) -> str:
    """A warning for the header and the report when a data folder was given but is visibly
    unusable ("" otherwise; the md5 check waits until the data are loaded)."""
    from wd_claims.data import diagnose_data_dir

    problem = diagnose_data_dir(data_dir) if data_dir is not None and not download else ""
    if not problem:
        return ""
    return (f"the CIFAR-10 folder given is unusable ({problem}); claims that need data are "
            "skipped, not run on the stand-in. Fix the path or add --download.")


OPTIONS = ("--budget", "--device", "--report-dir", "--data-dir", "--download", "--fresh",
           "--cache-dir", "--model", "--model-input")


def _asked_for(config: pytest.Config) -> bool:
    """Did this session ask for the suite up front: one of its options on the command line, or
    xdist workers (the controller collects nothing, so it cannot wait to see claims)?"""
    args = [str(a).split("=", 1)[0] for a in config.invocation_params.args]
    return any(a in OPTIONS for a in args) or hasattr(config, "workerinput") or bool(
        getattr(config.option, "numprocesses", None))


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; set the suite up now only if the session asked for it. Otherwise
    the plugin stays inert (no torch import, no report folder, no git) until a claim is
    collected (:func:`pytest_collection_modifyitems`): installed, it costs an unrelated
    project's pytest nothing."""
    pin_worker_gpu()
    for cid in CLAIM_IDS:
        config.addinivalue_line("markers", f"{marker_name(cid)}: claim {cid} (docs/claims.md)")
    config.addinivalue_line("markers", "models(*names): the zoo models a claim applies to")
    if _asked_for(config):
        activate(config)


CLAIM_FIXTURES = {"suite", "record_verdict", "images", "probe_data", "model_spec", "run_claim"}


def _is_claim(item: pytest.Item) -> bool:
    return (claim_id(item.keywords) is not None
            or bool(CLAIM_FIXTURES & set(getattr(item, "fixturenames", ()))))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    if SUITE not in config.stash and any(_is_claim(item) for item in items):
        try:
            activate(config)
        except pytest.UsageError as exc:  # too late for argparse's path: a clean exit
            pytest.exit(f"wd-claims: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell :mod:`wd_claims.runs` which claims this session runs (after -k/-m deselection), so
    that it trains other claims' runs with the shared ones only when they are wanted."""
    if SUITE in session.config.stash:
        from wd_claims import runs

        runs.SELECTED.clear()
        runs.SELECTED.update(cid for item in session.items
                             if (cid := claim_id(item.keywords)) is not None)


def activate(config: pytest.Config) -> Suite:
    """Resolve the session's device, budget, folders and provenance once, and register the
    report writer (idempotent). Bad input is a :class:`pytest.UsageError` naming the fix."""
    if SUITE in config.stash:
        return config.stash[SUITE]
    set_threads()
    device = resolve_device(config.getoption("--device"))
    budget_name = config.getoption("--budget") or ("full" if device == "cuda" else "quick")
    root = Path(config.rootpath)
    report_dir = Path(config.getoption("--report-dir") or Path.cwd() / "reports")
    cache_dir = Path(config.getoption("--cache-dir") or Path.cwd() / ".wd-cache")
    if not hasattr(config, "workerinput"):  # the controller checks once, before any test runs
        _check_writable(report_dir, "report directory")
        if config.getoption("--cache-dir"):  # the default is created lazily
            _check_writable(cache_dir, "cache directory")
    from wd_claims.data import data_dir_from_env, download_allowed

    data_dir = data_dir_from_env(config.getoption("--data-dir"))
    download = download_allowed(config.getoption("--download"))
    budget = BUDGETS[budget_name]
    if os.environ.get(ENV_SHRINK):
        import json

        try:
            budget = shrunk(budget, json.loads(os.environ[ENV_SHRINK]))
        except ValueError as exc:   # json's errors are ValueErrors too
            raise pytest.UsageError(f"{ENV_SHRINK}: {exc}") from exc
    suite = config.stash[SUITE] = Suite(
        budget=budget, device=device, device_name=device_name(device),
        report_dir=report_dir, cache_dir=cache_dir, data_dir=data_dir, download=download,
        fresh=config.getoption("--fresh"), provenance=provenance(root, device),
        data_note=_data_note(data_dir, download))
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportCollector(config, suite), "wd-claims-report")
    return suite


SUITE = pytest.StashKey[Suite]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    suite = config.stash.get(SUITE, None)
    if suite is None:
        return []
    lines = [f"wd-claims: budget {suite.budget.name}, device {suite.device_name}"]
    if suite.data_note:
        lines.append(f"wd-claims: WARNING: {suite.data_note}")
    return lines


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    """The session's budget, device, data and cache settings."""
    return activate(pytestconfig)


def _resolve_or_skip(suite: Suite, n_train: int, n_test: int, require_real: bool):
    """(train, test) ImageData, or :func:`pytest.skip` with the reason (see :func:`images`)."""
    from wd_claims.data import DataUnavailable, resolve

    try:
        return resolve(suite.data_dir, download=suite.download, n_train=n_train, n_test=n_test,
                       require_real=require_real)
    except DataUnavailable as exc:
        if require_real:
            pytest.skip(f"needs CIFAR-10 at the {suite.budget.name} budget: {exc}")
        pytest.skip(f"the CIFAR-10 folder given cannot be used, and a folder given explicitly is "
                    f"never replaced by the stand-in: {exc}")


@pytest.fixture(scope="session")
def images(suite: Suite):
    """(train, test) :class:`~wd_claims.data.ImageData` for the budget. Skips the requesting claim,
    with the reason, when the budget needs CIFAR-10 and it cannot be had, or when a data folder
    was given and is broken."""
    b = suite.budget
    return _resolve_or_skip(suite, b.n_train, b.n_test, b.needs_cifar)


@pytest.fixture(scope="session")
def probe_data(suite: Suite):
    """(x, y, data name): ``budget.probe_batch`` training images (CPU, float32, normalized) for the
    geometry probes. These hold for any input, so the stand-in serves when CIFAR-10 is absent (but
    not when a data folder was given and is broken: then the claim is skipped with the reason)."""
    from wd_claims.data import DeviceData

    train, _ = _resolve_or_skip(suite, suite.budget.probe_batch, 0, require_real=False)
    batch = DeviceData.from_images(train)
    return batch.x, batch.y, batch.name


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """A claim handed a model with no scale-invariant tensor (the engine raises
    :class:`~wd_claims.invariance.NoScaleInvariantTensor`) does not apply to it: skip, with the
    reason, rather than error."""
    if SUITE not in pyfuncitem.config.stash:  # not a claim session: stay out of the way
        return (yield)
    from wd_claims.invariance import NoScaleInvariantTensor

    try:
        return (yield)
    except NoScaleInvariantTensor as exc:
        pytest.skip(f"the claim does not apply: {exc}")


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest, suite: Suite):
    """``record_verdict(verdict)`` decides the verdict's status from its checks
    (:func:`wd_claims.judge.decide`, against the declared expected failures), files it for the
    report, and ends the test with the matching pytest outcome (:func:`wd_claims.judge.outcome`):
    it returns only for a pass. A verdict without checks keeps the status it was given (a skip:
    nothing was measured); a claim never sets pass, fail or xfail itself."""
    from wd_claims.judge import decide, outcome

    def record(verdict: Verdict, measurements: dict | None = None) -> Verdict:
        if not isinstance(verdict, Verdict):
            raise TypeError(f"record_verdict takes a wd_claims.report.Verdict, got "
                            f"{type(verdict).__name__}")
        import torch

        # the threads in force while it measured (one while the workers train, wd_claims.runs):
        # float rounding, hence a chaotic run's last digits, depends on it
        verdict.context = {**suite.context(), **verdict.context,
                           "torch_threads": torch.get_num_threads(),
                           "provenance": suite.provenance}
        if verdict.checks:
            verdict.status, decided = decide(verdict.id, verdict.checks, verdict.conditions,
                                             suite.budget.name, verdict.context.get("model", ""))
            verdict.reason = decided or verdict.reason
        verdict.test = request.node.nodeid
        if measurements is not None:  # what the judge saw, for a reviewer and the fault tests
            from wd_claims.report import save_measurements

            verdict.measurements = save_measurements(
                suite.report_dir, measurement_name(verdict.id, verdict.context.get("model", "")),
                measurements)
        request.node.user_properties.append((VERDICT_KEY, verdict.to_json()))
        if verdict.checks:
            outcome(verdict.status, verdict.reason)
        return verdict

    return record


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_spec`` over the zoo (restricted by a ``models(...)`` marker)."""
    if "model_spec" not in metafunc.fixturenames or "claim_check" in metafunc.fixturenames:
        return  # (claim_check: parametrize_with_claims already chose the models)
    from wd_claims.suite import SELECTED
    from wd_claims.zoo import MODELS

    marker = metafunc.definition.get_closest_marker("models")
    if SELECTED:  # --model: the user's models only
        names = list(SELECTED)
    else:
        names = list(marker.args) if marker else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:  # a typo in a models(...) marker: say which names exist rather than KeyError
        pytest.fail(f"{metafunc.definition.nodeid}: unknown model(s) "
                    f"{', '.join(map(repr, unknown))} in models(...); the zoo has "
                    f"{', '.join(MODELS)}", pytrace=False)
    metafunc.parametrize("model_spec", [MODELS[n] for n in names], ids=names)

