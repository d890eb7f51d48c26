"""Tree: runs, virtual visits, both UCB formulas, scores, classification, text and dict export."""

from __future__ import annotations

import math
import re

import pytest

from searchers.objective import classify, score
from searchers.tree import Tree


def _tree(formula: str) -> Tree:
    """root (0.8) -> 2 (0.5, 0.7) -> 3 (0.9); root -> 4 (pending)."""
    tree = Tree("ff=1.0", 1.0, ucb_c=1.0, formula=formula)
    tree.add_node({"x": 1}, None)
    tree.add_node({"x": 2}, 1, "x: 1 -> 2", "exploit")
    tree.add_node({"x": 3}, 2, "x: 2 -> 3", "exploit")
    tree.add_node({"x": 4}, 1, "x: 1 -> 4", "exploit")
    for trial, node, value in [("a", 1, 0.8), ("b", 2, 0.5), ("c", 2, 0.7), ("d", 3, 0.9)]:
        tree.add_pending(node, trial, 0)
        tree.complete(trial, value, {"connectivity_R2": value, "cluster_accuracy": 0.95}, "partial")
    tree.add_pending(4, "e", 0)
    return tree


def test_ucb_exact_values() -> None:
    tree = _tree("ucb")
    assert [tree.nodes[i].subtree_visits for i in (1, 2, 3, 4)] == [5, 3, 1, 1]
    assert tree.ucb(1) == pytest.approx(0.8 + 0.567351, abs=1e-6)  # 0.8 + sqrt(ln 5 / 5)
    assert tree.ucb(2) == pytest.approx(0.6 + 0.732447, abs=1e-6)  # 0.6 + sqrt(ln 5 / 3)
    assert tree.ucb(3) == pytest.approx(0.9 + 1.268636, abs=1e-6)  # 0.9 + sqrt(ln 5)
    assert tree.ucb(4) == pytest.approx(1.268636, abs=1e-6)  # no result yet: mean 0


def test_puct_exact_values() -> None:
    tree = _tree("puct")
    assert tree.ucb(1) == pytest.approx(0.8 + 0.372678, abs=1e-6)  # 0.8 + sqrt(5) / 6
    assert tree.ucb(2) == pytest.approx(0.6 + 0.559017, abs=1e-6)  # 0.6 + sqrt(5) / 4
    assert tree.ucb(3) == pytest.approx(0.9 + 1.118034, abs=1e-6)  # 0.9 + sqrt(5) / 2


def test_pending_runs_are_virtual_visits_of_all_ancestors() -> None:
    tree = _tree("ucb")
    before = tree.ucb(2)
    tree.add_pending(3, "f", 1)
    assert [tree.nodes[i].subtree_visits for i in (1, 2, 3)] == [6, 4, 2]
    assert tree.ucb(2) < before
    tree.complete("f", 0.1, {}, "failed")
    assert tree.nodes[1].subtree_visits == 6 and tree.n_runs == 5 and tree.n_pending == 1


def test_ranked_uses_only_nodes_with_results_and_breaks_ties_by_id() -> None:
    assert [n.id for n in _tree("ucb").ranked()] == [3, 1, 2]


def test_duplicate_config_and_unknown_parent_are_rejected() -> None:
    tree = _tree("ucb")
    with pytest.raises(ValueError, match="already in tree"):
        tree.add_node({"x": 3}, 1)
    with pytest.raises(ValueError, match="unknown parent"):
        tree.add_node({"x": 9}, 42)
    with pytest.raises(ValueError, match="formula"):
        Tree("t", formula="ucb2")


def test_score_clips_and_zeroes_failures() -> None:
    weights = {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
    assert score({"connectivity_R2": 1.3, "cluster_accuracy": -0.2}, weights) == pytest.approx(0.6)
    assert score({"connectivity_R2": math.nan, "cluster_accuracy": 0.5}, weights) == pytest.approx(0.2)
    assert score({"connectivity_R2": 0.9, "cluster_accuracy": 0.9, "status": "diverged"}, weights) == 0.0
    assert score(None, weights) == 0.0


@pytest.mark.parametrize(
    ("r2", "cluster", "expected"),
    [
        (0.95, 0.95, "converged"),
        (0.95, 0.3, "partial-W"),
        (0.3, 0.95, "partial-E"),
        (0.05, 0.05, "failed"),
        (0.5, 0.5, "partial"),
    ],
)
def test_classify_two_objectives(r2: float, cluster: float, expected: str) -> None:
    thresholds = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}
    assert classify({"connectivity_R2": r2, "cluster_accuracy": cluster}, thresholds) == expected


@pytest.mark.parametrize(("r2", "expected"), [(0.95, "converged"), (0.5, "partial"), (0.05, "failed")])
def test_classify_one_objective(r2: float, expected: str) -> None:
    assert classify({"connectivity_R2": r2}, {"connectivity_R2": 0.9}) == expected


def test_text_in_upstream_form_and_dict_round_trip() -> None:
    tree = _tree("ucb")
    line = tree.text().splitlines()[1]
    assert re.match(
        r"Node 2: UCB=1\.332, parent=1, visits=3, R2=0\.700, cluster=0\.950, .*mutation=x: 1 -> 2$", line
    )
    clone = Tree.from_dict(tree.to_dict())
    assert clone.text() == tree.text() and clone.order == tree.order and clone.trials == tree.trials
    assert [clone.ucb(i) for i in clone.nodes] == [tree.ucb(i) for i in tree.nodes]
