"""Ray Tune's own logger callbacks for the trackers users already run: MLflow and Weights & Biases.

A study lists them in ``loggers``; each trial becomes one run of the tracker, with the trial's config as
parameters and every reported number as a metric series (Tune's ``MLflowLoggerCallback`` and
``WandbLoggerCallback``, unchanged). Where they log is the trackers' own business, read from their usual
environment variables:

* ``mlflow``: ``MLFLOW_TRACKING_URI`` (default ``sqlite:///<experiment folder>/mlflow.db``: MLflow 3 no
  longer writes a plain ``./mlruns`` folder), one MLflow experiment named after the study;
* ``wandb``: ``WANDB_PROJECT`` (default: the study name), runs grouped by the study name;
  ``WANDB_MODE=offline`` logs without an account (``wandb sync`` uploads later), ``WANDB_DIR`` where.
  The tracker's own runs happen in Ray actors; these two are read in the driver and handed to them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from ntune.config import ConfigError

LOGGERS = {
    "mlflow": ("mlflow", "ntune[mlflow]"),
    "wandb": ("wandb", "ntune[wandb]"),
}  # name -> (module, extra)


def check_loggers(names: Sequence[str]) -> None:
    """Before Ray starts: each listed tracker's package is installed, else a ConfigError naming the extra."""
    for name in names:
        module, extra = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"loggers: {name} needs the {module} package: pip install '{extra}'")


def logger_callbacks(names: Sequence[str], study_name: str, exp_dir: Path) -> list[Callback]:
    """Tune's logger callbacks for ``names`` (see the module doc for where each one logs)."""
    callbacks: list[Callback] = []
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{exp_dir.resolve() / 'mlflow.db'}"
        callbacks.append(
            MLflowLoggerCallback(tracking_uri=uri, experiment_name=study_name, save_artifact=False)
        )
    if "wandb" in names:
        from ray.air.integrations.wandb import WandbLoggerCallback

        project = os.environ.get("WANDB_PROJECT") or study_name
        # wandb.init runs in a Ray actor, whose environment is the cluster's: hand it the driver's choices
        passed: dict[str, Any] = {
            k.lower(): os.environ[f"WANDB_{k}"] for k in ("MODE", "DIR") if os.environ.get(f"WANDB_{k}")
        }
        callbacks.append(WandbLoggerCallback(project=project, group=study_name, **passed))
    return callbacks
