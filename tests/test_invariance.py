"""The probing detector finds exactly the tensors that feed a normalization, in any architecture."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from wd_claims.models import MLP, ConvNet, resnet8

from wd_claims.invariance import (
    FLOAT64_RTOL,
    float64_exact,
    scale_invariance_map,
    scale_invariant_names,
)
from wd_claims.probes import rescale_deviations

NORMS = ("batch", "layer", "group")


def test_detector_finds_every_resnet8_kernel_and_the_batchnorm_it_feeds():
    reports = {r.name: r for r in scale_invariance_map(resnet8(), (3, 32, 32))}
    kernels = [n for n in reports if n.endswith("weight") and "conv" in n or "shortcut.0" in n]
    assert {n for n, r in reports.items() if r.invariant} == set(kernels)
    assert reports["layer2.shortcut.0.weight"].normalization == "layer2.shortcut.1 (BatchNorm2d)"
    assert reports["layer1.conv2.weight"].normalization == "layer1.bn2 (BatchNorm2d)"
    assert not reports["fc.weight"].invariant


def test_detector_leaves_the_model_untouched():
    model = resnet8()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scale_invariance_map(model, (3, 32, 32))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_zero_bias_is_not_mistaken_for_a_scale_invariant_tensor():
    # At init BN biases are 0, so "scale the bias" is a no-op; the detector probes a generic point.
    reports = {r.name: r for r in scale_invariance_map(resnet8(), (3, 32, 32))}
    assert not reports["bn1.bias"].invariant and not reports["layer1.bn1.weight"].invariant


# Architectures as (kind, widths, norm); the model is built inside the test, after seeding.
architectures = st.one_of(
    st.tuples(st.just("mlp"), st.lists(st.sampled_from([4, 8, 12]), min_size=1, max_size=3),
              st.sampled_from(NORMS)),
    st.tuples(st.just("conv"), st.lists(st.sampled_from([4, 8]), min_size=1, max_size=3),
              st.sampled_from(NORMS)),
)


def build(kind: str, widths: list[int], norm: str):
    """(model, input shape, the kernels that feed a normalization by construction)."""
    if kind == "mlp":
        model = MLP(in_features=12, hidden=tuple(widths), norm=norm)
        kernels = [f"net.{1 + 3 * i}.weight" for i in range(len(widths))] if norm != "none" else []
        return model, (12,), kernels
    model = ConvNet(in_channels=2, channels=tuple(widths), norm=norm)
    kernels = [f"features.{3 * i}.weight" for i in range(len(widths))] if norm != "none" else []
    return model, (2, 8, 8), kernels


@given(arch=architectures, seed=st.integers(0, 2**16),
       log2_rho=st.floats(-8, 8).filter(lambda v: abs(v) > 0.1))
def test_detector_finds_exactly_the_kernels_feeding_a_normalization(arch, seed, log2_rho):
    torch.manual_seed(seed)
    model, shape, expected = build(*arch)
    assert scale_invariant_names(model, shape, seed=seed) == expected
    # …and invariance holds for a random ρ, not only the detector's probe values.
    twin = float64_exact(model)
    x = torch.randn(6, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    for name in expected:
        dev = rescale_deviations(twin, x, y, name, [2.0**log2_rho])
        assert max(dev["output"]) < FLOAT64_RTOL


@given(arch=architectures, seed=st.integers(0, 2**16))
def test_without_normalization_no_tensor_is_scale_invariant(arch, seed):
    kind, widths, _ = arch
    torch.manual_seed(seed)
    model, shape, expected = build(kind, widths, "none")
    assert expected == [] and scale_invariant_names(model, shape, seed=seed) == []


@pytest.mark.parametrize("rho", [2.0**-7, 0.3, 3.0, 2.0**7])
def test_batchnorm_in_eval_mode_is_not_scale_invariant(rho):
    # Running statistics are fixed: only batch statistics (training mode) absorb the scale.
    model = float64_exact(resnet8()).eval()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    dev = rescale_deviations(model, x, torch.zeros(4, dtype=torch.long), "conv1.weight", [rho])
    assert np.max(dev["output"]) > 1e-3


def test_a_batchnorms_gamma_and_beta_are_invariant_only_jointly():
    # γ and β of the first norm feed ReLU → Linear → norm: scaling both is absorbed, either alone is
    # not (at a generic point).
    from wd_claims.invariance import joint_invariant_groups

    torch.manual_seed(0)
    groups = joint_invariant_groups(MLP(in_features=12, hidden=(8, 8), norm="batch"), (12,))
    assert [(g.names, g.normalization) for g in groups] == [
        (("net.2.weight", "net.2.bias"), "net.5 (BatchNorm1d)")]


def test_no_joint_group_is_reported_without_normalization():
    from wd_claims.invariance import joint_invariant_groups

    torch.manual_seed(0)
    assert joint_invariant_groups(MLP(in_features=12, hidden=(8, 8), norm="none"), (12,)) == []


def test_dropout_and_stochastic_depth_do_not_hide_the_invariant_kernels():
    # torchvision's MobileNetV3, EfficientNet, ConvNeXt and Swin carry dropout or stochastic depth,
    # active in training mode: before the probes switched them off, no tensor looked invariant.
    from torch import nn
    from torchvision.ops import StochasticDepth

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
            self.drop = StochasticDepth(0.5, "row")

        def forward(self, x):
            return x + self.drop(self.bn(self.conv(x)))

    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), Residual(),
                          nn.Flatten(), nn.Dropout(0.5), nn.LazyLinear(10))
    model(torch.randn(2, 3, 8, 8))
    invariant = scale_invariant_names(model, (3, 8, 8))
    assert invariant == ["0.weight", "2.conv.weight"]
    assert model.training and model[4].training   # the user's model is left as it was
