"""The prepared GPU command (scripts/gpu_check.py) runs end to end in its dry mode on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_command_runs_every_step_in_its_dry_mode_and_writes_json_and_markdown(tmp_path):
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(results["steps"]) == {"peak", "benchmark", "grid_slice", "claims"}
    for step, value in results["steps"].items():
        assert "error" not in value, (step, value.get("error"))
    assert results["steps"]["claims"]["returncode"] == 0, results["steps"]["claims"]["tail"]
    assert results["steps"]["benchmark"]["fastest_engine_path"].startswith("engine")
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")
