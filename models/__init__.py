"""Networks under test. Pure ``nn.Module`` definitions; this package imports only torch.

Every factory takes keyword arguments only and returns a fresh, randomly initialised module, so a
claim can be parametrized over factories (``FACTORIES``) exactly like scikit-learn's estimator
checks.
"""

from types import MappingProxyType

from wd_claims.models.resnet import ResNet8, resnet8, resnet8_without_norm
from wd_claims.models.toys import (
    MLP,
    ConvNet,
    conv_groupnorm,
    conv_without_norm,
    mlp_batchnorm,
    mlp_layernorm,
    mlp_without_norm,
)

# Factories whose every conv/linear kernel but the classifier feeds a normalization.
FACTORIES = MappingProxyType({
    "resnet8": resnet8,
    "mlp_batchnorm": mlp_batchnorm,
    "mlp_layernorm": mlp_layernorm,
    "conv_groupnorm": conv_groupnorm,
})
# The same architectures with every normalization replaced by the identity: the negative controls.
CONTROLS = MappingProxyType({
    "resnet8": resnet8_without_norm,
    "mlp_batchnorm": mlp_without_norm,
    "mlp_layernorm": mlp_without_norm,
    "conv_groupnorm": conv_without_norm,
})

__all__ = [
    "CONTROLS", "ConvNet", "FACTORIES", "MLP", "ResNet8", "conv_groupnorm", "conv_without_norm",
    "mlp_batchnorm", "mlp_layernorm", "mlp_without_norm", "resnet8", "resnet8_without_norm",
]
