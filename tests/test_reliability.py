"""Reliability of whole sessions in separate processes: interruption, two sessions at once,
determinism of a real claim, and what the report must never contain.

Each test starts ``python -m pytest`` subprocesses (one torch thread each: the machine is shared)
and reads the report files they leave behind.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The plugin comes through its entry point unless autoloading is off; naming it twice is an error.
PLUGIN = ["-p", "wd_claims.plugin"] if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else []

FINISHES_THEN_HANGS = """
import time
from pathlib import Path
import pytest
from wd_claims.verdict import Verdict

pytestmark = pytest.mark.c01

def test_a_claim_that_finishes(record_verdict):
    record_verdict(Verdict(id="C1", title="finished", status="pass", measured=1.0))

def test_b_claim_that_hangs():
    Path("second-started").write_text("")
    time.sleep(120)
"""


def pytest_process(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """A ``python -m pytest`` child at the smoke budget, one torch thread, no cache plugin."""
    # unbuffered, with faulthandler: a child that hangs leaves its output and, on SIGABRT, the
    # traceback of every thread (finish). SIGINT back to its default in the child: a shell starts
    # background jobs with SIGINT ignored, Python keeps an ignored SIGINT ignored, and the
    # interrupted-run test then timed out whenever `pytest tests/` itself ran in the background
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    full_env.pop("PYTEST_XDIST_WORKER", None)
    full_env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    return subprocess.Popen([sys.executable, "-m", "pytest", *PLUGIN, "--budget", "smoke",
                             "-p", "no:cacheprovider", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)      # faulthandler prints every thread's traceback
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"pytest child did not finish in {timeout} s:\n{out}")
    return proc.returncode, out


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} never appeared:\n{proc.communicate()[0]}")
        time.sleep(0.1)


def test_an_interrupted_run_still_reports_the_claims_that_finished(tmp_path):
    (tmp_path / "test_hang.py").write_text(FINISHES_THEN_HANGS)
    proc = pytest_process(tmp_path, "test_hang.py", "--report-dir", "reports")
    wait_for(tmp_path / "second-started", proc)  # so the first claim has finished
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == pytest.ExitCode.INTERRUPTED, out
    found = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert [(v["title"], v["status"]) for v in found] == [("finished", "pass")]
    assert "**Incomplete run:** the run was interrupted" in (
        tmp_path / "reports" / "latest.md").read_text()


MANY_CLAIMS = """
import pytest
from wd_claims.verdict import Verdict

pytestmark = pytest.mark.c02

@pytest.mark.parametrize("k", range(30))
def test_claim(record_verdict, k):
    record_verdict(Verdict(id="C2", title=f"{RUN} case {k}", status="pass", measured=float(k),
                           notes=["x" * 2000]))
"""


def test_two_sessions_at_once_each_write_a_whole_report(tmp_path):
    for run in ("A", "B"):
        (tmp_path / f"test_run{run}.py").write_text(f"RUN = {run!r}\n" + MANY_CLAIMS)
    procs = [pytest_process(tmp_path, f"test_run{run}.py", "--report-dir", "shared")
             for run in ("A", "B")]
    for proc in procs:
        code, out = finish(proc)
        assert code == 0, out
    shared = tmp_path / "shared"
    stamped = sorted(shared.glob("2*.json"))
    assert len(stamped) == 2  # the pid in the name keeps them apart
    whole = {p.read_text() for p in stamped}
    for p in stamped:
        runs = {v["title"].split()[0] for v in json.loads(p.read_text())}
        assert len(json.loads(p.read_text())) == 30 and len(runs) == 1
    assert (shared / "latest.json").read_text() in whole  # one whole report, not a mixture
    assert (shared / "latest.md").read_text() in {p.with_suffix(".md").read_text()
                                                  for p in stamped}
    assert not list(shared.glob(".*.tmp"))


def test_a_real_claim_measures_the_same_numbers_twice(tmp_path):
    # C1 on the smallest zoo model, twice, into two report folders; run side by side to save time.
    claim = ROOT / "claims" / "test_c01_scale_invariance.py"
    procs = [pytest_process(ROOT, str(claim), "-k", "conv_groupnorm", "--report-dir",
                            str(tmp_path / name)) for name in ("first", "second")]
    for proc in procs:
        code, out = finish(proc, timeout=170)
        assert code == 0, out
    first, second = (json.loads((tmp_path / n / "latest.json").read_text())
                     for n in ("first", "second"))
    assert first and [v["measured"] for v in first] == [v["measured"] for v in second]
    assert [v["control"] for v in first] == [v["control"] for v in second]


def test_the_report_holds_no_environment_variable_and_no_home_path(pytester, monkeypatch):
    # In process (pytester) to save a torch start-up; Path.home() and provenance read os.environ.
    home = pytester.path / "home" / "alice"
    secret = "sk-live-0123456789abcdefSECRET"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WD_API_TOKEN", secret)
    pytester.makepyfile(test_private="""
from pathlib import Path
import pytest
from wd_claims.verdict import Verdict

pytestmark = pytest.mark.c01

def test_claim(record_verdict):
    record_verdict(Verdict(id="C1", title="t", status="pass",
                           notes=[f"cache under {Path.home() / '.cache'}"]))

def test_skipped_claim():
    pytest.skip(f"no data in {Path.home() / 'data'}")
""")
    result = pytester.runpytest(*PLUGIN, "--budget", "smoke", "--report-dir", "reports",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    files = list((pytester.path / "reports").glob("*.*"))
    assert len(files) == 4
    for path in files:
        text = path.read_text()
        assert secret not in text and str(home) not in text and "home/alice" not in text
    found = json.loads((pytester.path / "reports" / "latest.json").read_text())
    assert "cache under ~/.cache" in found[0]["notes"][0]
    assert found[1]["reason"] == "no data in ~/data"
    provenance = found[0]["context"]["provenance"]
    assert set(provenance) == {"python", "torch", "sympy", "numpy", "platform", "device",
                               "cpu_count", "git_commit"}
    assert not any(os.sep in str(value) for value in provenance.values())  # no paths at all


@pytest.mark.parametrize(("environ", "profile"), [
    ({}, "dev"), ({"CI": "true"}, "ci"), ({"CI": "false"}, "dev"),
    ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev")])
def test_ci_loads_the_hypothesis_ci_profile(environ, profile):
    import importlib.util

    from hypothesis import settings

    spec = importlib.util.spec_from_file_location("tests_conftest", Path(__file__).parent
                                                  / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)  # re-registering the profiles is harmless
    assert conftest.hypothesis_profile(environ) == profile
    assert settings.get_profile("ci").derandomize and settings.get_profile("ci").deadline is None
