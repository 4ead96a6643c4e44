"""The one claim interface, as scikit-learn's checks share one signature.

A claim module (``claims/test_cNN_*.py``) reads top to bottom like a short paper::

    CLAIM = Claim(id="C5", title=..., quote=..., derive=theory.c05_equilibrium, ...)

    def measure(ctx: Context, model: ModelSpec | None) -> dict    # trains / probes: flat arrays
    def judge(m: dict) -> Judgement                               # the criteria only, pure
    def present(m: dict, verdict: Verdict) -> Presentation        # numbers, tables, notes
    def figure(m: dict, verdict: Verdict) -> Figure | None        # optional, matplotlib

    def test_<the claim as a sentence>(verify, model_spec):
        verify(__name__, model_spec)

Everything else — deciding the status against the declared expected failures, the setting, the
figure and measurements files, the pytest outcome — is the machinery's (``verify``, in
:mod:`wd_claims.plugin`), and :func:`assemble` is the one place a verdict is put together, for a
session and for the injected-fault tests alike. Shared helpers for the criteria live here too: the
block :class:`Interval` (``contains`` / ``excludes``), :func:`t_interval`, :func:`canvas` (the
figure scaffold) and :func:`derivation` (sympy's derivation, its proofs checked).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from wd_claims.verdict import Check, Verdict

CLAIM_IDS = tuple(f"C{i}" for i in range(11)) + ("E1", "E2", "E3")


def marker_name(claim_id: str) -> str:
    """C5 → ``c05``, E1 → ``e01`` (the ids used by ``-m`` and in module names)."""
    return f"{claim_id[0].lower()}{int(claim_id[1:]):02d}"


@dataclass(frozen=True)
class Claim:
    """What a claim declares, next to its checks.

    ``runs(budget, images, model)`` → the claim's own TrainConfigs, which the session's workers
    train with the shared runs; ``run_measure(budget)`` → a picklable ``(result, train_data) →
    dict`` the worker applies right after training. ``shared_runs``: it reads C4–C8's shared runs
    (:mod:`wd_claims.recipes`). ``sizes``: the :class:`~wd_claims.config.Budget` fields it reads
    beyond the shared runs'. ``expected_failures``: the ids of its non-core checks that
    :data:`wd_claims.expected.EXPECTED_FAILURES` declares (a test holds the two equal).
    ``models``: the zoo models it runs on by default (None: every one)."""

    id: str
    title: str
    quote: str
    derive: Callable | None = None
    models: tuple[str, ...] | None = None
    sizes: tuple[str, ...] = ()
    shared_runs: bool = False
    runs: Callable | None = None
    run_measure: Callable | None = None
    expected_failures: tuple[str, ...] = ()

    def __post_init__(self):
        if self.id not in CLAIM_IDS:
            raise ValueError(f"claim id {self.id!r}: one of {', '.join(CLAIM_IDS)}")

    @property
    def marker(self) -> str:
        return marker_name(self.id)


@dataclass
class Judgement:
    """What :func:`judge` returns: the criteria (``checks``; core ones decide) and the measured
    facts an expected failure may cite (``conditions``)."""

    checks: list[Check]
    conditions: list[Check] = field(default_factory=list)

    def __post_init__(self):
        for c in self.conditions:   # a condition is a measured cause, whatever it was built as
            c.kind = "condition"
        if any(c.kind == "condition" for c in self.checks):
            raise ValueError("a condition is not a criterion: pass it in ``conditions``")

    def __getitem__(self, check_id: str) -> Check:
        for c in self.checks + self.conditions:
            if c.id == check_id:
                return c
        raise KeyError(check_id)


@dataclass
class Presentation:
    """What :func:`present` returns: the report's numbers and words for one verdict."""

    expected: str = ""
    predicted: object = None
    measured: object = None
    tolerance: object = None
    tolerance_reason: str = ""
    resolves: str = ""
    control: dict = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: dict = field(default_factory=dict)   # model, data, seed … as measured
    title: str = ""                               # overrides CLAIM.title when given


