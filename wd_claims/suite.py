"""Verify any model: the ``--model`` option, ``parametrize_with_claims`` and expected failures.

Two ways in, as scikit-learn offers for estimators (the plugin, :mod:`wd_claims.plugin`, holds the
hooks and fixtures; this module only the functions):

1. Command line — every applicable claim on your model, same report::

       pytest claims/ --model mypkg.nets:make_net [--model-input 3,32,32]

   ``make_net`` is a factory: called with no arguments it returns a fresh ``nn.Module`` mapping a
   batch of ``--model-input`` shaped inputs to 10 logits. A ``make_net.control`` attribute (the same
   network without normalization) gives the claims their negative control. ``--model`` may be
   repeated. With ``--model``, the model-parametrized claims run on your models only.

2. From your own tests — a decorator, ids that work with ``pytest -k``::

       from wd_claims.suite import parametrize_with_claims

       @parametrize_with_claims({"mynet": make_net},
                                expected_failed_claims={"mynet": {"C2": "eps=1e-3 is large"}})
       def test_mynet_satisfies_the_article(model_spec, claim_check, run_claim):
           run_claim(claim_check, model_spec)

   Declared failures become strict xfails (an unexpected pass fails), like scikit-learn's
   ``expected_failed_checks``. Claims that do not apply (no scale-invariant tensor) are skipped with
   the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the plugin stays importable without torch (inert unless used)
    from wd_claims.zoo import ModelSpec



def load_factory(target: str) -> Callable:
    """``"package.module:function"`` → the function; ``pytest.UsageError`` with the reason."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise pytest.UsageError(f"--model {target!r}: expected MODULE:FACTORY, "
                                "e.g. mypkg.nets:make_net")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(f"--model {target!r}: cannot import {module_name!r} ({exc}); "
                                "is it installed or on sys.path?") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise pytest.UsageError(f"--model {target!r}: {module_name} has no callable {attr!r}")
    return factory


def as_spec(name: str, factory: Callable, input_shape: tuple[int, ...] = (3, 32, 32)) -> ModelSpec:
    """A :class:`ModelSpec` for a user factory; ``factory.control``, ``factory.input_shape`` and
    ``factory.expected_invariant`` (a predicate over (name, parameter) or a set of names: the
    tensors that should be scale-invariant) attributes are honoured when present."""
    from wd_claims.zoo import ModelSpec

    return ModelSpec(name, factory, getattr(factory, "control", None),
                     tuple(getattr(factory, "input_shape", input_shape)),
                     description=(inspect.getdoc(factory) or "").split("\n")[0],
                     expected_invariant=getattr(factory, "expected_invariant", None))


def claim_checks(claims: Iterable[str] | None = None) -> list[tuple[str, Callable]]:
    """(claim id, test function) for every claim test of :mod:`wd_claims.claims` that takes a
    ``model_spec``. The claims ship in the package, so a regular (non-editable) install finds
    them; none found is an error, never an empty (silently skipped) parametrization."""
    import wd_claims.claims

    wanted = {c.upper() for c in claims} if claims is not None else None
    found = []
    for info in sorted(pkgutil.iter_modules(wd_claims.claims.__path__), key=lambda i: i.name):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"wd_claims.claims.{info.name}")
        claim = getattr(module, "CLAIM", None)
        if claim is None or wanted is not None and claim.id not in wanted:
            continue
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and "model_spec" in inspect.signature(fn).parameters \
                    and fn.__module__ == module.__name__:
                found.append((claim.id, fn))
    if not found:
        raise LookupError(f"no claim taking a model_spec found in {wd_claims.claims.__path__}"
                          + (f" for {sorted(wanted)}" if wanted else "")
                          + ": is wd-claims installed completely?")
    return found


def parametrize_with_claims(factories: dict[str, Callable], *, claims: Iterable[str] | None = None,
                            expected_failed_claims: dict[str, dict[str, str]] | None = None):
    """A ``pytest.mark.parametrize`` over (model, claim) pairs, ids ``<model>-<claim>-<check>``.

    ``expected_failed_claims``: {model name: {claim id: reason}} → strict xfail with the reason.
    """
    from wd_claims.claim import marker_name

    expected = expected_failed_claims or {}
    params = []
    for name, factory in factories.items():
        spec = as_spec(name, factory)
        for claim_id, check in claim_checks(claims):
            reason = expected.get(name, {}).get(claim_id)
            # The claim's own marker (-m c02 works, and a skip is reported under the claim's id).
            marks = [getattr(pytest.mark, marker_name(claim_id))]
            marks += [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(spec, check, marks=marks,
                                       id=f"{name}-{claim_id.lower()}-{check.__name__[5:]}"))
    return pytest.mark.parametrize("model_spec, claim_check", params)


# --- the command-line path -------------------------------------------------------------------

def user_models(targets: list[str], input_shape: str) -> dict[str, ModelSpec]:
    """The ``--model`` factories as specs (name: the factory's attribute name), for the session
    to hold beside the frozen zoo; :class:`pytest.UsageError` for anything it cannot load."""
    if not targets:
        return {}
    try:
        shape = tuple(int(v) for v in input_shape.split(","))
    except ValueError as exc:
        raise pytest.UsageError("--model-input: expected integers like 3,32,32") from exc
    out = {}
    for target in targets:
        name = target.rpartition(":")[2]
        out[name] = as_spec(name, load_factory(target), shape)
    return out
