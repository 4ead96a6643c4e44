"""A budget's whole code path at a reduced length: ``pytest claims/`` in a subprocess with the
test-only ``WD_CLAIMS_TEST_SHRINK`` (:func:`wd_claims.config.shrunk`), and what its report must
show (tests/test_full_budget.py, tests/test_article_budget.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# C1–C3 (the same probes at every budget) and C10 (its Lanczos runs) are left out to keep CI
# inside its time
SKIPPED = "not (c01 or c02 or c03 or c10)"


def run_claims(budget: str, shrink: dict, folder: Path, *args: str):
    """(the finished process, its report folder): the claims at ``budget`` shrunk by ``shrink``,
    reports and cache under ``folder``, with ``args`` added."""
    env = {**os.environ, "WD_CLAIMS_TEST_SHRINK": json.dumps(shrink), "WD_CLAIMS_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--budget", budget, "--device", "cpu",
         "--report-dir", str(folder / "reports"), "--cache-dir", str(folder / "cache"), "-q",
         "-p", "no:cacheprovider", "-m", SKIPPED, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    return out, folder / "reports"


def assert_every_claim_ran(out, reports: Path, claim_ids) -> list[dict]:
    """The run ended with verdicts (a FAIL allowed: at a few steps a statistic may miss) for every
    claim of ``claim_ids``, none crashed before filing one (but the clear "too short" of a window
    with a single step), and the report says it was shrunk. Returns the verdicts."""
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-4000:]   # 1: a claim FAILed
    assert "error" not in out.stdout.splitlines()[-1].lower(), out.stdout[-4000:]
    verdicts = json.loads((reports / "latest.json").read_text())
    assert {v["id"] for v in verdicts} >= set(claim_ids)
    assert {v["status"] for v in verdicts} <= {"pass", "fail", "xfail"}, \
        [(v["id"], v["status"], v["reason"][:200]) for v in verdicts]
    crashed = [(v["id"], v["reason"][:300]) for v in verdicts
               if "before filing a verdict" in v["reason"] and "too short" not in v["reason"]]
    assert not crashed
    assert "SHRUNK FOR TESTING" in (reports / "latest.md").read_text()
    return verdicts
