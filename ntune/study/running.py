"""``running.json``: each running trial's latest evaluation, written by the driver, read by ``status --watch``.

While a trial runs, Ray Tune keeps its reported results on the driver's machine (``result.json`` in a
staging folder that reaches ``storage_path`` only with a checkpoint, i.e. at the trial's end), so the
experiment folder alone does not say how far a running trial is. The driver therefore keeps one more
journal file, ``running.json``: trial id -> the latest evaluation of each running trial (block, node,
strategy, progress, iteration, connectivity_R2, cluster_accuracy, loss, the Ray node), rewritten at
most every ``every_s`` seconds by :class:`LiveBoard`. No Ray, no printing.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntune.study.numbers import as_float
from ntune.study.storage import LIVE_FILE

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


def live_entry(result: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The ``running.json`` entry of one reported result (a trial's, or one member's of a population)."""
    entry: dict[str, Any] = {k: as_float(result.get(k)) for k in NUMBERS}
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
        node = as_float(entry.get("node"))
        out[str(trial_id)] = RunningTrial(
            trial_id=str(trial_id),
            block=str(entry.get("block") or ""),
            node=-1 if math.isnan(node) else int(node),
            strategy=str(entry.get("strategy") or ""),
            progress=as_float(entry.get("progress")),
            iteration=as_float(entry.get("iteration")),
            n_iterations=as_float(entry.get("n_iterations")),
            connectivity_R2=as_float(entry.get("connectivity_R2")),
            cluster_accuracy=as_float(entry.get("cluster_accuracy")),
            loss=as_float(entry.get("loss")),
            ray_node_id=str(entry.get("ray_node_id") or ""),
            updated=as_float(entry.get("updated")),
        )
    return out
