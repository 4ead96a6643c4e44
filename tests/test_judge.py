"""The one place that decides: core misses fail, declared expected failures are strict both ways."""

import pytest

from wd_claims.judge import decide
from wd_claims.verdict import Check, ExpectedFailure, Verdict


def C(check_id: str, holds: bool, **kw) -> Check:
    """A check whose name is its id (the table refers to the id; the report shows the name)."""
    return Check(check_id, check_id, holds, **kw)

TABLE = (ExpectedFailure("C9", "sharp", "cause", "the article is approximate here",
                         budgets=("quick",)),)


def judged(*checks, conditions=(), budget="quick", table=TABLE):
    return decide("C9", list(checks), list(conditions), budget, "resnet8", table)


def test_every_check_holding_is_a_pass():
    assert judged(C("core", True), C("sharp", True, core=False), table=()) == ("pass", "")


def test_a_core_criterion_that_misses_is_a_fail_even_when_the_table_declares_it():
    status, reason = judged(C("core", False), table=(ExpectedFailure("C9", "core", "c", "r"),))
    assert status == "fail" and "a core criterion that misses is a FAIL" in reason


def test_a_declared_miss_with_its_measured_cause_is_an_expected_failure():
    status, reason = judged(C("core", True), C("sharp", False, core=False),
                            conditions=[C("cause", True, measured=0.3)])
    assert status == "xfail" and "the article is approximate here" in reason


def test_a_declared_miss_of_the_suites_own_prediction_leaves_the_articles_verdict_a_pass():
    status, reason = judged(C("core", True, kind="identity"), C("stated", True),
                            C("sharp", False, core=False, kind="prediction"),
                            conditions=[C("cause", True, measured=0.3)])
    assert status == "pass" and "declared" in reason and "the article is approximate" in reason
    status, _ = judged(C("stated", True), C("sharp", True, core=False, kind="prediction"),
                       conditions=[C("cause", True)])
    assert status == "fail"                              # still strict both ways


def test_a_check_of_an_unknown_kind_or_an_identity_that_could_be_declared_is_refused():
    with pytest.raises(ValueError, match="kind"):
        C("x", True, kind="theorem")
    with pytest.raises(ValueError, match="is core"):
        C("x", True, kind="identity", core=False)


def test_an_undeclared_sub_statement_that_misses_is_a_fail():
    status, _ = judged(C("core", True), C("other", False, core=False))
    assert status == "fail"


def test_a_declared_failure_that_does_not_occur_fails_strictly():
    status, reason = judged(C("core", True), C("sharp", True, core=False),
                            conditions=[C("cause", True)])
    assert status == "fail" and "did not occur" in reason


@pytest.mark.parametrize("conditions", [[], [C("cause", False, measured=0.01)]])
def test_a_declared_failure_whose_cause_is_not_measured_to_hold_fails(conditions):
    status, reason = judged(C("core", True), C("sharp", False, core=False),
                            conditions=conditions)
    assert status == "fail" and "cause" in reason


def test_a_row_applies_only_to_its_budgets():
    status, _ = judged(C("core", True), C("sharp", False, core=False),
                       conditions=[C("cause", True)], budget="full")
    assert status == "fail"


def test_a_verdict_without_checks_is_a_fail_not_a_silent_pass():
    assert judged()[0] == "fail"


def test_checks_survive_the_json_round_trip_of_the_report():
    v = Verdict(id="C9", title="t", checks=[C("core", True, measured=[1.0, 2.0])],
                conditions=[C("cause", False)])
    back = Verdict.from_json(v.to_json())
    assert back.checks == v.checks and back.conditions == v.conditions


def test_every_row_of_the_declared_table_names_a_known_claim_and_a_reason():
    from wd_claims.collector import CLAIM_IDS
    from wd_claims.expected import EXPECTED_FAILURES

    for row in EXPECTED_FAILURES:
        assert row.claim in CLAIM_IDS and row.check and row.condition and row.reason


def test_a_row_restricted_to_a_model_pattern_applies_to_those_models_only():
    row = ExpectedFailure("C9", "sharp", "cause", "r", models=("*-adamw",))
    assert row.applies("C9", "quick", "mynet-adamw") and not row.applies("C9", "quick", "x-sgdw")
