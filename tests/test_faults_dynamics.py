"""Injected faults for C4, C6, C8: realistic bugs fed to each claim's judge must make it FAIL,
and the honest recorded measurements must give the recorded verdict's status."""

import json

import numpy as np
import pytest

from tests import faults
from tests.faults import claim, judged, perturbed, recorded, status

pytestmark = pytest.mark.usefixtures("sample")   # every fault, on every sample

C4 = claim("test_c04_spiral_out")
C6 = claim("test_c06_effective_lr")
C8 = claim("test_c08_effective_lr_scaling")


def recorded_status(claim_id):
    """The status the sample report filed for ``claim_id``."""
    path = faults.sample_report()
    verdicts = json.loads(path.read_text())
    return next(v["status"] for v in verdicts if v["id"] == claim_id)


@pytest.mark.parametrize(("module", "name", "claim_id"), [
    (C4, "C4-resnet8", "C4"), (C6, "C6-resnet8", "C6"), (C8, "C8-resnet8", "C8")])
def test_the_honest_measurements_give_the_recorded_status(module, name, claim_id):
    assert status(judged(module, recorded(name)), new_miss=False)[0] == recorded_status(claim_id)


# --- C4 ---------------------------------------------------------------------------------------

def with_radial_component(m, alpha, tensors=None):
    """g' = g + α‖g‖ŵ on the chosen tensors (all by default): the step Δx gains
    −2ηα‖g‖‖w‖ + η²α²‖g‖² and the recorded ‖g‖, cos(g, w) change accordingly."""
    out = perturbed(m)
    idx = slice(None) if tensors is None else tensors
    x, g = out["x"][:, idx], out["g"][:, idx]
    eta = out["eta"][:, None, None]
    dx = np.diff(x, axis=-1) - 2 * eta * alpha * g[..., :-1] * np.sqrt(x[..., :-1]) \
        + eta**2 * alpha**2 * g[..., :-1] ** 2
    out["x"][:, idx] = np.concatenate([x[..., :1], x[..., :1] + np.cumsum(dx, axis=-1)], -1)
    out["g"][:, idx] = g * np.sqrt(1 + alpha**2)
    out["cos"][:, idx] = alpha / np.sqrt(1 + alpha**2)
    return out


def test_c4_fails_when_the_momentum_run_is_fed_as_the_plain_run():
    m = recorded("C4-resnet8")
    T = m["mom_x"].shape[-1]
    faulty = perturbed(m, x=m["mom_x"], g=m["mom_g"], cos=m["mom_cos"], eta=m["mom_eta"],
                       lam=np.zeros(1), scales=m["scales"][:1], probe=m["probe"][:1])
    assert faulty["x"].shape[-1] == T
    assert status(judged(C4, faulty))[0] == "fail"


def test_c4_fails_with_a_radial_gradient_component():
    assert status(judged(C4, with_radial_component(recorded("C4-resnet8"), 1e-3)))[0] == "fail"


def test_c4_fails_when_the_second_batchnorm_of_each_block_is_removed():
    m = recorded("C4-resnet8")
    conv2 = [i for i, n in enumerate(m["tensors"]) if str(n).endswith("conv2.weight")]
    assert conv2
    # without its BN the block's second kernel is no longer scale-invariant: a radial gradient
    # component of the size C2's no-normalization control measures (≥ 1e-3)
    assert status(judged(C4, with_radial_component(m, 1e-2, conv2)))[0] == "fail"


def test_c4_fails_when_weight_decay_is_on_where_lambda_zero_is_meant():
    m = recorded("C4-resnet8")
    faulty = perturbed(m, x=m["wd_x"], g=m["wd_g"], cos=m["wd_cos"])
    assert status(judged(C4, faulty))[0] == "fail"


# --- C6 ---------------------------------------------------------------------------------------

def test_c6_fails_with_a_factor_two_slip_in_the_weight_decay():
    m = recorded("C6-resnet8")
    s = m["eta"] * m["lam"]
    # f was computed with a = 1 − 2ηλ; with λ doubled the same residuals give f·(a−1)/(a'−1)…
    # re-derive it as the judge would see the slipped convention: factor read against 1 − 4ηλ
    faulty = perturbed(m, f=lambda f: f * (1 - 2 * s)[:, None] / (1 - 4 * s)[:, None])
    assert status(judged(C6, faulty))[0] == "fail"


def test_c6_fails_when_the_article_factor_residual_is_passed_as_the_exact_one(sample, request):
    if sample == "article":
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "not resolvable at the article budget: there the honest second-order slope already "
            "misses sympy's 2 (1.980 [1.977, 1.984], reports/article) and the swap moves it to "
            "1.977, inside that interval; the factors differ by 1/(1 − 2ηλ) ≤ 1.005 on its grid, "
            "against 1.25 at quick, where the swap moves the slope from 1.951 to 1.907")))
    m = recorded("C6-resnet8")
    assert status(judged(C6, perturbed(m, exact=m["article"])))[0] == "fail"


# --- C8 ---------------------------------------------------------------------------------------

def test_c8_fails_with_a_factor_two_slip_in_the_weight_decay():
    m = recorded("C8-resnet8")
    assert status(judged(C8, perturbed(m, lam=lambda lam: 2 * lam)))[0] == "fail"


@pytest.mark.parametrize("exponent", [0.25, 1.0])
def test_c8_fails_when_the_data_follow_a_wrong_exponent(exponent):
    m = recorded("C8-resnet8")
    s = m["eta"] * m["lam"]
    faulty = perturbed(m, eta_e=lambda e: e * s ** (exponent - 0.5))
    assert status(judged(C8, faulty))[0] == "fail"


def test_c8_fails_when_the_momentum_run_is_fed_as_plain():
    m = recorded("C8-resnet8")
    k = 4  # the grid's middle (η, λ): its angle blocks replaced by the momentum run's
    faulty = perturbed(m, **{key: _replace_row(m[key], k, m[f"mom_{key}"][0])
                             for key in ("logcos", "half", "radial")})
    assert status(judged(C8, faulty))[0] == "fail"


def _replace_row(a, k, row):
    out = np.array(a, copy=True)
    out[k] = row
    return out


def test_c8_fails_when_the_gradient_has_a_radial_component_that_moves_the_angle():
    m = recorded("C8-resnet8")
    shift = -0.05 * np.abs(np.log(1 - 2 * m["eta"] * m["lam"]))[:, None]  # 5 % of log cos θ*
    faulty = perturbed(m, radial=lambda r: r + shift, logcos=lambda c: c + shift)
    assert status(judged(C8, faulty))[0] == "fail"