def claim_module(name: str | ModuleType) -> ModuleType:
    """A claim module by name (``"wd_claims.claims.test_c05_equilibrium"``, ``__name__``)."""
    return name if isinstance(name, ModuleType) else importlib.import_module(name)


def assemble(module: str | ModuleType, m: dict, **judge_kw) -> Verdict:
    """The verdict of claim ``module`` on the measurements ``m``: its declaration, its
    judgement and its presentation, undecided (``wd_claims.judge.decide`` gives the status).
    ``judge_kw`` go to the module's ``judge`` (a fault test's altered derivation)."""
    module = claim_module(module)
    claim: Claim = module.CLAIM
    judged = module.judge(m, **judge_kw)
    v = Verdict(id=claim.id, title=claim.title, quote=claim.quote,
                derivation=derivation(claim.derive).text if claim.derive else "",
                checks=list(judged.checks), conditions=list(judged.conditions))
    p: Presentation = module.present(m, v)
    v.title = p.title or v.title
    v.expected, v.predicted, v.measured = p.expected, p.predicted, p.measured
    v.tolerance, v.tolerance_reason, v.resolves = p.tolerance, p.tolerance_reason, p.resolves
    v.control, v.tables, v.notes, v.context = dict(p.control), p.tables, p.notes, dict(p.context)
    controls = [c for c in v.checks if c.kind == "control"]
    if v.control and "status" not in v.control and controls:   # the control checks' outcome
        v.control["status"] = ("rejected" if all(c.holds for c in controls) else "NOT rejected")
    return v


@functools.cache
def derivation(derive: Callable):
    """``derive()`` once per process, every one of its proofs checked (an unproved step is an
    error of the theory, not a verdict)."""
    d = derive()
    unproved = [k for k, ok in d.proved.items() if not ok]
    if unproved:
        raise AssertionError(f"{d.claim}: sympy did not prove {unproved}\n{d.text}")
    return d


def control_status(check: Check) -> str:
    """The report's word for a negative control judged by ``check`` ("control rejected")."""
    return "rejected" if check.holds else "NOT rejected"


# --- intervals ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` around ``estimate``: floats, or arrays of one shape
    (one interval per configuration)."""

    estimate: object
    low: object
    high: object

    def contains(self, value=0.0):
        """low ≤ value ≤ high (a bool, or a bool array)."""
        out = (np.asarray(self.low) <= value) & (np.asarray(value) <= self.high)
        return bool(out) if np.ndim(out) == 0 else out

    def excludes(self, value=0.0):
        out = ~np.asarray(self.contains(value))
        return bool(out) if np.ndim(out) == 0 else out

    @property
    def halfwidth(self):
        return (np.asarray(self.high) - np.asarray(self.low)) / 2

    def as_tuple(self) -> tuple:
        return (self.estimate, self.low, self.high)


def t_interval(blocks, level: float = 0.95, family: int = 1) -> Interval:
    """The Student-t interval of the mean over the last axis of ``blocks`` ((…, B), e.g. a log
    residual per block of a window), two-sided at ``level`` Bonferroni-corrected over ``family``
    intervals judged together. NaN where B < 2."""
    from scipy import stats as scipy_stats

    b = np.asarray(blocks, dtype=float)
    n = b.shape[-1]
    mean = b.mean(axis=-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return Interval(mean, nan, nan)
    se = b.std(axis=-1, ddof=1) / np.sqrt(n)
    t = scipy_stats.t.ppf(1 - (1 - level) / (2 * family), n - 1)
    return Interval(mean, mean - t * se, mean + t * se)


def table(header: list[str], rows) -> str:
    """A markdown table: ``header`` cells, then one line per row of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


# --- figures --------------------------------------------------------------------------------

def canvas(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.5, 3.8)):
    """(figure, axes) on matplotlib's Agg backend: the scaffold of every claim's figure. The
    machinery saves it as ``figures/<ID>-<model>.png`` and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=size)
