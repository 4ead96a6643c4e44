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

from wd_claims.judge import decide
from wd_claims.report import load_measurements

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
    """Names of the checks that missed."""
    return {c.name for c in verdict.checks if not c.holds}
