"""Worked examples of "verify any model": factories a user would pass to ``--model``.

    pytest claims/ --model examples.user_models:groupnorm_cnn
    pytest claims/ --model examples.user_models:tiny_transformer
    pytest claims/ --model examples.user_models:torchvision_resnet18 --budget smoke
    pytest claims/ --model examples.user_models:weight_standardized_cnn --budget smoke
    pytest claims/ --model examples.user_models:std_conv_cnn -m "c01 or c02 or c03"

Each factory returns a fresh network mapping (B, 3, 32, 32) images to 10 logits; a ``control``
attribute gives the same network without normalization (the claims' negative control), and an
``expected_invariant`` attribute (a predicate over (name, parameter), or a set of names) declares
which tensors should be scale-invariant, for C1 to hold the detector to.
"""

from __future__ import annotations

import torch
from torch import nn


class GroupNormCNN(nn.Module):
    """Three 3x3 convs (16, 32, 64 channels, stride 2 after the first), each → GroupNorm(8) →
    ReLU."""

    def __init__(self, norm: bool = True):
        super().__init__()
        layers, c = [], 3
        for i, h in enumerate((16, 32, 64)):
            layers += [nn.Conv2d(c, h, 3, 1 if i == 0 else 2, 1, bias=False),
                       nn.GroupNorm(8, h) if norm else nn.Identity(), nn.ReLU()]
            c = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """A one-block pre-LN vision transformer: 8×8 patches → 16 tokens of width 48 → attention (4
    heads) and MLP, each behind a LayerNorm, residual stream → final LayerNorm → mean → linear."""

    def __init__(self, norm: bool = True, width: int = 48):
        super().__init__()
        make_norm = (lambda: nn.LayerNorm(width)) if norm else nn.Identity
        self.patch = nn.Conv2d(3, width, 8, 8)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 16, width))
        self.ln1, self.ln2, self.ln_out = make_norm(), make_norm(), make_norm()
        self.attn = nn.MultiheadAttention(width, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        a = self.ln1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.mlp(self.ln2(h))
        return self.head(self.ln_out(h).mean(dim=1))


class WSConv2d(nn.Conv2d):
    """A convolution with weight standardization (Qiao et al. 2019): each output channel's kernel
    is centred and divided by its standard deviation before use, so the kernel is scale-invariant
    through this reparametrization alone, with no normalization module after it. ``eps`` is a
    float attribute, so the probes' float64 twin sets it to (numerically) zero like a norm's."""

    eps: float = 1e-5

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(x, (w - mean) / (var + self.eps).sqrt(), self.bias)


class StdConv2d(nn.Conv2d):
    """Weight standardization as Big Transfer and timm's ``StdConv2d`` write it: the kernel
    standardized in forward as (w − mean)/(std + 1e-12), the ε a literal the probes cannot set to
    zero. Scale-invariant up to that ε: the deviation fades as ρ⁻¹ (ε on a standard deviation)."""

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self._conv_forward(x, (w - mean) / (std + 1e-12), self.bias)


class WeightStandardizedCNN(nn.Module):
    """Three weight-standardized 3x3 convs (16, 32, 64 channels, stride 2 after the first), each
    → ReLU, no normalization layer; mean pool → linear. ``standardize=False``: plain convs;
    ``conv``: the convolution class (default :class:`WSConv2d`)."""

    def __init__(self, standardize: bool = True, conv: type[nn.Conv2d] = WSConv2d):
        super().__init__()
        conv = conv if standardize else nn.Conv2d
        layers, c = [], 3
        for i, h in enumerate((16, 32, 64)):
            layers += [conv(c, h, 3, 1 if i == 0 else 2, 1, bias=False), nn.ReLU()]
            c = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def groupnorm_cnn() -> nn.Module:
    """GroupNorm CNN (3 convs, GroupNorm(8) after each)."""
    return GroupNormCNN()


def tiny_transformer() -> nn.Module:
    """One-block pre-LayerNorm vision transformer."""
    return TinyTransformer()


def weight_standardized_cnn() -> nn.Module:
    """Weight-standardized CNN (3 convs, no normalization layer): invariance by reparametrization.
    It declares no ``control`` on purpose: the automatic one (normalizations replaced by the
    identity) changes nothing here, and the claims say "no control available"."""
    return WeightStandardizedCNN()


def std_conv_cnn() -> nn.Module:
    """The same CNN with :class:`StdConv2d`: invariant only up to the literal ε = 1e-12, so C1–C3
    judge it "up to ε", on the ε-free statement at large ρ."""
    return WeightStandardizedCNN(conv=StdConv2d)


def torchvision_resnet18() -> nn.Module:
    """torchvision's resnet18, randomly initialized, 10 classes (BatchNorm after every conv)."""
    from torchvision.models import resnet18

    return resnet18(num_classes=10)


def _resnet18_without_norm() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(num_classes=10, norm_layer=lambda c: nn.Identity())


groupnorm_cnn.control = lambda: GroupNormCNN(norm=False)
groupnorm_cnn.expected_invariant = lambda name, p: p.dim() == 4  # every conv kernel
tiny_transformer.control = lambda: TinyTransformer(norm=False)
torchvision_resnet18.control = _resnet18_without_norm
weight_standardized_cnn.expected_invariant = {"features.0.weight", "features.2.weight",
                                              "features.4.weight"}
std_conv_cnn.expected_invariant = weight_standardized_cnn.expected_invariant
