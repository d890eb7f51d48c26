"""A study with one data-limited block: it says so before starting, probes it briefly, explains it in memory.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from study_fakes import LR_W, write_study

from ntune.study.info import read_info
from ntune.study.records import read_trials

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# 16 neurons, 500 frames, seed 42: ceiling 0.9996 at ff 0.5, 0.58 at ff 1.0 (7 silent neurons, whose columns
# of W are not in the data)


def test_data_limited_block_gets_only_the_probe_budget(tmp_path: Path, ray_session: None) -> None:
    from ntune.cli.commands import status_command
    from ntune.cli.run import run_command

    path = write_study(
        tmp_path / "limited.yaml",
        "limited",
        blocks={"simulation.connectivity_filling_factor": [0.5, 1.0]},
        space=LR_W,
        max_concurrent_trials=2,
        data_limited={"probe_trials": 1},
        storage_path=str(tmp_path / "results"),
    )
    console = Console(record=True, width=200)
    assert run_command(path, console=console) == 0, console.export_text()
    text = console.export_text()
    start = text.index("connectivity_filling_factor=1.0: ceiling")
    assert start < text.index("trials done")  # said at the start, before the final status table
    assert "DATA-LIMITED" in text and "probing with 1 trial only" in text

    exp_dir = tmp_path / "results" / "limited"
    records, _ = read_trials(exp_dir)
    assert Counter(r["block"] for r in records) == {
        "connectivity_filling_factor=0.5": 3,
        "connectivity_filling_factor=1.0": 1,
    }
    info = read_info(exp_dir)
    assert info["ceilings"]["connectivity_filling_factor=1.0"]["data_limited"] is True
    assert info["ceilings"]["connectivity_filling_factor=0.5"]["ceiling"] > 0.95
    memory = (exp_dir / "memory.md").read_text()
    assert "### Identifiability" in memory and "not robust, 1/1 trials, done, ceiling 0.57" in memory
    limited = next(
        line for line in memory.splitlines() if line.startswith("- connectivity_filling_factor=1.0")
    )
    assert "data-limited" in limited and "process noise" in limited and "probe budget 1 trial(s)" in limited
    status = Console(record=True, width=200)
    status_command(exp_dir, console=status)
    assert "ceiling" in status.export_text()
