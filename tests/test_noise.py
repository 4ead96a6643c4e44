"""wd_claims.noise: total variance from Gram matrices, the four displacements, the bootstrap
interval.

A linear softmax model (no normalization) has a batch gradient that is exactly the mean of
per-example gradients, so its noise obeys the finite-population algebra of wd_claims.theory: with a
pool of N = 4b examples the one-step/two-step ratio is 2(N − b)/(N − 2b) = 3, not 2.
"""

import numpy as np
import pytest
import torch
from torch import nn

from wd_claims import theory
from wd_claims.noise import (
    KINDS,
    bootstrap_interval,
    draw_displacements,
    total_variance,
    variance_ratio,
)


def test_total_variance_of_the_square_corners_is_eight_thirds():
    d = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    # Each corner is √2 from the centre (1, 1): Σ‖Dᵢ − D̄‖² = 8, over n − 1 = 3.
    assert total_variance(d @ d.T) == pytest.approx(8 / 3)
    assert total_variance(d @ d.T) == pytest.approx(np.trace(np.cov(d.T)))


def test_total_variance_ignores_a_common_offset():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((10, 5))
    shifted = d + 100.0
    assert total_variance(shifted @ shifted.T) == pytest.approx(total_variance(d @ d.T), rel=1e-9)


def _pool(n: int, dim: int = 8, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=gen)


def _linear(dim: int = 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(dim, classes).double()


def test_draws_leave_the_model_parameters_buffers_and_mode_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Linear(6, 3)).double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _pool(64)
    draws = draw_displacements(model, x, y, eta=0.1, batch_size=8, draws=4)
    assert set(draws.grams) == set(KINDS) and draws.draws == 4
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_the_same_seed_gives_the_same_gram_matrices():
    x, y = _pool(64)
    a = draw_displacements(_linear(), x, y, eta=0.1, batch_size=8, draws=5, seed=3)
    b = draw_displacements(_linear(), x, y, eta=0.1, batch_size=8, draws=5, seed=3)
    for k in KINDS:
        np.testing.assert_array_equal(a.grams[k], b.grams[k])


def test_two_steps_on_the_same_batch_become_one_double_step_as_eta_vanishes():
    # −η g(w₀, B₁) − η g(w₁, B₁) → −2η g(w₀, B₁) as w₁ → w₀: the Gram matrices agree to O(η).
    x, y = _pool(64)
    d = draw_displacements(_linear(), x, y, eta=1e-8, batch_size=8, draws=6)
    np.testing.assert_allclose(d.grams["two_steps_same_batch"], d.grams["one_step_2eta"],
                               rtol=1e-6)


def test_linear_model_noise_ratio_is_three_with_a_pool_of_four_batches():
    b, n = 8, 32
    x, y = _pool(n)
    draws = draw_displacements(_linear(), x, y, eta=1e-3, batch_size=b, draws=400, seed=1)
    expected = float(theory.c09_noise_variance().fn("ratio_epoch", theory.N_pool,
                                                    theory.b_size)(n, b))
    assert expected == pytest.approx(3.0)

    def frozen(g):
        return variance_ratio(g, "one_step_2eta", "two_steps_frozen")

    est, lo, hi = bootstrap_interval(frozen, draws.grams, n_resamples=999)
    assert lo <= expected <= hi, (est, lo, hi)
    assert not lo <= 2.0 <= hi, "the interval cannot tell the finite pool from independent noise"


def test_same_batch_control_ratio_is_near_one_and_excluded_from_two():
    x, y = _pool(256)
    draws = draw_displacements(_linear(), x, y, eta=1e-3, batch_size=8, draws=200, seed=2)

    def same(g):
        return variance_ratio(g, "one_step_2eta", "two_steps_same_batch")

    est, lo, hi = bootstrap_interval(same, draws.grams, n_resamples=999)
    assert est == pytest.approx(1.0, abs=0.02)
    assert hi < 2.0



@pytest.fixture(scope="module")
def trained_bn_mlp():
    """The development target of the C9 claim: a small BN network after 50 plain SGD steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 3)).double()
    x, y = _pool(2048)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = torch.randint(0, len(y), (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model, x, y


def test_bn_mlp_frozen_ratio_contains_the_epoch_prediction(trained_bn_mlp):
    model, x, y = trained_bn_mlp
    draws = draw_displacements(model, x, y, eta=0.1, batch_size=32, draws=128, seed=4)
    expected = float(theory.c09_noise_variance().fn("ratio_epoch", theory.N_pool,
                                                    theory.b_size)(len(y), 32))

    def frozen(g):
        return variance_ratio(g, "one_step_2eta", "two_steps_frozen")

    est, lo, hi = bootstrap_interval(frozen, draws.grams, n_resamples=999)
    assert lo <= expected <= hi, (est, lo, hi)


def test_bn_mlp_curvature_correction_shrinks_with_the_step(trained_bn_mlp):
    # Sequential / frozen two-step variance: 1 − 2ηh-ish (wd_claims.theory ratio_sequential), so
    # the correction shrinks roughly in proportion to η. Same draws (seed) for both η.
    model, x, y = trained_bn_mlp
    corrections = []
    for eta in (0.1, 0.01):
        g = draw_displacements(model, x, y, eta=eta, batch_size=32, draws=64, seed=5).grams
        corrections.append(1 - variance_ratio(g, "two_steps", "two_steps_frozen"))
    assert corrections[0] > 0 and abs(corrections[1]) < 0.3 * corrections[0], corrections


def test_small_step_kinds_tend_to_their_frozen_forms_as_the_step_vanishes():
    # −η(g(w₀,B₁) + g(w₀ − η_s g(w₀,B₁), B)) → −η(g(w₀,B₁) + g(w₀,B)) as η_s → 0, whatever η.
    x, y = _pool(64)
    d = draw_displacements(_linear(), x, y, eta=0.5, batch_size=8, draws=6, small_eta=1e-9)
    np.testing.assert_allclose(d.grams["same_batch_small_step"], d.grams["one_step_2eta"],
                               rtol=1e-6)
    np.testing.assert_allclose(d.grams["two_steps_small_step"], d.grams["two_steps_frozen"],
                               rtol=1e-6)
    assert variance_ratio(d.grams, "one_step_2eta", "same_batch_small_step") == pytest.approx(1.0)


def test_the_draws_in_channels_last_agree_with_the_plain_layout_to_float32_rounding(monkeypatch):
    # draw_contributions lays a float32 convolutional network out as the engine does
    # (channels_last): the same draws, the same gradients but for the summation order
    from wd_claims import noise
    from wd_claims.zoo import MODELS

    torch.manual_seed(0)
    model = MODELS["conv_batchnorm"].build()
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    assert noise.uses_channels_last(model, x.dtype)
    laid_out = noise.draw_contributions(model, x, y, eta=0.1, batch_size=16, draws=8, seed=3)
    monkeypatch.setattr(noise, "uses_channels_last", lambda *_: False)
    plain = noise.draw_contributions(model, x, y, eta=0.1, batch_size=16, draws=8, seed=3)
    for kind, values in plain.items():
        torch.testing.assert_close(laid_out[kind], values, rtol=1e-4, atol=0, msg=kind)
