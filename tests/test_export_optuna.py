"""``ntune export --format optuna`` and the report's Pareto fronts and importances, against the journal."""

from __future__ import annotations

import datetime
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState
from rich.console import Console
from study_fakes import TRIALS, make_experiment, trial
from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.cli.commands import report_command
from ntune.config import config_from_dict
from ntune.report.optuna_study import distributions, searched
from ntune.study.journal import Journal
from ntune.study.records import make_record

FULL, HALF = "connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"
LR_W, L1 = "training.learning_rate_W_start", "training.coeff_W_L1"
# trial id -> the Optuna state its record must get
STATES = {
    "t0": "COMPLETE",
    "t1": "COMPLETE",
    "t2": "COMPLETE",
    "t3": "COMPLETE",
    "t4": "FAIL",  # diverged
    "t5": "FAIL",  # error
    "t6": "PRUNED",  # stopped before its final report
    "t7": "COMPLETE",  # a held-out run
}


def _experiment(exp_dir: Path) -> None:
    """The fake experiment plus a child stopped before its final report and a held-out run of block 1.0."""
    info = make_experiment(exp_dir)
    journal = Journal(exp_dir)
    extra = [
        ((0.5, 3, 1, "exploit", "lr_W: 4e-3 -> 8e-3", 8e-3, 0.5, 0.55, "ok"), False),
        ((1.0, 0, None, "held-out", "", 1e-3, 0.94, 0.9, "ok"), True),
    ]
    for k, (spec, final) in enumerate(extra, len(TRIALS)):
        trial_id, config, result, _ = trial(k, spec, info)
        assert result is not None
        result["final"] = final
        journal.start(trial_id, config)
        journal.complete(make_record(info, trial_id, config, result))


