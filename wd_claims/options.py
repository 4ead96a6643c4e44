"""Every command-line option of the plugin, in one table (as hypothesis's plugin keeps its own).

``--budget {smoke,quick,full,article}`` how much compute (default: quick on CPU, full on CUDA)
``--device {auto,cpu,cuda}``      where to run (auto: CUDA if available)
``--report-dir DIR``              where reports go (default: ``reports/`` in the current folder)
``--data SOURCE``                 auto, standin, cifar10, digits, MODULE:FACTORY (datasets.py)
``--data-dir DIR``/``--download`` CIFAR-10 (see :mod:`wd_claims.data`)
``--fresh``                       ignore cached training runs
``--cache-dir DIR``               where cached training runs live (default ``.wd-cache/``)
``--model MODULE:FACTORY``        run the claims on your model factory (repeatable)
``--model-input C,H,W``           one example's shape for ``--model`` factories

Naming any of them on the command line sets the suite up at once; otherwise it stays inert until
a claim is collected.
"""

from __future__ import annotations

import pytest

from wd_claims.config import BUDGETS, DEVICES

OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--budget", dict(choices=tuple(BUDGETS), default=None,
                      help="compute budget: smoke (seconds), quick (CPU default), "
                           "full (CUDA default), article (Fig. 2's grid and length on "
                           "digits, ≈ 30 min on 2 CPU cores)")),
    ("--device", dict(choices=DEVICES, default="auto",
                      help="device to run on; auto picks CUDA when available")),
    ("--report-dir", dict(default=None,
                          help="directory for the markdown/JSON report (default: ./reports)")),
    ("--data", dict(default=None, metavar="SOURCE",
                    help="the images: auto (CIFAR-10 if a folder is given, else the stand-in), "
                         "standin, cifar10, digits (scikit-learn's, real), or MODULE:FACTORY "
                         "returning ((x_train, y_train), (x_test, y_test)) (default: the "
                         "budget's)")),
    ("--data-dir", dict(default=None,
                        help="folder with torchvision's CIFAR-10 (default: $WD_CLAIMS_DATA)")),
    ("--download", dict(action="store_true", default=False,
                        help="allow torchvision to download CIFAR-10 into the data folder")),
    ("--fresh", dict(action="store_true", default=False,
                     help="ignore cached training runs (they are recomputed and re-cached)")),
    ("--cache-dir", dict(default=None,
                         help="directory of cached training runs (default: ./.wd-cache)")),
    ("--model", dict(action="append", default=[], metavar="MODULE:FACTORY",
                     help="run the claims on your model factory (repeatable)")),
    ("--model-input", dict(default="3,32,32", metavar="C,H,W",
                           help="input shape of one example for --model factories "
                                "(default 3,32,32)")),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("wd-claims", "weight-decay claims suite")
    for name, kwargs in OPTIONS:
        group.addoption(name, **kwargs)


def asked_for(config: pytest.Config) -> bool:
    """Did this session ask for the suite up front: one of its options on the command line, or
    xdist workers (the controller collects nothing, so it cannot wait to see claims)?"""
    names = {name for name, _ in OPTIONS}
    args = [str(a).split("=", 1)[0] for a in config.invocation_params.args]
    return any(a in names for a in args) or hasattr(config, "workerinput") or bool(
        getattr(config.option, "numprocesses", None))
