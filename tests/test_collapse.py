"""Configurations that left the theory's domain (a dead or diverged network) are excluded, named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wd_claims.collapse import left_domain, within_domain
from wd_claims.data import DeviceData, standin_cifar
from wd_claims.run_config import TrainConfig
from wd_claims.train import train

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def three():
    data = DeviceData.from_images(standin_cifar(128))
    config = TrainConfig(etas=(0.1, 0.2, 0.3), lams=(1e-3, 2e-3, 3e-3), model="conv_groupnorm",
                         steps=8, batch_size=16, evaluate=False, checkpoints=(0,))
    return train(config, data, progress=False)


def _with(result, k, step, value):
    metrics = {m: a.copy() for m, a in result.metrics.items()}
    metrics["gnorm"][k, step:, -1] = value
    return replace(result, metrics=metrics)


def test_a_live_run_is_returned_as_it_is(three):
    kept, said = within_domain(three)
    assert kept is three and said == [] and left_domain(three) == [None, None, None]


def test_a_dead_configuration_is_excluded_and_named_with_its_step(three):
    kept, said = within_domain(_with(three, 1, 5, 0.0))
    assert kept.config.etas == (0.1, 0.3) and kept.config.lams == (1e-3, 3e-3)
    assert said == ["η=0.2, λ=0.002 died (G = 0: the gradient vanished in every tracked tensor) "
                    "at step 5 and was excluded"]
    for m, a in kept.metrics.items():
        np.testing.assert_array_equal(a, three.metrics[m][[0, 2]])
    assert len(kept.checkpoints[0]) == 2 and kept.diverged == [None, None]


def test_a_configuration_the_engine_recorded_as_diverged_is_excluded_with_its_record(three):
    record = "config 0 (η=0.1, λ=0.001) diverged at step 3: loss = nan"
    kept, said = within_domain(replace(three, diverged=[record, None, None]))
    assert kept.config.etas == (0.2, 0.3) and said == [f"{record} and was excluded"]


def test_the_engines_divergence_record_is_what_is_excluded_when_a_run_diverges():
    data = DeviceData.from_images(standin_cifar(64))
    config = TrainConfig(etas=(0.1, 1e30), lams=(0.0, 0.0), model="conv_groupnorm", steps=6,
                         batch_size=16, evaluate=False)
    result = train(config, data, progress=False)
    assert result.diverged[0] is None and result.diverged[1] is not None
    kept, said = within_domain(result)
    assert kept.config.etas == (0.1,) and said == [f"{result.diverged[1]} and was excluded"]


def test_the_article_samples_verdicts_name_the_configuration_that_died():
    verdicts = json.loads((ROOT / "reports" / "article" / "latest.json").read_text())
    named = {v["id"]: v["setting"].get("excluded") for v in verdicts
             if v["id"] in ("C5", "C6", "C7", "C8")}
    for excluded in named.values():
        assert excluded == ["η=1, λ=0.0025 died (G = 0: the gradient vanished in every tracked "
                            "tensor) at step 10,334 and was excluded"]
