"""Power of C5 (equilibrium) and C7 (Fig. 2 scaling): each injected fault makes the claim FAIL.

The faults are realistic bugs fed to the judges as perturbed copies of the measurements the
committed sample report recorded (``tests/faults.py``): a factor-2 slip in the weight-decay
convention, the mean of G where its RMS is needed, weight decay switched off, a wrong exponent,
a widened interval.
"""

import json

import numpy as np
import pytest

from tests import faults
from tests.faults import claim, judged, perturbed, recorded, status

pytestmark = pytest.mark.usefixtures("sample")   # every fault, on every sample

c05 = claim("test_c05_equilibrium")
c07 = claim("test_c07_fig2_sqrt_scaling")


def recorded_status(claim_id: str) -> str:
    """The status the sample report gave ``claim_id`` on ResNet-8."""
    verdicts = json.loads((faults.sample_report()).read_text())
    (v,) = [v for v in verdicts if v["id"] == claim_id and v["context"].get("model") == "resnet8"]
    return v["status"]


@pytest.fixture(scope="module")
def m5(sample):
    return recorded("C5-resnet8")


@pytest.fixture(scope="module")
def m7(sample):
    return recorded("C7-resnet8")


def test_c5_judges_the_recorded_measurements_as_the_report_did(m5):
    assert status(judged(c05, m5), new_miss=False)[0] == recorded_status("C5")


def test_c5_fails_when_weight_decay_is_passed_to_torch_as_lambda_instead_of_two_lambda(m5):
    # the runs then trained with λ/2: the judge, told λ, predicts x* too small by √2
    slipped = perturbed(m5, grid_lams=lambda v: 2 * v, starts_lams=lambda v: 2 * v)
    assert status(judged(c05, slipped))[0] == "fail"


MEAN_OF_G_AT_QUICK = pytest.mark.xfail(strict=True, reason=(
    "not resolvable on the quick budget's data since it became width 8, batch 16 (measured on "
    "reports/sample, 384 steps, two seeds, the 12 of 18 configurations at equilibrium: the slip "
    "moves the worst |r|/allowance from 0.37 to 0.69 and the pooled gap from +0.020 to +0.064, "
    "inside its interval ±0.074); it was caught at width 16, batch 32, and it is at the article "
    "budget. Strict: the day C5 resolves it again at quick this test XPASSes and fails, and the "
    "mark must go."))


def test_c5_fails_when_the_mean_of_G_replaces_its_rms(m5, monkeypatch, sample, request):
    from wd_claims import equilibrium, stats

    if sample == "quick":
        request.applymarker(MEAN_OF_G_AT_QUICK)
    monkeypatch.setattr(equilibrium, "block_rms",
                        lambda G: stats.block_means(G, equilibrium.N_BLOCKS))
    verdict = judged(c05, m5)
    assert status(verdict)[0] == "fail", status(verdict)[1]


def test_c5_fails_when_weight_decay_is_switched_off(m5):
    # what a λ = 0 run records, labelled with the λ it should have trained with
    off = np.flatnonzero(m5["starts_lams"] == 0)
    on = np.flatnonzero(m5["starts_lams"] > 0)
    sx, sG = m5["starts_x"].copy(), m5["starts_G"].copy()
    sx[on], sG[on] = sx[off], sG[off]
    assert status(judged(c05, perturbed(m5, starts_x=sx, starts_G=sG)))[0] == "fail"


def test_c5_fails_when_the_fixed_point_is_off_by_a_few_percent(m5):
    assert status(judged(c05, perturbed(m5, grid_x=lambda x: 1.1 * x)))[0] == "fail"


def test_c7_judges_the_recorded_measurements_as_the_report_did(m7):
    assert status(judged(c07, m7), new_miss=False)[0] == recorded_status("C7")


@pytest.mark.parametrize("wrong", [0.25, 0.4, 0.6, 1.0])
def test_c7_fails_for_a_wrong_exponent(m7, wrong):
    assert status(judged(c07, m7, exponent=wrong))[0] == "fail"


def test_c7_fails_when_the_norm_follows_another_power_of_eta_over_lambda(m7):
    bent = perturbed(m7, xbar=lambda x: x * (m7["etas"] / m7["lams"]) ** 0.15)
    assert status(judged(c07, bent))[0] == "fail"


def test_c7_fails_when_weight_decay_is_passed_to_torch_as_lambda_instead_of_two_lambda(m7):
    assert status(judged(c07, perturbed(m7, lams=lambda v: 2 * v)))[0] == "fail"


@pytest.mark.parametrize("factor", [5.0, 8.0])
def test_c7_fails_when_its_interval_is_widened(m7, monkeypatch, sample, request, factor):
    """The interval C7's statement reads, computed with ``factor``× the standard error. Its
    resolution (half-width ≤ 0.10) catches it where the widened interval exceeds ±0.10: at quick
    (±0.095 honestly) both do; at the article budget (±0.0155 honestly) 5× gives ±0.078, which
    turns the honest FAIL (0.5 ∉ [0.510, 0.541]) into a PASS: a power gap of a fixed resolution
    where the data resolve far more finely, declared strict."""
    if sample == "article" and factor == 5.0:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "at the article budget a 5× wider interval (±0.078) still meets C7's stated ±0.10 "
            "resolution and contains ½: the honest FAIL turns into a PASS (docs/regimes.md)")))
    ols = c07.stats.ols

    def widened(y, regressors, **kw):  # a t-interval computed with ``factor``× the stderr
        fit = ols(y, regressors, **kw)
        half = (fit.ci[:, 1] - fit.ci[:, 0]) / 2
        ci = np.column_stack([fit.coef - factor * half, fit.coef + factor * half])
        return type(fit)(fit.coef, factor * fit.stderr, ci, fit.df, fit.level, fit.names)

    monkeypatch.setattr(c07.stats, "ols", widened)
    verdict = judged(c07, m7)
    assert status(verdict, new_miss=False)[0] == "fail"
    raw = next(c for c in verdict.checks if c.id == "raw_exponent_half")
    low, high = raw.tolerance
    assert not raw.holds and (high - low) / 2 > 0.1   # caught by the resolution, not the centre
