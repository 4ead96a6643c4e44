"""A regular install works, and the plugin stays out of an unrelated project's way.

Both run as a new user would, in subprocesses: a wheel built from this checkout is installed into
a fresh virtual environment (its third-party packages — torch and the rest, gigabytes — are taken
from the running interpreter's site-packages through a ``.pth`` file, which does not load this
checkout's editable install), and a user-style test file collects every claim from the installed
copy; an unrelated project's ``pytest`` gains no folder, no torch import and no git call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_TEST = '''
from torch import nn

from wd_claims.suite import parametrize_with_claims


def make_net():
    """A small CNN with BatchNorm after each conv."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@parametrize_with_claims({"mynet": make_net}, claims=["C1", "C2", "C3"])
def test_mynet_satisfies_the_article(model_spec, claim_check, run_claim):
    run_claim(claim_check, model_spec)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("wd_claims-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    # the running environment's packages, without processing its .pth files (so not its
    # editable wd_claims): the wheel's copy is the only wd_claims there
    (site / "zz_host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    return python


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))}
    env.update(WD_CLAIMS_THREADS="1", **extra)
    return env


def test_the_wheel_installs_one_top_level_package_with_the_claims_and_models_inside(installed,
                                                                                  tmp_path):
    site = Path(subprocess.check_output(
        [installed, "-c", "import wd_claims, pathlib; print(pathlib.Path(wd_claims.__file__)"
                          ".parents[1])"], text=True, cwd=tmp_path).strip())
    top = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))}
    assert "wd_claims" in top and not {"harness", "models", "claims"} & top
    assert (site / "wd_claims" / "claims" / "test_c05_equilibrium.py").exists()
    assert (site / "wd_claims" / "models" / "resnet.py").exists()


def test_a_user_test_file_runs_every_requested_claim_from_the_installed_copy(installed,
                                                                           tmp_path):
    (tmp_path / "test_mynet.py").write_text(USER_TEST)
    out = subprocess.run([installed, "-m", "pytest", "test_mynet.py", "--budget", "smoke", "-q",
                          "-p", "no:cacheprovider", "-p", "no:randomly"], cwd=tmp_path,
                         capture_output=True, text=True, env=_clean_env(), timeout=600)
    assert "empty parameter set" not in out.stdout, out.stdout
    assert " passed" in out.stdout and " failed" not in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "reports" / "latest.md").exists()  # written in the current folder
    report = (tmp_path / "reports" / "latest.md").read_text()
    assert "mynet" in report and "C3" in report


def test_the_installed_suite_runs_with_pyargs_and_reports_in_the_current_folder(installed,
                                                                               tmp_path):
    # conv_batchnorm, a model of the installed wd_claims.models: C1 on ResNet-8 would cost 30 s of
    # float64 probes here and test nothing more about the install
    out = subprocess.run([installed, "-m", "pytest", "--pyargs", "wd_claims.claims", "-m", "c01",
                          "-k", "conv_batchnorm", "--budget", "smoke", "-q", "-p",
                          "no:cacheprovider"],
                         cwd=tmp_path, capture_output=True, text=True, env=_clean_env(),
                         timeout=600)
    assert "1 passed" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "reports" / "latest.md").exists()
    assert "C1" in (tmp_path / "reports" / "latest.md").read_text()


def _unrelated_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    (project / "test_math.py").write_text("def test_sum():\n    assert 1 + 1 == 2\n")
    (project / "conftest.py").write_text(
        "import sys\n\n\ndef pytest_sessionfinish(session):\n"
        "    open('torch_imported.txt', 'w').write(str('torch' in sys.modules))\n")
    return project


def test_pytest_in_an_unrelated_project_gets_no_folder_no_torch_and_no_git(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text('#!/bin/sh\necho "$PWD $*" >> "$GIT_LOG"\n')
    (fake_bin / "git").chmod(0o755)
    listings, git_calls = {}, {}
    for label, blocked in (("without wd-claims", ["-p", "no:wd_claims"]), ("with it", [])):
        project = _unrelated_project(tmp_path / label.replace(" ", "_"))
        log = tmp_path / f"git-{label.replace(' ', '_')}.log"
        env = _clean_env(PATH=f"{fake_bin}:{os.environ['PATH']}", GIT_LOG=str(log))
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              *blocked], cwd=project, capture_output=True, text=True,
                             timeout=120, env=env)
        assert "1 passed" in out.stdout, out.stdout + out.stderr
        listings[label] = sorted(p.name for p in project.iterdir())
        git_calls[label] = log.read_text().count("\n") if log.exists() else 0
        assert (project / "torch_imported.txt").read_text() == "False", label
    plugins = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "--trace-config"],
                             cwd=tmp_path / "with_it" / "project", capture_output=True,
                             text=True, timeout=120, env=_clean_env()).stdout
    assert "wd_claims" in plugins  # the plugin is installed and loaded, and yet:
    assert listings["with it"] == listings["without wd-claims"]  # no folder of its own
    assert git_calls["with it"] == git_calls["without wd-claims"]  # and no git call of its own
