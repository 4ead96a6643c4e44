"""The pytest plugin: options, the ``suite`` and ``record_verdict`` fixtures, the report hook.

Registered through the ``pytest11`` entry point, so ``pytest claims/`` has it once the project is
installed. Options:

``--budget {smoke,quick,full}``   how much compute (default: quick on CPU, full on CUDA)
``--device {auto,cpu,cuda}``      where to run (auto: CUDA if available)
``--report-dir DIR``              where reports go (default: ``reports/`` under the rootdir)
``--data-dir DIR``/``--download`` CIFAR-10 (see :mod:`harness.data`)
``--fresh``                       ignore cached training runs
``--cache-dir DIR``               where cached training runs live (default ``.wd-cache/``)

Verdicts travel in ``item.user_properties`` so that under pytest-xdist the controller receives every
worker's verdicts and writes one report.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.config import BUDGETS, DEVICES, Budget
from harness.report import Verdict, utc_now, write_report

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
                    help="compute budget: smoke (seconds), quick (CPU default), full (CUDA default)")
    group.addoption("--device", choices=DEVICES, default="auto",
                    help="device to run on; auto picks CUDA when available")
    group.addoption("--report-dir", default=None,
                    help="directory for the markdown/JSON report (default: <rootdir>/reports)")
    group.addoption("--data-dir", default=None,
                    help="folder with torchvision's CIFAR-10 (default: $WD_CLAIMS_DATA)")
    group.addoption("--download", action="store_true", default=False,
                    help="allow torchvision to download CIFAR-10 into the data folder")
    group.addoption("--fresh", action="store_true", default=False,
                    help="ignore cached training runs (they are recomputed and re-cached)")
    group.addoption("--cache-dir", default=None,
                    help="directory of cached training runs (default: <rootdir>/.wd-cache)")


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
        return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else "unknown"
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

    return {"python": platform.python_version(), "torch": torch.__version__,
            "sympy": sympy.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(terse=True), "device": _device_name(device),
            "cpu_count": os.cpu_count(), "git_commit": _git_commit(root)}


def _set_threads() -> None:
    """Under xdist, share the cores: two torch processes each using every core slow each other
    down by one to two orders of magnitude here (DESIGN.md)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_configure(config: pytest.Config) -> None:
    for cid in CLAIM_IDS:
        config.addinivalue_line("markers", f"{marker_name(cid)}: claim {cid} of CLAIMS.md")
    config.addinivalue_line("markers", "models(*names): the zoo models a claim applies to")
    _set_threads()
    device = resolve_device(config.getoption("--device"))
    budget_name = config.getoption("--budget") or ("full" if device == "cuda" else "quick")
    root = Path(config.rootpath)
    report_dir = Path(config.getoption("--report-dir") or root / "reports")
    cache_dir = Path(config.getoption("--cache-dir") or root / ".wd-cache")
    if not hasattr(config, "workerinput"):  # the controller checks once, before any test runs
        _check_writable(report_dir, "report directory")
    from harness.data import data_dir_from_env, download_allowed

    config.stash[SUITE] = Suite(
        budget=BUDGETS[budget_name], device=device, device_name=_device_name(device),
        report_dir=report_dir, cache_dir=cache_dir,
        data_dir=data_dir_from_env(config.getoption("--data-dir")),
        download=download_allowed(config.getoption("--download")),
        fresh=config.getoption("--fresh"), provenance=provenance(root, device))
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportCollector(config, config.stash[SUITE]),
                                      "wd-claims-report")


SUITE = pytest.StashKey[Suite]()


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    """The session's budget, device, data and cache settings."""
    return pytestconfig.stash[SUITE]


@pytest.fixture(scope="session")
def images(suite: Suite):
    """(train, test) :class:`~harness.data.ImageData` for the budget. Skips the requesting claim,
    with the reason, when the budget needs CIFAR-10 and it cannot be had."""
    from harness.data import DataUnavailable, resolve

    b = suite.budget
    try:
        return resolve(suite.data_dir, download=suite.download, n_train=b.n_train,
                       n_test=b.n_test, require_real=b.needs_cifar)
    except DataUnavailable as exc:
        pytest.skip(f"needs CIFAR-10 at the {b.name} budget: {exc}")


