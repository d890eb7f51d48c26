"""Running trials and their progress, as ``ntune status --watch`` shows them (no Ray, no printing).

While a trial runs, Ray Tune keeps its reported results on the driver's machine (``result.json`` in a
staging folder that reaches ``storage_path`` only with a checkpoint, i.e. at the trial's end), so the
experiment folder alone does not say how far a running trial is. The driver therefore keeps one more
journal file, ``running.json``: trial id -> the latest evaluation of each running trial (block, node,
strategy, progress, iteration, connectivity_R2, cluster_accuracy, loss, the Ray node), rewritten at
most every ``every_s`` seconds by :class:`LiveBoard`. :func:`watch_view` joins it with the journal:
a trial counts as running while ``trials.jsonl`` holds its start and not its completion, so entries a
killed driver left behind are ignored.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ntune.export import status_rows
from ntune.records import read_trials
from ntune.storage import LIVE_FILE

LIVE_EVERY_S = 2.0  # seconds between rewrites of running.json while results arrive
NUMBERS = ("progress", "iteration", "n_iterations", "connectivity_R2", "cluster_accuracy", "loss")
TEXTS = ("block", "strategy", "ray_node_id")


@dataclass(frozen=True)
class RunningTrial:
    """The latest evaluation of a running trial (NaN where the trial has not reported the metric yet)."""

    trial_id: str
    block: str
    node: int
    strategy: str
    progress: float  # fraction of the trial's iterations done, in [0, 1]
    iteration: float
    n_iterations: float
    connectivity_R2: float
    cluster_accuracy: float
    loss: float
    ray_node_id: str
    updated: float  # time.time() of the evaluation's arrival at the driver


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def live_entry(result: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The ``running.json`` entry of one reported result (a trial's, or one member's of a population)."""
    entry: dict[str, Any] = {k: _float(result.get(k)) for k in NUMBERS}
    entry.update({k: str(result.get(k) or "") for k in TEXTS})
    node = result.get("node")
    entry["node"] = int(node) if isinstance(node, int | float) and not isinstance(node, bool) else -1
    entry["updated"] = time.time() if now is None else now
    return entry


class LiveBoard:
    """The driver's ``running.json``: entries updated as results arrive, written atomically when due."""

    def __init__(self, exp_dir: str | Path, every_s: float = LIVE_EVERY_S) -> None:
        self.exp_dir = Path(exp_dir)
        self.every_s = every_s
        self.entries: dict[str, dict[str, Any]] = {}
        self._written = -math.inf

    def update(self, trial_id: str, result: dict[str, Any], now: float | None = None) -> bool:
        """Record ``result`` as the trial's latest; write the file if the last write is ``every_s`` old."""
        now = time.monotonic() if now is None else now
        self.entries[trial_id] = live_entry(result)
        if now - self._written < self.every_s:
            return False
        self.write(now)
        return True

    def remove(self, trial_id: str, now: float | None = None) -> None:
        """The trial ended: drop its entry and write the file at once."""
        if self.entries.pop(trial_id, None) is not None:
            self.write(now)

    def clear(self) -> None:
        """No trial runs (a new or resumed driver): write an empty board."""
        self.entries.clear()
        self.write()

    def write(self, now: float | None = None) -> None:
        """Replace ``running.json`` (write a temporary file, then rename: readers never see half a file)."""
        path = self.exp_dir / LIVE_FILE
        tmp = path.with_name(f".{LIVE_FILE}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        os.replace(tmp, path)
        self._written = time.monotonic() if now is None else now


def read_running(exp_dir: str | Path) -> dict[str, RunningTrial]:
    """Trial id -> its latest evaluation from ``running.json`` ({} when the file is missing or unreadable)."""
    path = Path(exp_dir) / LIVE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, RunningTrial] = {}
    for trial_id, entry in data.items():
        if not isinstance(entry, dict):
            continue
        node = _float(entry.get("node"))
        out[str(trial_id)] = RunningTrial(
            trial_id=str(trial_id),
            block=str(entry.get("block") or ""),
            node=-1 if math.isnan(node) else int(node),
            strategy=str(entry.get("strategy") or ""),
            progress=_float(entry.get("progress")),
            iteration=_float(entry.get("iteration")),
            n_iterations=_float(entry.get("n_iterations")),
            connectivity_R2=_float(entry.get("connectivity_R2")),
            cluster_accuracy=_float(entry.get("cluster_accuracy")),
            loss=_float(entry.get("loss")),
            ray_node_id=str(entry.get("ray_node_id") or ""),
            updated=_float(entry.get("updated")),
        )
    return out


@dataclass(frozen=True)
class WatchView:
    """One frame of ``ntune status --watch``: the status table's data, the running trials, and the end."""

    title: str
    caption: str
    rows: list[dict[str, Any]]
    done: int  # trials recorded (completed, failed or errored)
    total: int  # trials the study's budget holds
    finished: bool  # every block has recorded its budget: the study has ended
    running: list[RunningTrial] = field(default_factory=list)  # started, not recorded; with progress
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (trial id, block): started, no result yet


def watch_view(exp_dir: str | Path) -> WatchView:
    """The status table's title, caption and rows (:func:`ntune.export.status_rows`), plus running trials.

    Running trials are those ``trials.jsonl`` shows started and not completed; each with its entry in
    ``running.json`` when it has one (sorted by block, then node), else listed in ``waiting``.
    """
    title, caption, rows = status_rows(exp_dir)
    _, started = read_trials(exp_dir)
    board = read_running(exp_dir)
    running = sorted((board[t] for t in started if t in board), key=lambda r: (r.block, r.node, r.trial_id))
    waiting = sorted((t, b) for t, b in started.items() if t not in board)
    done = sum(int(r["trials"]) for r in rows)
    total = sum(int(r["budget"]) for r in rows)
    finished = bool(rows) and all(int(r["trials"]) >= int(r["budget"]) for r in rows)
    return WatchView(title, caption, rows, done, total, finished, running, waiting)
