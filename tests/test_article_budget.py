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

import pytest

from tests.shrunk import assert_every_claim_ran, run_claims

SHRINK = {"step_count": 48, "starts_steps": 32, "max_steps": 32, "max_repeats": 8}
CLAIM_IDS = ("C0", "C4", "C5", "C6", "C7", "C8", "C9", "E1", "E2")


@pytest.fixture(scope="module")
def article_run(tmp_path_factory):
    return run_claims("article", SHRINK, tmp_path_factory.mktemp("article"))


def test_the_article_budget_runs_end_to_end_and_writes_its_report(article_run):
    assert_every_claim_ran(*article_run, CLAIM_IDS)


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
