"""Find the scale-invariant parameter tensors of any ``nn.Module`` by probing, not by names.

A tensor ``w`` is scale-invariant when ``model(x; ρw) = model(x; w)`` for every ρ > 0. We test that
on a float64 copy of the model whose normalizations have ``eps ≈ 0`` (eps is the one known source of
inexactness, docs/claims.md), in training mode (batch statistics), for two rescalings; the
relative output change must be below :data:`FLOAT64_RTOL`. The normalization that absorbs the
scale is found with forward hooks: it is the module whose input is multiplied by ρ while its
output does not change.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

# torch.testing.assert_close's default relative tolerance for float64: ~1e9 ulps, far above the
# rounding of a few hundred float64 operations (≈ 1e-14), far below any real rescaling effect
# (≳ 1e-3 for a non-invariant tensor and ρ = 2). Reused, not invented.
FLOAT64_RTOL = 1e-7
# Probe rescalings: powers of two, so that ρ·w is exact in floating point (docs/claims.md).
PROBE_RHOS = (2.0**-3, 2.0**5)


@dataclass(frozen=True)
class TensorReport:
    name: str                 # parameter name, as in model.named_parameters()
    shape: tuple[int, ...]
    invariant: bool
    deviation: float          # max relative output change over the probe rescalings
    normalization: str = ""   # "<module name> (<class>)" that absorbs the scale, if invariant
    exponent: float = float("nan")  # p of a deviation fading as ρ^(−p): invariant up to ε
    # (wd_claims.epsilon); NaN for an exact or a non-invariant tensor

    @property
    def kind(self) -> str:
        """"exact", "up to ε" or "not invariant"."""
        if not self.invariant:
            return "not invariant"
        return "exact" if self.exponent != self.exponent else "up to ε"


# PyTorch refuses eps = 0 for batch norm in training mode. 1e-30 is numerically zero: σ² + ε rounds
# to σ² in float64 whenever ρ²σ² > 1e-30 / 2⁻⁵³ ≈ 1e-14, i.e. for every ρ ≥ 1e-6 at σ² ≳ 1e-2.
EXACT_EPS = 1e-30


def deterministic_train(model: nn.Module) -> nn.Module:
    """``model`` in training mode (normalizations use batch statistics) with every stochastic
    layer — dropout, stochastic depth (torchvision's ``StochasticDepth``) — in eval mode: the same
    input gives the same output, so a rescaling's effect is all a probe sees."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) \
                or type(module).__name__ == "StochasticDepth":
            module.eval()
    return model


def float64_exact(model: nn.Module) -> nn.Module:
    """A float64 deep copy of ``model`` with every ``eps`` attribute (normalizations) set to
    :data:`EXACT_EPS`, i.e. numerically zero: invariance is then exact up to rounding. In
    :func:`deterministic_train` mode."""
    twin = copy.deepcopy(model).double()
    for module in twin.modules():
        if isinstance(getattr(module, "eps", None), float):
            module.eps = EXACT_EPS
    return deterministic_train(twin)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (a scalar; 0 when both are zero)."""
    denom = b.norm()
    return float((a - b).norm() / denom) if denom > 0 else float((a - b).norm())


def probe_input(model_input_shape: tuple[int, ...], batch: int = 8, seed: int = 0) -> torch.Tensor:
    """A float64 standard-normal batch of shape (batch, *model_input_shape)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *model_input_shape), generator=gen, dtype=torch.float64)


def _record_io(model: nn.Module):
    """Forward hooks recording every module's first input and output; returns (store, handles)."""
    store: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = {}

    def hook(name):
        def fn(module, inputs, output):
            inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            out = output if isinstance(output, torch.Tensor) else None
            store[name] = (None if inp is None else inp.detach().clone(),
                           None if out is None else out.detach().clone())
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    return store, handles


