"""The pytest plugin: options, the ``suite`` and ``record_verdict`` fixtures, the report hook.

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
before torch touches CUDA (:func:`worker_gpu`), so every worker has a GPU of its own and sees it
as ``cuda:0``. Without a comma-separated ``CUDA_VISIBLE_DEVICES`` all workers share the default
GPU. Claims are distributed per test; ``--dist loadfile`` keeps a claim's models on one GPU, which
lets them share its cached training runs.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wd_claims.config import BUDGETS, DEVICES, ENV_SHRINK, Budget, shrunk
from wd_claims.report import Verdict, utc_now, write_report

# The scheduling of the training runs (workers train while other claims run): its own module
pytest_plugins = ["wd_claims.background"]

CLAIM_IDS = tuple(f"C{i}" for i in range(11)) + ("E1", "E2", "E3")
VERDICT_KEY = "wd_claims_verdict"


def marker_name(claim_id: str) -> str:
    """C5 → ``c05``, E1 → ``e01`` (the ids used by ``-m`` and in module names)."""
    return f"{claim_id[0].lower()}{int(claim_id[1:]):02d}"


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


def resolve_device(choice: str) -> str:
    """``auto``/``cpu``/``cuda`` → ``cpu`` or ``cuda``; :class:`pytest.UsageError` if impossible."""
    import torch

    if choice not in DEVICES:
        raise pytest.UsageError(f"--device {choice!r}: choose one of {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: no CUDA device is available to torch "
                                f"{torch.__version__}; run with --device cpu (or auto)")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def _check_writable(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(f"{what} {directory} is not writable ({exc.strerror or exc}); "
                                f"pass a writable directory") from exc


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if out.returncode != 0:
            return "unknown"
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(root: Path, device: str) -> dict:
    """Versions, hardware and commit. Never environment variables or paths outside the project."""
    import numpy
    import sympy
    import torch

    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "sympy": str(sympy.__version__), "numpy": str(numpy.__version__),
            "platform": platform.platform(terse=True), "device": _device_name(device),
            "cpu_count": os.cpu_count(), "git_commit": _git_commit(root)}


def thread_count(environ=os.environ, cpu_count: int | None = None) -> int | None:
    """Torch threads for this process, or None to keep torch's default (every core).

    ``WD_CLAIMS_THREADS=N`` wins (on a machine shared with other jobs, OpenMP threads spin-waiting
    for busy cores made claims 5–10× slower; 1 avoids it); under xdist each worker gets
    ``cores // workers``: two torch processes each using every core slow each other down by one
    to two orders of magnitude (docs/design.md).
    """
    requested = environ.get(ENV_THREADS, "").strip()
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise pytest.UsageError(f"{ENV_THREADS}={requested!r}: expected a positive integer")
        return int(requested)
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        return max(1, (cpu_count or os.cpu_count() or 1) // workers)
    return None


ENV_THREADS = "WD_CLAIMS_THREADS"


def _set_threads() -> None:
    threads = thread_count()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def worker_gpu(visible: str | None, worker_id: str | None) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` an xdist worker should use: the ``K``-th entry (modulo their
    number) of a comma-separated list for worker ``gwK``; ``None`` (leave it alone) otherwise."""
    if not visible or not worker_id or not worker_id.startswith("gw"):
        return None
    gpus = [g.strip() for g in visible.split(",") if g.strip()]
    if len(gpus) < 2 or not worker_id[2:].isdigit():
        return None
    return gpus[int(worker_id[2:]) % len(gpus)]


def _pin_worker_gpu() -> None:
    """Give this xdist worker one GPU of its own (see the module docstring). Must run before torch
    initialises CUDA, i.e. first thing in :func:`pytest_configure`."""
    gpu = worker_gpu(os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("PYTEST_XDIST_WORKER"))
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


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
    _pin_worker_gpu()
    for cid in CLAIM_IDS:
        config.addinivalue_line("markers", f"{marker_name(cid)}: claim {cid} (docs/claims.md)")
    config.addinivalue_line("markers", "models(*names): the zoo models a claim applies to")
    if _asked_for(config):
        activate(config)


CLAIM_FIXTURES = {"suite", "record_verdict", "images", "probe_data", "model_spec", "run_claim"}


def _is_claim(item: pytest.Item) -> bool:
    return (_claim_id(item.keywords) is not None
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
                             if (cid := _claim_id(item.keywords)) is not None)


def activate(config: pytest.Config) -> Suite:
    """Resolve the session's device, budget, folders and provenance once, and register the
    report writer (idempotent). Bad input is a :class:`pytest.UsageError` naming the fix."""
    if SUITE in config.stash:
        return config.stash[SUITE]
    _set_threads()
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
        budget=budget, device=device, device_name=_device_name(device),
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


def measurement_name(claim_id: str, model: str) -> str:
    """File stem of a verdict's recorded measurements: ``C5-resnet8``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{claim_id}-{model}" if model else claim_id)


def _claim_id(item_keywords) -> str | None:
    for cid in CLAIM_IDS:
        if marker_name(cid) in item_keywords:
            return cid
    return None


def _failure_message(report: pytest.TestReport, limit: int = 300) -> str:
    """The first line of a failed report's error (``AssertionError: …``), cut at ``limit``."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    first = lines[0] if lines else "failed"
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _verdict_key(nodeid: str, value: dict) -> tuple:
    return (nodeid, value.get("id", ""), value.get("title", ""),
            value.get("context", {}).get("model", ""))


