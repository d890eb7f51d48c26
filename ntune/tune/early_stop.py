"""Lineage early stopping as a Ray Tune scheduler: the searcher's tree decides, Tune stops.

On each intermediate result, :class:`LineageScheduler` asks the searcher
(:meth:`searchers.ucb.UCBTreeSearcher.stop_at`) whether the trial, a search child, now stays below its
parent's best run at the same fraction of training (:class:`searchers.early_stop.LineageRule`); if so
it answers ``STOP``. When Tune then completes the trial, the scheduler is told first: it writes
``stopped_at`` (the fraction of training done) into the trial's last result, which the searcher (a run
of class ``stopped``) and the journal ("stopped at 40 % of training") read next. Every other trial runs
in submission order, as under Tune's FIFO scheduler.

The scheduler holds the searcher itself, not a copy: both are pickled with the Tuner, so after
``Tuner.restore`` it asks the restored searcher, whose trees hold every finished run's curve.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from searchers.early_stop import LineageRule

STOPPED_AT = "stopped_at"  # the key of the fraction of training at which a trial was stopped


class LineageScheduler(FIFOScheduler):
    """Stops a search child whose learning curve lags its parent's (``searcher.stop_at`` decides)."""

    def __init__(self, searcher: Any, rule: LineageRule) -> None:
        super().__init__()
        self.searcher = searcher  # a UCBTreeSearcher
        self.rule = rule
        self.stopped: dict[str, float] = {}  # trial_id -> fraction, until Tune completes the trial

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("final"):
            return TrialScheduler.CONTINUE
        at = self.searcher.stop_at(trial.trial_id, result, self.rule)
        if at is None:
            return TrialScheduler.CONTINUE
        self.stopped[trial.trial_id] = at
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """Mark a trial this scheduler stopped, before the searcher and the callbacks read its result."""
        at = self.stopped.pop(trial.trial_id, None)
        if at is not None and trial.last_result is not None:
            trial.last_result[STOPPED_AT] = at

    def debug_string(self) -> str:
        rule = self.rule
        return (
            f"LineageScheduler: a child behind its parent by > {rule.margin} for {rule.patience} evaluations "
            f"from {rule.min_fraction:.0%} of training is stopped"
        )
