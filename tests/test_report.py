"""The report writer: rendering, JSON, atomic files, redaction (render.py, files.py, verdict.py)."""

import errno
import json
import math
from pathlib import Path

import pytest

from wd_claims import files
from wd_claims.files import write_report
from wd_claims.render import render_markdown
from wd_claims.verdict import Verdict, fmt

SESSION = {"budget": "smoke", "device": "CPU (test)", "device_kind": "cpu",
           "started": "2020-01-01T00:00:00+00:00", "provenance": {"torch": "x"}}


def verdict(**kw) -> Verdict:
    base = dict(id="C2", title="gradient ⟂ w", expected="|cos(∇L, w)| ≤ 1e-7", status="pass",
                measured={"headline": 1e-9, "per tensor": {"a": 1e-9, "b": 2e-10}},
                tolerance=1e-7, context={"model": "resnet8", "data": "stand-in"})
    base.update(kw)
    return Verdict(**base)


def summary_rows(md: str) -> list[str]:
    """The table rows of the summary, header and rule excluded."""
    block = md.split("## Summary", 1)[1].split("\n<a id=", 1)[0]
    return [line for line in block.splitlines() if line.startswith("|")][2:]


def test_a_verdict_with_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        Verdict(id="C1", title="t", status="passed")


def test_json_round_trip_keeps_nan_and_turns_numpy_into_floats():
    np = pytest.importorskip("numpy")
    v = verdict(measured={"headline": np.float32(0.5), "nan": float("nan")})
    back = Verdict.from_json(json.loads(json.dumps(v.to_json())))
    assert back.measured["headline"] == 0.5 and math.isnan(back.measured["nan"])


def test_json_holds_only_plain_types_that_xdist_can_carry():
    class Version(str):  # like torch.__version__ (TorchVersion), which execnet refuses
        pass

    out = Verdict(id="C1", title="t", context={"torch": Version("2.0")}).to_json()
    assert type(out["context"]["torch"]) is str


def test_a_pipe_inside_a_cell_does_not_split_the_summary_row():
    md = render_markdown([verdict()], SESSION)
    (row,) = summary_rows(md)
    assert row.count(" | ") == 6, row  # seven columns, the |cos| escaped
    assert r"\|cos(∇L, w)\|" in row


def test_the_summary_names_the_data_briefly_and_the_section_in_full():
    md = render_markdown([verdict(context={"model": "m", "data": "stand-in (synthetic, x)"})],
                         SESSION)
    assert " m · stand-in | " in summary_rows(md)[0] and "data: stand-in (synthetic, x)" in md


def test_two_verdicts_of_one_claim_and_model_get_distinct_anchors():
    md = render_markdown([verdict(), verdict(title="second")], SESSION)
    assert md.count('<a id="c2-resnet8"></a>') == 1 and '<a id="c2-resnet8-2"></a>' in md


def test_summary_gives_the_reason_of_a_skip_and_the_header_counts_statuses():
    md = render_markdown([verdict(), verdict(status="skip", reason="needs CIFAR-10",
                                             measured=None)], SESSION)
    assert "skip: needs CIFAR-10 |" in md
    assert "1 PASS · 1 skip" in md


def test_an_interrupted_run_says_so_in_the_header():
    md = render_markdown([verdict()], {**SESSION, "incomplete": "the run was interrupted."})
    assert "**Incomplete run:** the run was interrupted." in md


def test_nested_measurements_keep_their_braces():
    assert fmt({"headline": 1.0, "per tensor": {"a": 2.0}}) == "headline=1, per tensor={a=2}"


def test_write_report_writes_stamped_and_latest_files_that_agree(tmp_path):
    path = write_report([verdict()], SESSION, tmp_path)
    assert path.suffix == ".md" and path.exists()
    assert (tmp_path / "latest.md").read_text() == path.read_text()
    assert (tmp_path / "latest.json").read_text() == path.with_suffix(".json").read_text()
    assert json.loads((tmp_path / "latest.json").read_text())[0]["id"] == "C2"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_full_disk_leaves_the_previous_latest_reports_intact(tmp_path, monkeypatch):
    write_report([verdict(title="previous")], SESSION, tmp_path)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    calls = {"n": 0}
    real_fsync = files.os.fsync

    def fsync_until_disk_full(fd):  # the last of the four files hits ENOSPC
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_until_disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report([verdict(title="new")], SESSION, tmp_path)
    after = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert after == before  # nothing replaced, no new stamped file, no temporary left behind


def test_redact_hides_the_home_directory_but_not_lookalike_paths(monkeypatch, tmp_path):
    home = tmp_path / "alice"
    monkeypatch.setenv("HOME", str(home))
    text = f"data in {home}/cifar and {home}, not {home}2/x"
    assert files.redact(text) == f"data in ~/cifar and ~, not {home}2/x"


def test_a_home_directory_with_non_ascii_letters_is_hidden_from_the_json_too(monkeypatch,
                                                                             tmp_path):
    home = tmp_path / "josé"
    monkeypatch.setenv("HOME", str(home))
    write_report([verdict(reason=f"no data in {home}/data")], SESSION, tmp_path)
    for name in ("latest.md", "latest.json"):
        text = (tmp_path / name).read_text()
        assert "jos" not in text and "no data in ~/data" in json.loads(
            (tmp_path / "latest.json").read_text())[0]["reason"]


def test_save_figure_writes_a_png_atomically_and_returns_its_report_path(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    rel = files.save_figure(fig, tmp_path, "C3-toy.png")
    plt.close(fig)
    assert rel == "figures/C3-toy.png"
    assert Path(tmp_path / rel).read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "figures").glob(".*.tmp"))


def test_every_verdict_of_the_sample_states_the_articles_claim_at_a_resolution():
    """The committed sample: each claim's verdict carries at least one statement of the article's,
    each with the deviation it resolves, and the summary shows them beside what backs them."""
    sample = Path(__file__).resolve().parents[1] / "reports" / "sample"
    verdicts = [Verdict.from_json(v) for v in json.loads((sample / "latest.json").read_text())]
    judged = [v for v in verdicts if v.status != "skip"]
    assert judged
    for v in judged:
        statements = [c for c in v.checks if c.kind == "statement"]
        assert statements, f"{v.id} {v.context.get('model')}: no statement of the article"
        assert all(c.resolution for c in statements), v.id
        assert all(c.core for c in v.checks if c.kind in ("identity", "premise", "control"))
        assert all(c.kind == "condition" for c in v.conditions)
    summary = (sample / "latest.md").read_text().split("## Summary", 1)[1].split("<a id=", 1)[0]
    assert "| the article's statement, measured | resolution | backed by | verdict |" in summary
