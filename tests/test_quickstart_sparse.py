"""The quickstart study's sparse block (ff 0.1) converges with the study's own settings, then its robust
config trains on the held-out networks (about 4 minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console

from ntune.study.records import read_trials

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDY = Path(__file__).resolve().parents[1] / "configs" / "quickstart_study.yaml"


def test_quickstart_sparse_block_converges(tmp_path: Path, ray_session: None) -> None:
    from ntune.cli.run import run_command

    study = yaml.safe_load(STUDY.read_text())
    study["base"] = str(STUDY.parent / study["base"])
    study["blocks"] = {"simulation.connectivity_filling_factor": [0.1]}
    study.pop("block_trials", None)  # budgets of the other levels
    study["storage_path"] = str(tmp_path / "results")
    path = tmp_path / "sparse.yaml"
    path.write_text(yaml.safe_dump(study))
    console = Console(record=True, width=200)
    assert run_command(path, console=console) == 0, console.export_text()
    records, _ = read_trials(tmp_path / "results" / study["name"])
    search = [r for r in records if r["search"]["strategy"] != "held-out"]
    held = [r for r in records if r["search"]["strategy"] == "held-out"]
    assert len(search) == study["n_iter_block"]
    assert any(r["classification"] == "converged" for r in search), [r["metrics"] for r in search]
    # ff 0.1 finds a robust config (2 of 2 networks), which then trains on the 3 held-out networks
    assert len(held) == study["held_out"] == 3, [r["metrics"] for r in records]
    assert len({r["search"]["node"] for r in held}) == 1
    assert len({r["config"]["simulation"]["seed"] for r in records}) >= 2 + 3  # repeats on new networks
    assert "connectivity_filling_factor=0.1: ceiling" in console.export_text()
    assert "DATA-LIMITED" not in console.export_text()
