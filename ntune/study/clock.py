"""A study's wall time over its sessions, its time budget, and when it will finish.

The journal stamps every event of ``trials.jsonl`` with its local time (``time``, ISO seconds). A session
runs from the first event to the next ``resume`` (or the end); its length is the span of its stamped
events, so the hours between an interruption and the resume do not count. The projected finish assumes
the trials left take the mean wall time of those done, ``concurrency`` at a time. Pure Python.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def stamp(now: dt.datetime | None = None) -> str:
    """The journal's time stamp: local time, ISO 8601 to the second."""
    return (now or dt.datetime.now()).isoformat(timespec="seconds")


def _time(event: Mapping[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(event["time"]))
    except (KeyError, ValueError):
        return None


def sessions(events: Iterable[Mapping[str, Any]]) -> list[tuple[dt.datetime, dt.datetime]]:
    """(first, last) stamped time of each session; a ``resume`` event opens a new one."""
    spans: list[list[dt.datetime]] = [[]]
    for event in events:
        if event.get("event") == "resume":
            spans.append([])
        t = _time(event)
        if t is not None:
            spans[-1].append(t)
    return [(min(s), max(s)) for s in spans if s]


def elapsed_seconds(events: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> float:
    """Seconds the study has run, summed over its sessions; with ``now``, the last session runs until then."""
    spans = sessions(events)
    if now is not None and spans:
        spans[-1] = (spans[-1][0], max(spans[-1][1], now))
    return sum((last - first).total_seconds() for first, last in spans)


@dataclass(frozen=True)
class Projection:
    """Where a study stands against its trials and its time budget (seconds; NaN where unknown)."""

    elapsed_s: float
    budget_s: float  # NaN without a budget
    trial_s: float  # mean wall time of one trial (NaN before the first)
    remaining_trials: int
    concurrency: int
    remaining_most: int = -1  # with the held-out runs of blocks still searching (-1: as remaining_trials)

    @property
    def left_s(self) -> float:
        """Budget left (NaN without a budget; never below 0)."""
        return max(0.0, self.budget_s - self.elapsed_s) if math.isfinite(self.budget_s) else math.nan

    @property
    def most(self) -> int:
        """The most trials that may be left."""
        return max(self.remaining_trials, self.remaining_most)

    def _seconds(self, trials: int) -> float:
        return math.ceil(trials / self.concurrency) * self.trial_s if trials > 0 else 0.0

    @property
    def to_finish_s(self) -> float:
        """Seconds until the trials left are done: ceil(left / concurrency) rounds of one trial each."""
        return self._seconds(self.remaining_trials)

    @property
    def cut_by_budget(self) -> bool:
        """True when the trials left do not fit in the budget left."""
        return math.isfinite(self.budget_s) and self.to_finish_s > self.left_s

    def text(self, now: dt.datetime) -> str:
        """One line: elapsed, budget and the projected finish as a clock time."""
        parts = [f"ran {duration(self.elapsed_s)}"]
        if math.isfinite(self.budget_s):
            parts.append(f"of a {duration(self.budget_s)} time budget ({duration(self.left_s)} left)")
        if self.remaining_trials <= 0:
            return ", ".join(parts)
        if not math.isfinite(self.trial_s):
            return ", ".join(parts) + f"; {self.remaining_trials} trials left"
        left = f"{self.remaining_trials}" + (f" to {self.most}" if self.most > self.remaining_trials else "")
        if self.cut_by_budget:
            end = f"the budget ends at {now + dt.timedelta(seconds=self.left_s):%H:%M} before they are done"
        else:
            end = f"finish ~{now + dt.timedelta(seconds=self.to_finish_s):%H:%M}"
            if self.most > self.remaining_trials:
                end += f" to ~{now + dt.timedelta(seconds=self._seconds(self.most)):%H:%M}"
        return ", ".join(parts) + f"; {left} trials left, {end}"


def project(
    events: Iterable[Mapping[str, Any]],
    *,
    remaining_trials: int,
    concurrency: int,
    budget_h: float | None,
    now: dt.datetime | None = None,
    remaining_most: int = -1,
) -> Projection:
    """The :class:`Projection` of a study from its journal events (the mean trial time from the wall time
    spent per completed trial, ``concurrency`` at a time); ``remaining_most`` counts the held-out runs
    that blocks still searching may add."""
    events = list(events)
    elapsed = elapsed_seconds(events, now)
    completed = sum(1 for e in events if e.get("event") == "complete")
    trial_s = elapsed * concurrency / completed if completed else math.nan
    budget = budget_h * 3600.0 if budget_h is not None else math.nan
    return Projection(elapsed, budget, trial_s, remaining_trials, max(1, concurrency), remaining_most)


def duration(seconds: float) -> str:
    """``1 h 05 min`` / ``12 min`` / ``40 s``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
