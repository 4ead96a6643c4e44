"""Measure, then judge: named checks, the declared expected failures, the one place that decides.

A claim module measures first (trains, probes) and then calls its *judge*: a pure function from the
recorded measurements (arrays and numbers, plus the sympy prediction) to a
:class:`~wd_claims.verdict.Verdict` that carries named :class:`Check` records. A judge never sets a
status. :func:`decide`, here and only here, turns the checks into the status against
:data:`wd_claims.expected.EXPECTED_FAILURES`; the plugin's ``record_verdict`` fixture files the
verdict and raises the pytest outcome that matches it (:func:`outcome`), so the report and pytest
cannot disagree (docs/design.md, "Verdicts").

The rules, fixed before anything is measured:

- a **core** check that misses is a FAIL, always (it cannot be declared an expected failure);
- the negative control is a core check: the control, judged by the same criterion, must miss;
- a non-core check (a sharper prediction of the suite's, or an approximate statement of the
  article) that misses is an *expected failure* only when the table declares it for this claim,
  budget and model **and** the explaining condition the table names was measured and holds;
  otherwise it is a FAIL. The verdict is the article's: a declared miss of a statement makes it an
  expected failure; a declared miss of the suite's own prediction leaves it a PASS, with the miss
  in its reason;
- strict: a declared check that holds, or one whose explaining condition does not hold or was not
  measured, is a FAIL (the table is out of date, or the explanation was wrong).
"""

from __future__ import annotations

from wd_claims.expected import EXPECTED_FAILURES
from wd_claims.verdict import Check, ExpectedFailure, fmt


def decide(claim: str, checks: list[Check], conditions: list[Check], budget: str, model: str,
           table: tuple[ExpectedFailure, ...] = EXPECTED_FAILURES) -> tuple[str, str]:
    """(status, reason) of a verdict: a pure function of its checks, its measured conditions and
    the declared table (rows keyed on the checks' and conditions' ids)."""
    if not checks:
        return "fail", "the verdict carries no check: nothing was judged"
    by_id = {c.id: c for c in checks}
    cond = {c.id: c for c in conditions}
    declared = {e.check: e for e in table if e.applies(claim, budget, model)}
    problems = []
    for check_id, entry in declared.items():
        c = by_id.get(check_id)
        if c is None:
            problems.append(f"the table declares '{check_id}' expected to fail, but the claim did "
                            "not measure it")
        elif c.core:
            problems.append(f"the table declares the core criterion '{c.name}' expected to fail; "
                            "a core criterion that misses is a FAIL")
        elif c.holds:
            problems.append(f"declared expected failure did not occur: '{c.name}' holds "
                            f"(measured {fmt(c.measured)}, tolerance {fmt(c.tolerance)}); "
                            "remove it from wd_claims.expected")
        elif entry.condition not in cond:
            problems.append(f"'{c.name}' missed as declared, but its explaining condition "
                            f"'{entry.condition}' was not measured")
        elif not cond[entry.condition].holds:
            d = cond[entry.condition]
            problems.append(f"'{c.name}' missed, but not for the declared reason: the condition "
                            f"'{d.name}' does not hold (measured {fmt(d.measured)})")
    missed_core = [c for c in checks if c.core and not c.holds]
    undeclared = [c for c in checks if not c.core and not c.holds and c.id not in declared]
    failures = [_miss(c) for c in missed_core + undeclared] + problems
    if failures:
        return "fail", "; ".join(failures)
    expected = [c for c in checks if not c.holds]
    explained = "; ".join(
        f"{_miss(c)}: {declared[c.id].reason} (condition "
        f"'{cond[declared[c.id].condition].name}': "
        f"{fmt(cond[declared[c.id].condition].measured)})" for c in expected)
    if any(c.kind == "statement" for c in expected):
        return "xfail", explained
    # only the suite's own sharper predictions missed, as declared: the article's statements
    # hold, and the verdict is theirs (the declared miss stays strict, and is reported)
    return "pass", f"the article's statements hold; declared: {explained}" if expected else ""


def _miss(c: Check) -> str:
    kind = {"statement": "the article's statement"}.get(c.kind, c.kind)
    return (f"{kind} '{c.name}' missed: measured {fmt(c.measured)}, tolerance {fmt(c.tolerance)}"
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

