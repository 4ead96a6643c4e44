"""The full budget's code path, end to end on the CPU, at a reduced length.

Everything as ``--budget full`` — the Fig. 2 grid (η ∈ [0.1, 1], λ ∈ [2.5e-4, 2.5e-3]), every
parameter training, the default start, both seeds, batch 128, ResNet-8 at width 16, CIFAR-10 read
through torchvision from files in CIFAR-10's on-disk format — except the lengths, which the
test-only ``WD_CLAIMS_TEST_SHRINK`` cuts (wd_claims.config.shrunk: it can shorten a budget, never
change its setting). The report must exist, say it was shrunk, and hold a verdict for every claim
but the geometry ones (C1–C3 probe the same width-16 network at every budget, only their probe
batch grows, and ``scripts/gpu_check.py`` runs them at the full budget) and C10 (its full-budget
code is its quick code with other lengths; its Lanczos runs cost most of this test's time, so it
is left out to keep CI inside its time); no configuration of the grid may diverge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bench.cifar_format import write_cifar_format

ROOT = Path(__file__).resolve().parents[1]
SHRINK = {"n_train": 512, "n_test": 256, "epochs": 2, "probe_batch": 16, "max_steps": 8,
          "max_images": 16, "max_repeats": 8}          # 512 images / batch 128 × 2 epochs = 8 steps
CLAIM_IDS = ("C0", "C4", "C5", "C6", "C7", "C8", "C9", "E1", "E2")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    data = write_cifar_format(tmp / "cifar", n_train=SHRINK["n_train"], n_test=SHRINK["n_test"])
    env = {**os.environ, "WD_CLAIMS_TEST_SHRINK": json.dumps(SHRINK), "WD_CLAIMS_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--budget", "full", "--device", "cpu",
         "--data-dir", str(data), "--report-dir", str(tmp / "reports"),
         "--cache-dir", str(tmp / "cache"), "-p", "tests.local_cifar_plugin", "-q",
         "-p", "no:cacheprovider", "-m", "not (c01 or c02 or c03 or c10)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    return out, tmp / "reports"


def test_the_full_budget_runs_end_to_end_and_writes_its_report(full_run):
    out, reports = full_run
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-4000:]   # 1: a claim FAILed
    assert "error" not in out.stdout.splitlines()[-1].lower(), out.stdout[-4000:]
    verdicts = json.loads((reports / "latest.json").read_text())
    assert {v["id"] for v in verdicts} >= set(CLAIM_IDS)
    # a verdict, not a skip: at 8 steps a statistical claim may FAIL, but it ran; the one error
    # allowed before a verdict is the clear "too short" of a window with a single step (C8's)
    assert {v["status"] for v in verdicts} <= {"pass", "fail", "xfail"}, \
        [(v["id"], v["status"], v["reason"][:200]) for v in verdicts]
    crashed = [(v["id"], v["reason"][:300]) for v in verdicts
               if "before filing a verdict" in v["reason"] and "too short" not in v["reason"]]
    assert not crashed
    text = (reports / "latest.md").read_text()
    assert "SHRUNK FOR TESTING" in text


def test_the_full_budget_reads_cifar10_through_torchvision_and_trains_everything(full_run):
    _, reports = full_run
    verdicts = json.loads((reports / "latest.json").read_text())
    c7 = next(v for v in verdicts if v["id"] == "C7")
    setting = json.dumps(c7["setting"])
    assert "CIFAR-10" in setting and "128" in setting
    assert "frozen" not in setting.lower()           # every parameter trains at full


def test_no_configuration_of_the_full_grid_diverges_at_the_top_corner(full_run):
    _, reports = full_run
    m = np.load(reports / "measurements" / "C7-resnet8.npz", allow_pickle=True)
    for key in m.files:
        if m[key].dtype.kind == "f":
            assert np.isfinite(m[key]).any(), key
