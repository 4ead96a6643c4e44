"""One claims session: what every claim needs to know, owned by one object in ``config.stash``.

:class:`Session` holds the budget, the device, the folders, the models (the frozen zoo and the
session's own ``--model`` factories), the selected claims, the run :class:`~wd_claims.scheduler.
Scheduler` and the report :class:`~wd_claims.collector.ReportCollector`. :func:`open_session`
builds it from the command line (bad input is a :class:`pytest.UsageError` naming the fix), and
:class:`Context` is what a claim's ``measure(ctx, model)`` sees of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest

from wd_claims.claim import Claim
from wd_claims.collector import VERDICT_KEY, ReportCollector, measurement_name
from wd_claims.config import BUDGETS, ENV_SHRINK, Budget, shrunk
from wd_claims.files import save_measurements, utc_now
from wd_claims.machine import device_name, provenance, resolve_device, set_threads
from wd_claims.scheduler import ClaimRuns, Scheduler
from wd_claims.verdict import Verdict


@dataclass
class Session:
    """What every claim needs to know about this session, and the session's moving parts."""

    budget: Budget
    device: str                    # "cpu" or "cuda"
    device_name: str               # human name of the processor / GPU
    report_dir: Path
    cache_dir: Path
    data_dir: Path | None
    download: bool
    fresh: bool
    models: MappingProxyType       # name → ModelSpec: the zoo, then the session's --model ones
    user_models: tuple[str, ...] = ()   # the --model names: the claims run on these only
    provenance: dict = field(default_factory=dict)
    data_note: str = ""            # what is wrong with an explicitly given data folder, if visible
    data_source: str = "auto"      # --data (wd_claims.datasets.SOURCES or MODULE:FACTORY)
    started: str = field(default_factory=utc_now)
    scheduler: Scheduler | None = None
    collector: ReportCollector | None = None   # None in an xdist worker (the controller writes)

    def context(self, **extra) -> dict:
        """The ``context`` of a verdict: budget, device, provenance, plus claim-specific entries."""
        ctx = {"budget": self.budget.name, "device": self.device_name, "dtype": "float32",
               "seed": list(self.budget.seeds)}
        ctx.update(extra)
        ctx["provenance"] = self.provenance
        return ctx

    def select(self, claims: dict[str, Claim | None]) -> None:
        """The session's selected claims (after -k/-m deselection): their ids, and their own runs
        for the scheduler to train with the shared ones."""
        self.scheduler.selected = set(claims)
        self.scheduler.claims = {cid: ClaimRuns(c.runs, c.run_measure)
                                 for cid, c in claims.items() if c is not None and c.runs}

    def record(self, verdict: Verdict, node: pytest.Item, measurements: dict | None = None
               ) -> Verdict:
        """Decide ``verdict``'s status from its checks (against the declared expected failures),
        file it for the report (with its measurements), and raise the matching pytest outcome:
        returns only for a pass. A verdict without checks keeps its status (a skip)."""
        from wd_claims.judge import decide, outcome

        if not isinstance(verdict, Verdict):
            raise TypeError(f"record_verdict takes a wd_claims.verdict.Verdict, got "
                            f"{type(verdict).__name__}")
        import torch

        # the threads in force while it measured (one while the workers train): float rounding,
        # hence a chaotic run's last digits, depends on it
        verdict.context = {**self.context(), **verdict.context,
                           "torch_threads": torch.get_num_threads(),
                           "provenance": self.provenance}
        if verdict.checks:
            verdict.status, decided = decide(verdict.id, verdict.checks, verdict.conditions,
                                             self.budget.name, verdict.context.get("model", ""))
            verdict.reason = decided or verdict.reason
        verdict.test = node.nodeid
        if measurements is not None:   # what the judge saw, for a reviewer and the fault tests
            verdict.measurements = save_measurements(
                self.report_dir, measurement_name(verdict.id, verdict.context.get("model", "")),
                measurements)
        node.user_properties.append((VERDICT_KEY, verdict.to_json()))
        if verdict.checks:
            outcome(verdict.status, verdict.reason)
        return verdict


