"""Measure, then judge: named checks, the declared expected failures, the one place that decides.

A claim module measures first (trains, probes) and then calls its *judge*: a pure function from the
recorded measurements (arrays and numbers, plus the sympy prediction) to a
:class:`~wd_claims.report.Verdict` that carries named :class:`Check` records. A judge never sets a
status. :func:`decide`, here and only here, turns the checks into the status against
:data:`wd_claims.expected.EXPECTED_FAILURES`; the plugin's ``record_verdict`` fixture files the
verdict and raises the pytest outcome that matches it (:func:`outcome`), so the report and pytest
cannot disagree (docs/design.md, "Verdicts").

The rules, fixed before anything is measured:

- a **core** check that misses is a FAIL, always (it cannot be declared an expected failure);
- the negative control is a core check: the control, judged by the same criterion, must miss;
- a non-core check (a sharper prediction of the suite's, or an approximate sub-statement of the
  article) that misses is an *expected failure* only when the table declares it for this claim,
  budget and model **and** the explaining condition the table names was measured and holds;
  otherwise it is a FAIL;
- strict: a declared check that holds, or one whose explaining condition does not hold or was not
  measured, is a FAIL (the table is out of date, or the explanation was wrong).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

STATUSES = ("pass", "fail", "skip", "xfail")


@dataclass
class Check:
    """One criterion applied to the measurements: did it hold, against what."""

    name: str                    # stable short key; the expected-failure table refers to it
    holds: bool                  # the criterion's outcome (a bool, never a score)
    core: bool = True            # core: a miss is a FAIL. False: a sharper or approximate statement
    measured: object = None      # the number(s) the criterion looked at
    tolerance: object = None     # the acceptance region (interval, bound), fixed before measuring
    criterion: str = ""          # the rule in words, e.g. "0 ∈ 95% CI of mean log(x̄/x*)"

    def __post_init__(self):
        self.holds = bool(self.holds)

    @classmethod
    def from_json(cls, data: dict) -> Check:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ExpectedFailure:
    """A declared expected failure: (claim, the statement expected to miss, the measured condition
    that explains the miss, why). ``budgets``/``models`` restrict where it applies (None: all)."""

    claim: str                           # "C7"
    check: str                           # the non-core Check.name expected to miss
    condition: str                       # a Check.name among the verdict's ``conditions``
    reason: str                          # one or two sentences, for the report
    budgets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None  # model names or shell patterns ("*-adamw")

    def applies(self, claim: str, budget: str, model: str) -> bool:
        return (self.claim == claim and (self.budgets is None or budget in self.budgets)
                and (self.models is None or any(fnmatch.fnmatchcase(model, pattern)
                                                for pattern in self.models)))


def _fmt(value) -> str:
    from wd_claims.report import fmt

    return fmt(value)


def decide(claim: str, checks: list[Check], conditions: list[Check], budget: str, model: str,
           table: tuple[ExpectedFailure, ...] | None = None) -> tuple[str, str]:
    """(status, reason) of a verdict: a pure function of its checks, its measured conditions and
    the declared table (default :data:`wd_claims.expected.EXPECTED_FAILURES`)."""
    if table is None:
        from wd_claims.expected import EXPECTED_FAILURES as table
    if not checks:
        return "fail", "the verdict carries no check: nothing was judged"
    by_name = {c.name: c for c in checks}
    cond = {c.name: c for c in conditions}
    declared = {e.check: e for e in table if e.applies(claim, budget, model)}
    problems = []
    for name, entry in declared.items():
        c = by_name.get(name)
        if c is None:
            problems.append(f"the table declares '{name}' expected to fail, but the claim did not "
                            "measure it")
        elif c.core:
            problems.append(f"the table declares the core criterion '{name}' expected to fail; "
                            "a core criterion that misses is a FAIL")
        elif c.holds:
            problems.append(f"declared expected failure did not occur: '{name}' holds "
                            f"(measured {_fmt(c.measured)}, tolerance {_fmt(c.tolerance)}); "
                            "remove it from wd_claims.expected")
        elif entry.condition not in cond:
            problems.append(f"'{name}' missed as declared, but its explaining condition "
                            f"'{entry.condition}' was not measured")
        elif not cond[entry.condition].holds:
            d = cond[entry.condition]
            problems.append(f"'{name}' missed, but not for the declared reason: the condition "
                            f"'{entry.condition}' does not hold (measured {_fmt(d.measured)})")
    missed_core = [c for c in checks if c.core and not c.holds]
    undeclared = [c for c in checks if not c.core and not c.holds and c.name not in declared]
    failures = [_miss(c) for c in missed_core + undeclared] + problems
    if failures:
        return "fail", "; ".join(failures)
    expected = [c for c in checks if not c.holds]
    if expected:
        return "xfail", "; ".join(
            f"{_miss(c)}: {declared[c.name].reason} (condition '{declared[c.name].condition}': "
            f"{_fmt(cond[declared[c.name].condition].measured)})" for c in expected)
    return "pass", ""


def _miss(c: Check) -> str:
    kind = "core criterion" if c.core else "sub-statement"
    return (f"{kind} '{c.name}' missed: measured {_fmt(c.measured)}, tolerance {_fmt(c.tolerance)}"
            + (f" ({c.criterion})" if c.criterion else ""))


def outcome(status: str, reason: str) -> None:
    """Raise the pytest outcome of a decided verdict (return for a pass). The one place in the
    project where ``pytest.fail``/``pytest.xfail``/``pytest.skip`` follow from a verdict."""
    import pytest

    if status == "fail":
        pytest.fail(reason, pytrace=False)
    if status == "xfail":
        pytest.xfail(reason)
    if status == "skip":
        pytest.skip(reason)


def interval_contains(interval, value: float = 0.0) -> bool:
    """``low ≤ value ≤ high`` for an interval ``(low, high)`` or ``(estimate, low, high)``."""
    low, high = (interval[-2], interval[-1])
    return bool(low <= value <= high)