@pytest.fixture(scope="session")
def probe_data(suite: Suite):
    """(x, y, data name): ``budget.probe_batch`` training images (CPU, float32, normalized) for the
    geometry probes. These hold for any input, so the stand-in serves when CIFAR-10 is absent."""
    from harness.data import DeviceData, resolve

    n = suite.budget.probe_batch
    train, _ = resolve(suite.data_dir, download=suite.download, n_train=n, n_test=0,
                       require_real=False)
    batch = DeviceData.from_images(train)
    return batch.x, batch.y, batch.name


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest, suite: Suite):
    """``record_verdict(verdict)`` files a :class:`Verdict` for the report and returns it."""

    def record(verdict: Verdict) -> Verdict:
        verdict.context = {**suite.context(), **verdict.context, "provenance": suite.provenance}
        verdict.test = request.node.nodeid
        request.node.user_properties.append((VERDICT_KEY, verdict.to_json()))
        return verdict

    return record


def _claim_id(item_keywords) -> str | None:
    for cid in CLAIM_IDS:
        if marker_name(cid) in item_keywords:
            return cid
    return None


class ReportCollector:
    """Gathers verdicts from test reports (the controller's, under xdist) and writes the report."""

    def __init__(self, config: pytest.Config, suite: Suite):
        self.config, self.suite = config, suite
        self.verdicts: dict[tuple, dict] = {}
        self.report_path: Path | None = None
        self.error: str = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == VERDICT_KEY:
                self.verdicts[(report.nodeid, value["id"], value.get("title", ""),
                               value.get("context", {}).get("model", ""))] = value
        if report.skipped and not any(k[0] == report.nodeid for k in self.verdicts):
            cid = _claim_id(report.keywords)
            if cid is not None:  # a claim skipped before it could file a verdict: say why
                self.verdicts[(report.nodeid, cid, "", "")] = self._skip_verdict(report, cid)

    def _skip_verdict(self, report: pytest.TestReport, cid: str) -> dict:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        name = report.nodeid.split("::")[-1]
        model = name.split("[", 1)[1].rstrip("]") if "[" in name else ""
        title = name.split("[")[0].removeprefix("test_").replace("_", " ")
        return Verdict(id=cid, title=title, status="skip", reason=reason.removeprefix("Skipped: "),
                       context=self.suite.context(model=model), test=report.nodeid).to_json()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.verdicts:
            return
        info = {"budget": self.suite.budget.name, "device": self.suite.device_name,
                "device_kind": self.suite.device, "started": self.suite.started,
                "finished": utc_now(), "provenance": self.suite.provenance,
                "budget_note": _budget_note(self.suite)}
        verdicts = [Verdict.from_json(v) for v in self.verdicts.values()]
        try:
            self.report_path = write_report(verdicts, info, self.suite.report_dir)
        except OSError as exc:  # e.g. a full disk: latest.* were replaced atomically or not at all
            self.error = f"the report could not be written to {self.suite.report_dir}: {exc}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int) -> None:
        if self.report_path is None and not self.error:
            return
        terminalreporter.write_sep("-", "weight-decay claims report")
        if self.error:
            terminalreporter.write_line(f"ERROR: {self.error}")
        else:
            terminalreporter.write_line(f"report: {self.report_path}")
            terminalreporter.write_line(f"latest: {self.report_path.parent / 'latest.md'}")


def _budget_note(suite: Suite) -> str:
    if suite.budget.name == "full":
        return ""
    return (f"This is the `{suite.budget.name}` budget on {suite.device}: smaller runs than the "
            "article's Fig. 2 (ResNet-8, CIFAR-10, 100 epochs). `tox -e gpu` runs the full budget.")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``model_spec`` over the zoo (restricted by a ``models(...)`` marker)."""
    if "model_spec" not in metafunc.fixturenames:
        return
    from harness.zoo import MODELS

    marker = metafunc.definition.get_closest_marker("models")
    names = list(marker.args) if marker else list(MODELS)
    metafunc.parametrize("model_spec", [MODELS[n] for n in names], ids=names)


def timed(fn, *args, **kw):
    """(result, seconds) of one call; for notes in a verdict."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0