def _journal(exp_dir: Path) -> list[dict[str, Any]]:
    """The completed records of trials.jsonl, in order (each trial's last record)."""
    done: dict[str, dict[str, Any]] = {}
    for line in (exp_dir / "trials.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "complete":
            done[event["trial_id"]] = event
    return list(done.values())


def _load(path: Path, label: str) -> optuna.Study:
    return optuna.load_study(
        study_name=f"fake:{label}", storage=JournalStorage(JournalFileBackend(str(path)))
    )


def test_every_trial_matches_the_journal(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    _experiment(exp_dir)
    result = CliRunner().invoke(
        app, ["export", str(exp_dir), "--format", "optuna", "--out", str(tmp_path / "study.log")]
    )
    assert result.exit_code == 0, result.output
    assert f"optuna-dashboard {tmp_path / 'study.log'}" in result.output
    records = _journal(exp_dir)
    assert [r["trial_id"] for r in records] == list(STATES)
    assert [r["status"] for r in records][4:7] == ["diverged", "error", "incomplete"]
    names = [
        s.study_name
        for s in optuna.get_all_study_summaries(
            JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
        )
    ]
    assert names == [f"fake:{FULL}", f"fake:{HALF}"]
    for label in (FULL, HALF):
        study = _load(tmp_path / "study.log", label)
        assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
        assert study.metric_names == ["connectivity_R2", "cluster_accuracy"]
        recs = [r for r in records if r["block"] == label]
        assert len(study.trials) == len(recs) == 4
        for t, rec in zip(study.trials, recs, strict=True):
            assert t.state == TrialState[STATES[rec["trial_id"]]]
            assert t.params == rec["params"] and set(t.params) == {LR_W, L1}
            assert t.datetime_complete == datetime.datetime.fromisoformat(rec["time"])
            want = [rec["metrics"]["connectivity_R2"], rec["metrics"]["cluster_accuracy"]]
            assert t.values == (want if t.state == TrialState.COMPLETE else None)
            if t.state != TrialState.COMPLETE:
                assert rec["status"] != "ok" or rec["trial_id"] == "t6"
            search = rec["search"]
            assert {
                k: t.user_attrs[k] for k in ("trial_id", "node", "parent", "strategy", "classification")
            } == {
                "trial_id": rec["trial_id"],
                "node": search["node"],
                "parent": search["parent"],
                "strategy": search["strategy"],
                "classification": rec["classification"],
            }
            assert t.distributions == {
                LR_W: FloatDistribution(1e-4, 1e-1, log=True),
                L1: FloatDistribution(1e-7, 1e-3, log=True),
            }
    held_out = [
        t for t in _load(tmp_path / "study.log", FULL).trials if t.user_attrs["strategy"] == "held-out"
    ]
    assert [(t.user_attrs["trial_id"], t.values) for t in held_out] == [("t7", [0.94, 0.9])]
    failed = _load(tmp_path / "study.log", HALF).trials[2]
    assert failed.user_attrs["error"] == "RuntimeError: boom"


def test_a_second_export_replaces_the_journal(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir)
    for _ in range(2):
        result = CliRunner().invoke(app, ["export", str(exp_dir), "--format", "optuna"])
        assert result.exit_code == 0, result.output
    assert len(_load(exp_dir / "optuna.log", HALF).trials) == 3
    assert not (exp_dir / "optuna.log.tmp").exists()


def test_distributions_from_the_space() -> None:
    space = {
        "a": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
        "b": {"type": "int", "low": 10, "high": 60},
        "c": {"type": "choice", "values": ["adam", "sgd"]},
        "d": {"type": "uniform", "low": 0.0, "high": 1.0},
    }
    rec = {"params": {"a": 1e-5, "b": 70, "c": "adam", "d": 0.5}, "config": {}}
    assert distributions(space, [rec]) == {
        "a": FloatDistribution(1e-7, 1e-3, log=True),
        "b": IntDistribution(10, 70),
        "c": CategoricalDistribution(["adam", "sgd"]),
        "d": FloatDistribution(0.0, 1.0),
    }
    zero = {"params": {**rec["params"], "a": 0.0}, "config": {}}
    assert distributions(space, [rec, zero])["a"] == FloatDistribution(0.0, 1e-3, log=False)


def test_report_shows_optunas_pareto_front_and_importances(tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir)
    report_command(exp_dir, console=Console(record=True))
    report = (exp_dir / "report.md").read_text()
    half = report[report.index(f"## {HALF}") :]
    assert "1 of 2 completed trials are Pareto-optimal" in half
    assert "| t3 | 1 | exploit | 0.92 | 0.6 | 0.004 | 1e-05 |\n" in half
    assert f"![Pareto front of {HALF}](report/pareto_{HALF}.png)" in half
    assert (exp_dir / "report" / f"pareto_{HALF}.png").stat().st_size > 1000
    assert "not varied by them, so left out: coeff_W_L1." in half
    assert "| learning_rate_W_start | 1.00 | 1.00 |\n\n" in half
    full = report[report.index(f"## {FULL}") : report.index(f"## {HALF}")]
    assert "1 of 2 completed trials are Pareto-optimal" in full and "| t0 | 0 | root | 0.95 | 0.95 |" in full
    assert "Not computed: no parameter varies over the completed trials." in full


def test_importances_are_optunas_and_find_what_drives_each_objective(tmp_path: Path) -> None:
    """Block 0.5 on a 3 x 3 grid: R2 depends on lr_W only, cluster accuracy on L1 only."""
    exp_dir = tmp_path / "exp"
    info = make_experiment(exp_dir, n=0)
    journal = Journal(exp_dir)
    grid = [(lr, l1) for lr in (1e-3, 4e-3, 1.6e-2) for l1 in (1e-6, 1e-5, 1e-4)]
    for k, (lr, l1) in enumerate(grid):
        r2, cluster = 0.5 + 0.1 * math.log10(lr / 1e-4), 0.3 + 0.1 * math.log10(l1 / 1e-7)
        trial_id, config, result, _ = trial(k, (0.5, k, None, "exploit", "", lr, r2, cluster, "ok"), info)
        config["training"]["coeff_W_L1"] = l1
        journal.start(trial_id, config)
        journal.complete(make_record(info, trial_id, config, result))
    report_command(exp_dir, console=Console(record=True))
    half = (exp_dir / "report.md").read_text().split(f"## {HALF}")[1]
    assert CliRunner().invoke(app, ["export", str(exp_dir), "--format", "optuna"]).exit_code == 0
    study = _load(exp_dir / "optuna.log", HALF)
    assert len(study.trials) == 9 and all(t.state == TrialState.COMPLETE for t in study.trials)
    found = [
        get_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(seed=0),
            params=[LR_W, L1],
            target=lambda t, k=k: t.values[k],
        )
        for k in (0, 1)
    ]
    assert found[0][LR_W] > 0.9 and found[1][L1] > 0.9
    assert (
        f"| learning_rate_W_start | {found[0][LR_W]:.2f} | {found[1][LR_W]:.2f} |\n"
        f"| coeff_W_L1 | {found[0][L1]:.2f} | {found[1][L1]:.2f} |\n"
    ) in half


def test_a_searched_value_the_params_lack_is_the_configs_default() -> None:
    rec = {"params": {LR_W: 2e-3, L1: None}, "config": {"training": {"learning_rate_W_start": 2e-3}}}
    assert searched(rec, [LR_W, L1]) == {LR_W: 2e-3, L1: config_from_dict({}).training.coeff_W_L1}
    assert searched({"params": {L1: None}, "config": {"training": {"n_epochs": -1}}}, [L1]) == {}


def test_without_optuna_the_export_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp_dir = tmp_path / "exp"
    make_experiment(exp_dir, n=2)
    monkeypatch.setattr("ntune.report.export.have_optuna", lambda: False)
    result = CliRunner().invoke(app, ["export", str(exp_dir), "--format", "optuna"])
    assert result.exit_code == 2 and "ntune[optuna]" in result.output
    assert not (exp_dir / "optuna.log").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_optuna_dashboard_serves_the_exported_studies(tmp_path: Path) -> None:
    """optuna-dashboard (the optuna extra installs it) on the journal: its API gives each block's trials."""
    exp_dir = tmp_path / "exp"
    _experiment(exp_dir)
    path = tmp_path / "study.log"
    assert (
        CliRunner().invoke(app, ["export", str(exp_dir), "--format", "optuna", "--out", str(path)]).exit_code
        == 0
    )
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which(
        "optuna-dashboard"
    )
    assert command is not None, "optuna-dashboard is not installed: pip install 'ntune[optuna]'"
    port = _free_port()
    server = subprocess.Popen(
        [command, str(path), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        deadline = time.monotonic() + 60
        while True:
            try:
                summaries = _get(base)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.3)
        ids = {s["study_name"]: s["study_id"] for s in summaries}
        assert sorted(ids) == sorted([f"fake:{FULL}", f"fake:{HALF}"])
        records = [r for r in _journal(exp_dir) if r["block"] == HALF]
        detail = _get(f"{base}/{ids[f'fake:{HALF}']}")
        assert detail["objective_names"] == ["connectivity_R2", "cluster_accuracy"]
        trials = detail["trials"]
        assert [t["state"] for t in trials] == [STATES[r["trial_id"]].capitalize() for r in records]
        for t, rec in zip(trials, records, strict=True):
            if t["state"] == "Complete":
                assert t["values"] == [rec["metrics"]["connectivity_R2"], rec["metrics"]["cluster_accuracy"]]
            assert {p["name"]: p["param_internal_value"] for p in t["params"]} == rec["params"]
        assert [t["number"] for t in detail["best_trials"]] == [1]  # t3 dominates t1: the Pareto front
    finally:
        server.terminate()
        server.wait(timeout=10)
