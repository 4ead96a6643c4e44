"""What turns test reports into the claims report: the verdicts gathered from every test report
(the controller's, under xdist), and the report written at the end.

:class:`ReportCollector` is a field of the session that writes the report (never an xdist
worker's); the plugin's hooks hand it the test reports. It defines no hook itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wd_claims.claim import CLAIM_IDS, marker_name
from wd_claims.files import utc_now, write_report
from wd_claims.verdict import Verdict

VERDICT_KEY = "wd_claims_verdict"


def measurement_name(claim_id: str, model: str) -> str:
    """File stem of a verdict's recorded measurements: ``C5-resnet8``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{claim_id}-{model}" if model else claim_id)


def claim_id(item_keywords) -> str | None:
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

    def __init__(self, session):
        self.suite = session   # a wd_claims.session.Session
        self.verdicts: dict[tuple, dict] = {}
        self.report_path: Path | None = None
        self.error: str = ""
        self.collect_errors = 0

    def logreport(self, report: pytest.TestReport) -> None:
        filed = {_verdict_key(report.nodeid, value): value
                 for key, value in report.user_properties if key == VERDICT_KEY}
        for key, value in filed.items():  # setup/call/teardown reports repeat them: first wins
            self.verdicts.setdefault(key, value)
        mine = [v for k, v in self.verdicts.items() if k[0] == report.nodeid]
        cid = claim_id(report.keywords)
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

    def collectreport(self, report: pytest.CollectReport) -> None:
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

    def finish(self, session: pytest.Session, exitstatus: int) -> None:
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

    def summary(self, terminalreporter, exitstatus: int) -> None:
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


def _budget_note(suite) -> str:
    from wd_claims.config import ENV_SHRINK

    if suite.budget.shrink is not None:
        given = dict(suite.budget.shrink.overrides)
        return (f"The `{suite.budget.name}` budget SHRUNK FOR TESTING ({ENV_SHRINK}="
                f"{given}): its code path, not its statistics. No verdict "
                "here stands for the article.")
    if suite.budget.name == "full":
        return ""
    return (f"This is the `{suite.budget.name}` budget on {suite.device}: smaller runs than the "
            "article's Fig. 2 (ResNet-8, CIFAR-10, 100 epochs). `tox -e gpu` runs the full budget.")
