"""Probes on hand-checkable models: a linear map whose gradients are known in closed form."""

import torch
from torch import nn

from wd_claims.probes import (
    grad_weight_cosines,
    gradients_under_rescaling,
    loglog_slope,
    rescale_deviations,
    rescaled,
)


def linear_model() -> nn.Module:
    model = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return model


def test_rescaled_restores_the_tensor_bit_for_bit():
    model = linear_model()
    before = model.weight.detach().clone()
    with rescaled(model, "weight", 0.3):
        torch.testing.assert_close(model.weight.detach(), 0.3 * before)
    assert torch.equal(model.weight.detach(), before)


def test_rescale_deviation_of_a_linear_model_is_rho_minus_one():
    # Logits are linear in W, so ‖f(ρW) − f(W)‖/‖f(W)‖ = |ρ − 1| exactly.
    x, y = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([0])
    dev = rescale_deviations(linear_model(), x, y, "weight", [0.5, 3.0])
    assert abs(dev["output"][0] - 0.5) < 1e-15 and abs(dev["output"][1] - 2.0) < 1e-15


def test_gradient_weight_cosine_matches_a_hand_computation():
    # L = CE(Wx, 0), x = (1, 1), W = diag(1, 2): logits (1, 2), softmax p = (1, e)/(1 + e);
    # ∂L/∂W = (p − e₀) xᵀ = [[p₀ − 1, p₀ − 1], [p₁, p₁]] with p₁ = 1 − p₀.
    x, y = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([0])
    p1 = torch.e / (1 + torch.e)
    g = torch.tensor([[-p1, -p1], [p1, p1]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    expected = float((g * w).sum() / (g.norm() * w.norm()))
    got = grad_weight_cosines(linear_model(), x, y, ["weight"])["weight"]
    assert abs(got - expected) < 1e-15


def test_loglog_slope_recovers_a_power_law():
    xs = [1e-2, 1e-1, 1.0, 10.0]
    assert abs(loglog_slope(xs, [x**-1 for x in xs]) + 1) < 1e-12
    assert abs(loglog_slope(xs, [3 * x**0.5 for x in xs]) - 0.5) < 1e-12


def test_gradients_under_rescaling_of_a_linear_model_do_not_scale_as_one_over_rho():
    # Without normalization the gradient is not homogeneous of degree −1: the probe must show it.
    x, y = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([0])
    grads = gradients_under_rescaling(linear_model(), x, y, "weight", [0.5, 1.0])
    assert not torch.allclose(0.5 * grads[0], grads[1])
