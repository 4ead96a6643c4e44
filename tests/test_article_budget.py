"""The article budget's code path, end to end, at a reduced length.

Everything as ``--budget article`` — the Fig. 2 grid (η ∈ [0.1, 1], λ ∈ [2.5e-4, 2.5e-3]) split in
two runs the workers share, every parameter training from the default start, the real digits
with the crop alone — except the lengths, which the test-only ``WD_CLAIMS_TEST_SHRINK`` cuts
(:func:`wd_claims.config.shrunk`). The report must exist, say it was shrunk, name its data and
hold a verdict for every claim it ran. C1–C3 (the same probes as at quick, on the digits) and C10
(its Lanczos runs) are left out to keep CI inside its time, as in tests/test_full_budget.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHRINK = {"step_count": 48, "starts_steps": 32, "max_steps": 32, "max_repeats": 8}
CLAIM_IDS = ("C0", "C4", "C5", "C6", "C7", "C8", "C9", "E1", "E2")


@pytest.fixture(scope="module")
def article_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("article")
    env = {**os.environ, "WD_CLAIMS_TEST_SHRINK": json.dumps(SHRINK), "WD_CLAIMS_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--budget", "article", "--device", "cpu",
         "--report-dir", str(tmp / "reports"), "--cache-dir", str(tmp / "cache"), "-q",
         "-p", "no:cacheprovider", "-m", "not (c01 or c02 or c03 or c10)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    return out, tmp / "reports"


def test_the_article_budget_runs_end_to_end_and_writes_its_report(article_run):
    out, reports = article_run
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-4000:]   # 1: a claim FAILed
    verdicts = json.loads((reports / "latest.json").read_text())
    assert {v["id"] for v in verdicts} >= set(CLAIM_IDS)
    assert {v["status"] for v in verdicts} <= {"pass", "fail", "xfail"}, \
        [(v["id"], v["status"], v["reason"][:200]) for v in verdicts]
    crashed = [(v["id"], v["reason"][:300]) for v in verdicts
               if "before filing a verdict" in v["reason"] and "too short" not in v["reason"]]
    assert not crashed
    assert "SHRUNK FOR TESTING" in (reports / "latest.md").read_text()


def test_the_article_budget_trains_every_parameter_on_the_digits_without_flips(article_run):
    _, reports = article_run
    verdicts = json.loads((reports / "latest.json").read_text())
    c7 = next(v for v in verdicts if v["id"] == "C7")
    setting = c7["setting"]
    assert setting["data"].startswith("digits (scikit-learn") and setting["batch"] == 8
    assert setting["trains"] == "every parameter" and setting["start"] == "default init"
    assert setting["augment"].startswith("random crop (pad 4) only, no flip")
    said = json.dumps(setting["deviations"])
    for named in ("data: digits instead of CIFAR-10", "ResNet-8 at width 8 instead of 16",
                  "batch 8 instead of 128", "augmentation: random crop (pad 4) only, no flip"):
        assert named in said, said
