"""Shared test configuration: Hypothesis profiles and pytest's ``pytester`` fixture.

Hypothesis profiles (chosen by environment, as in hypothesis' own ``tests/common/setup.py``):

- ``dev`` (default): Hypothesis' usual example count, no per-example deadline (the machine is
  shared, and a torch forward pass can stall for reasons unrelated to the code under test).
- ``ci`` (loaded when ``CI=true``): fewer examples, derandomized so that a CI failure reproduces
  exactly, no deadline, and the failing example's blob printed for ``@reproduce_failure``.

``HYPOTHESIS_PROFILE=<name>`` overrides both. A test's own ``@settings(...)`` wins over a profile.

Under pytest-xdist (the README's ``pytest tests/ -n auto``) each module goes whole to one worker,
the modules of :data:`HEAVIEST_FIRST` first: several modules hold a module-scoped fixture that
costs a minute (a subprocess run of the suite, a wheel built and installed), which a module split
between workers would pay twice, and the longest modules set the wall time unless they start
first (longest-first is the classic list-scheduling rule).
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])


def hypothesis_profile(environ=os.environ) -> str:
    """The profile for this environment: ``HYPOTHESIS_PROFILE``, else ``ci`` when ``CI`` is
    truthy (GitHub Actions and most CI services set ``CI=true``), else ``dev``."""
    if environ.get("HYPOTHESIS_PROFILE"):
        return environ["HYPOTHESIS_PROFILE"]
    return "ci" if environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"


settings.load_profile(hypothesis_profile())

# Modules by their measured cost, largest first (`pytest tests/ --durations=0`, one process, the
# 2-core EPYC; seconds in docs/performance.md). The rest follow in collection order.
HEAVIEST_FIRST = ("test_full_budget", "test_install", "test_gpu_check", "test_scheduler",
                  "test_reliability", "test_monitor", "test_plugin", "test_faults_noise_flatness")


def heaviest_first(module_names: list[str]) -> list[int]:
    """A sort key per item (its module's rank in :data:`HEAVIEST_FIRST`, the others after)."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    return [rank.get(name, len(HEAVIEST_FIRST)) for name in module_names]


def _module_name(item) -> str:
    module = getattr(item, "module", None)
    return module.__name__.rpartition(".")[2] if module is not None else ""


def pytest_collection_modifyitems(items):
    keys = heaviest_first([_module_name(item) for item in items])
    order = sorted(range(len(items)), key=keys.__getitem__)      # stable: ties keep their order
    items[:] = [items[i] for i in order]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole modules per worker, in the order above (xdist's default for ``-n`` splits modules;
    its ``loadfile`` mode would reorder them by their number of tests, not their cost)."""
    if config.getoption("dist") != "load":
        return None                                   # the user asked for a mode: theirs
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("single_thread")``):
    smoke-sized tensors gain nothing from a second thread, and on a shared machine OpenMP's
    spin-waiting makes two threads several times slower (docs/design.md, "Threads")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=("quick", "article"))
def sample(request):
    """A fault module judged against one committed sample report per parameter (tests/faults.py:
    every injected fault must FAIL on both)."""
    from tests import faults

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faults, "SAMPLE", faults.SAMPLES[request.param][0] / "measurements")
        patch.setattr(faults, "BUDGET", request.param)
        yield request.param
