"""Shared test configuration: Hypothesis profiles and pytest's ``pytester`` fixture.

Hypothesis profiles (chosen by environment, as in hypothesis' own ``tests/common/setup.py``):

- ``dev`` (default): Hypothesis' usual example count, no per-example deadline (the machine is
  shared, and a torch forward pass can stall for reasons unrelated to the code under test).
- ``ci`` (loaded when ``CI=true``): fewer examples, derandomized so that a CI failure reproduces
  exactly, no deadline, and the failing example's blob printed for ``@reproduce_failure``.

``HYPOTHESIS_PROFILE=<name>`` overrides both. A test's own ``@settings(...)`` wins over a profile.
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


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("single_thread")``):
    smoke-sized tensors gain nothing from a second thread, and on a shared machine OpenMP's
    spin-waiting makes two threads several times slower (docs/design.md, "Threads")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
