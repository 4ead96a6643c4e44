"""Small scale-invariant networks and their normalization-free controls.

``MLP``: linear layers each feeding a normalization (BatchNorm1d or LayerNorm), then a linear
classifier. ``ConvNet``: 3x3 convolutions each feeding a normalization (BatchNorm2d or GroupNorm),
then global pooling and a linear classifier. With ``norm="none"`` the normalizations are identities
and no kernel is scale-invariant. Inputs are CIFAR-shaped (3×32×32) unless told otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "layer", "group", "none")


def _norm1d(kind: str, features: int) -> nn.Module:
    return {"batch": lambda: nn.BatchNorm1d(features), "layer": lambda: nn.LayerNorm(features),
            # Groups of four features: a 1-feature group has zero variance, and a 2-feature group
            # normalizes to ±1 whatever its input, which makes everything upstream look invariant.
            "group": lambda: nn.GroupNorm(max(1, features // 4) if features % 4 == 0 else 1,
                                          features),
            "none": nn.Identity}[kind]()


def _norm2d(kind: str, channels: int) -> nn.Module:
    return {"batch": lambda: nn.BatchNorm2d(channels),
            "layer": lambda: nn.GroupNorm(1, channels),  # LayerNorm over (C, H, W)
            "group": lambda: nn.GroupNorm(min(4, channels), channels),
            "none": nn.Identity}[kind]()


class MLP(nn.Module):
    """Flatten → [Linear → Norm → ReLU] × len(hidden) → Linear."""

    def __init__(self, in_features: int = 3 * 32 * 32, hidden: tuple[int, ...] = (64, 32),
                 num_classes: int = 10, norm: str = "batch", bias: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), _norm1d(norm, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """[Conv3x3 → Norm → ReLU (→ stride-2 after the first)] × len(channels) → pool → Linear."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (8, 16),
                 num_classes: int = 10, norm: str = "group"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, h in enumerate(channels):
            layers += [nn.Conv2d(c, h, 3, 1 if i == 0 else 2, 1, bias=False), _norm2d(norm, h),
                       nn.ReLU()]
            c = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def mlp_batchnorm(**kw) -> MLP:
    return MLP(norm="batch", **kw)


def mlp_layernorm(**kw) -> MLP:
    return MLP(norm="layer", **kw)


def mlp_without_norm(**kw) -> MLP:
    return MLP(norm="none", **kw)


def conv_groupnorm(**kw) -> ConvNet:
    return ConvNet(norm="group", **kw)


def conv_without_norm(**kw) -> ConvNet:
    return ConvNet(norm="none", **kw)
