"""The invariance atlas (``python -m wd_claims.atlas``): what it finds on the GPT block, with and
without QK-norm, and a clear error for an unknown architecture."""

import pytest

from wd_claims import atlas


def test_qk_norm_makes_the_query_and_key_kernels_scale_invariant_and_nothing_else():
    plain, qk = atlas.survey("gpt"), atlas.survey("gpt_qk_norm")
    assert plain.invariant == [] and plain.joint == []
    assert qk.invariant == [f"blocks.{i}.{p}.weight" for i in range(2) for p in ("q", "k")]
    assert qk.by_norm == {"LayerNorm": [4, 4 * 64 * 64]}
    assert qk.with_eps == {"up to ε, p = 2": 4}   # LayerNorm's ε is added to a variance
    assert qk.fraction == pytest.approx(4 * 64 * 64 / qk.params)


def test_the_atlas_renders_a_row_per_architecture_and_the_command_that_regenerates_it():
    text = atlas.render([atlas.survey("gpt_qk_norm")], "python -m wd_claims.atlas")
    assert "python -m wd_claims.atlas" in text
    assert "| gpt_qk_norm |" in text and "LayerNorm (4," in text


def test_an_unknown_architecture_is_a_usage_error_naming_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        atlas.main(["resnet1000"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "resnet1000" in err and "resnet18" in err
