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

import numpy as np
import pytest

from tests.bench.cifar_format import write_cifar_format
from tests.shrunk import assert_every_claim_ran, run_claims

SHRINK = {"n_train": 512, "n_test": 256, "epochs": 2, "probe_batch": 16, "max_steps": 8,
          "max_images": 16, "max_repeats": 8}          # 512 images / batch 128 × 2 epochs = 8 steps
CLAIM_IDS = ("C0", "C4", "C5", "C6", "C7", "C8", "C9", "E1", "E2")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    data = write_cifar_format(tmp / "cifar", n_train=SHRINK["n_train"], n_test=SHRINK["n_test"])
    return run_claims("full", SHRINK, tmp, "--data-dir", str(data),
                      "-p", "tests.local_cifar_plugin")


def test_the_full_budget_runs_end_to_end_and_writes_its_report(full_run):
    assert_every_claim_ran(*full_run, CLAIM_IDS)


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
