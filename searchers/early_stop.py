"""Early stopping against a trial's own lineage: a child config is stopped when its learning curve stays
below its parent's at the same fraction of training.

A trial's curve is its score at each in-training evaluation, as (fraction of training done, score)
pairs. A search child (a one-parameter move from a parent node) is judged against the curve of its
parent's best run, compared at equal fractions of training (the parent's curve interpolated), so
trials of different lengths and of different blocks are never compared with each other. Robustness
repeats, held-out runs and the root are never stopped: their results are what a block's robustness is
made of. Pure Python, no Ray.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchers.tree import Tree

Curve = Sequence[tuple[float, float]]  # (fraction of training done, score), fractions increasing

# Strategies whose runs are never stopped early (the evidence of a block's robustness and its start).
NEVER_STOPPED = ("root", "robustness-test", "held-out", "retry", "replicate", "boundary-probe")


def at_fraction(curve: Curve, fraction: float) -> float | None:
    """The curve's score at ``fraction`` (linear between its points); None before its first point or
    beyond its last."""
    if not curve or fraction < curve[0][0] or fraction > curve[-1][0]:
        return None
    xs = [f for f, _ in curve]
    i = bisect_left(xs, fraction)
    if xs[i] == fraction:
        return curve[i][1]
    (f0, s0), (f1, s1) = curve[i - 1], curve[i]
    return s0 + (s1 - s0) * (fraction - f0) / (f1 - f0)


@dataclass(frozen=True)
class LineageRule:
    """Stop a child once, at ``patience`` evaluations in a row from ``min_fraction`` of training on, its
    score is more than ``margin`` below its parent's score at the same fraction."""

    min_fraction: float = 0.3
    margin: float = 0.05
    patience: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {self.min_fraction}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def stop_at(self, curve: Curve, parent: Curve) -> float | None:
        """The fraction of training at which ``curve`` is stopped against ``parent``; None if never."""
        behind = 0
        for fraction, value in curve:
            if fraction >= 1.0:
                return None
            reference = at_fraction(parent, fraction)
            if fraction < self.min_fraction or reference is None:
                continue
            behind = behind + 1 if value < reference - self.margin else 0
            if behind >= self.patience:
                return fraction
        return None


def curve_point(result: Mapping[str, Any]) -> tuple[float, float] | None:
    """A result's point on its learning curve: (``progress``, ``score``); None without both as finite numbers."""
    progress, value = result.get("progress"), result.get("score")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (progress, value))
    if not numbers or not (math.isfinite(progress) and math.isfinite(value)):  # type: ignore[arg-type]
        return None
    return float(progress), float(value)  # type: ignore[arg-type]


def parent_curve(tree: Tree, trial_id: str) -> Curve | None:
    """The curve a pending trial is judged against: its parent's best run's (highest score, among runs
    with a curve), when the trial is the first run of a child node; None for anything never stopped
    (a root, a repeat, a retry, a held-out run, a node of a :data:`NEVER_STOPPED` strategy) or a
    parent without a recorded curve."""
    node = tree.nodes[tree.trials[trial_id]]
    first_run = not node.runs and list(node.pending) == [trial_id]
    if (
        node.parent is None
        or node.strategy in NEVER_STOPPED
        or not first_run
        or trial_id in tree.held_out.pending
    ):
        return None
    runs = [r for r in tree.nodes[node.parent].runs if r.curve]
    return max(runs, key=lambda r: r.score).curve if runs else None
