"""The verdict model: a :class:`Check` (one criterion, applied), an :class:`ExpectedFailure` (one
declared row), a :class:`Verdict` (everything a reviewer needs for one claim on one model), and
:func:`fmt`, the one way numbers are written. Pure data: no pytest, no files, no rendering.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

STATUSES = ("pass", "fail", "skip", "xfail")
# What a check weighs (docs/design.md, "Two kinds of check"): the article's measurable wording, or
# what backs it. A summary row's verdict is its ``statement`` checks'; the rest stand beside them.
KINDS = MappingProxyType({
    "statement": "the article's wording, measurable, judged at a stated resolution",
    "identity": "true of any correct engine (the update-rule algebra, an exact map with measured "
                "quantities): a miss is a bug, a hold says nothing about the article",
    "premise": "what the statement assumes, measured (a bound's hypothesis, a certified fit, a "
               "resolving design)",
    "control": "a deliberately wrong input or prediction, judged by the same criterion: must miss",
    "prediction": "a sharper prediction of the suite's own, beyond the article's words",
    "condition": "an expected failure's cause, measured apart from the statistic that missed",
})


@dataclass
class Check:
    """One criterion applied to the measurements: did it hold, against what."""

    id: str                      # stable key (snake_case): the expected-failure table refers to it
    name: str                    # the statement in words, for the report
    holds: bool                  # the criterion's outcome (a bool, never a score)
    core: bool = True            # core: a miss is a FAIL. False: a sharper or approximate statement
    measured: object = None      # the number(s) the criterion looked at
    tolerance: object = None     # the acceptance region (interval, bound), fixed before measuring
    criterion: str = ""          # the rule in words, e.g. "0 ∈ 95% CI of mean log(x̄/x*)"
    kind: str = "statement"      # one of KINDS: what a hold or a miss tells about the article
    resolution: str = ""         # a statement's: the smallest deviation its criterion resolves

    def __post_init__(self):
        self.holds = bool(self.holds)
        if self.kind not in KINDS:
            raise ValueError(f"check {self.id!r}: kind {self.kind!r} is not one of {tuple(KINDS)}")
        if self.kind in ("identity", "premise", "control") and not self.core:
            raise ValueError(f"check {self.id!r}: an {self.kind} is core (its miss is a FAIL)")

    @classmethod
    def from_json(cls, data: dict) -> Check:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ExpectedFailure:
    """A declared expected failure: (claim, the statement expected to miss, the measured condition
    that explains the miss, why). ``budgets``/``models`` restrict where it applies (None: all)."""

    claim: str                           # "C7"
    check: str                           # the id of the non-core Check expected to miss
    condition: str                       # the id of a Check among the verdict's ``conditions``
    reason: str                          # one or two sentences, for the report
    budgets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None  # model names or shell patterns ("*-adamw")

    def applies(self, claim: str, budget: str, model: str) -> bool:
        return (self.claim == claim and (self.budgets is None or budget in self.budgets)
                and (self.models is None or any(fnmatch.fnmatchcase(model, pattern)
                                                for pattern in self.models)))


@dataclass
class Verdict:
    id: str                          # claim id, "C0" … "C10", or "E1" … for extensions
    title: str                       # one line: what is claimed
    quote: str = ""                  # the article's words (short, attributed in the report)
    expected: str = ""               # the expectation as a formula
    derivation: str = ""             # sympy's printout of the derivation
    predicted: object = None         # numbers the derivation predicts
    measured: object = None          # numbers measured (a float or a dict of them)
    tolerance: object = None         # the acceptance threshold(s)
    tolerance_reason: str = ""       # where the tolerance comes from
    status: str = "skip"             # decided by wd_claims.judge.decide from ``checks``, never set
                                     # by a claim (a claim sets only "skip": nothing was measured)
    reason: str = ""                 # why it failed, was skipped, or is an expected failure
    checks: list[Check] = field(default_factory=list)      # the criteria, core and non-core
    conditions: list[Check] = field(default_factory=list)  # measured facts expected failures cite
    setting: dict = field(default_factory=dict)  # what the verdict stands on (wd_claims.setting)
    resolves: str = ""               # the smallest deviation the criterion resolves, in words
    measurements: str = ""           # the recorded measurements' file, relative to the report
    control: dict = field(default_factory=dict)   # {"description", "measured", "status"}
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # extra markdown tables for the section
    notes: list[str] = field(default_factory=list)
    context: dict = field(default_factory=dict)   # model, data, budget, device, dtype, seed…
    test: str = ""                   # pytest node id

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("checks", "conditions"):
            fields[key] = [c if isinstance(c, Check) else Check.from_json(c)
                           for c in fields.get(key, [])]
        return cls(**fields)


def _jsonable(obj):
    """Plain numbers, strings, lists and dicts only (what JSON and pytest-xdist's execnet can
    carry): numpy/torch scalars become floats, subclasses of str/int/float (``torch.__version__``,
    enums) their base type, NaN stays NaN, anything else its ``str``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None:
        return obj
    for kind in (bool, str, int, float):
        if isinstance(obj, kind):
            return kind(obj)
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return _jsonable(obj.tolist())
    return str(obj)


def fmt(value, digits: int = 3) -> str:
    """Compact human formatting for report tables."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return str(value)
        if value == 0:
            return "0"
        if isinstance(value, int) or (1e-3 <= abs(value) < 1e4):
            return f"{value:.{digits}g}"
        return f"{value:.{digits - 1}e}"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_nested(v, digits)}" for k, v in value.items())
        return inner
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


def _nested(value, digits: int) -> str:
    """A value inside a dict: nested dicts keep their braces so that the levels stay readable."""
    return "{" + fmt(value, digits) + "}" if isinstance(value, dict) else fmt(value, digits)
