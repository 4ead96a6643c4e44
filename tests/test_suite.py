"""Verify any model: parametrize_with_claims, strict expected failures, and --model."""

import json

USER_TESTS = '''
import torch
from torch import nn
from wd_claims.suite import parametrize_with_claims
from wd_claims.models import mlp_layernorm


def no_norm_net():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


@parametrize_with_claims({"mlp_ln": mlp_layernorm, "plain": no_norm_net}, claims=["C2"],
                         expected_failed_claims={"mlp_ln": {"C2": "declared to fail"}})
def test_user_models(model_spec, claim_check, run_claim):
    run_claim(claim_check, model_spec)
'''


def test_parametrize_with_claims_runs_claims_on_user_models_with_ids_and_strict_xfail(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--budget", "smoke", "--report-dir", str(pytester.path / "r"),
                                "-p", "no:cacheprovider", "-v")
    # The declared failure passes, so the strict xfail fails; the model without normalization is
    # skipped with the reason (the claim does not apply).
    result.stdout.fnmatch_lines(["*test_user_models?mlp_ln-c2-gradient_is_orthogonal*FAILED*",
                                 "*test_user_models?plain-c2-gradient_is_orthogonal*SKIPPED*"])
    # The claim itself passed on mlp_ln, but an unexpected pass of a strict xfail fails the test,
    # and the report agrees with pytest.
    verdicts = json.loads((pytester.path / "r" / "latest.json").read_text())
    statuses = {v["context"]["model"].split("-")[0]: v["status"] for v in verdicts}
    assert statuses == {"mlp_ln": "fail", "plain": "skip"}


def test_model_option_with_a_bad_target_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--model", "no_such_module_xyz:make", "-p", "no:cacheprovider")
    assert result.ret == 4  # pytest's usage-error exit code
    result.stderr.fnmatch_lines(["*--model 'no_such_module_xyz:make': cannot import*"])
    result = pytester.runpytest("--model", "missing-colon", "-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*expected MODULE:FACTORY*"])


def test_worked_examples_run_through_the_command_line_path(pytester):
    # As a user would type it: the GroupNorm CNN passes C1; the pre-LayerNorm transformer has no
    # scale-invariant tensor, so C1 is skipped with the reason and its report shows the map.
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pytester.syspathinsert(root)
    result = pytester.runpytest(
        str(root / "claims" / "test_c01_scale_invariance.py"), "--budget", "smoke",
        "--model", "examples.user_models:groupnorm_cnn",
        "--model", "examples.user_models:tiny_transformer",
        "--report-dir", str(pytester.path / "r"), "-p", "no:cacheprovider", "--rootdir",
        str(pytester.path))
    result.assert_outcomes(passed=1, skipped=1)
    report = (pytester.path / "r" / "latest.md").read_text()
    assert "Scale-invariance map" in report and "`attn.in_proj_weight`" in report
    assert "tiny_transformer' has no scale-invariant parameter tensor" in report


def test_a_model_declaring_its_invariant_tensors_as_a_set_trains():
    # The engine memoizes its probe of a run's tracked tensors on the spec: a user's set made the
    # spec unhashable and every training claim raised TypeError (found running the worked
    # examples through every claim).
    from examples.user_models import weight_standardized_cnn
    from wd_claims.run_config import TrainConfig
    from wd_claims.run_parts import tracked_for
    from wd_claims.suite import as_spec

    spec = as_spec("ws", weight_standardized_cnn)
    assert spec.expected_invariant == frozenset(weight_standardized_cnn.expected_invariant)
    config = TrainConfig(etas=(0.1,), lams=(0.0,), steps=1, model="ws", width=8, spec=spec)
    invariant, _ = tracked_for(config)
    assert set(invariant) == set(weight_standardized_cnn.expected_invariant)
    from wd_claims.zoo import ModelSpec

    one = ModelSpec("one", weight_standardized_cnn, expected_invariant="features.0.weight")
    assert one.expected_invariant == frozenset({"features.0.weight"})   # a name, not its letters
