"""Injected faults for E1 (momentum SGD) and E2 (SGDW, AdamW): realistic bugs fed to the claims'
judges as perturbed copies of the recorded measurements (reports/sample/measurements), or as a
wrong derivation; each must FAIL, and the honest measurements must give the recorded status."""

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp

from tests import faults
from tests.faults import claim, failed_checks, judged, perturbed, recorded, status
from wd_claims import theory
from wd_claims.claim import derivation

pytestmark = pytest.mark.usefixtures("sample")   # every fault, on every sample

E1 = claim("test_e01_momentum_equilibrium")
E2 = claim("test_e02_decoupled_decay")
KINDS = ("sgdw", "adamw")


def recorded_status(name: str) -> str:
    """The status the sample report filed for the verdict whose measurements are ``name``: from
    latest.json, else from the newest timestamped report of the sample that holds it (a partial
    regeneration writes only its own verdicts to latest.json)."""
    reports = [faults.sample_report()] + sorted(faults.SAMPLE.parent.glob("2*.json"), reverse=True)
    for report in reports:
        if not report.exists():
            continue
        found = [v["status"] for v in json.loads(report.read_text())
                 if v.get("measurements") == f"measurements/{name}.npz"]
        if found:
            return found[0]
    pytest.fail(f"no verdict of {name} in the sample report", pytrace=False)


@pytest.fixture(scope="module")
def e1(sample):
    return recorded("E1-resnet8")


def e2(kind):
    return recorded(f"E2-conv_batchnorm-{kind}")


def with_expr(d, **exprs):
    """The derivation ``d`` with some expressions replaced (a bug in the prediction)."""
    return dataclasses.replace(d, exprs={**d.exprs, **exprs})


def honest(module):
    """The derivation claim ``module`` judges with (sympy's, every proof checked)."""
    return derivation(module.CLAIM.derive)


# --- E1 --------------------------------------------------------------------------------------

def test_e1_honest_measurements_give_the_recorded_status(e1):
    assert status(judged(E1, e1))[0] == recorded_status("E1-resnet8")


def test_e1_a_momentum_prediction_without_the_1_over_1_plus_mu_factor_fails(e1):
    d = honest(E1)
    wrong = with_expr(d, cos_drift=d.exprs["cos_drift"].subs(theory.mu, 0),
                      theta_star=d.exprs["theta_star"].subs(theory.mu, 0))
    verdict = judged(E1, e1, derivation_=wrong)
    assert status(verdict)[0] == "fail"
    assert any(i.startswith("angle_mu_0_9_") for i in failed_checks(verdict))


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_e1_a_factor_2_slip_in_the_weight_decay_convention_fails(e1, factor):
    verdict = judged(E1, perturbed(e1, lam=lambda lam: lam * factor))
    assert status(verdict)[0] == "fail"
    failed = failed_checks(verdict)
    assert "update_rule_identity" in failed
    assert any(i.startswith("angle_") for i in failed)


def test_e1_plain_sgd_data_fed_as_momentum_data_fails(e1):
    plain = np.flatnonzero(e1["mu"] == 0)
    momentum = np.flatnonzero(e1["mu"] > 0)
    assert len(plain) == len(momentum) > 0
    assert np.allclose(e1["eta"][plain] * e1["lam"][plain],
                       e1["eta"][momentum] * e1["lam"][momentum])

    def swap(a):
        a = a.copy()
        a[momentum] = a[plain]
        return a

    keys = ("cos", "x", "gnorm", "cos_gw", "cos_p", "x_p")
    verdict = judged(E1, perturbed(e1, **{k: swap for k in keys}))
    assert status(verdict)[0] == "fail"
    failed = failed_checks(verdict)
    assert "update_rule_identity" in failed
    assert any(i.startswith("angle_mu_0_9_") for i in failed)


# --- E2 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_e2_honest_measurements_give_the_recorded_status(kind):
    assert status(judged(E2, e2(kind)))[0] == recorded_status(f"E2-conv_batchnorm-{kind}")


@pytest.mark.parametrize("kind", KINDS)
def test_e2_a_wrong_beta1_dependence_1_minus_beta1_without_1_plus_beta1_fails(kind):
    """θ*² = 2ηλ_w(1−β₁) instead of 2ηλ_w(1−β₁)/(1+β₁): cos = (1 − ηλ_w(1−μ))e^{−δ/2}."""
    wrong = (1 - theory.eta * theory.lam_w * (1 - theory.mu)) * sp.exp(-theory.delta / 2)
    verdict = judged(E2, e2(kind), derivation_=with_expr(honest(E2), cos_drift=wrong))
    assert status(verdict)[0] == "fail"


@pytest.mark.parametrize("kind", KINDS)
def test_e2_the_recorded_beta1_dropped_to_zero_fails(kind):
    assert status(judged(E2, perturbed(e2(kind), mu=lambda mu: 0 * mu)))[0] == "fail"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_e2_a_factor_2_slip_in_the_decoupled_decay_fails(kind, factor):
    assert status(judged(E2, perturbed(e2(kind), lam_w=lambda lw: lw * factor)))[0] == "fail"


@pytest.mark.parametrize("kind", KINDS)
def test_e2_the_coupled_decay_formula_applied_to_decoupled_decay_fails(kind):
    """E1's coupled prediction with wd read as λ_w: cos = (1+μ−ηλ_w)e^{δ/2}/(μ + e^δ)."""
    mu, eta, lw, dl = theory.mu, theory.eta, theory.lam_w, theory.delta
    coupled = (1 + mu - eta * lw) * sp.exp(dl / 2) / (mu + sp.exp(dl))
    verdict = judged(E2, e2(kind), derivation_=with_expr(honest(E2), cos_drift=coupled))
    assert status(verdict)[0] == "fail"


@pytest.mark.parametrize("kind", KINDS)
def test_e2_the_radial_share_with_its_sign_flipped_fails(kind):
    """c → −c (u = (w_{t+1} − a·w_t)/η, the update's sign slipped): the norm balance then
    predicts the wrong angle, and AdamW's declared cause (c < 0 shrinks θ) no longer holds."""
    verdict = judged(E2, perturbed(e2(kind), rho=lambda r: -r, cos_uw=lambda c: -c))
    assert status(verdict)[0] == "fail"
    assert any(i.startswith("rms_angle_balance_") for i in failed_checks(verdict))