@dataclass
class Context:
    """What a claim's ``measure(ctx, model)`` sees of the session: the budget, the data, the
    shared and own runs (memoized, cached, trained ahead by the workers), and where it records
    what its verdict stands on. One per verified (claim, model)."""

    session: Session
    request: pytest.FixtureRequest
    params: dict = field(default_factory=dict)     # a claim's own parameters (E2's optimizer)
    configs: list = field(default_factory=list)    # the runs read, for the setting
    augmented: dict = field(default_factory=dict)  # config → measured (changed, flipped) fractions
    _extra: dict = field(default_factory=dict)
    _setting: dict | None = None

    @property
    def budget(self) -> Budget:
        return self.session.budget

    @property
    def device(self) -> str:
        return self.session.device

    @property
    def images(self):
        """(train, test) ImageData for the budget; skips the claim, with the reason, when they
        cannot be had (the ``images`` fixture)."""
        return self.request.getfixturevalue("images")

    @property
    def probe_data(self):
        """(x, y, data name): the geometry probes' batch (the ``probe_data`` fixture)."""
        return self.request.getfixturevalue("probe_data")

    @property
    def data_name(self) -> str:
        return self.images[0].name

    @property
    def train_data(self):
        """The training images as DeviceData on the session's device (converted once)."""
        return self.session.scheduler.device_data(self.images)[0]

    def results(self, which: str, model: str) -> list:
        """The shared runs ``which`` ∈ {grid, starts, momentum} of ``model``, one per seed, each
        without the configurations that died or diverged (:mod:`wd_claims.collapse`), which the
        setting names (``excluded``)."""
        from wd_claims.collapse import within_domain

        out = []
        for result in self.session.scheduler.results(self.images, which, model):
            kept, excluded = within_domain(result)
            out.append(kept)
            if excluded:
                said = [*self._extra.get("excluded", []), *excluded]
                self._extra["excluded"] = list(dict.fromkeys(said))
        self.configs += [r.config for r in out]
        self.augmented.update((r.config, (r.augmented, r.flipped)) for r in out)
        return out

    def run(self, config) -> object:
        """The result of training ``config`` (the workers', the cache's, or trained here)."""
        result = self.session.scheduler.run(self.images, config)
        self.configs.append(result.config)
        self.augmented[result.config] = (result.augmented, result.flipped)
        return result

    def measured(self, config, measure) -> dict:
        """``measure(result, train_data)`` of the run ``config`` (computed once, cached)."""
        self.configs.append(config)
        arrays = dict(self.session.scheduler.measured(self.images, config, measure))
        self.augmented[config] = (float(arrays.pop("run_augmented")),
                                  float(arrays.pop("run_flipped", float("nan"))))
        return arrays

    def describe(self, **extra) -> None:
        """Entries added to the setting of every run this claim read (e.g. ``w=…``)."""
        self._extra.update(extra)

    def stands_on(self, setting: dict) -> None:
        """The verdict's setting, given whole (a probe, or a run outside the engine)."""
        self._setting = setting

    def stands_on_runs(self, results) -> None:
        """The verdict's setting: these runs' alone (not every run the claim read), with what
        their augmentation did and the entries :meth:`describe` and :meth:`results` added."""
        from wd_claims import setting

        self._setting = setting.merge([setting.of_run(r.config, self.data_name, r.augmented,
                                                      r.flipped, **self._extra)
                                       for r in results])

    def setting(self) -> dict:
        from wd_claims import setting

        if self._setting is not None:
            return self._setting
        data = self.data_name if self.configs else ""
        return setting.merge([setting.of_run(c, data, *self.augmented.get(c, (None,)),
                                             **self._extra)
                              for c in dict.fromkeys(self.configs)])


def open_session(config: pytest.Config) -> Session:
    """Resolve the session's device, budget, folders, models and provenance once. Bad input is a
    :class:`pytest.UsageError` naming the fix."""
    from wd_claims.data import data_dir_from_env, download_allowed
    from wd_claims.suite import user_models
    from wd_claims.zoo import MODELS

    set_threads()
    device = resolve_device(config.getoption("--device"))
    budget_name = config.getoption("--budget") or ("full" if device == "cuda" else "quick")
    report_dir = Path(config.getoption("--report-dir") or Path.cwd() / "reports")
    cache_dir = Path(config.getoption("--cache-dir") or Path.cwd() / ".wd-cache")
    worker = hasattr(config, "workerinput")
    if not worker:  # the controller checks once, before any test runs
        _check_writable(report_dir, "report directory")
        if config.getoption("--cache-dir"):  # the default is created lazily
            _check_writable(cache_dir, "cache directory")
    data_dir = data_dir_from_env(config.getoption("--data-dir"))
    download = download_allowed(config.getoption("--download"))
    budget = BUDGETS[budget_name]
    if os.environ.get(ENV_SHRINK):
        try:
            budget = shrunk(budget, json.loads(os.environ[ENV_SHRINK]))
        except ValueError as exc:   # json's errors are ValueErrors too
            raise pytest.UsageError(f"{ENV_SHRINK}: {exc}") from exc
    from wd_claims.data import DataUnavailable
    from wd_claims.datasets import check_source, preflight

    try:
        data_source = check_source(config.getoption("--data") or budget.data)
        if not worker:
            preflight(data_source, data_dir, download)
    except (ValueError, DataUnavailable) as exc:
        raise pytest.UsageError(str(exc)) from exc
    mine = user_models(config.getoption("--model"), config.getoption("--model-input"))
    models = MappingProxyType({**MODELS, **mine})
    session = Session(
        budget=budget, device=device, device_name=device_name(device), report_dir=report_dir,
        cache_dir=cache_dir, data_dir=data_dir, download=download,
        fresh=config.getoption("--fresh"), models=models, user_models=tuple(mine),
        provenance=provenance(Path(config.rootpath), device),
        data_note=_data_note(data_dir, download), data_source=data_source)
    session.scheduler = Scheduler(budget=budget, device=device, cache_dir=cache_dir,
                                  fresh=session.fresh, models=models)
    if not worker:
        session.collector = ReportCollector(session)
    return session


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
