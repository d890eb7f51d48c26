"""Each strategy fires exactly when its condition holds; guided rules move the parameter they name."""

from __future__ import annotations

import random
from typing import Any

import pytest

from searchers.mutation import BEST, REPEAT, guided_mutation, subject
from searchers.objective import classify, score
from searchers.policy import (
    GAIN_MARGIN,
    GUIDED_RULES,
    BlockState,
    Memory,
    decide,
    free_mutation,
    memory,
    record,
)
from searchers.space import parse_space
from searchers.tree import Tree

SPACE = parse_space(
    {
        "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "training.learning_rate_embedding_start": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
        "training.coeff_W_L1": {"type": "loguniform", "low": 1e-8, "high": 1e-2, "allow_zero": True},
        "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]},
    }
)
ROOT = {
    "training.learning_rate_W_start": 1e-3,
    "training.learning_rate_embedding_start": 1e-3,
    "training.coeff_W_L1": 1e-4,
    "training.optimizer": "adam",
}
THRESHOLDS = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}
WEIGHTS = {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
GOOD = {"connectivity_R2": 0.95, "cluster_accuracy": 0.95}
FAILED = {"connectivity_R2": 0.0, "cluster_accuracy": 0.0, "status": "diverged"}
MEDIOCRE = {"connectivity_R2": 0.5, "cluster_accuracy": 0.5}


def _run(tree: Tree, node_id: int, metrics: dict[str, Any], block: BlockState | None = None) -> None:
    trial = f"t{len(tree.trials)}"
    tree.add_pending(node_id, trial, len(tree.trials))
    run_score, label = score(metrics, WEIGHTS), classify(metrics, THRESHOLDS)
    node = tree.complete(trial, run_score, dict(metrics), label)
    if block is not None:
        record(tree, block, {}, node, run_score, label)


def _decide(tree: Tree, block: BlockState | None = None, seed: int = 0, **kwargs: Any):
    args = {"n_iter_block": 12, "retry_failed": 1, "robustness_repeats": 3, "neighbours": (), **kwargs}
    return decide(
        tree,
        block or BlockState(),
        space=SPACE,
        root_params=ROOT,
        stats={},
        rng=random.Random(seed),
        thresholds=THRESHOLDS,
        **args,
    )


def _tree(label: str = "ff=1.0") -> Tree:
    tree = Tree(label, robustness_repeats=3)
    tree.add_node(ROOT, None)
    return tree


def test_empty_tree_suggests_the_root() -> None:
    decision = _decide(Tree("ff=1.0"))
    assert decision.strategy == "root" and decision.params == ROOT and decision.parent is None


def test_retry_fires_once_for_a_config_whose_only_run_failed() -> None:
    tree = _tree()
    _run(tree, 1, FAILED)
    assert (_decide(tree).strategy, _decide(tree).node_id) == ("retry", 1)
    assert _decide(tree, retry_failed=0).strategy == "exploit"
    _run(tree, 1, FAILED)
    assert _decide(tree).strategy == "exploit"


def test_retry_waits_while_the_retry_is_pending() -> None:
    tree = _tree()
    _run(tree, 1, FAILED)
    tree.add_pending(1, "live", 7)
    assert _decide(tree).strategy == "exploit"


def test_robustness_test_until_repeats_then_robust_only_if_all_converge() -> None:
    tree = _tree()
    _run(tree, 1, GOOD)
    assert (_decide(tree).strategy, _decide(tree).node_id) == ("robustness-test", 1)
    _run(tree, 1, GOOD)
    assert _decide(tree).strategy == "robustness-test"
    _run(tree, 1, GOOD)
    assert tree.nodes[1].robust and _decide(tree).strategy == "exploit"
    other = _tree()
    _run(other, 1, GOOD)
    _run(other, 1, MEDIOCRE)
    assert _decide(other).strategy == "exploit" and not other.nodes[1].robust


def test_failure_probe_after_three_consecutive_converged_runs() -> None:
    tree, block = _tree(), BlockState()
    for _ in range(3):
        _run(tree, 1, GOOD, block)
    assert block.consec_converged == 3
    decision = _decide(tree, block)
    assert decision.strategy == "failure-probe" and decision.parent == 1
    domain = SPACE[decision.key]
    assert decision.params[decision.key] in (domain.low, domain.high) or domain.type == "choice"
    assert block.consec_converged == 0
    tree2, block2 = _tree(), BlockState()
    for metrics in (GOOD, GOOD, MEDIOCRE):
        _run(tree2, 1, metrics, block2)
    assert block2.consec_converged == 0 and _decide(tree2, block2).strategy == "exploit"


def test_explore_after_a_quarter_budget_of_successes_leaves_the_recent_chain() -> None:
    tree, block = _tree(), BlockState()
    _run(tree, 1, {"connectivity_R2": 0.1, "cluster_accuracy": 0.2}, block)
    side = tree.add_node({**ROOT, "training.optimizer": "adamw"}, 1, "optimizer", "exploit")
    _run(tree, side.id, {"connectivity_R2": 0.15, "cluster_accuracy": 0.2})
    parent = 1
    for step in range(2):
        child = tree.add_node({**ROOT, "training.coeff_W_L1": 10.0 ** (-5 - step)}, parent, "L1", "exploit")
        _run(tree, child.id, {"connectivity_R2": 0.3 + 0.2 * step, "cluster_accuracy": 0.5}, block)
        parent = child.id
    assert block.consec_success == 3 and block.streak == [1, 3, 4]
    decision = _decide(tree, block, n_iter_block=12)
    assert decision.strategy == "explore" and decision.parent == side.id
    assert block.consec_success == 0
    block.consec_success, block.streak = 2, [1, 3, 4]
    assert _decide(tree, block, n_iter_block=12).strategy == "exploit"


def test_transfer_adopts_the_nearest_robust_config_after_a_third_of_the_budget() -> None:
    source = _tree("ff=0.5")
    donor = source.add_node({**ROOT, "training.coeff_W_L1": 1e-6}, 1, "L1", "exploit")
    for _ in range(3):
        _run(source, donor.id, GOOD)
    far = _tree("ff=0.1")
    tree = _tree("ff=0.25")
    for _ in range(3):
        _run(tree, 1, MEDIOCRE)
    assert _decide(tree, n_iter_block=12, neighbours=[source, far]).strategy == "exploit"  # 3 < 12 / 3
    _run(tree, 1, MEDIOCRE)
    block = BlockState()
    decision = _decide(tree, block, n_iter_block=12, neighbours=[far, source])
    assert decision.strategy == "transfer" and decision.params == donor.params
    assert decision.mutation == f"transfer from ff=0.5 node {donor.id}" and block.transferred == [
        ["ff=0.5", donor.id]
    ]
    assert _decide(tree, block, n_iter_block=12, neighbours=[source]).strategy == "exploit"


def test_exploit_mutates_the_highest_ucb_node() -> None:
    tree = _tree()
    _run(tree, 1, MEDIOCRE)
    child = tree.add_node({**ROOT, "training.optimizer": "adamw"}, 1, "optimizer", "exploit")
    _run(tree, child.id, {"connectivity_R2": 0.6, "cluster_accuracy": 0.6})
    decision = _decide(tree)
    assert decision.strategy == "exploit" and decision.parent == max(tree.nodes, key=tree.ucb)


@pytest.mark.parametrize("seed", range(10))
def test_zero_band_lowers_l1_by_10_to_100(seed: int) -> None:
    tree = _tree()
    _run(
        tree,
        1,
        {"connectivity_R2": 0.4, "cluster_accuracy": 0.95, "zero_band": 0.6, "connectivity_slope": 1.0},
    )
    decision = _decide(tree, seed=seed)
    assert decision.rule == "zero-band" and decision.key == "training.coeff_W_L1"
    assert 10 * 0.99 <= 1e-4 / decision.params["training.coeff_W_L1"] <= 100 * 1.01


@pytest.mark.parametrize(
    ("metrics", "rule", "allowed"),
    [
        ({"zero_band": 0.5}, "zero-band", {("training.coeff_W_L1", -1)}),
        (
            {"connectivity_slope": 0.2},
            "shrinkage",
            {("training.coeff_W_L1", -1), ("training.learning_rate_W_start", 1)},
        ),
        (
            {"connectivity_R2": 0.95, "cluster_accuracy": 0.3},
            "cluster-at-chance",
            {("training.learning_rate_embedding_start", 0)},
        ),
        (
            {"connectivity_R2": 0.95, "cluster_accuracy": 0.7},
            "focus-embedding",
            {("training.learning_rate_embedding_start", 0)},
        ),
        (
            {"connectivity_R2": 0.5, "cluster_accuracy": 0.95},
            "R2-stuck",
            {("training.learning_rate_W_start", 0), ("training.coeff_W_L1", 0)},
        ),
        (
            {"connectivity_R2": 0.6, "cluster_accuracy": 0.3},
            "cluster-low",
            {("training.learning_rate_embedding_start", 0)},
        ),
        (
            {"connectivity_R2": 0.3, "cluster_accuracy": 0.6},
            "R2-low",
            {("training.learning_rate_W_start", 0), ("training.coeff_W_L1", 0)},
        ),
    ],
)
def test_each_guided_rule_moves_only_its_parameters(metrics: dict, rule: str, allowed: set) -> None:
    base = {"connectivity_R2": 0.5, "cluster_accuracy": 0.5, "zero_band": 0.0, "connectivity_slope": 1.0}
    for seed in range(6):
        tree = _tree()
        _run(tree, 1, {**base, **metrics})
        decision = _decide(tree, seed=seed)
        assert decision.rule == rule
        old, new = ROOT[decision.key], decision.params[decision.key]
        direction = 1 if new > old else -1
        assert (decision.key, direction) in allowed or (decision.key, 0) in allowed


def test_no_rule_fires_on_a_converged_or_undiagnosed_parent() -> None:
    names = {
        "zero-band",
        "shrinkage",
        "cluster-at-chance",
        "focus-embedding",
        "R2-stuck",
        "cluster-low",
        "R2-low",
        "unstable-types",
    }
    assert {r.name for r in GUIDED_RULES} == names
    tree = _tree()
    _run(tree, 1, {"connectivity_R2": 0.5, "cluster_accuracy": 0.6, "connectivity_slope": 1.0})
    assert _decide(tree).rule == "R2-low"
    undiagnosed = _tree()
    _run(undiagnosed, 1, {"connectivity_R2": 0.95})
    assert _decide(undiagnosed).rule == ""
    converged = _tree()
    _run(converged, 1, {**GOOD, "zero_band": 0.5})
    _run(converged, 1, GOOD)
    _run(converged, 1, GOOD)
    assert _decide(converged).rule == ""


@pytest.mark.parametrize(
    ("metrics", "rule"),
    [
        ({"connectivity_R2": 0.2, "cluster_accuracy": 0.45}, "R2-low"),
        ({"connectivity_R2": 0.7, "cluster_accuracy": 0.2}, "cluster-low"),
        ({"connectivity_R2": 0.7, "cluster_accuracy": 0.2, "zero_band": 0.5}, "cluster-low"),
        ({"connectivity_R2": 0.2, "cluster_accuracy": 0.45, "zero_band": 0.5}, "zero-band"),
    ],
)
def test_rules_of_the_weakest_objective_fire_first(metrics: dict, rule: str) -> None:
    tree = _tree()
    _run(tree, 1, metrics)
    assert _decide(tree).rule == rule


LR_W, LR_EMB = "training.learning_rate_W_start", "training.learning_rate_embedding_start"


def _child(tree: Tree, parent: int, key: str, factor: float, metrics: dict[str, Any]) -> int:
    params = {**tree.nodes[parent].params, key: tree.nodes[parent].params[key] * factor}
    node = tree.add_node(params, parent, f"{key} x{factor}", "exploit")
    _run(tree, node.id, metrics)
    return node.id


def test_a_child_without_gain_closes_its_direction_and_a_failed_one_too() -> None:
    tree = _tree()
    _run(tree, 1, MEDIOCRE)
    _child(tree, 1, LR_W, 3.0, {"connectivity_R2": 0.5 + GAIN_MARGIN / 2, "cluster_accuracy": 0.5})
    failed = _child(tree, 1, LR_EMB, 0.3, FAILED)
    _run(tree, failed, FAILED)
    _child(tree, 1, "training.coeff_W_L1", 0.3, {"connectivity_R2": 0.8, "cluster_accuracy": 0.5})
    assert memory(tree, tree.nodes[1], SPACE).bad == {LR_W: {1}, LR_EMB: {-1}}


def test_a_rule_moves_the_other_way_after_a_flat_child() -> None:
    for seed in range(6):
        tree = _tree()
        at_chance = {"connectivity_R2": 0.95, "cluster_accuracy": 0.3}
        _run(tree, 1, at_chance)
        _child(tree, 1, LR_EMB, 2.0, at_chance)
        decision = _decide(tree, seed=seed)
        assert decision.rule == "cluster-at-chance" and decision.key == LR_EMB
        assert decision.params[LR_EMB] < ROOT[LR_EMB]


def test_a_rule_jumps_wide_when_both_directions_are_closed() -> None:
    for seed in range(6):
        tree = _tree()
        at_chance = {"connectivity_R2": 0.95, "cluster_accuracy": 0.3}
        _run(tree, 1, at_chance)
        _child(tree, 1, LR_EMB, 2.0, at_chance)
        _child(tree, 1, LR_EMB, 0.5, at_chance)
        best = max(tree.nodes.values(), key=lambda n: (tree.ucb(n.id), -n.id))
        decision = _decide(tree, seed=seed)
        assert decision.rule == "cluster-at-chance" and decision.parent == best.id
        ratio = decision.params[LR_EMB] / best.params[LR_EMB]
        assert max(ratio, 1 / ratio) >= 10 * 0.99


def test_a_flat_child_inherits_closed_directions_and_a_better_one_keeps_momentum() -> None:
    tree = _tree()
    _run(tree, 1, MEDIOCRE)
    _child(tree, 1, LR_W, 3.0, {"connectivity_R2": 0.3, "cluster_accuracy": 0.5})
    flat = tree.add_node({**ROOT, "training.optimizer": "adamw"}, 1, "optimizer", "exploit").id
    _run(tree, flat, MEDIOCRE)
    assert memory(tree, tree.nodes[flat], SPACE).bad == {LR_W: {1}, "training.optimizer": {1}}
    better = _child(tree, 1, LR_EMB, 3.0, {"connectivity_R2": 0.5, "cluster_accuracy": 0.9})
    mem = memory(tree, tree.nodes[better], SPACE)
    assert mem.momentum == (LR_EMB, 1) and mem.bad == {}
    for seed in range(6):
        mutation = free_mutation(tree, tree.nodes[better], SPACE, {}, random.Random(seed))
        assert mutation is not None and mutation.key == LR_EMB and mutation.new > mutation.old


def test_statistics_vote_for_the_direction_that_gained() -> None:
    tree, stats = _tree(), {}
    _run(tree, 1, MEDIOCRE)
    up = tree.add_node({**ROOT, LR_W: 3e-3}, 1, "up", "exploit")
    down = tree.add_node({**ROOT, LR_W: 3e-4}, 1, "down", "exploit")
    for node, metrics in ((up, GOOD), (down, {"connectivity_R2": 0.1, "cluster_accuracy": 0.5})):
        tree.add_pending(node.id, f"v{node.id}", 0)
        run_score, label = score(metrics, WEIGHTS), classify(metrics, THRESHOLDS)
        tree.complete(f"v{node.id}", run_score, metrics, label)
        record(tree, BlockState(), stats, node, run_score, label, SPACE)
    assert stats[LR_W] == [2, 1, 2]
    assert Memory(prior={LR_W: 2}).open_directions(LR_W, 0) == [1, -1]
    assert Memory(prior={LR_W: -1}).open_directions(LR_W, 0) == [-1, 1]


UNSTABLE = {"connectivity_R2": 0.999, "cluster_accuracy": 0.8, "zero_band": 0.0, "connectivity_slope": 1.0}


def _unstable_tree() -> Tree:
    """The root converged on its first network and failed on the second with W learned (cluster 0.8)."""
    tree = _tree()
    _run(tree, 1, {**GOOD, "zero_band": 0.0, "connectivity_slope": 1.0})
    _run(tree, 1, UNSTABLE)
    return tree


def test_a_failed_repeat_slows_the_embedding_relative_to_W() -> None:
    moves = set()
    for seed in range(8):
        decision = _decide(_unstable_tree(), seed=seed)
        assert (decision.strategy, decision.rule) == ("exploit", "unstable-types")
        old, new = ROOT[decision.key], decision.params[decision.key]
        factor = new / old if new > old else old / new
        assert 2.0 <= factor <= 5.0  # FOCUS_RANGE
        moves.add((decision.key, 1 if new > old else -1))
    assert moves == {(LR_EMB, -1), (LR_W, +1)}


def test_a_failed_repeat_moves_lr_W_once_lower_lr_emb_did_not_gain() -> None:
    for seed in range(6):
        tree = _unstable_tree()
        _child(tree, 1, LR_EMB, 0.3, {"connectivity_R2": 0.999, "cluster_accuracy": 0.8})
        mutation, rule = guided_mutation(tree, tree.nodes[1], SPACE, THRESHOLDS, random.Random(seed))
        assert rule == "unstable-types" and mutation.key == LR_W
        assert mutation.new > ROOT[LR_W]


def test_a_failed_repeat_is_read_by_the_W_rules_but_not_by_the_lengthening_ones() -> None:
    zero_band = _tree()
    _run(zero_band, 1, {**GOOD, "zero_band": 0.0, "connectivity_slope": 1.0})
    _run(zero_band, 1, {"connectivity_R2": 0.5, "cluster_accuracy": 0.95, "zero_band": 0.5})
    assert _decide(zero_band).rule == "zero-band"
    assert subject(_unstable_tree().nodes[1])[1] == REPEAT
    assert subject(_unstable_tree().nodes[1])[0].metrics["cluster_accuracy"] == 0.8
    best_only = {r.name for r in GUIDED_RULES if REPEAT not in r.reads}
    assert best_only == {"cluster-at-chance", "focus-embedding", "cluster-low"}
    assert {r.name for r in GUIDED_RULES if BEST not in r.reads} == {"unstable-types"}
