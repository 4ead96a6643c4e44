"""Scale invariance up to a normalization's ε, told apart from no invariance (issue 24).

For each of BatchNorm, LayerNorm, GroupNorm, RMSNorm, weight standardization and weight
normalization: a tensor that is exactly invariant (ε numerically 0), one invariant up to the
layer's ε, and one that is not invariant, classified by the detector on the model as built (its
own ε, float64). Then C1–C3 on a weight-standardized CNN whose ε is a literal in forward (the
issue's case): PASS, "up to ε"; and injected faults that must still FAIL: a degree-1 tensor with a
tiny ε, a standardization whose ε is half the standard deviation (not an ε), a power 0.99 of the
standard deviation (a deviation that never fades).
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from examples.user_models import StdConv2d, WeightStandardizedCNN, std_conv_cnn
from tests.faults import claim, failed_checks, judged, status
from wd_claims import epsilon, theory
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.invariance import scale_invariance_map
from wd_claims.suite import as_spec

WIDTH = 16


class Standardized(nn.Module):
    """A linear layer whose kernel is standardized per output unit: (w − mean)/(std + ε)
    (``on="std"``) or (w − mean)/√(var + ε) (``on="variance"``)."""

    def __init__(self, eps: float, on: str = "std"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(WIDTH, 8) / 8**0.5)
        self._eps, self._on = eps, on   # not an ``eps`` attribute: the probes cannot zero it

    def forward(self, x):
        w = self.weight - self.weight.mean(1, keepdim=True)
        var = w.pow(2).mean(1, keepdim=True)
        scale = var.sqrt() + self._eps if self._on == "std" else (var + self._eps).sqrt()
        return x @ (w / scale).T


class EpsWeightNorm(nn.Module):
    """Weight normalization written by hand with an ε on the norm: g·v/(‖v‖ + ε) per unit."""

    def __init__(self, eps: float):
        super().__init__()
        self.v = nn.Parameter(torch.randn(WIDTH, 8) / 8**0.5)
        self.g = nn.Parameter(torch.ones(WIDTH, 1))
        self._eps = eps

    def forward(self, x):
        return x @ (self.g * self.v / (self.v.norm(dim=1, keepdim=True) + self._eps)).T


def _net(first: nn.Module, norm: nn.Module | None = None) -> nn.Module:
    """first → (norm) → ReLU → Linear(WIDTH, 4): the readout is the non-invariant tensor."""
    layers = [first] + ([norm] if norm is not None else []) + [nn.ReLU(), nn.Linear(WIDTH, 4)]
    return nn.Sequential(*layers)


def _linear():
    return nn.Linear(8, WIDTH, bias=False)


# (family, exact model, ε model, name of the normalized tensor, expected exponent of the ε model)
CASES = {
    "batchnorm": (lambda: _net(_linear(), nn.BatchNorm1d(WIDTH, eps=1e-30, affine=False)),
                  lambda: _net(_linear(), nn.BatchNorm1d(WIDTH, affine=False)), "0.weight", 2),
    "layernorm": (lambda: _net(_linear(), nn.LayerNorm(WIDTH, eps=1e-30,
                                                       elementwise_affine=False)),
                  lambda: _net(_linear(), nn.LayerNorm(WIDTH, elementwise_affine=False)),
                  "0.weight", 2),
    "groupnorm": (lambda: _net(_linear(), nn.GroupNorm(4, WIDTH, eps=1e-30, affine=False)),
                  lambda: _net(_linear(), nn.GroupNorm(4, WIDTH, affine=False)), "0.weight", 2),
    "rmsnorm": (lambda: _net(_linear(), nn.RMSNorm(WIDTH, eps=1e-300, elementwise_affine=False)),
                lambda: _net(_linear(), nn.RMSNorm(WIDTH, eps=1e-6, elementwise_affine=False)),
                "0.weight", 2),
    "weight standardization": (lambda: _net(Standardized(0.0)), lambda: _net(Standardized(1e-8)),
                               "0.weight", 1),
    "weight standardization, ε on the variance": (
        lambda: _net(Standardized(0.0, "variance")),
        lambda: _net(Standardized(1e-5, "variance")),
        "0.weight", 2),
    "weight normalization": (lambda: _net(weight_norm(_linear())),
                             lambda: _net(EpsWeightNorm(1e-9)), None, 1),
}


def _kinds(factory) -> dict[str, object]:
    torch.manual_seed(0)
    return {r.name: r for r in scale_invariance_map(factory(), (8,), exact_eps=False)}


def test_sympy_derives_that_an_eps_on_a_std_fades_as_one_over_rho_and_on_a_variance_as_its_square():
    d = theory.epsilon_exponents()
    assert all(d.proved.values())
    assert epsilon.derived_exponents() == (1, 2)


@pytest.mark.parametrize("family", list(CASES))
def test_each_normalization_gives_an_exact_an_up_to_eps_and_a_non_invariant_tensor(family):
    exact_factory, eps_factory, name, exponent = CASES[family]
    exact, eps = _kinds(exact_factory), _kinds(eps_factory)
    if name is None:   # weight normalization: the direction tensor, whatever its name
        name = next(n for n in exact if "original1" in n)
        eps_name = "0.v"
    else:
        eps_name = name
    assert exact[name].kind == "exact"
    assert eps[eps_name].kind == "up to ε"
    assert abs(eps[eps_name].exponent - exponent) <= epsilon.RESOLUTION
    readout = [n for n in exact if n.startswith(f"{len(exact_factory()) - 1}.weight")][0]
    assert exact[readout].kind == eps[readout].kind == "not invariant"


def test_weight_normalizations_gain_is_not_invariant_in_either_form():
    assert _kinds(CASES["weight normalization"][1])["0.g"].kind == "not invariant"
    exact = _kinds(CASES["weight normalization"][0])
    gain = next(n for n in exact if "original0" in n)
    assert exact[gain].kind == "not invariant"


def test_the_law_is_a_pure_function_that_needs_the_derived_exponent_and_a_small_scale():
    rhos = np.array(epsilon.SCAN_RHOS)
    tol = 1e-13

    def fading(size, p, influence=1.0):   # saturates at ``influence`` as ρ → 0
        return influence * size / (rhos**p + size)

    for p in (1, 2):
        law = epsilon.law(rhos, fading(1e-11, p), tol)
        assert law.fades and law.nearest == p and abs(law.exponent - p) < 1e-3
        assert law.at_one == pytest.approx(1e-11, rel=1e-3)
    assert not epsilon.law(rhos, fading(1e-11, 1.5), tol).fades          # neither exponent
    assert not epsilon.law(rhos, np.full(len(rhos), 0.3), tol).fades     # does not fade
    assert not epsilon.law(rhos, fading(0.05, 1), tol).fades             # a bias, not an ε
    # the same bias behind a layer scale of 1e-6: as small as an ε, as large a share of its
    # tensor's influence as before
    assert not epsilon.law(rhos, fading(0.05, 1, 1e-6), tol * 1e-6).fades
    assert epsilon.law(rhos, fading(0.05, 2), tol).fades                 # ε on a variance


# --- C1–C3 end to end -------------------------------------------------------------------------

C1, C2, C3 = (claim(m) for m in ("test_c01_scale_invariance", "test_c02_orthogonality",
                                  "test_c03_gradient_scaling"))
DECLARED = {"features.0.weight", "features.2.weight", "features.4.weight"}


class DegreeOneConv(nn.Conv2d):
    """Fault: the kernel centred and divided by (1 + 1e-12) — homogeneous of degree 1 with a tiny
    ε, declared invariant."""

    def forward(self, x):
        w = self.weight
        return self._conv_forward(x, (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (1 + 1e-12),
                                  self.bias)


class HalfStdEpsConv(StdConv2d):
    """Fault: standardized with an "ε" fixed at half the initial kernel's standard deviation:
    not an ε, an additive term of the deviation's own size."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._eps = 0.5 * float(self.weight.detach().std())

    def forward(self, x):
        w = self.weight
        std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(x, (w - w.mean(dim=(1, 2, 3), keepdim=True))
                                  / (std + self._eps), self.bias)


