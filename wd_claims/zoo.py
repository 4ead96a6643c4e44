"""The models a claim can be fed: a name, a factory, its normalization-free control, its input.

Claims are plain test functions taking a ``model_spec``; the plugin parametrizes them over this
registry (ids are the names, so ``pytest -k resnet8`` works), the way scikit-learn's
``parametrize_with_checks`` feeds estimators to its checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from types import MappingProxyType

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
    # The tensors the article says are scale-invariant in this model: a predicate over
    # (name, parameter), or a collection of names; None: nothing declared (C1 then judges the
    # detected set and says so). Declared, it is what the detector must find (C1) and what C2/C3
    # test beside the detected tensors.
    expected_invariant: Callable[[str, nn.Parameter], bool] | Collection[str] | None = None

    def __post_init__(self):
        # a collection of names is kept as a frozenset: a spec is hashable (the engine's probe of
        # its tracked tensors is memoized on it; a user's set broke every training claim)
        declared = self.expected_invariant
        if declared is not None and not callable(declared):
            names = {declared} if isinstance(declared, str) else declared
            object.__setattr__(self, "expected_invariant", frozenset(names))

    def build(self, **kw) -> nn.Module:
        return _checked(self.name, self.factory, kw)

    def expected_invariant_names(self, model: nn.Module) -> list[str] | None:
        """The declared scale-invariant tensors of ``model`` (a build of this spec), in
        ``named_parameters`` order; None when the spec declares nothing. A declared name the model
        does not have is an error (the declaration is about another network)."""
        declared = self.expected_invariant
        if declared is None:
            return None
        params = dict(model.named_parameters())
        if callable(declared):
            return [n for n, p in params.items() if declared(n, p)]
        unknown = sorted(set(declared) - set(params))
        if unknown:
            raise ModelFactoryError(f"model {self.name!r} declares expected_invariant tensors it "
                                    f"does not have: {unknown}")
        return [n for n in params if n in set(declared)]

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


def conv_kernels(name: str, param: nn.Parameter) -> bool:
    """Every convolution kernel (a 4-D weight): each feeds a normalization in ResNet-8 (the
    article: BatchNorm after every conv) and in the GroupNorm CNN."""
    return param.dim() == 4


def hidden_linear_kernels(name: str, param: nn.Parameter) -> bool:
    """Every 2-D kernel but the classifier's (the one with 10 rows, the logits): in the zoo's MLPs
    (hidden widths 64 and 32) each hidden linear feeds a normalization."""
    return param.dim() == 2 and param.shape[0] != 10


MODELS: MappingProxyType[str, ModelSpec] = MappingProxyType({
    "resnet8": ModelSpec("resnet8", models.resnet8, models.resnet8_without_norm,
                         description="ResNet-8 (BatchNorm after every conv), 78,042 parameters",
                         expected_invariant=conv_kernels),
    "mlp_batchnorm": ModelSpec("mlp_batchnorm", models.mlp_batchnorm, models.mlp_without_norm,
                               description="MLP 3072-64-32-10, BatchNorm1d after each hidden "
                                           "linear", expected_invariant=hidden_linear_kernels),
    "mlp_layernorm": ModelSpec("mlp_layernorm", models.mlp_layernorm, models.mlp_without_norm,
                               description="MLP 3072-64-32-10, LayerNorm after each hidden linear",
                               expected_invariant=hidden_linear_kernels),
    "conv_groupnorm": ModelSpec("conv_groupnorm", models.conv_groupnorm, models.conv_without_norm,
                                description="2-layer CNN (8, 16 channels), GroupNorm(4)",
                                expected_invariant=conv_kernels),
    # E2's network: every output channel feeds its own BatchNorm channel, so each unit (one
    # channel's kernel) is scale-invariant by itself, as Kosson et al.'s per-unit equilibrium needs
    "conv_batchnorm": ModelSpec("conv_batchnorm", functools.partial(models.ConvNet, norm="batch"),
                                models.conv_without_norm,
                                description="2-layer CNN (8, 16 channels), BatchNorm2d",
                                expected_invariant=conv_kernels),
})


def tensors_to_test(spec: ModelSpec, model: nn.Module,
                    detected: list[str]) -> tuple[list[str], list[str] | None]:
    """(tensors a geometry claim tests, the declared set or None): the declared scale-invariant
    tensors together with the ones the detector found, in ``named_parameters`` order. Testing the
    declared ones too means a lost normalization shows in the claim's own measurement, not only
    in the detector's verdict."""
    expected = spec.expected_invariant_names(model)
    wanted = set(detected) | set(expected or ())
    return [n for n, _ in model.named_parameters() if n in wanted], expected


