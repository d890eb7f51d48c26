"""``ntune run``: load the study, run it on Ray Tune (:func:`ntune.tune.driver.run_study`), then print
the per-block table and export the best config per block when the budget is spent."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ntune.cli.commands import export_command, status_command
from ntune.console import make_console
from ntune.study.config import load_study, relocated
from ntune.study.records import read_trials
from ntune.study.storage import JOURNAL_DIRS, JOURNAL_FILES
from ntune.tune.driver import StudyRun, run_study


def run_command(
    study_path: str | Path,
    *,
    overrides: list[str] | None = None,
    address: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    fresh: bool = False,
    console: Console | None = None,
) -> int:
    """Run or resume a study; returns 0 when every trial of the budget completed, 130 when interrupted."""
    console = console or make_console(highlight=False, soft_wrap=True)
    study, base = load_study(study_path, overrides)
    study = relocated(study, name, storage)
    return _finish(run_study(study, base, address=address, fresh=fresh, console=console), console)


def _finish(run: StudyRun, console: Console) -> int:
    exp_dir, n_trials, remote = run.exp_dir, run.n_trials, run.remote
    records, _ = read_trials(exp_dir)
    status_command(exp_dir, console=console, stopped=True)
    if len(records) < n_trials:
        console.print(f"stopped after {len(records)}/{n_trials} trials; run the same command to resume")
        return 130
    export_command(exp_dir, out=None, fmt="yaml", console=console)
    if remote is not None:
        remote.push(exp_dir, (*JOURNAL_FILES, "summary.csv"), (*JOURNAL_DIRS, "best"))
        console.print(f"uploaded to {remote.uri}")
    return 0
