"""The package's layout holds: an import graph without cycles, no mutable module-level state, one
claim interface, one entry point (docs/design.md, "Layout").

The import graph is read from the source with :mod:`ast`, imports inside functions and under
``TYPE_CHECKING`` included: deferring an import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
import collections
import importlib
import inspect
from pathlib import Path

import pytest
import tomllib

from wd_claims.claim import Claim, Judgement, Presentation
from wd_claims.expected import EXPECTED_FAILURES

ROOT = Path(__file__).resolve().parents[1]
# the repository's folders, as the distribution installs them (pyproject.toml's package-dir)
FOLDERS = {"wd_claims": ROOT / "wd_claims", "wd_claims.claims": ROOT / "claims",
           "wd_claims.models": ROOT / "models"}
MAX_CLAIM_LINES = 200


def modules() -> dict[str, Path]:
    """Every module of the distribution: dotted name → file."""
    out = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_read_from_the_source_has_no_cycle():
    graph = import_graph()
    assert "wd_claims.scheduler" in graph["wd_claims.plugin"] | graph["wd_claims.session"]
    assert cycles(graph) == []


def mutable_globals(module) -> list[str]:
    mutable = (list, dict, set, bytearray, collections.deque)
    return [k for k, v in vars(module).items()
            if not k.startswith("__") and isinstance(v, mutable)]


def test_the_state_finder_finds_a_module_level_list():
    import types

    module = types.ModuleType("m")
    module.SEEN, module.LIMITS = [], (1, 2)
    assert mutable_globals(module) == ["SEEN"]


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_keeps_mutable_state_at_module_level(name):
    """Constants are tuples, frozensets or read-only mappings (``MappingProxyType``): a session's
    state belongs to its Session, never to a module a test would have to patch."""
    assert mutable_globals(importlib.import_module(name)) == []


def claim_modules():
    return [importlib.import_module(n) for n in sorted(modules())
            if n.startswith("wd_claims.claims.test_")]


@pytest.mark.parametrize("module", claim_modules(), ids=lambda m: m.__name__.rpartition(".")[2])
def test_every_claim_module_follows_the_one_interface(module):
    claim = module.CLAIM
    assert isinstance(claim, Claim)
    assert module.__name__.rpartition(".")[2].startswith(f"test_{claim.marker}_")
    sig = {f: list(inspect.signature(getattr(module, f)).parameters)
           for f in ("measure", "judge", "present")}
    assert sig["measure"] == ["ctx", "model"]
    assert sig["judge"][0] == "m" and sig["present"] == ["m", "verdict"]
    assert inspect.signature(module.judge).return_annotation in (Judgement, "Judgement")
    assert inspect.signature(module.present).return_annotation in (Presentation, "Presentation")
    tests = [f for n, f in vars(module).items() if n.startswith("test_") and callable(f)]
    assert tests and all("verify" in inspect.signature(f).parameters for f in tests)
    assert len(Path(module.__file__).read_text().splitlines()) <= MAX_CLAIM_LINES


@pytest.mark.parametrize("module", claim_modules(), ids=lambda m: m.__name__.rpartition(".")[2])
def test_a_claim_declares_exactly_the_expected_failures_the_table_holds_for_it(module):
    claim = module.CLAIM
    assert sorted(claim.expected_failures) == sorted(
        e.check for e in EXPECTED_FAILURES if e.claim == claim.id)


def test_every_budget_size_a_claim_declares_is_a_budget_field():
    from dataclasses import fields

    from wd_claims.config import Budget

    names = {f.name for f in fields(Budget)}
    for module in claim_modules():
        assert set(module.CLAIM.sizes) <= names, module.__name__


def test_the_distribution_registers_one_pytest_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"wd_claims": "wd_claims.plugin"}
