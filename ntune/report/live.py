"""Running trials and their progress, as ``ntune status --watch`` shows them (no Ray, no printing).

:func:`watch_view` joins the driver's ``running.json`` (:mod:`ntune.study.running`) with the journal:
a trial counts as running while ``trials.jsonl`` holds its start and not its completion, so entries a
killed driver left behind are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ntune.report.export import status_rows
from ntune.study.experiment import read_experiment
from ntune.study.running import RunningTrial, read_running


@dataclass(frozen=True)
class WatchView:
    """One frame of ``ntune status --watch``: the status table's data, the running trials, and the end."""

    title: str
    caption: str
    rows: list[dict[str, Any]]
    done: int  # trials recorded (completed, failed or errored), held-out runs included
    total: int  # trials the study runs: the search budget plus the held-out runs due so far
    finished: bool  # every block has recorded its budget and its held-out runs: the study has ended
    running: list[RunningTrial] = field(default_factory=list)  # started, not recorded; with progress
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (trial id, block): started, no result yet


def watch_view(exp_dir: str | Path) -> WatchView:
    """The status table's title, caption and rows (:func:`ntune.report.export.status_rows`), plus running trials.

    Running trials are those ``trials.jsonl`` shows started and not completed; each with its entry in
    ``running.json`` when it has one (sorted by block, then node), else listed in ``waiting``.
    """
    exp = read_experiment(exp_dir)
    title, caption, rows = status_rows(exp)
    started = exp.running
    board = read_running(exp_dir)
    running = sorted((board[t] for t in started if t in board), key=lambda r: (r.block, r.node, r.trial_id))
    waiting = sorted((t, b) for t, b in started.items() if t not in board)
    done = len(exp.ledger.records)  # search and held-out runs
    total = exp.ledger.expected_trials()  # the held-out runs of a block count once it has a robust config
    finished = bool(rows) and all(int(r["trials"]) >= int(r["budget"]) for r in rows) and done >= total
    return WatchView(title, caption, rows, done, total, finished, running, waiting)
