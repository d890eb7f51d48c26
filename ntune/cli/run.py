"""``ntune run``: load the study, run it on Ray Tune (:func:`ntune.tune.driver.run_study`), then print
the per-block table and export the best config per block when the budget is spent.

Both come from what the driver's journal holds (:attr:`ntune.tune.driver.StudyRun.experiment`): nothing
is read back from the experiment folder.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ntune.cli.commands import show_export, show_status
from ntune.console import make_console
from ntune.report.export import export
from ntune.study.load import load_study, relocated
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
    """Run or resume a study; returns 0 when every trial it runs completed (each block's budget and the
    held-out runs of each block with a robust config), 130 when interrupted."""
    console = console or make_console(highlight=False, soft_wrap=True)
    study, base = load_study(study_path, overrides)
    study = relocated(study, name, storage)
    return _finish(run_study(study, base, address=address, fresh=fresh, console=console), console)


def _finish(run: StudyRun, console: Console) -> int:
    """The per-block table of the ended run; the export (and its upload) when every trial completed.

    Every trial: each block's budget plus K held-out runs for each block whose search is done and found a
    robust config (:meth:`ntune.study.ledger.Ledger.expected_trials`; ``run.n_trials`` is the most it
    could have been).
    """
    exp = run.experiment
    show_status(exp, console=console, stopped=True)
    done, expected = len(exp.ledger.records), exp.ledger.expected_trials()
    if done < expected:
        why = "the time budget is spent" if run.budget_spent else "stopped"
        again = "raise time_budget_h and run again" if run.budget_spent else "run the same command"
        console.print(f"{why} after {done}/{expected} trials; {again} to resume")
        return 130
    show_export(export(exp, out=None, fmt="yaml"), console=console)
    if run.remote is not None:
        run.remote.push(exp.exp_dir, (*JOURNAL_FILES, "summary.csv"), (*JOURNAL_DIRS, "best"))
        console.print(f"uploaded to {run.remote.uri}")
    return 0
