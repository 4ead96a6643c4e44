"""The machine a claims session runs on: its device, its torch threads, one GPU per xdist worker,
and the provenance every verdict carries (versions, hardware, commit).

Used by :mod:`wd_claims.plugin` when a session starts; pure functions where they can be (the
environment is an argument), so the tests call them with the inputs they mean.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from wd_claims.config import DEVICES


def resolve_device(choice: str) -> str:
    """``auto``/``cpu``/``cuda`` → ``cpu`` or ``cuda``; :class:`pytest.UsageError` if impossible."""
    import torch

    if choice not in DEVICES:
        raise pytest.UsageError(f"--device {choice!r}: choose one of {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: no CUDA device is available to torch "
                                f"{torch.__version__}; run with --device cpu (or auto)")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if out.returncode != 0:
            return "unknown"
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(root: Path, device: str) -> dict:
    """Versions, hardware and commit. Never environment variables or paths outside the project."""
    import numpy
    import sympy
    import torch

    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "sympy": str(sympy.__version__), "numpy": str(numpy.__version__),
            "platform": platform.platform(terse=True), "device": device_name(device),
            "cpu_count": os.cpu_count(), "git_commit": git_commit(root)}


def thread_count(environ=os.environ, cpu_count: int | None = None) -> int | None:
    """Torch threads for this process, or None to keep torch's default (every core).

    ``WD_CLAIMS_THREADS=N`` wins (on a machine shared with other jobs, OpenMP threads spin-waiting
    for busy cores made claims 5–10× slower; 1 avoids it); under xdist each worker gets
    ``cores // workers``: two torch processes each using every core slow each other down by one
    to two orders of magnitude (docs/design.md).
    """
    requested = environ.get(ENV_THREADS, "").strip()
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise pytest.UsageError(f"{ENV_THREADS}={requested!r}: expected a positive integer")
        return int(requested)
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        return max(1, (cpu_count or os.cpu_count() or 1) // workers)
    return None


ENV_THREADS = "WD_CLAIMS_THREADS"


def set_threads() -> None:
    threads = thread_count()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def worker_gpu(visible: str | None, worker_id: str | None) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` an xdist worker should use: the ``K``-th entry (modulo their
    number) of a comma-separated list for worker ``gwK``; ``None`` (leave it alone) otherwise."""
    if not visible or not worker_id or not worker_id.startswith("gw"):
        return None
    gpus = [g.strip() for g in visible.split(",") if g.strip()]
    if len(gpus) < 2 or not worker_id[2:].isdigit():
        return None
    return gpus[int(worker_id[2:]) % len(gpus)]


def pin_worker_gpu() -> None:
    """Give this xdist worker one GPU of its own (see the module docstring). Must run before torch
    initialises CUDA, i.e. first thing in :func:`pytest_configure`."""
    gpu = worker_gpu(os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("PYTEST_XDIST_WORKER"))
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
