"""ResNet-8's documented size, and the structure the claims rely on."""

import torch
from torch import nn
from wd_claims.models import CONTROLS, FACTORIES, resnet8, resnet8_without_norm


def multiply_accumulates(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """MACs per image in convolutions and linear layers, counted from a forward pass."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


def test_resnet8_has_the_parameter_count_its_docstring_states():
    assert sum(p.numel() for p in resnet8().parameters()) == 78_042


def test_resnet8_has_the_multiply_accumulates_its_docstring_states():
    assert multiply_accumulates(resnet8()) == 12_501_632


def test_resnet8_has_seven_3x3_and_two_1x1_kernels_each_followed_by_batchnorm():
    convs = [m for m in resnet8().modules() if isinstance(m, nn.Conv2d)]
    assert sorted(c.kernel_size for c in convs) == [(1, 1)] * 2 + [(3, 3)] * 7
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in resnet8().modules()) == 9


def test_the_control_has_the_same_kernels_and_no_normalization():
    net, ctrl = resnet8(), resnet8_without_norm()
    kernels = {n: p.shape for n, p in net.named_parameters() if p.dim() == 4}
    assert kernels == {n: p.shape for n, p in ctrl.named_parameters() if p.dim() == 4}
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in ctrl.modules())


def test_every_factory_maps_cifar_shaped_images_to_ten_logits():
    x = torch.randn(4, 3, 32, 32)
    for name, factory in {**FACTORIES, **{f"{k}-control": v for k, v in CONTROLS.items()}}.items():
        assert factory()(x).shape == (4, 10), name
