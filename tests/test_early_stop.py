"""Lineage early stopping: interpolation of the parent's curve and the stop fraction, exactly."""

from __future__ import annotations

import pytest

from searchers.early_stop import LineageRule, at_fraction

PARENT = [(0.1, 0.2), (0.3, 0.6), (0.5, 0.8), (1.0, 0.9)]


def test_the_parent_curve_is_read_between_its_points() -> None:
    assert at_fraction(PARENT, 0.3) == 0.6
    assert at_fraction(PARENT, 0.4) == pytest.approx(0.7)
    assert at_fraction(PARENT, 0.75) == pytest.approx(0.85)
    assert (
        at_fraction(PARENT, 0.05) is None
        and at_fraction(PARENT, 1.5) is None
        and at_fraction([], 0.5) is None
    )


def test_a_child_behind_by_more_than_the_margin_twice_is_stopped_there() -> None:
    rule = LineageRule(min_fraction=0.3, margin=0.05, patience=2)
    behind = [(0.1, 0.0), (0.3, 0.5), (0.4, 0.68), (0.5, 0.7), (1.0, 0.95)]
    assert rule.stop_at(behind, PARENT) is None  # behind at 0.3 and 0.5, never twice in a row
    lagging = [(0.1, 0.0), (0.3, 0.5), (0.4, 0.6), (0.5, 0.7), (1.0, 0.95)]
    assert rule.stop_at(lagging, PARENT) == 0.4  # behind at 0.3 (0.5 < 0.55) and 0.4 (0.6 < 0.65)
    early = [(0.1, 0.0), (0.2, 0.0), (0.3, 0.59)]
    assert LineageRule(min_fraction=0.1, margin=0.05, patience=2).stop_at(early, PARENT) == 0.2
    assert (
        rule.stop_at(early, PARENT) is None
    )  # before min_fraction nothing counts; 0.59 is within the margin


def test_a_finished_curve_is_never_stopped_and_bad_rules_are_refused() -> None:
    assert LineageRule(patience=1).stop_at([(1.0, 0.0)], PARENT) is None
    for bad in ({"min_fraction": 1.0}, {"margin": -0.1}, {"patience": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LineageRule(**bad)