def _absorber(model: nn.Module, base: dict, scaled: dict, rho: float) -> str:
    """The deepest module whose input is ρ·(base input) and whose output equals the base output."""
    found = []
    for name, (inp, out) in scaled.items():
        b_inp, b_out = base.get(name, (None, None))
        if inp is None or out is None or b_inp is None or b_out is None or inp.shape != b_inp.shape:
            continue
        if (relative_change(inp, rho * b_inp) < FLOAT64_RTOL
                and relative_change(inp, b_inp) > FLOAT64_RTOL
                and relative_change(out, b_out) < FLOAT64_RTOL):
            found.append(name)
    leaves = [n for n in found if not any(o.startswith(n + ".") for o in found)]
    modules = dict(model.named_modules())
    return ", ".join(f"{n} ({type(modules[n]).__name__})" for n in leaves)


@torch.no_grad()
def _move_to_generic_point(model: nn.Module, seed: int) -> None:
    """Perturb every parameter by 20 % of its RMS (or by 0.2 where it is all zeros).

    Fresh initialisations are special points: zero biases make "scale the bias" a no-op and
    all-ones BN weights make "scale γ" a uniform channel rescaling that the next normalization
    absorbs. Invariance is a property for all w, so we probe at a generic w.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    for param in model.parameters():
        rms = float(param.pow(2).mean().sqrt()) or 1.0
        param.add_(0.2 * rms * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def _probe_setup(model: nn.Module, input_shape: tuple[int, ...], batch: int, seed: int,
                 exact_eps: bool = True):
    """(float64 twin of ``model`` moved to a generic point, a (batch, *input_shape) input); the
    twin's normalizations have ε ≈ 0 unless ``exact_eps`` is False (then the model's own ε)."""
    twin = (float64_exact(model) if exact_eps
            else deterministic_train(copy.deepcopy(model).double()))
    _move_to_generic_point(twin, seed)
    return twin, probe_input(input_shape, batch, seed)


@torch.no_grad()
def scale_invariance_map(model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 8,
                         seed: int = 0, exact_eps: bool = True) -> list[TensorReport]:
    """One :class:`TensorReport` per parameter tensor of ``model`` (the model is untouched).

    Invariant: an output change within the forward pass's float64 rounding bound (exact), or one
    that fades with ρ as a normalization's ε does (:mod:`wd_claims.epsilon`): then invariant up
    to ε, with its exponent. (A fixed threshold, 1e-7 until issue 24, called ConvNeXt's damped
    blocks — a layer scale of 1e-6 — invariant.)
    ``exact_eps``: probe with every ``eps`` attribute ≈ 0 (default) or with the model's own ε
    (the atlas shows both).
    """
    from wd_claims import epsilon
    from wd_claims.probes import forward_footprint, rounding_tolerance

    twin, x = _probe_setup(model, input_shape, batch, seed, exact_eps)
    tol = rounding_tolerance(2, *forward_footprint(twin, x))
    store, handles = _record_io(twin)
    try:
        base_out = twin(x)
        base_io = dict(store)
        reports = []
        for name, param in twin.named_parameters():
            original = param.detach().clone()
            deviations, absorber = [], ""
            for rho in PROBE_RHOS:
                param.mul_(rho)
                store.clear()
                deviations.append(relative_change(twin(x), base_out))
                if not absorber:
                    absorber = _absorber(twin, base_io, store, rho)
                param.copy_(original)
            invariant, exponent = max(deviations) <= tol, float("nan")
            if not invariant:   # above rounding: an ε inside a normalization, or none?
                law = epsilon.law(epsilon.SCAN_RHOS, epsilon.scan(twin, x, name), tol)
                if law.fades:
                    invariant, exponent = True, law.exponent
            reports.append(TensorReport(name, tuple(param.shape), invariant, max(deviations),
                                        absorber if invariant else "", exponent))
        return reports
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class JointGroup:
    names: tuple[str, ...]    # tensors that are scale-invariant only when rescaled together
    normalization: str        # the normalization whose input they all feed first
    deviation: float          # relative output change when all are multiplied by ρ


@torch.no_grad()
def joint_invariant_groups(model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 8,
                           seed: int = 0,
                           reports: list[TensorReport] | None = None) -> list[JointGroup]:
    """Groups of tensors, none invariant alone, that are scale-invariant when rescaled together.

    Found by probing: each non-invariant tensor is perturbed and the first normalization (a module
    that absorbed some invariant tensor's scale, in execution order) whose input changes is its
    group; every group of two or more tensors is then rescaled jointly. ``reports``: the model's
    :func:`scale_invariance_map`, if already computed (same ``batch`` and ``seed``). Example: a
    BatchNorm's γ and β feeding ReLU → conv → BatchNorm (ReLU is positively homogeneous, so
    scaling both is absorbed).
    """
    if reports is None:
        reports = scale_invariance_map(model, input_shape, batch=batch, seed=seed)
    # candidates: the normalizations that absorb an invariant tensor's scale, and every module
    # with an ``eps`` (a normalization that may absorb only groups: ConvNeXt's depthwise conv and
    # its bias feeding a LayerNorm); a candidate group counts only if its joint rescaling passes
    norms = _absorbing_norms(reports) | {n for n, m in model.named_modules()
                                         if isinstance(getattr(m, "eps", None), float)}
    twin, x = _probe_setup(model, input_shape, batch, seed)
    store, handles = _record_io(twin)
    try:
        base_out = twin(x)
        order = [n for n in store if n in norms]  # dict order = execution order
        base_io = dict(store)
        params = dict(twin.named_parameters())
        groups: dict[str, list[str]] = {}
        for r in reports:
            if r.invariant:
                continue
            p = params[r.name]
            saved = p.detach().clone()
            p.add_(0.1 * (p.abs().mean() + 1.0))
            store.clear()
            twin(x)
            p.copy_(saved)
            changed = [n for n in order
                       if relative_change(store[n][0], base_io[n][0]) > FLOAT64_RTOL]
            if changed:
                groups.setdefault(changed[0], []).append(r.name)
        def joint_deviation(names) -> float:
            saved = {n: params[n].detach().clone() for n in names}
            deviations = []
            for rho in PROBE_RHOS:
                for n in names:
                    params[n].mul_(rho)
                deviations.append(relative_change(twin(x), base_out))
                for n in names:
                    params[n].copy_(saved[n])
            return max(deviations)

        found, modules = [], dict(twin.named_modules())
        for norm, names in groups.items():
            # the whole group, else each module's own tensors within it (a layer's kernel and
            # bias, when the group also holds tensors that reach the norm through a residual sum)
            owners: dict[str, list[str]] = {}
            for n in names:
                owners.setdefault(n.rpartition(".")[0], []).append(n)
            whole = len(names) >= 2 and joint_deviation(names)
            candidates = ([names] if whole is not False and whole < FLOAT64_RTOL
                          else [g for g in owners.values() if len(g) >= 2 and len(owners) > 1])
            for candidate in candidates:
                deviation = whole if candidate is names else joint_deviation(candidate)
                if deviation < FLOAT64_RTOL:
                    found.append(JointGroup(tuple(candidate),
                                            f"{norm} ({type(modules[norm]).__name__})", deviation))
        return found
    finally:
        for h in handles:
            h.remove()


def scale_invariant_names(model: nn.Module, input_shape: tuple[int, ...], **kw) -> list[str]:
    """Names of the scale-invariant parameter tensors, in ``named_parameters`` order."""
    return [r.name for r in scale_invariance_map(model, input_shape, **kw) if r.invariant]


def _absorbing_norms(reports: list[TensorReport]) -> set[str]:
    """Module names of the normalizations that absorb some invariant tensor's scale."""
    return {r.normalization.split(" (")[0] for r in reports if r.invariant and r.normalization}


def without_normalization(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """The negative control for any model: a deep copy (same weights) in which every normalization
    that absorbs some tensor's scale (found by probing) is replaced by the identity."""
    norms = _absorbing_norms(scale_invariance_map(model, input_shape))
    twin = copy.deepcopy(model)
    for name in sorted(norms, key=len, reverse=True):
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        setattr(parent, child, nn.Identity())
    return twin


def control_model(spec, model: nn.Module) -> nn.Module:
    """``spec``'s declared control (its factory, built under the same seed as ``model``) or, for a
    model that declares none, :func:`without_normalization` of ``model``."""
    if spec.control is not None:
        torch.manual_seed(0)
        return spec.build_control()
    return without_normalization(model, spec.input_shape)


class NoScaleInvariantTensor(ValueError):
    """A claim that needs a scale-invariant tensor was given a model that has none."""
