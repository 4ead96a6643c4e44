"""The pytest plugin, exercised by inner pytest sessions on tiny claim files (``pytester``).

Each inner session runs in a temporary folder at ``--budget smoke`` with its own report folder;
the claims there are a few lines each, so the whole module takes seconds.
"""

import json
import os
from pathlib import Path

import pytest

# In-process inner sessions (and pytester itself) unload the modules imported during a test, and
# torch's operator registry cannot be imported twice: what inner claims import is imported here.
import torchvision.datasets  # noqa: F401

from wd_claims.data import CIFAR_FILES
from wd_claims.machine import worker_gpu

TINY_CLAIMS = """
import pytest
from wd_claims.verdict import Verdict

pytestmark = pytest.mark.c01

def test_first_claim_passes(record_verdict):
    record_verdict(Verdict(id="C1", title="first", status="pass", measured=1.0,
                           context={"model": "toy"}))

def test_second_claim_fails_and_says_so(record_verdict):
    record_verdict(Verdict(id="C1", title="second", status="fail", measured=2.0,
                           reason="measured 2 > 1", context={"model": "toy"}))
    assert False, "measured 2 > 1"
"""


@pytest.fixture
def run(pytester, pytestconfig):
    """``run(*args)`` → (result, report dir): an inner session with the plugin, at smoke budget."""
    # The entry point loads the plugin in inner sessions too; naming it again would register it
    # twice (pytest refuses), so -p is added only where entry points are not loaded.
    plugin = ([] if pytestconfig.pluginmanager.has_plugin("wd_claims")
              else ["-p", "wd_claims.plugin"])

    def inner(*args, subprocess=False):
        report_dir = pytester.path / "reports"
        argv = [*plugin, "--budget", "smoke", "--report-dir", str(report_dir),
                "-p", "no:cacheprovider", *args]
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(*argv), report_dir

    return inner


def verdicts(report_dir) -> dict[str, dict]:
    """{test name: verdict} from ``latest.json``."""
    return {v["test"].split("::")[-1]: v for v in json.loads((report_dir / "latest.json")
                                                              .read_text())}


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "choices"), [
    ("--budget=huge", "'smoke', 'quick', 'full', 'article'"),
    ("--device=tpu", "'auto', 'cpu', 'cuda'")])
def test_an_unknown_choice_is_a_usage_error_naming_the_valid_ones(run, option, choices):
    result, _ = run(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*invalid choice*(choose from {choices})*"])


def test_cuda_without_cuda_is_a_one_line_error_not_a_traceback(run):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result, _ = run("--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [f"ERROR: --device cuda: no CUDA device is available to torch "
                      f"{torch.__version__}; run with --device cpu (or auto)"]


@pytest.mark.parametrize("option", ["--report-dir", "--cache-dir"])
def test_an_unwritable_report_or_cache_folder_is_a_usage_error(pytester, option):
    # Tests run as root, which ignores chmod: a folder under a regular file cannot be created.
    blocker = pytester.path / "a-file"
    blocker.write_text("")
    result = pytester.runpytest(option, str(blocker / "sub"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    what = option.removeprefix("--").replace("-dir", "")
    result.stderr.fnmatch_lines([f"ERROR: {what} directory */a-file/sub is not writable "
                                 "(Not a directory); pass a writable directory"])


DATA_CLAIMS = """
import pytest
pytestmark = pytest.mark.c05

def test_a_training_claim(images):
    pass

def test_a_geometry_claim(probe_data):
    pass
"""


@pytest.mark.parametrize(("folder", "reason"), [
    ("missing", "does not exist"),
    ("empty", "holds no cifar-10-batches-py folder"),
    ("corrupt", "fails torchvision's md5 integrity check"),
])
def test_a_broken_data_folder_skips_the_claims_with_the_reason_in_the_report(pytester, run,
                                                                            folder, reason):
    root = pytester.path / folder
    if folder == "empty":
        root.mkdir()
    if folder == "corrupt":  # the right file names, junk contents: only md5 can tell
        (root / "cifar-10-batches-py").mkdir(parents=True)
        for name in CIFAR_FILES:
            (root / "cifar-10-batches-py" / name).write_bytes(b"junk\n" * 100)
    pytester.makepyfile(test_data_claims=DATA_CLAIMS)
    result, report_dir = run("--data-dir", str(root))
    result.assert_outcomes(skipped=2)
    if folder != "corrupt":  # visible without reading the files: said in the header and summary
        result.stdout.fnmatch_lines([
            f"wd-claims: WARNING: the CIFAR-10 folder given is unusable (*{reason}*",
            "*weight-decay claims report*",
            f"WARNING: the CIFAR-10 folder given is unusable (*{reason}*"])
    found = verdicts(report_dir)
    assert {v["status"] for v in found.values()} == {"skip"}
    for v in found.values():
        assert reason in v["reason"] and "never replaced by the stand-in" in v["reason"]
    assert reason in (report_dir / "latest.md").read_text()


def test_an_unknown_data_source_is_a_usage_error_naming_the_valid_ones(run):
    result, _ = run("--data", "mnist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --data 'mnist': expected one of auto, standin, cifar10, "
                                 "digits or MODULE:FACTORY"])


def test_a_users_data_factory_that_raises_stops_the_session_before_any_claim_runs(pytester, run):
    pytester.makepyfile(user_data="def make():\n    raise OSError('the share is not mounted')\n")
    pytester.makepyfile(test_data_claims=DATA_CLAIMS)
    pytester.syspathinsert()
    result, _ = run("--data", "user_data:make")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--data user_data:make: the factory raised OSError: the share "
                                 "is not mounted*"])


