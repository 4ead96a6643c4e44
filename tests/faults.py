"""Shared helpers of the injected-fault (power) tests: recorded measurements, judged again.

A claim's judge is a pure function of the measurements its claim recorded. The committed sample
report keeps them (``reports/sample/measurements/<ID>-<model>.npz``, written by
``pytest claims/ --report-dir reports/sample``); a fault test feeds the judge a perturbed copy (a
convention slip, a wrong exponent, a missing normalization …) and asserts that the claim FAILS.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest

from wd_claims.claim import assemble
from wd_claims.files import load_measurements
from wd_claims.judge import decide

SAMPLE = Path(__file__).resolve().parents[1] / "reports" / "sample" / "measurements"


def recorded(name: str) -> dict:
    """The recorded measurements ``name`` (e.g. ``"C5-resnet8"``) of the committed sample report."""
    path = SAMPLE / f"{name}.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: regenerate the sample report with "
                    "`pytest claims/ --report-dir reports/sample`", pytrace=False)
    return load_measurements(path)


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


def status(verdict, budget: str = "quick") -> tuple[str, str]:
    """(status, reason) of a judged verdict, decided as the plugin decides it."""
    return decide(verdict.id, verdict.checks, verdict.conditions, budget,
                  verdict.context.get("model", ""))


def failed_checks(verdict) -> set[str]:
    """Ids of the checks that missed."""
    return {c.id for c in verdict.checks if not c.holds}