class NearlyStandardizedConv(StdConv2d):
    """Fault: divided by std^0.99 — homogeneous of degree 0.01: the deviation never fades."""

    def forward(self, x):
        w = self.weight
        std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(x, (w - w.mean(dim=(1, 2, 3), keepdim=True)) / std**0.99,
                                  self.bias)


def _factory(conv):
    def factory():
        return WeightStandardizedCNN(conv=conv)

    factory.expected_invariant = DECLARED
    return factory


@pytest.fixture(scope="module")
def probe_batch():
    batch = DeviceData.from_images(standin_cifar(16, seed=0))
    return batch.x, batch.y, batch.name


def _identity(verdict):
    """The claim's identity check (C1's invariance, C2's orthogonality, C3's homogeneity)."""
    ids = {"invariant_float64", "orthogonal_float64", "homogeneous_float64"}
    return next(c for c in verdict.checks if c.id in ids)


def _verdicts(factory, probe_batch):
    spec = as_spec("net", factory)
    return {c: judged(c, c.probe(spec, *probe_batch)) for c in (C1, C2, C3)}


def test_a_weight_standardized_cnn_with_a_literal_eps_passes_c1_to_c3_up_to_eps(probe_batch):
    for module, v in _verdicts(std_conv_cnn, probe_batch).items():
        assert status(v) == ("pass", ""), (module.__name__, v.reason)
        assert "up to ε" in _identity(v).name
        notes = " ".join(v.notes)
        assert "scale-invariant up to ε: deviation ∝ ρ^−1.0" in notes, module.__name__


@pytest.mark.parametrize("conv", [DegreeOneConv, HalfStdEpsConv, NearlyStandardizedConv])
def test_a_tensor_that_is_not_invariant_up_to_an_eps_still_fails_c1_to_c3(conv, probe_batch):
    verdicts = _verdicts(_factory(conv), probe_batch)
    for module, v in verdicts.items():
        assert status(v)[0] == "fail", module.__name__
        assert "up to ε" not in _identity(v).name
    assert "invariant_float64" in failed_checks(verdicts[C1])