def test_named_digits_feed_the_claims_real_images(pytester, run):
    pytester.makepyfile(test_data_claims=DATA_CLAIMS.replace("    pass", "    assert 'digits' in "
                                                             "images[0].name and images[0].real",
                                                             1))
    result, _ = run("--data", "digits")
    result.assert_outcomes(passed=2)


NO_INVARIANT_CLAIM = """
import pytest
from torch import nn
from wd_claims.zoo import ModelSpec, require_scale_invariant
pytestmark = pytest.mark.c02

PLAIN = ModelSpec("plain_mlp", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
                  input_shape=(3, 2, 2))
NORMED = ModelSpec("normed_mlp", lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 4),
                                                       nn.BatchNorm1d(4), nn.Linear(4, 3)),
                   input_shape=(3, 2, 2))

@pytest.mark.parametrize("spec", [PLAIN, NORMED], ids=["plain_mlp", "normed_mlp"])
def test_gradient_is_orthogonal(spec):
    assert "1.weight" in require_scale_invariant(spec)
"""


def test_a_model_without_scale_invariant_tensors_is_skipped_with_the_reason(pytester, run):
    pytester.makepyfile(test_no_invariant=NO_INVARIANT_CLAIM)
    result, report_dir = run()
    result.assert_outcomes(passed=1, skipped=1)
    v = verdicts(report_dir)["test_gradient_is_orthogonal[plain_mlp]"]
    assert v["status"] == "skip" and v["id"] == "C2" and v["context"]["model"] == "plain_mlp"
    assert "model 'plain_mlp' has no scale-invariant parameter tensor" in v["reason"]


def test_the_engine_refusing_a_model_without_invariant_tensors_skips_the_claim(pytester, run):
    pytester.makepyfile(test_engine_refuses="""
import pytest
from wd_claims.invariance import NoScaleInvariantTensor
pytestmark = pytest.mark.c05

def test_equilibrium():
    raise NoScaleInvariantTensor("plain_mlp has no scale-invariant tensor to train")
""")
    result, report_dir = run()
    result.assert_outcomes(skipped=1)
    (v,) = verdicts(report_dir).values()
    assert v["status"] == "skip" and v["reason"] == (
        "the claim does not apply: plain_mlp has no scale-invariant tensor to train")


FACTORY_CLAIM = """
import pytest
from wd_claims.zoo import ModelSpec
pytestmark = pytest.mark.c01

def broken_factory():
    raise RuntimeError("out of memory building the net")

@pytest.mark.parametrize("spec", [ModelSpec("broken", broken_factory),
                                  ModelSpec("not_a_module", lambda: "a string")],
                         ids=["broken", "not_a_module"])
def test_claim_on_a_user_model(spec):
    spec.build()
"""


