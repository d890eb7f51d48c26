"""Trackers: a study's trials logged to MLflow and W&B (offline) by Tune's own logger callbacks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from study_fakes import write_study

from ntune.config import ConfigError
from ntune.study.records import read_trials
from ntune.tune.loggers import check_loggers


def test_a_tracker_whose_package_is_missing_is_refused_with_its_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_loggers(["mlflow", "wandb"])  # both installed with the dev extra
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(
        ConfigError, match=r"loggers: wandb needs the wandb package: pip install 'ntune\[wandb\]'"
    ):
        check_loggers(["mlflow", "wandb"])


@pytest.mark.integration
@pytest.mark.slow
def test_every_trial_is_a_run_in_mlflow_and_in_offline_wandb(tmp_path: Path, ray_session: None) -> None:
    import mlflow
    import ray

    study = write_study(
        tmp_path / "tracked.yaml",
        "tracked",
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        n_iter_block=2,
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        loggers=["mlflow", "wandb"],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(
        os.environ,
        RAY_ADDRESS=ray.get_runtime_context().gcs_address,
        MLFLOW_TRACKING_URI=uri,
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_SILENT="true",
    )
    cmd = [sys.executable, "-m", "ntune.cli.app", "run", str(study)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    records, _ = read_trials(tmp_path / "results" / "tracked")
    assert len(records) == 2
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tracked"])
    assert len(runs) == 2
    assert sorted(runs["metrics.connectivity_R2"]) == pytest.approx(
        sorted(r["metrics"]["connectivity_R2"] for r in records)
    )  # the last value each run logged is the trial's final metric
    assert sorted(runs["params.training/learning_rate_W_start"].astype(float)) == pytest.approx(
        sorted(r["params"]["training.learning_rate_W_start"] for r in records)
    )
    offline = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(any(d.glob("*.wandb")) for d in offline)
