"""The models a claim can be fed: a name, a factory, its normalization-free control, its input.

Claims are plain test functions taking a ``model_spec``; the plugin parametrizes them over this
registry (ids are the names, so ``pytest -k resnet8`` works), the way scikit-learn's
``parametrize_with_checks`` feeds estimators to its checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from wd_claims import models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]               # keyword arguments only, fresh random init
    control: Callable[..., nn.Module] | None = None  # same network, normalization removed
    input_shape: tuple[int, ...] = (3, 32, 32)      # one example, without the batch dimension
    num_classes: int = 10
    description: str = ""

    def build(self, **kw) -> nn.Module:
        return _checked(self.name, self.factory, kw)

    def build_control(self, **kw) -> nn.Module | None:
        return None if self.control is None else _checked(f"{self.name} control", self.control, kw)


class ModelFactoryError(RuntimeError):
    """A model factory raised or returned something that is not an ``nn.Module``."""


def _factory_name(factory: Callable) -> str:
    """``module.qualname`` of a factory (its repr when it has none, e.g. a partial)."""
    qual, module = getattr(factory, "__qualname__", None), getattr(factory, "__module__", None)
    return f"{module}.{qual}" if qual and module else repr(factory)


def factory_identity(factory: Callable) -> dict:
    """Module, qualified name and a hash of the source of a model factory: the part of a cache key
    that keeps two models (a user's and the zoo's, or two versions of one) from sharing runs."""
    import hashlib
    import inspect

    target = getattr(factory, "func", factory)  # functools.partial: the wrapped function
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):  # built in, or defined where no source is kept
        source = repr(target)
    return {"name": _factory_name(factory),
            "source_sha256": hashlib.sha256(source.encode()).hexdigest()[:16],
            "partial": repr(getattr(factory, "keywords", None) or "")}


def _checked(name: str, factory: Callable[..., nn.Module], kw: dict) -> nn.Module:
    label = f"model factory {name!r} ({_factory_name(factory)})"
    try:
        module = factory(**kw)
    except Exception as exc:  # the user's factory: report it, naming the factory
        raise ModelFactoryError(f"{label} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelFactoryError(
            f"{label} returned {type(module).__name__}, not a torch.nn.Module")
    return module


MODELS: dict[str, ModelSpec] = {
    "resnet8": ModelSpec("resnet8", models.resnet8, models.resnet8_without_norm,
                         description="ResNet-8 (BatchNorm after every conv), 78,042 parameters"),
    "mlp_batchnorm": ModelSpec("mlp_batchnorm", models.mlp_batchnorm, models.mlp_without_norm,
                               description="MLP 3072-64-32-10, BatchNorm1d after each hidden "
                                           "linear"),
    "mlp_layernorm": ModelSpec("mlp_layernorm", models.mlp_layernorm, models.mlp_without_norm,
                               description="MLP 3072-64-32-10, LayerNorm after each hidden linear"),
    "conv_groupnorm": ModelSpec("conv_groupnorm", models.conv_groupnorm, models.conv_without_norm,
                                description="2-layer CNN (8, 16 channels), GroupNorm(4)"),
}


def require_scale_invariant(spec: ModelSpec, model: nn.Module | None = None) -> list[str]:
    """Names of the scale-invariant tensors of ``model`` (built from ``spec`` if not given), found
    by probing (:mod:`wd_claims.invariance`). A claim about scale-invariant tensors calls this first:
    for a model that has none it calls :func:`pytest.skip` with the reason, which the report shows
    as the claim's verdict, instead of failing on something the claim does not speak about.
    """
    import pytest

    from wd_claims.invariance import scale_invariant_names

    if model is None:
        model = spec.build()
    names = scale_invariant_names(model, spec.input_shape)
    if not names:
        pytest.skip(f"model {spec.name!r} has no scale-invariant parameter tensor (none feeds a "
                    "normalization), and this claim is about such tensors")
    return names
