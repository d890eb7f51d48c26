"""benchmarks/gpu_check.sh at tiny sizes on CPU: the script a lent GPU runs cannot rot between loans."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_gpu_check_runs_its_four_steps_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    for header in (
        "== 1. CUDA tests",
        "== 2. population benchmark",
        "== 3. training step",
        "== 4. ntune run",
    ):
        assert header in out
    assert "skipped: no GPU" in out
    assert "K=2 " in out and "x1.00" in out  # the population table, against fit
    assert "reference/fast" in out
    assert "gpu_check: 12/12 trials done" in out
    assert "study wall time:" in out
    assert (tmp_path / "gpu_check" / "summary.csv").read_text().count("\n") == 7  # header + 6 levels


def test_gpu_check_refuses_an_unknown_mode() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--tpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "usage" in done.stderr
