"""The study objective in one place: score and classification by metric name (no Ray, no numpy).

* ``score``: sum of weight x metric, each metric clipped to [0, 1]; a missing or NaN metric counts 0;
  a run whose status is in ``FAILED_STATUSES`` scores 0.
* ``classify``: two thresholded metrics -> converged (both above), partial-W / partial-E (only one
  above; the suffix is read from the metric's NAME: W for connectivity_R2, E for cluster_accuracy,
  else the name itself), failed (both below ``FAIL_LEVEL``), partial otherwise. One (or more than
  two) thresholded metrics: converged above, failed below ``FAIL_LEVEL``, partial otherwise. A run
  that ran (its status is not a failed one) but did not converge on data that cannot decide W
  (``metrics["data_limited"]`` true: the network's identifiability ceiling is below the R^2
  threshold) is ``data-limited`` instead: it says nothing about the config
  (:mod:`searchers.robustness` does not count it). A run stopped early (status ``stopped``: it lagged
  its parent, :mod:`searchers.early_stop`) is ``stopped``: a partial result, scored on its metrics at
  the stop, never converged and never a failure of its config.
* ``DEFAULT_WEIGHTS`` / ``DEFAULT_THRESHOLDS``: 0.6 connectivity_R2 + 0.4 cluster_accuracy, 0.9 each.

The searcher's trees, the trainer's metrics, the journal records and the study config all use these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEFAULT_WEIGHTS: dict[str, float] = {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
DEFAULT_THRESHOLDS: dict[str, float] = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}
FAIL_LEVEL = 0.1
FAILED_STATUSES = ("diverged", "error", "missing", "unknown", "incomplete")
SUFFIX = {"connectivity_R2": "W", "cluster_accuracy": "E"}
STOPPED = "stopped"  # the status and the class of a run stopped early
CLASSES = ("converged", "partial-W", "partial-E", "partial", "failed", "data-limited", STOPPED)


def default_weights() -> dict[str, float]:
    """A fresh copy of ``DEFAULT_WEIGHTS``."""
    return dict(DEFAULT_WEIGHTS)


def default_thresholds() -> dict[str, float]:
    """A fresh copy of ``DEFAULT_THRESHOLDS``."""
    return dict(DEFAULT_THRESHOLDS)


def is_failed(status: Any) -> bool:
    """True for a status that scores 0 and classifies as failed (diverged, error, missing, ...)."""
    return status in FAILED_STATUSES


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """A metric as a float; NaN when missing, boolean or not a number (numeric strings are read)."""
    value = metrics.get(name)
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    if not isinstance(value, int | float):
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan
    return float(value)


def _clipped(metrics: Mapping[str, Any], name: str) -> float:
    value = metric_value(metrics, name)
    return 0.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0)


def score(metrics: Mapping[str, Any] | None, weights: Mapping[str, float] | None = None) -> float:
    """Sum of weight x metric clipped to [0, 1]; failed status, missing or NaN metrics -> 0."""
    if not metrics or is_failed(metrics.get("status")):
        return 0.0
    return float(sum(w * _clipped(metrics, name) for name, w in (weights or DEFAULT_WEIGHTS).items()))


def classify(metrics: Mapping[str, Any] | None, thresholds: Mapping[str, float] | None = None) -> str:
    """converged / partial-W / partial-E / partial / failed / data-limited under ``thresholds`` (see
    the module doc)."""
    if metrics and metrics.get("status") == STOPPED:
        return STOPPED
    found = _classify(metrics, thresholds)
    if (
        found != "converged"
        and metrics
        and metrics.get("data_limited") is True
        and not is_failed(metrics.get("status"))
    ):
        return "data-limited"
    return found


def _classify(metrics: Mapping[str, Any] | None, thresholds: Mapping[str, float] | None) -> str:
    if not metrics or is_failed(metrics.get("status")):
        return "failed"
    thresholds = thresholds or DEFAULT_THRESHOLDS
    values = {name: metric_value(metrics, name) for name in thresholds}
    above = [name for name, v in values.items() if math.isfinite(v) and v > thresholds[name]]
    if len(above) == len(values):
        return "converged"
    if all(not math.isfinite(v) or v < FAIL_LEVEL for v in values.values()):
        return "failed"
    if len(values) == 2 and len(above) == 1:
        return f"partial-{SUFFIX.get(above[0], above[0])}"
    return "partial"
