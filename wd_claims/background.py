"""The plugin's scheduling of the training runs: worker processes train while other claims run.

Registered by :mod:`wd_claims.plugin` (``pytest_plugins``) and as inert as it: nothing here
imports torch before the suite is active. On the CPU, outside xdist (:func:`trains_in_background`),
the session's claims run in this order (stable): those that train nothing, then those that read
only their own runs (which the workers train first), then those that read the shared runs; and
when the first test starts, every run the selected claims will read goes to the workers
(:func:`wd_claims.runs.start`; docs/design.md, "Training in the background"). The worker
processes themselves start earlier, when the first claim module is collected
(:func:`pytest_collect_file`), so that they import torch while this process collects.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from wd_claims.collector import claim_id
from wd_claims.config import usable_cores
from wd_claims.plugin import SUITE


def trains_in_background(config: pytest.Config) -> bool:
    """The session's runs train in worker processes while other claims run: on the CPU, not
    under xdist (each xdist worker would train every run)."""
    suite = config.stash.get(SUITE, None)
    return (suite is not None and suite.device == "cpu" and not hasattr(config, "workerinput")
            and not getattr(config.option, "numprocesses", None))


CLAIM_MODULE = re.compile(r"test_[ce]\d\d_\w+\.py")   # claims/test_c04_spiral_out.py, …
_WARMED: list[bool] = []


def may_train_in_background(config: pytest.Config) -> bool:
    """What :func:`trains_in_background` will say, known before the suite is set up: not under
    xdist, ``--device`` cpu (or auto on a machine without CUDA), ≥ 2 cores."""
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None):
        return False
    device = config.getoption("--device", "auto")
    if device not in ("cpu", "auto") or usable_cores() < 2:
        return False
    if device == "auto":   # torch: the claim module about to be collected imports it anyway
        import torch

        return not torch.cuda.is_available()
    return True


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> None:
    """The first claim module collected (``claims/test_cNN_*.py``) starts the worker processes
    (:func:`wd_claims.runs.warm`): they import torch and the engine, ≈ 3 s each, on the core this
    process's collection leaves idle; their jobs come when the first test starts. A session that
    then trains nothing (``-m c01``, a warm cache) has spent those seconds on a core it did not
    use."""
    if (_WARMED or file_path.parent.name != "claims" or not CLAIM_MODULE.fullmatch(file_path.name)
            or not may_train_in_background(parent.config)):
        return None
    _WARMED.append(True)
    from wd_claims import runs

    runs.warm(usable_cores())
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    """A pool started by :func:`pytest_collect_file` closes with the session, used or not."""
    if "wd_claims.runs" in sys.modules:
        sys.modules["wd_claims.runs"].shutdown(cancel=True)
    _WARMED.clear()


def while_the_workers_train(item: pytest.Item) -> int:
    """0: trains nothing; 1: reads only its own runs (the workers train them first); 2: reads
    the shared runs (the workers' longest)."""
    from wd_claims import runs

    cid = claim_id(item.keywords)
    return 0 if cid not in runs.TRAINING else 2 if cid in runs.SHARED_BY else 1


@pytest.hookimpl(trylast=True)   # after the plugin's, which records the selected claims
def pytest_collection_finish(session: pytest.Session) -> None:
    if trains_in_background(session.config):
        session.items.sort(key=while_the_workers_train)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if SUITE in item.config.stash:
        from wd_claims import runs

        runs.reap()   # the workers are done: this process gets its threads back


@pytest.fixture(autouse=True, scope="session")
def _workers_train_while_other_claims_run(request: pytest.FixtureRequest):
    """When the session's first test starts, hand every training run its selected claims will
    read to the worker processes (:func:`wd_claims.runs.start`); the claims that train nothing
    run meanwhile. At the end the pool is closed; an interrupted session's workers are stopped
    (:func:`wd_claims.runs.shutdown`)."""
    if not trains_in_background(request.config):   # e.g. no claim here: torch stays unimported
        yield
        return
    from wd_claims import runs

    if runs.SELECTED & runs.TRAINING:
        models = sorted({item.callspec.params["model_spec"].name for item in request.session.items
                         if claim_id(item.keywords) in runs.TRAINING
                         and "model_spec" in getattr(getattr(item, "callspec", None), "params",
                                                     {})})
        try:
            images = request.getfixturevalue("images") if models else None
        except pytest.skip.Exception:   # the claims that need them skip with the reason
            models = []
        suite = request.config.stash[SUITE]
        for model in models:
            runs.start(suite, images, runs.session_configs(suite, images, model))
    yield
    runs.shutdown(cancel=True)
