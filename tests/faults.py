"""Shared helpers of the injected-fault (power) tests: recorded measurements, judged again.

A claim's judge is a pure function of the measurements its claim recorded. The committed sample
reports keep them (``reports/<sample>/measurements/<ID>-<model>.npz``: :data:`SAMPLES`); a fault
test feeds the judge a perturbed copy (a convention slip, a wrong exponent, a missing
normalization …) and asserts that the claim FAILS. The ``sample`` fixture (tests/conftest.py)
runs a module against every sample: it points :data:`SAMPLE` and :data:`BUDGET` at one of them.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from types import MappingProxyType

import pytest

from wd_claims.claim import assemble
from wd_claims.files import load_measurements
from wd_claims.judge import decide

REPORTS = Path(__file__).resolve().parents[1] / "reports"
# budget → its committed sample report, and the command that regenerates it
SAMPLES = MappingProxyType({
    "quick": (REPORTS / "sample", "pytest claims/ --report-dir reports/sample"),
    "article": (REPORTS / "article",
                "pytest claims/ --budget article --report-dir reports/article"),
})
SAMPLE = SAMPLES["quick"][0] / "measurements"   # the sample read now (the ``sample`` fixture)
BUDGET = "quick"                                 # its budget, which decides the declared rows


def recorded(name: str) -> dict:
    """The recorded measurements ``name`` (e.g. ``"C5-resnet8"``) of the sample read now."""
    path = SAMPLE / f"{name}.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: regenerate the sample report with "
                    f"`{SAMPLES[BUDGET][1]}`", pytrace=False)
    return load_measurements(path)


def sample_report() -> Path:
    """latest.json of the sample read now."""
    return SAMPLE.parent / "latest.json"


def claim(module: str):
    """A claim module by its file stem, e.g. ``claim("test_c05_equilibrium")``."""
    return importlib.import_module(f"wd_claims.claims.{module}")


def judged(module, measurements: dict, **judge_kw):
    """The verdict claim ``module`` gives ``measurements`` (:func:`wd_claims.claim.assemble`:
    judge and present, as a session does), undecided; ``judge_kw`` go to its ``judge``."""
    return assemble(module, measurements, **judge_kw)


def perturbed(measurements: dict, **changes) -> dict:
    """A deep copy of ``measurements`` with ``changes`` applied (values, or functions of the old
    value)."""
    out = copy.deepcopy(measurements)
    for key, change in changes.items():
        out[key] = change(out[key]) if callable(change) else change
    return out


def status(verdict, budget: str | None = None, new_miss: bool = True) -> tuple[str, str]:
    """(status, reason) of a judged verdict, decided as the plugin decides it at ``budget``
    (default: the budget of the sample read now).

    Where the sample's honest measurements of the same claim and model already FAIL (a claim the
    article budget resolves finely enough to miss), a fault's FAIL proves nothing unless it makes
    a check miss that held honestly: with ``new_miss`` such a FAIL without a new miss is reported
    as "fail, but no check missed that held honestly", which a test asserting "fail" rejects."""
    decided = decide(verdict.id, verdict.checks, verdict.conditions, budget or BUDGET,
                     verdict.context.get("model", ""))
    if not new_miss or decided[0] != "fail":
        return decided
    honest = _honest_misses(verdict.id, verdict.context.get("model", ""))
    if honest is None or failed_checks(verdict) - honest:
        return decided
    return "fail, but no check missed that held honestly", decided[1]


def _honest_misses(claim_id: str, model: str) -> set[str] | None:
    """The checks that missed in the sample report's own verdict of ``claim_id`` on ``model``
    when that verdict is a FAIL (read from its latest.json, so no patch of the test can reach
    it); None when it is not a FAIL, or when the sample holds no such verdict."""
    for v in json.loads(sample_report().read_text()):
        if v["id"] == claim_id and v["context"].get("model", "") == model:
            return ({c["id"] for c in v["checks"] if not c["holds"]} if v["status"] == "fail"
                    else None)
    return None


def failed_checks(verdict) -> set[str]:
    """Ids of the checks that missed."""
    return {c.id for c in verdict.checks if not c.holds}
