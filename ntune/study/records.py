"""Trial records of a study, and what they add up to: nodes, per-block summary, mutation effects.

A record is one line of ``trials.jsonl`` (see :mod:`ntune.study.journal`): the trial's search record
(block, node, parent, strategy, mutation, run, seed), its searched parameters, final metrics,
status (ok / diverged / error / incomplete), score and classification under the study's objective
(:mod:`searchers.objective`), and its complete config. Pure Python over plain dicts; no Ray.
The aggregates (nodes, block rows, mutation effects) live in :class:`ntune.study.ledger.Ledger`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ntune.config import get_dotted
from ntune.learn.metrics import RECORD_METRICS
from ntune.study.clock import stamp
from ntune.study.info import block_label
from ntune.study.numbers import as_float
from searchers.objective import CLASSES, STOPPED, classify, score
from searchers.record import SEARCH_KEY, SearchRecord

__all__ = ["SEARCH_KEY", "SearchRecord", "TrialRecord", "make_record"]


def events(text: str) -> Iterator[dict[str, Any]]:
    """The events of a ``trials.jsonl`` text, in order; blank, cut or non-object lines are skipped."""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def read_trials(exp_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Completed trial records in order of first completion (the last record of a trial wins); running trial id -> block."""
    path = Path(exp_dir) / "trials.jsonl"
    done: dict[str, dict[str, Any]] = {}
    started: dict[str, str] = {}
    for event in events(path.read_text() if path.is_file() else ""):
        if event.get("event") == "resume":
            started.clear()  # a resumed run starts again every trial it still has
        elif event.get("event") == "start":
            started[event["trial_id"]] = event.get("block") or ""
        else:
            done[event["trial_id"]] = event
    records = list(done.values())
    for k, rec in enumerate(records, 1):
        rec["iter"] = k
    return records, {t: b for t, b in started.items() if t not in done}


@dataclass
class TrialRecord:
    """One completed trial: the ``complete`` line of ``trials.jsonl`` (``to_dict`` is that line)."""

    trial_id: str
    time: str
    status: str  # ok / diverged / error / incomplete / stopped
    error: str
    block: str
    block_value: Any
    search: dict[str, Any]  # a SearchRecord's dict (see searchers.record)
    params: dict[str, Any]
    metrics: dict[str, float]
    score: float
    classification: str
    trial_dir: str
    config: dict[str, Any]
    stopped_at: float | None = None  # the fraction of training at which early stopping stopped it
    event: str = "complete"

    def to_dict(self) -> dict[str, Any]:
        """The plain record (``event`` first, as in the file)."""
        out = asdict(self)
        return {"event": out.pop("event"), **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """From a ``complete`` line; journal-added keys (iter, next_parent) are dropped."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def make_record(
    info: dict[str, Any],
    trial_id: str,
    config: dict[str, Any],
    result: dict[str, Any] | None,
    *,
    error: str = "",
) -> dict[str, Any]:
    """A ``complete`` record from a trial's config (with its search record) and its last result.

    The status is ``error`` with an ``error`` text, ``stopped`` when early stopping ended it (its result
    carries ``stopped_at``, :mod:`ntune.tune.early_stop`), ``incomplete`` without a final result, else
    the result's own (``ok`` or ``diverged``). Score and classification are the result's, which the
    trainable computed once under the study's objective; only a result without them (an old journal) has
    them computed here. A stopped run keeps the score of its last report and is class ``stopped``;
    anything else but ``ok`` scores 0 and is ``failed``.
    """
    result = result or {}
    search = dict(config.get(SEARCH_KEY) or {})
    plain = {k: v for k, v in config.items() if k != SEARCH_KEY}
    stopped_at = result.get("stopped_at")
    if error:
        status = "error"
    elif isinstance(stopped_at, float | int) and not result.get("final"):
        status = STOPPED
    elif not result.get("final"):
        status = "incomplete"
    else:
        status = str(result.get("status", "ok"))
    metrics = {k: as_float(result.get(k)) for k in RECORD_METRICS}
    run_score, classification = judge(info, metrics, status, result)
    block_value = get_dotted(plain, info["block_key"])
    return TrialRecord(
        trial_id=trial_id,
        time=stamp(),
        status=status,
        error=error,
        block=search.get("block") or block_label(info["block_key"], block_value),
        block_value=search.get("block_value", block_value),
        search=search,
        params={k: get_dotted(plain, k) for k in info["study"]["space"]},
        metrics=metrics,
        score=run_score,
        classification=classification,
        trial_dir=str(result.get("trial_dir", "")),
        config=plain,
        stopped_at=as_float(stopped_at) if status == STOPPED else None,
    ).to_dict()


def judge(
    info: dict[str, Any], metrics: dict[str, float], status: str, result: dict[str, Any]
) -> tuple[float, str]:
    """(score, classification) of a record: the result's when it carries them, else computed from ``metrics``."""
    if status == STOPPED:  # scored as at its last report
        value = as_float(result.get("score"))
        return (0.0 if math.isnan(value) else value), STOPPED
    if status != "ok":
        return 0.0, "failed"  # what the objective gives any failed status
    carried, classification = result.get("score"), result.get("classification")
    if isinstance(carried, int | float) and not isinstance(carried, bool) and classification in CLASSES:
        return float(carried), str(classification)
    objective = info["study"]["objective"]
    judged = {**metrics, "status": "ok"}
    return score(judged, objective["weights"]), classify(judged, objective["thresholds"])


def fmt(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("nan" for NaN); anything else as str."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)