def negative_control(spec: ModelSpec, model: nn.Module) -> nn.Module | None:
    """The claims' negative control for ``model``: the spec's declared control, else ``model``
    with every absorbing normalization replaced by the identity; None when that changes nothing
    (invariance through a reparametrization inside a layer, e.g. weight standardization: no
    normalization module to remove, so no automatic control exists)."""
    from wd_claims.invariance import control_model

    control = control_model(spec, model)
    if spec.control is None and ([type(m) for m in control.modules()]
                                 == [type(m) for m in model.modules()]):
        return None
    return control


def at_width(spec: ModelSpec, width: int) -> ModelSpec:
    """``spec`` built at ``width`` (a budget's: ResNet-8's stage-1 channels) where its factory
    takes a ``width`` argument, its control likewise; any other spec (an MLP, a user's factory
    without one) as it is."""
    import inspect

    def takes_width(factory) -> bool:
        try:
            return "width" in inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return False

    if not takes_width(spec.factory):
        return spec
    control = (functools.partial(spec.control, width=width)
               if spec.control is not None and takes_width(spec.control) else spec.control)
    return replace(spec, factory=functools.partial(spec.factory, width=width), control=control)


def probe_setting(spec: ModelSpec, data_name: str, batch: int, precision: str, **extra) -> dict:
    """The setting of a geometry verdict on ``spec``: model and width (the factory's default, where
    it has one), data, batch, precision, seed 0, and the deviations from the article's Fig. 2."""
    import inspect

    from wd_claims import setting

    try:
        width = inspect.signature(spec.factory).parameters.get("width")
    except (TypeError, ValueError):
        width = None
    width = width.default if width is not None and width.default is not inspect._empty else None
    out = setting.probe(spec.name, data_name, batch, precision, seeds=[0],
                        **({"width": width} if width is not None else {}), **extra)
    # setting.deviations reads any "trains" other than "every parameter" as the frozen-classifier
    # runs; a probe trains nothing at all (or a few SGD steps of every parameter, C2).
    out["deviations"] = [d for d in out["deviations"] if not d.startswith("only the scale-")]
    out["deviations"].append("no training: probes of the model at its seed-0 initialization"
                             + (f" and along {extra['steps']} plain SGD steps" if extra.get("steps")
                                else ""))
    return out


NO_CONTROL = ("no control available (give `factory.control`: the same network without the "
              "normalization or reparametrization): the automatic control, every normalization "
              "replaced by the identity, changes nothing in this model")


def require_scale_invariant(spec: ModelSpec, model: nn.Module | None = None) -> list[str]:
    """Names of the scale-invariant tensors of ``model`` (built from ``spec`` if not given), found
    by probing (:mod:`wd_claims.invariance`). A claim about scale-invariant tensors calls this
    first:
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




def geometry_probe(spec: ModelSpec, x, data_name: str, model: nn.Module | None = None):
    """(model, tested tensors, control or None, the measurement dict's common entries) for a
    geometry claim (C2, C3): the model (``spec`` built under seed 0 unless given), the declared and
    detected invariant tensors, the negative control, and the sizes the rounding bound needs."""
    import numpy as np
    import torch

    from wd_claims.invariance import scale_invariant_names
    from wd_claims.probes import forward_footprint

    torch.manual_seed(0)
    model = spec.build() if model is None else model
    tested, expected = tensors_to_test(spec, model, scale_invariant_names(model, spec.input_shape))
    depth, n = forward_footprint(model, x)
    sizes = {k: p.numel() for k, p in model.named_parameters()}
    control = negative_control(spec, model) if tested else None
    common = {"model": spec.name, "data": data_name, "batch": len(x),
              "names": np.array(tested, dtype=str), "declared": expected is not None,
              "depth": depth, "reduction": max([n] + [sizes[k] for k in tested]),
              "control_available": control is not None}
    return model, tested, control, common