def test_a_bad_model_factory_fails_the_claim_naming_the_factory(pytester, run):
    pytester.makepyfile(test_factory=FACTORY_CLAIM)
    result, report_dir = run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*ModelFactoryError: model factory 'broken' (test_factory.broken_factory) raised "
        "RuntimeError: out of memory building the net*",
        "*ModelFactoryError: model factory 'not_a_module' (test_factory.<lambda>) returned str, "
        "not a torch.nn.Module*"])
    found = verdicts(report_dir)
    assert {v["status"] for v in found.values()} == {"fail"}
    assert "model factory 'broken'" in found["test_claim_on_a_user_model[broken]"]["reason"]


def test_an_unknown_model_in_a_claims_declaration_names_the_zoo(pytester, run):
    pytester.makepyfile(test_typo="""
from wd_claims.claim import Claim

CLAIM = Claim(id="C1", title="typo", quote="", models=("resnet9",))

def test_claim(model_spec):
    pass
""")
    result, _ = run()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*unknown model(s) 'resnet9'; the zoo has resnet8, *"])


# --- faults and verdict bookkeeping --------------------------------------------------------------

def test_a_failed_claim_fails_its_test_and_the_report_is_still_written(pytester, run):
    pytester.makepyfile(test_tiny=TINY_CLAIMS)
    result, report_dir = run()
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    found = verdicts(report_dir)
    assert found["test_first_claim_passes"]["status"] == "pass"
    assert found["test_second_claim_fails_and_says_so"]["status"] == "fail"
    assert "| **FAIL**: measured 2 > 1 |" in (report_dir / "latest.md").read_text()


def test_the_report_never_calls_a_failed_test_a_pass(pytester, run):
    pytester.makepyfile(test_liar="""
import pytest
from wd_claims.verdict import Verdict
pytestmark = pytest.mark.c03

def test_files_pass_then_fails(record_verdict):
    record_verdict(Verdict(id="C3", title="optimistic", status="pass"))
    raise ValueError("the control was never run")

def test_files_nothing_then_fails():
    assert 1 == 2

def test_files_nothing_and_is_an_expected_failure():
    pytest.xfail("the article is imprecise here")
""")
    result, report_dir = run()
    result.assert_outcomes(failed=2, xfailed=1)
    found = verdicts(report_dir)
    v = found["test_files_pass_then_fails"]
    assert v["status"] == "fail" and "ValueError: the control was never run" in v["reason"]
    assert found["test_files_nothing_then_fails"]["status"] == "fail"
    assert "assert 1 == 2" in found["test_files_nothing_then_fails"]["reason"]
    xfail = found["test_files_nothing_and_is_an_expected_failure"]
    assert xfail["status"] == "xfail" and xfail["reason"] == "the article is imprecise here"


def test_a_claim_module_that_cannot_be_imported_is_a_failed_claim_in_the_report(pytester, run):
    pytester.makepyfile(
        test_c07_broken="import pytest\nfrom wd_claims.theory import no_such_thing\n")
    result, report_dir = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # pytest stops on collection errors
    (v,) = json.loads((report_dir / "latest.json").read_text())
    assert v["id"] == "C7" and v["status"] == "fail"
    assert "could not be collected: ImportError" in v["reason"]
    assert "1 module(s) could not be collected" in (report_dir / "latest.md").read_text()


def test_record_verdict_refuses_anything_but_a_verdict(pytester, run):
    pytester.makepyfile(test_wrong="""
import pytest
pytestmark = pytest.mark.c01

def test_files_a_dict(record_verdict):
    record_verdict({"id": "C1", "status": "pass"})
""")
    result, _ = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TypeError: record_verdict takes a wd_claims.verdict.Verdict, "
                                 "got dict*"])


# --- several at once -------------------------------------------------------------------------

def test_xdist_workers_verdicts_end_up_in_one_report(pytester, run):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_tiny=TINY_CLAIMS, test_more="""
import os
import pytest
from wd_claims.verdict import Verdict
pytestmark = pytest.mark.c02

@pytest.mark.parametrize("k", range(4))
def test_many(record_verdict, k):
    record_verdict(Verdict(id="C2", title=f"case {k}", status="pass", measured=float(k),
                           notes=[os.environ["PYTEST_XDIST_WORKER"]],
                           context={"model": f"m{k}"}))
""")
    result, report_dir = run("-n", "2")
    result.assert_outcomes(passed=5, failed=1)
    found = json.loads((report_dir / "latest.json").read_text())
    assert len(found) == 6
    assert {v["notes"][0] for v in found if v["id"] == "C2"} == {"gw0", "gw1"}
    assert len(list(report_dir.glob("2*.json"))) == 1  # the controller alone writes


