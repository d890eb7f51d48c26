"""status / export / report on fake experiment folders (finished and interrupted)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from study_fakes import TRIALS, make_experiment, trial

from ntune.cli.commands import export_command, report_command, status_command
from ntune.config import ConfigError, load_config
from ntune.report.export import best_records, learning_curves, trial_folder
from ntune.study.experiment import read_experiment
from ntune.study.guards import safe_name
from ntune.study.journal import Journal

FULL, HALF = "connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"


def _console() -> Console:
    return Console(record=True, width=200)


def test_export_yaml_writes_runnable_best_configs(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    export_command(tmp_path, out=None, fmt="yaml", console=_console())
    full = load_config(tmp_path / "best" / f"{FULL}.yaml")
    half = load_config(tmp_path / "best" / f"{HALF}.yaml")
    assert full.simulation.connectivity_filling_factor == 1.0
    assert full.training.learning_rate_W_start == 1e-3  # the robust root, not the diverged child
    assert full.training.seed == 100  # seed of the node's best run
    assert half.training.learning_rate_W_start == 4e-3 and half.simulation.n_neurons == 16
    header = (tmp_path / "best" / f"{FULL}.yaml").read_text().splitlines()[0]
    assert "node 0" in header and "robust" in header and "not robust" not in header
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["block"] for r in rows] == [FULL, HALF]
    assert rows[0]["robust"] == "True" and rows[1]["best_trial"] == "t3"


def test_export_other_formats(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    export_command(tmp_path, out=tmp_path / "j", fmt="json", console=_console())
    payload = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert payload["best"][HALF]["training"]["learning_rate_W_start"] == 4e-3
    export_command(tmp_path, out=tmp_path / "u", fmt="ucb-txt", console=_console())
    assert (tmp_path / "u" / f"{FULL}.txt").read_text().startswith("Node 0: UCB=")
    export_command(tmp_path, out=tmp_path / "c", fmt="csv", console=_console())
    assert (tmp_path / "c" / "summary.csv").is_file() and not (tmp_path / "c" / f"{FULL}.yaml").exists()


def test_bad_format_names_the_valid_ones(tmp_path: Path) -> None:
    make_experiment(tmp_path, n=1)
    with pytest.raises(ConfigError, match="yaml, csv, json, ucb-txt"):
        export_command(tmp_path, out=None, fmt="toml", console=_console())


def test_not_an_experiment(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="study.json"):
        status_command(tmp_path, console=_console())


def test_status_of_an_interrupted_experiment(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=3)
    trial_id, config, _, _ = trial(3, TRIALS[3], info)
    Journal(tmp_path).start(trial_id, config)
    console = _console()
    status_command(tmp_path, console=console)
    text = console.export_text()
    assert "3/6 trials done, 1 running" in text
    assert "connectivity_filling_factor" in text and "2/3" in text and "running" in text


def test_report(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    scatter = tmp_path / "trial_x" / "W_scatter.png"
    scatter.parent.mkdir()
    scatter.write_bytes(b"png")
    (scatter.parent / "progress.csv").write_text(
        "connectivity_R2,cluster_accuracy,iteration,status\n0.5,0.7,500,running\nnan,0.6,750,running\n"
        "0.92,0.6,1000,ok\n"
    )  # Tune's file: a row without R2 is left out
    lines = [json.loads(x) for x in (tmp_path / "trials.jsonl").read_text().splitlines()]
    for rec in lines:
        if rec.get("trial_id") == "t3" and rec["event"] == "complete":
            rec["trial_dir"] = str(scatter.parent)
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    report_command(tmp_path, console=_console())
    report = (tmp_path / "report.md").read_text()
    assert (
        "| 2 | 50% | 0.5 | - | 0.92 | 0.6 | 1 | 0.920 / 0.60 | - | 1e-05 | 0.004 | "
        "not robust, 3/3 trials, done |" in report
    )
    assert "![best R2 and cluster accuracy per block](report/landscape.png)" in report
    assert (tmp_path / "report" / "landscape.png").stat().st_size > 1000
    assert f"![tree of {HALF}](trees/{HALF}.png)" in report
    assert f"![W scatter of {HALF}](trial_x/W_scatter.png)" in report
    curves_png = f"report/curves_{safe_name(HALF)}.png"
    assert f"![learning curves of the best config of {HALF}]({curves_png})" in report
    assert (tmp_path / curves_png).stat().st_size > 1000
    exp = read_experiment(tmp_path)
    best = best_records(exp.records, exp.ledger.rows())[HALF]
    assert learning_curves(exp, HALF, best) == [("net ?", [500.0, 1000.0], [0.5, 0.92], [0.7, 0.6])]
    assert "```\nNode 0: UCB=" in report
    assert (
        yaml.safe_load((tmp_path / "study.json").read_text())["block_key"]
        == "simulation.connectivity_filling_factor"
    )


def test_a_stopped_run_has_its_curve_but_no_scatter(tmp_path: Path) -> None:
    """A run stopped early wrote progress.csv and no W_scatter.png: its curve is found, no scatter is."""
    stopped = tmp_path / "exp" / "trial_s"
    stopped.mkdir(parents=True)
    (stopped / "progress.csv").write_text("connectivity_R2,cluster_accuracy,iteration\n0.3,0.8,100\n")
    moved = "/elsewhere/exp/trial_s"  # the folder the record names is gone: found inside the experiment
    assert trial_folder(tmp_path / "exp", moved) is None
    assert trial_folder(tmp_path / "exp", moved, "progress.csv") == stopped
