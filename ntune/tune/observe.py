"""What a study shows in the Ray dashboard: the job's name, each trial actor's name and log, Ray metrics.

The Ray adapter for watching a study (Ray is imported only inside the functions and classes that need
it). The text it produces comes from pure functions (``job_metadata``, ``trial_label``,
``progress_line``, ``final_line``), which need no Ray:

* the study's Ray job carries ``job_metadata`` (``job_name`` is the Jobs page's "Name" column);
* each trial actor's repr is ``trial_label`` of its config (``ff=0.25 node 7 exploit lr_W 1e-3->2e-3``),
  which Ray takes once, when the actor is created: trials therefore run on their own actors (no reuse);
* the trial prints one ``progress_line`` per evaluation and a ``final_line`` to its worker's stdout,
  which is the actor's Log link in the dashboard;
* ``TrialMetrics`` (in the trial) and ``BlockMetrics`` (a Tune callback on the driver) set the gauges
  named in ``TRIAL_METRICS`` and ``BLOCK_METRICS``, which every node serves on its Prometheus endpoint
  with the ``ray_`` prefix (``ray_ntune_trial_connectivity_r2{study=..., block=..., node=...}``; Prometheus
  names are lower case).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ntune.study.numbers import as_float
from ntune.study.records import SEARCH_KEY, fmt
from ntune.study.render import SHORT_NAMES
from searchers.packing import MEMBERS_KEY

BLOCK_SHORT = {"connectivity_filling_factor": "ff"}  # block key leaf -> the short name in actor names
PREFIX = "[ntune]"  # starts every line a trial prints to its log

# gauge name -> (description, metric key); tags STUDY_TAGS + TRIAL_TAGS
TRIAL_METRICS = {
    "ntune_trial_connectivity_r2": (
        "connectivity_R2 of the trial at its latest evaluation",
        "connectivity_R2",
    ),
    "ntune_trial_cluster_accuracy": (
        "cluster_accuracy of the trial at its latest evaluation",
        "cluster_accuracy",
    ),
    "ntune_trial_score": ("the study's score of the trial at its latest evaluation", "score"),
    "ntune_trial_progress": ("fraction of the trial's training iterations done", "progress"),
}
# gauge name -> (description, key of the journal's block row); tags STUDY_TAGS
BLOCK_METRICS = {
    "ntune_block_trials_done": ("trials of the block completed", "trials"),
    "ntune_block_trials_running": ("trials of the block running", "running"),
    "ntune_block_progress": ("completed trials of the block over its budget", "progress"),
    "ntune_block_best_connectivity_r2": ("best connectivity_R2 of the block", "best_R2"),
    "ntune_block_best_cluster_accuracy": ("best cluster_accuracy of the block", "best_cluster"),
    "ntune_block_best_score": ("score of the block's best run", "best_score"),
}
STUDY_TAGS = ("study", "block")
TRIAL_TAGS = ("node", "trial")
METRICS_EVERY_S = 2.0  # seconds between block-gauge updates on the driver besides those on completions


def job_metadata(study: str, experiment: str) -> dict[str, str]:
    """The Ray job's metadata: ``job_name`` (shown by the dashboard's Jobs page), the study, its folder."""
    return {"job_name": f"ntune {study}", "ntune_study": study, "ntune_experiment": experiment}


def _short_block(label: str) -> str:
    key, sep, value = label.partition("=")
    return f"{BLOCK_SHORT.get(key, key)}={value}" if sep else label


def _short_mutation(mutation: str) -> str:
    """``learning_rate_W_start: 0.001 -> 0.002`` as ``lr_W 0.001->0.002``."""
    name, sep, change = mutation.partition(":")
    if not sep:
        return mutation
    short = {key.rsplit(".", 1)[-1]: s for s, key in SHORT_NAMES}.get(name.strip(), name.strip())
    return f"{short} {change.strip().replace(' -> ', '->')}"


def search_label(search: dict[str, Any]) -> str:
    """``ff=0.25 node 7 exploit lr_W 0.001->0.002``: block, node, strategy and mutation of one suggestion."""
    words = [_short_block(str(search.get("block", "?"))), f"node {search.get('node', '?')}"]
    words.append(str(search.get("strategy") or ""))
    if search.get("mutation"):
        words.append(_short_mutation(str(search["mutation"])))
    return " ".join(w for w in words if w)


def trial_label(config: dict[str, Any]) -> str:
    """A trial's readable name from its config: one suggestion, or the members of a packed trial."""
    members = config.get(MEMBERS_KEY)
    if members:
        searches = [dict(m.get(SEARCH_KEY) or {}) for m in members]
        blocks = sorted({_short_block(str(s.get("block", "?"))) for s in searches})
        nodes = ",".join(str(s.get("node", "?")) for s in searches)
        return f"{' '.join(blocks)} nodes {nodes} (population of {len(members)})"
    return search_label(dict(config.get(SEARCH_KEY) or {}))