@pytest.mark.parametrize(("visible", "worker", "expected"), [
    ("0,1,2,3", "gw0", "0"), ("0,1,2,3", "gw5", "1"), ("4, 7", "gw1", "7"),
    ("0", "gw1", None), (None, "gw1", None), ("0,1", None, None), ("0,1", "master", None)])
def test_each_xdist_worker_gets_its_own_gpu(visible, worker, expected):
    assert worker_gpu(visible, worker) == expected


def test_thread_count_honours_the_override_then_shares_cores_among_xdist_workers():
    from wd_claims.machine import thread_count

    assert thread_count({}, cpu_count=8) is None
    assert thread_count({"PYTEST_XDIST_WORKER_COUNT": "4"}, cpu_count=8) == 2
    assert thread_count({"WD_CLAIMS_THREADS": "1", "PYTEST_XDIST_WORKER_COUNT": "4"}, 8) == 1
    with pytest.raises(pytest.UsageError, match="WD_CLAIMS_THREADS='two'"):
        thread_count({"WD_CLAIMS_THREADS": "two"}, cpu_count=8)


ORDERED_CLAIMS = """
import pytest

@pytest.mark.c04
def test_reads_the_shared_runs():
    pass

@pytest.mark.c01
def test_trains_nothing():
    pass
"""
OWN_RUNS_CLAIM = """
from wd_claims.claim import Claim

CLAIM = Claim(id="C9", title="own runs", quote="", runs=lambda budget, images, model: [])

def test_reads_its_own_runs():
    pass
"""


def test_on_the_cpu_the_claims_that_train_nothing_run_first_then_those_with_short_runs(pytester,
                                                                                        run):
    # so that they run while the worker processes train (wd_claims.scheduler.Scheduler.start)
    pytester.makepyfile(test_order=ORDERED_CLAIMS, test_own=OWN_RUNS_CLAIM)
    result, _ = run("-v", "--device", "cpu", subprocess=True)
    result.assert_outcomes(passed=3)
    ran = [line.split("::")[1].split()[0] for line in result.outlines if "::test_" in line]
    assert ran == ["test_trains_nothing", "test_reads_its_own_runs", "test_reads_the_shared_runs"]


WARM_PROBE = """
def pytest_collection_finish(session):
    from wd_claims.plugin import SESSION

    claims = session.config.stash.get(SESSION, None)
    pool = claims.scheduler._pool if claims is not None else None
    print("WORKERS", 0 if pool is None else len(pool._processes))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the workers need two cores")
def test_collecting_the_first_claim_module_starts_the_worker_processes(pytester, run):
    # plugin.pytest_collect_file: they import torch while this process collects; only a module
    # of the package's claims (wd_claims.claims) does it, never a file that only looks like one
    import wd_claims.claims

    pytester.makepyfile(warm_probe=WARM_PROBE)
    real = Path(wd_claims.claims.__file__).parent / "test_c01_scale_invariance.py"
    result, _ = run("--device", "cpu", "--co", "-p", "warm_probe", str(real), subprocess=True)
    result.stdout.fnmatch_lines(["WORKERS 2"])
    lookalike = pytester.mkdir("claims") / "test_c01_lookalike.py"
    lookalike.write_text("import pytest\n\n@pytest.mark.c01\ndef test_x(claims_session):\n"
                         "    pass\n")
    result, _ = run("--device", "cpu", "--co", "-p", "warm_probe", str(lookalike),
                    subprocess=True)
    result.stdout.fnmatch_lines(["WORKERS 0"])


def test_no_worker_is_started_under_xdist_or_for_cuda():
    from types import SimpleNamespace

    from wd_claims.plugin import may_train_in_background

    def config(device="cpu", numprocesses=None, **extra):
        return SimpleNamespace(option=SimpleNamespace(numprocesses=numprocesses),
                               getoption=lambda name, default=None: device, **extra)

    assert may_train_in_background(config()) == (len(os.sched_getaffinity(0)) >= 2)
    assert not may_train_in_background(config(numprocesses=2))
    assert not may_train_in_background(config(workerinput={}))
    assert not may_train_in_background(config(device="cuda"))
