"""ResNet-8 for CIFAR-10, the network of the article's Fig. 2.

Layout (He et al. 2016, CIFAR variant, one basic block per stage)::

    conv3x3(3→16) BN ReLU
    stage 1: BasicBlock(16→16, stride 1)       32×32
    stage 2: BasicBlock(16→32, stride 2)       16×16, projection shortcut conv1x1 + BN
    stage 3: BasicBlock(32→64, stride 2)        8×8,  projection shortcut conv1x1 + BN
    global average pool, linear(64→10)

Every convolution is bias-free and followed by a BatchNorm, so every conv kernel (7 3x3 kernels and
2 1x1 shortcut kernels) is scale-invariant in training mode; the classifier is not.

Size at ``width=16``: **78,042 parameters**; **12,501,632 multiply-accumulates per 32×32 image**
in the convolutions and the classifier (BN, ReLU, pooling and additions not counted).
``tests/test_models.py`` recomputes both numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Norm = Callable[[int], nn.Module]


def batchnorm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


def no_norm(channels: int) -> nn.Module:
    return nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = norm(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8; ``width`` scales the three stage widths (width, 2·width, 4·width)."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3,
                 norm: Norm = batchnorm):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn1 = norm(w)
        self.layer1 = BasicBlock(w, w, 1, norm)
        self.layer2 = BasicBlock(w, 2 * w, 2, norm)
        self.layer3 = BasicBlock(2 * w, 4 * w, 2, norm)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def resnet8(*, num_classes: int = 10, width: int = 16) -> ResNet8:
    return ResNet8(num_classes=num_classes, width=width)


def resnet8_without_norm(*, num_classes: int = 10, width: int = 16) -> ResNet8:
    """The negative control: ResNet-8 with every BatchNorm replaced by the identity."""
    return ResNet8(num_classes=num_classes, width=width, norm=no_norm)