class ReportCollector:
    """Gathers verdicts from test reports (the controller's, under xdist) and writes the report.

    The report never disagrees with pytest: a claim that fails its test is "fail" in the report
    even if it filed a passing verdict first, and one that fails or is skipped before filing any
    verdict still gets a line saying why.
    """

    def __init__(self, config: pytest.Config, suite: Suite):
        self.config, self.suite = config, suite
        self.verdicts: dict[tuple, dict] = {}
        self.report_path: Path | None = None
        self.error: str = ""
        self.collect_errors = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        filed = {_verdict_key(report.nodeid, value): value
                 for key, value in report.user_properties if key == VERDICT_KEY}
        for key, value in filed.items():  # setup/call/teardown reports repeat them: first wins
            self.verdicts.setdefault(key, value)
        mine = [v for k, v in self.verdicts.items() if k[0] == report.nodeid]
        cid = _claim_id(report.keywords)
        if report.failed:
            message = _failure_message(report)
            for v in mine:
                if v["status"] in ("pass", "skip"):  # the test says otherwise: it wins
                    v["status"] = "fail"
                    v["reason"] = f"the test failed after filing this verdict: {message}"
            if not mine and cid is not None:
                self.verdicts[(report.nodeid, cid, "", "")] = self._bare_verdict(
                    report, cid, "fail", f"the test failed before filing a verdict ({report.when}):"
                                         f" {message}")
        elif report.skipped and not mine and cid is not None:
            if hasattr(report, "wasxfail"):
                status, reason = "xfail", report.wasxfail or "expected failure"
            else:
                longrepr = report.longrepr
                reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
                status, reason = "skip", reason.removeprefix("Skipped: ")
            self.verdicts[(report.nodeid, cid, "", "")] = self._bare_verdict(
                report, cid, status, reason)
        elif report.passed and report.when == "call":
            for v in mine:
                if v["status"] == "fail" and "test passed" not in v["reason"]:
                    v["reason"] = (v["reason"] + " " if v["reason"] else "") + (
                        "(but the test passed: it does not assert its verdict)")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A claim module that cannot even be imported is a failed claim, not a missing line."""
        if not report.failed:
            return
        self.collect_errors += 1
        match = re.search(r"test_([ce])(\d+)_\w*\.py", report.nodeid)
        if match is None:
            return
        cid = f"{match[1].upper()}{int(match[2])}"
        self.verdicts[(report.nodeid, cid, "", "")] = Verdict(
            id=cid, title=report.nodeid.rsplit("/", 1)[-1], status="fail",
            reason=f"the claim module could not be collected: {_failure_message(report)}",
            context=self.suite.context(), test=report.nodeid).to_json()

    def _bare_verdict(self, report: pytest.TestReport, cid: str, status: str,
                      reason: str) -> dict:
        """The verdict of a claim that filed none: its name, the status and why."""
        name = report.nodeid.split("::")[-1]
        model = name.split("[", 1)[1].rstrip("]") if "[" in name else ""
        title = name.split("[")[0].removeprefix("test_").replace("_", " ")
        return Verdict(id=cid, title=title, status=status, reason=reason,
                       context=self.suite.context(model=model), test=report.nodeid).to_json()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.verdicts:
            return
        info = {"budget": self.suite.budget.name, "device": self.suite.device_name,
                "device_kind": self.suite.device, "started": self.suite.started,
                "finished": utc_now(), "provenance": self.suite.provenance,
                "budget_note": _budget_note(self.suite), "data_note": self.suite.data_note,
                "incomplete": _incomplete(session, exitstatus, self.collect_errors)}
        verdicts = [Verdict.from_json(v) for v in self.verdicts.values()]
        try:
            self.report_path = write_report(verdicts, info, self.suite.report_dir)
        except OSError as exc:  # e.g. a full disk: the previous latest.* are left as they were
            self.error = (f"the report could not be written to {self.suite.report_dir}: {exc}; "
                          "the previous reports are unchanged")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int) -> None:
        if self.report_path is None and not self.error:
            return
        terminalreporter.write_sep("-", "weight-decay claims report")
        if self.suite.data_note:  # the header said it too, but -q hides the header
            terminalreporter.write_line(f"WARNING: {self.suite.data_note}", yellow=True)
        if self.error:
            terminalreporter.write_line(f"ERROR: {self.error}", red=True)
        else:
            terminalreporter.write_line(f"report: {self.report_path}")
            terminalreporter.write_line(f"latest: {self.report_path.parent / 'latest.md'}")


def _incomplete(session: pytest.Session, exitstatus: int, collect_errors: int) -> str:
    """Why the run stopped early ("" if it did not)."""
    if exitstatus == pytest.ExitCode.INTERRUPTED and collect_errors:
        return f"{collect_errors} module(s) could not be collected, so no claim ran."
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "the run was interrupted (Ctrl-C / SIGINT) before every claim had run."
    if session.shouldstop or session.shouldfail:
        return f"the run stopped early ({session.shouldstop or session.shouldfail})."
    return ""


def _budget_note(suite: Suite) -> str:
    if "shrunk" in suite.budget.extra:
        return (f"The `{suite.budget.name}` budget SHRUNK FOR TESTING ({ENV_SHRINK}="
                f"{suite.budget.extra['shrunk']}): its code path, not its statistics. No verdict "
                "here stands for the article.")
    if suite.budget.name == "full":
        return ""
    return (f"This is the `{suite.budget.name}` budget on {suite.device}: smaller runs than the "
            "article's Fig. 2 (ResNet-8, CIFAR-10, 100 epochs). `tox -e gpu` runs the full budget.")


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