def progress_line(label: str, m: dict[str, Any]) -> str:
    """One evaluation of a running trial: iteration, loss, connectivity_R2, cluster_accuracy, score."""
    return (
        f"{PREFIX} {label} | iteration {m.get('iteration', '?')} ({fmt(float(m.get('progress', math.nan)), 3)}) "
        f"loss {fmt(m.get('loss', math.nan))} connectivity_R2 {fmt(m.get('connectivity_R2', math.nan))} "
        f"cluster_accuracy {fmt(m.get('cluster_accuracy', math.nan))} score {fmt(m.get('score', math.nan))}"
    )


def final_line(label: str, m: dict[str, Any]) -> str:
    """The final metrics of a trial."""
    keys = ("connectivity_R2", "cluster_accuracy", "score", "test_R2", "test_pearson", "final_loss")
    values = " ".join(f"{k} {fmt(m.get(k, math.nan))}" for k in keys)
    return (
        f"{PREFIX} {label} | final: {m.get('classification', '?')} (status {m.get('status', '?')}) "
        f"{values} iterations {m.get('iteration', '?')} time {fmt(m.get('training_time_min', math.nan), 3)} min"
    )


_GAUGES: dict[str, Any] = {}  # gauge name -> ray.util.metrics.Gauge, made once per process


def _gauge(name: str, description: str, tags: tuple[str, ...]) -> Any:
    if name not in _GAUGES:
        from ray.util.metrics import Gauge

        _GAUGES[name] = Gauge(name, description=description, tag_keys=tags)
    return _GAUGES[name]


class TrialMetrics:
    """In a trial: logs each evaluation and sets the trial gauges (tags: study, block, node, trial)."""

    def __init__(
        self, study: str, search: dict[str, Any], trial_id: str, echo: Callable[[str], None]
    ) -> None:
        self.label = search_label(search)
        self.echo = echo
        self.tags = {
            "study": study,
            "block": str(search.get("block", "")),
            "node": str(search.get("node", "")),
            "trial": trial_id,
        }

    def update(self, m: dict[str, Any]) -> None:
        """Log line and gauges of one result (``final`` results print the final metrics)."""
        self.echo(final_line(self.label, m) if m.get("final") else progress_line(self.label, m))
        values = {**m, "progress": 1.0} if m.get("final") else m
        for name, (description, key) in TRIAL_METRICS.items():
            value = as_float(values.get(key))
            if math.isfinite(value):
                _gauge(name, description, STUDY_TAGS + TRIAL_TAGS).set(value, tags=self.tags)


def block_values(row: dict[str, Any]) -> dict[str, float]:
    """The block gauges' values from one journal block row (NaN metrics are left out)."""
    row = {**row, "progress": row["trials"] / row["budget"] if row.get("budget") else math.nan}
    out = {}
    for name, (_, key) in BLOCK_METRICS.items():
        value = as_float(row.get(key))
        if math.isfinite(value):
            out[name] = value
    return out


def readable_trainable(fn: Callable[[dict[str, Any]], None]) -> type:
    """The Tune function trainable of ``fn`` whose actor repr is the trial's ``trial_label``.

    ``fn`` may carry its resources (``tune.with_resources`` applied to the function), which Tune reads
    when it wraps it here.

    Ray records an actor's repr once, after its constructor; Tune's name for the trainable stays
    ``fn.__name__`` (so experiments saved with the plain function still restore).
    """
    from ray.tune.trainable.function_trainable import wrap_function

    class NtuneTrial(wrap_function(fn)):  # type: ignore[misc]  # a class made by Tune at run time
        def __repr__(self) -> str:
            return trial_label(self.config or {})

    NtuneTrial.__qualname__ = NtuneTrial.__name__  # the dashboard's actor class
    return NtuneTrial


def block_metrics_callback(study: str, rows: Callable[[], list[dict[str, Any]]]) -> Any:
    """A Tune callback on the driver that sets the block gauges from ``rows()`` (the journal's block rows)."""
    from ray.tune import Callback

    class BlockMetrics(Callback):
        """Sets the block gauges on every completion and at most every METRICS_EVERY_S seconds besides."""

        def __init__(self) -> None:
            self._last = 0.0

        def _update(self) -> None:
            self._last = time.monotonic()
            for row in rows():
                tags = {"study": study, "block": str(row["block"])}
                for name, value in block_values(row).items():
                    _gauge(name, BLOCK_METRICS[name][0], STUDY_TAGS).set(value, tags=tags)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._update()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._update()

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._update()

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            if time.monotonic() - self._last > METRICS_EVERY_S:
                self._update()

    return BlockMetrics()
