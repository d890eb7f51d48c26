"""A study's time budget in the driver: how much is left, and the watchdog that stops the run at its end.

``time_budget_h`` counts the wall time of the study's sessions, read from its journal
(:mod:`ntune.study.clock`); the run stops as on Ctrl-C when it is spent, so the experiment resumes like
any interrupted one once the budget is raised.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ntune.config import ConfigError
from ntune.study.clock import duration, elapsed_seconds
from ntune.study.config import StudyConfig
from ntune.study.records import events


def time_left(study: StudyConfig, exp_dir: Path, fresh: bool) -> float | None:
    """Seconds of ``time_budget_h`` left (None without one), from the journal of an experiment being
    resumed; a ConfigError when none is left."""
    if study.time_budget_h is None:
        return None
    journal = exp_dir / "trials.jsonl"
    elapsed = 0.0 if fresh or not journal.is_file() else elapsed_seconds(events(journal.read_text()))
    left = study.time_budget_h * 3600.0 - elapsed
    if left <= 0:
        raise ConfigError(
            f"time_budget_h: {study.time_budget_h} h are spent ({duration(elapsed)} run so far); "
            "raise time_budget_h (--set time_budget_h=...) to go on"
        )
    return left


@contextmanager
def time_budget(seconds: float | None) -> Iterator[threading.Event]:
    """Within the block, SIGINT this process after ``seconds`` (Tune then stops as on Ctrl-C, its state
    saved for a resume); the yielded event is set if that happened. No limit for None."""
    spent = threading.Event()

    def _stop() -> None:
        spent.set()
        signal.raise_signal(signal.SIGINT)

    timer = threading.Timer(seconds, _stop) if seconds is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield spent
    finally:
        if timer is not None:
            timer.cancel()
