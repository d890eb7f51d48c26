"""ntune: hyperparameter search for GNN recovery of PDE_N2 connectivity across sparsity levels.

The public API, for notebooks and scripts (each name is imported on first use, so ``import ntune`` stays
fast and loads neither torch nor Ray)::

    import ntune

    cfg = ntune.load_config("configs/quickstart.yaml", ["training.coeff_W_L1=1e-6"])
    data = ntune.load_or_simulate(cfg.simulation)          # cache -> simulate -> identify -> write
    result = ntune.fit(cfg, data)                           # result.metrics["connectivity_R2"], ...
    figs = ntune.figures(result.model, data, result.metrics, result.losses)

    code = ntune.run("configs/quickstart_study.yaml")       # a study on Ray Tune (0: budget spent)
    exp = ntune.read_experiment("ntune_results/quickstart", trees=True)
    ntune.export(exp, out=None, fmt="yaml")                 # best/<block>.yaml + summary.csv
    ntune.write_report(exp)                                 # report.md with its plots

The folders follow the data's way: ``ntune.data`` (simulate, identify, cache) -> ``ntune.learn`` (model,
fit) -> ``ntune.study`` (study config, records, journal; no Ray) -> ``ntune.tune`` (Ray Tune) ->
``ntune.report`` (export, report) -> ``ntune.cli`` (the command line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    "ConfigError": ("ntune.config", "ConfigError"),
    "NtuneConfig": ("ntune.config", "NtuneConfig"),
    "config_from_dict": ("ntune.config", "config_from_dict"),
    "dump_config": ("ntune.config", "dump_config"),
    "load_config": ("ntune.config", "load_config"),
    "SimData": ("ntune.data.simulate", "SimData"),
    "simulate": ("ntune.data.simulate", "simulate"),
    "load_or_simulate": ("ntune.data.load", "load_or_simulate"),
    "TrainResult": ("ntune.learn.train", "TrainResult"),
    "fit": ("ntune.learn.train", "fit"),
    "figures": ("ntune.learn.evaluate", "figures"),
    "rollout": ("ntune.learn.evaluate", "rollout"),
    "rollout_scores": ("ntune.learn.metrics", "rollout_scores"),
    "StudyConfig": ("ntune.study.config", "StudyConfig"),
    "load_study": ("ntune.study.load", "load_study"),
    "run": ("ntune.cli.run", "run_command"),
    "Experiment": ("ntune.study.experiment", "Experiment"),
    "read_experiment": ("ntune.study.experiment", "read_experiment"),
    "load_experiment": ("ntune.report.export", "load_experiment"),
    "best_records": ("ntune.report.export", "best_records"),
    "export": ("ntune.report.export", "export"),
    "write_report": ("ntune.report.export", "report"),
}

__all__ = [
    "__version__",
    "ConfigError",
    "Experiment",
    "NtuneConfig",
    "SimData",
    "StudyConfig",
    "TrainResult",
    "best_records",
    "config_from_dict",
    "dump_config",
    "export",
    "figures",
    "fit",
    "load_config",
    "load_experiment",
    "load_or_simulate",
    "load_study",
    "read_experiment",
    "rollout",
    "rollout_scores",
    "run",
    "simulate",
    "write_report",
]

if TYPE_CHECKING:
    from ntune.cli.run import run_command as run
    from ntune.config import ConfigError, NtuneConfig, config_from_dict, dump_config, load_config
    from ntune.data.load import load_or_simulate
    from ntune.data.simulate import SimData, simulate
    from ntune.learn.evaluate import figures, rollout
    from ntune.learn.metrics import rollout_scores
    from ntune.learn.train import TrainResult, fit
    from ntune.report.export import best_records, export, load_experiment
    from ntune.report.export import report as write_report
    from ntune.study.config import StudyConfig
    from ntune.study.experiment import Experiment, read_experiment
    from ntune.study.load import load_study


def __getattr__(name: str) -> Any:
    """Import a public name's module on its first use."""
    if name not in _API:
        raise AttributeError(f"module 'ntune' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
