"""The declared expected failures, inspected: each row's condition is measured apart from the
statistic that missed, and the rows are the ones the claims declare.

For every row of :data:`wd_claims.expected.EXPECTED_FAILURES`, :data:`STATISTIC_INPUTS` names the
recorded measurements and a perturbation of the inputs of the statement that missed (and only
those). Judged again, the statement must move and the condition's measurement must not: one
computed from the missed statistic would move with it. A row added to the table without its
entry here fails the first test.
"""

import numpy as np
import pytest

from tests import faults
from tests.faults import claim, judged, perturbed, recorded, status
from wd_claims.expected import EXPECTED_FAILURES

# (sample budget, row) for every row that applies at the budget of a committed sample: each
# row is inspected on every sample where it is declared
ROWS = [(budget, row) for budget in faults.SAMPLES for row in EXPECTED_FAILURES
        if row.budgets is None or budget in row.budgets]


@pytest.fixture
def on_sample(monkeypatch):
    """``on_sample(budget)``: the recorded measurements read from that budget's sample."""
    def use(budget: str) -> None:
        monkeypatch.setattr(faults, "SAMPLE", faults.SAMPLES[budget][0] / "measurements")
        monkeypatch.setattr(faults, "BUDGET", budget)
    return use


def _row_id(param) -> str:
    return param if isinstance(param, str) else f"{param.claim}-{param.check}"


def _rising(a, top: float = 3.0):
    """``a`` scaled from 1 at its first step to ``top`` at its last (last axis)."""
    a = np.asarray(a, float)
    return a * np.linspace(1.0, top, a.shape[-1])


STATISTIC_INPUTS = {
    # ‖g‖ of the λ = 0 starts (the recorded series); the condition reads the probe's checkpoints
    ("C4", "gradient_vanishes"): ("test_c04_spiral_out", "C4-resnet8",
                                  {"g": _rising}),
    # f's location (its interval's width, which the condition reads, kept)
    ("C6", "article_factor"): ("test_c06_effective_lr", "C6-resnet8", {"f": lambda f: f - 0.1}),
    # the equilibrium norms; the condition reads G
    ("C7", "ratio_less_spread"): ("test_c07_fig2_sqrt_scaling", "C7-resnet8",
                                  {"xbar": _rising}),
    # η_e; the condition reads G
    ("C8", "raw_eta_e_sqrt"): ("test_c08_effective_lr_scaling", "C8-resnet8",
                               {"eta_e": _rising}),
    # the real two-step draws; the condition reads the curvature's HVPs
    ("C9", "real_steps_ratio_2"): ("test_c09_noise_variance", "C9-resnet8",
                                   {"a_two_steps_real": lambda a: 0.6 * np.asarray(a)}),
    # the stability numbers; the condition reads the drift fraction
    ("C10", "linear_stability"): ("test_c10_flatness", "C10-resnet8",
                                  {"product": lambda p: 0.5 * np.asarray(p)}),
    # the angles; the condition reads the radial share
    ("E2", "kosson_theta_beta1_0"): ("test_e02_decoupled_decay", "E2-conv_batchnorm-adamw",
                                     {"theta2": lambda t: 1.3 * np.asarray(t)}),
}


def _at_factor_a(f, m):
    """C6's f moved onto the article's factor a = 1 − 2ηλ (its location only)."""
    s = m["eta"] * m["lam"]
    return np.asarray(f) - 2 * s.max()


# Each row's miss reversed: the statement made to hold, or the miss sent the other way, or the
# cause turned around. Strict both ways, every one must FAIL.
REVERSED = {
    ("C4", "gradient_vanishes"): lambda m: {"g": lambda g: _rising(g, 0.3)},
    ("C6", "article_factor"): lambda m: {"f": lambda f: _at_factor_a(f, m)},
    ("C7", "ratio_less_spread"): lambda m: {"xbar": np.sqrt(m["etas"] / m["lams"])},
    ("C8", "raw_eta_e_sqrt"): lambda m: {"eta_e": np.sqrt(m["eta"] * m["lam"])},
    ("C9", "real_steps_ratio_2"): lambda m: {
        "a_two_steps_real": 1.25 * np.asarray(m["a_two_steps_independent"])},
    ("C10", "linear_stability"): lambda m: {"product": lambda p: 0.2 * np.asarray(p)},
    ("E2", "kosson_theta_beta1_0"): lambda m: {"rho": lambda r: -np.asarray(r)},
}


def test_every_declared_row_names_how_its_statistic_is_perturbed_and_its_claim_declares_it():
    rows = {(e.claim, e.check) for e in EXPECTED_FAILURES}
    assert rows == set(STATISTIC_INPUTS) == set(REVERSED)
    for e in EXPECTED_FAILURES:
        module = claim(STATISTIC_INPUTS[(e.claim, e.check)][0])
        assert e.check in module.CLAIM.expected_failures
        assert e.condition != e.check


@pytest.mark.parametrize(("budget", "row"), ROWS, ids=_row_id)
def test_a_condition_does_not_move_with_the_statistic_it_explains(on_sample, budget, row):
    on_sample(budget)
    module_name, recording, changes = STATISTIC_INPUTS[(row.claim, row.check)]
    module, m = claim(module_name), recorded(recording)
    before, after = judged(module, m), judged(module, perturbed(m, **changes))

    def find(verdict, check_id, where):
        return next(c for c in getattr(verdict, where) if c.id == check_id)

    moved = find(before, row.check, "checks").measured != find(after, row.check, "checks").measured
    assert moved, f"the perturbation {sorted(changes)} did not reach '{row.check}'"
    condition = (find(before, row.condition, "conditions"), find(after, row.condition,
                                                                 "conditions"))
    assert _same(condition[0].measured, condition[1].measured), (
        f"'{row.condition}' moved with the statistic it explains: {condition[0].measured} → "
        f"{condition[1].measured}")
    # (whether it *holds* may move: a condition that predicts the size of the miss is compared
    # with the miss, which is how C9's sign slip is caught)


def _same(a, b) -> bool:
    """Equal up to float rounding (1e-9 relative): a perturbation's last bit may reach a value
    through an interval's width, which is not the statistic moving."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float, np.floating)) and not isinstance(a, bool):
        return bool(np.isclose(a, b, rtol=1e-9, atol=0) or (np.isnan(a) and np.isnan(b)))
    return a == b


@pytest.mark.parametrize(("budget", "row"), ROWS, ids=_row_id)
def test_a_reversed_miss_or_cause_fails(on_sample, budget, row):
    on_sample(budget)
    module_name, recording, _ = STATISTIC_INPUTS[(row.claim, row.check)]
    module, m = claim(module_name), recorded(recording)
    verdict = judged(module, perturbed(m, **REVERSED[(row.claim, row.check)](m)))
    assert status(verdict)[0] == "fail", status(verdict)
