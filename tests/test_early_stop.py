"""Lineage early stopping: interpolation of the parent's curve, the stop fraction, the curves the searcher
keeps, the parent a trial is judged against and the stopped run, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_fakes import TRIALS, make_experiment, trial

from ntune.study.records import make_record
from ntune.study.render import diagnosis_words
from searchers.early_stop import LineageRule, at_fraction, curve_point, parent_curve
from searchers.record import SEARCH_KEY
from searchers.search import TreeSearch
from searchers.settings import SearchSettings
from searchers.testing import BASE, conformance_kwargs

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


# ---- the searcher's side: curves, the parent a trial is judged against, the stopped run


RULE = LineageRule(min_fraction=0.5, margin=0.05, patience=2)


def _search() -> TreeSearch:
    kwargs = {**conformance_kwargs(), "blocks": {"simulation.connectivity_filling_factor": [1.0]}}
    kwargs.pop("metric", None)
    return TreeSearch(SearchSettings(**kwargs, robustness_repeats=2))


def _report(search: TreeSearch, trial_id: str, values: list[float], final: bool = True) -> dict[str, float]:
    """Observe ``values`` at progress 0.2, 0.4, ...; return the last result (``final`` when asked)."""
    results = [{"progress": (k + 1) / 5, "score": v} for k, v in enumerate(values)]
    for result in results[:-1]:
        search.observe(trial_id, result)
    last = dict(results[-1], connectivity_R2=values[-1], cluster_accuracy=values[-1])
    return {**last, "final": final} if final else last


def test_curve_points_need_finite_progress_and_score() -> None:
    assert curve_point({"progress": 0.5, "score": 0.25}) == (0.5, 0.25)
    for bad in (
        {"progress": 0.5},
        {"progress": True, "score": 0.1},
        {"progress": 0.5, "score": float("nan")},
    ):
        assert curve_point(bad) is None


def test_a_child_is_judged_against_its_parents_best_run_and_a_repeat_never() -> None:
    search = _search()
    root = search.suggest("root")
    assert isinstance(root, dict)
    search.complete("root", _report(search, "root", [0.2, 0.4, 0.6, 0.8, 1.0]))
    tree = search.trees["connectivity_filling_factor=1.0"]
    assert tree.nodes[1].runs[0].curve == [(0.2, 0.2), (0.4, 0.4), (0.6, 0.6), (0.8, 0.8), (1.0, 1.0)]
    repeat = search.suggest("repeat")  # the converged root is tested again on a second network
    assert isinstance(repeat, dict) and repeat[SEARCH_KEY]["strategy"] == "robustness-test"
    assert parent_curve(tree, "repeat") is None
    assert search.stop_at("repeat", {"progress": 0.8, "score": 0.0}, RULE) is None
    search.complete("repeat", _report(search, "repeat", [0.1, 0.2, 0.3, 0.4, 0.5]))
    child = search.suggest("child")
    assert isinstance(child, dict) and child[SEARCH_KEY]["parent"] is not None
    assert parent_curve(tree, "child") == tree.nodes[1].runs[0].curve  # the best run (score 1.0), not 0.5
    _report(search, "child", [0.1, 0.2, 0.3], final=False)
    search.observe("child", {"progress": 0.6, "score": 0.3})
    assert search.stop_at("child", {"progress": 0.8, "score": 0.79}, RULE) is None  # within the margin
    assert search.stop_at("child", {"progress": 0.8, "score": 0.5}, RULE) == 0.8  # behind at 0.6 and 0.8
    last = {"progress": 0.8, "score": 0.5, "connectivity_R2": 0.5, "cluster_accuracy": 0.5, "stopped_at": 0.8}
    search.complete("child", last)
    node = tree.nodes[tree.trials["child"]]
    (run,) = node.runs
    assert (run.status, run.classification, run.metrics["stopped_at"]) == ("stopped", "stopped", 0.8)
    assert run.score == pytest.approx(0.5)  # scored at its stop, a partial result
    assert run.curve == [(0.2, 0.1), (0.4, 0.2), (0.6, 0.3), (0.8, 0.5)]
    assert not node.robust and not node.converged


def test_curves_survive_the_searchers_state() -> None:
    search = _search()
    search.suggest("root")
    search.observe("root", {"progress": 0.2, "score": 0.1})
    again = _search()
    again.set_state(search.get_state())
    assert again.curves == {"root": [(0.2, 0.1)]}
    again.complete("root", {"progress": 1.0, "score": 0.9, "connectivity_R2": 0.9, "final": True})
    assert again.trees["connectivity_filling_factor=1.0"].nodes[1].runs[0].curve == [(0.2, 0.1), (1.0, 0.9)]
    assert BASE["training"]["learning_rate_W_start"] == 1e-3


def test_a_stopped_trial_is_recorded_as_stopped_with_its_fraction(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=1)
    trial_id, config, result, _ = trial(1, TRIALS[1], info)
    partial = dict(result or {}, final=False, score=0.31, classification="running")
    assert make_record(info, trial_id, config, partial)["status"] == "incomplete"  # killed, not stopped
    rec = make_record(info, trial_id, config, dict(partial, stopped_at=0.6))
    assert (rec["status"], rec["classification"], rec["score"], rec["stopped_at"]) == (
        "stopped",
        "stopped",
        0.31,
        0.6,
    )
    assert diagnosis_words(rec) == "stopped at 60% of training: its score stayed below its parent's"
