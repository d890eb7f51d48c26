"""The searcher never lengthens training from a converged config (cost gate in searchers/policy.py)."""

from __future__ import annotations

import random

from searchers.objective import classify, score
from searchers.policy import BlockState, Decision, decide, free_mutation
from searchers.space import parse_space
from searchers.tree import Tree

SPACE = parse_space(
    {
        "training.n_epochs": {"type": "int", "low": 1, "high": 8},
        "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    }
)
ROOT = {"training.n_epochs": 2, "training.learning_rate_W_start": 1e-3}
WEIGHTS = THRESHOLDS = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}


def _tree(metrics: dict[str, float]) -> Tree:
    tree = Tree("b", 0, ucb_c=0.1, formula="ucb", robustness_repeats=1, weights=WEIGHTS)
    node = tree.add_node(dict(ROOT), None, "", "root")
    tree.add_pending(node.id, "t0", 0)
    tree.complete("t0", score(metrics, WEIGHTS), dict(metrics), classify(metrics, THRESHOLDS))
    return tree


def _decide(tree: Tree, space: dict, root: dict, seed: int) -> Decision | None:
    """One decision at a 12-trial block (one run makes a config robust)."""
    return decide(
        tree,
        BlockState(),
        space=space,
        root_params=root,
        stats={},
        rng=random.Random(seed),
        thresholds=THRESHOLDS,
        n_iter_block=12,
        retry_failed=1,
        robustness_repeats=1,
    )


def _epochs_after(metrics: dict[str, float]) -> set[int]:
    moves = set()
    for seed in range(40):
        tree = _tree(metrics)
        mutation = free_mutation(tree, tree.nodes[1], SPACE, {}, random.Random(seed))
        if mutation is not None and mutation.key == "training.n_epochs":
            moves.add(mutation.new)
        decision = _decide(tree, SPACE, ROOT, seed)
        if decision is not None and decision.params is not None:
            moves.add(decision.params["training.n_epochs"])
    return moves


def test_converged_configs_are_never_lengthened_unconverged_ones_are_lengthened_first() -> None:
    converged = _epochs_after({"connectivity_R2": 0.95, "cluster_accuracy": 0.95})
    assert converged and max(converged) <= ROOT["training.n_epochs"]
    learning = _epochs_after({"connectivity_R2": 0.6, "cluster_accuracy": 0.95})
    assert max(learning) > ROOT["training.n_epochs"]


def test_a_nearly_converged_node_is_trained_longer_first_once() -> None:
    nearly = {"connectivity_R2": 0.95, "cluster_accuracy": 0.8}
    for seed in range(5):
        tree = _tree(nearly)
        mutation = free_mutation(tree, tree.nodes[1], SPACE, {}, random.Random(seed))
        assert mutation is not None and mutation.key == "training.n_epochs" and mutation.new > 2
    tree = _tree(nearly)  # a longer child that did not gain closes the direction
    child = tree.add_node({**ROOT, "training.n_epochs": 4}, 1, "n_epochs: 2 -> 4", "exploit")
    tree.add_pending(child.id, "t1", 1)
    tree.complete("t1", score(nearly, WEIGHTS), dict(nearly), classify(nearly, THRESHOLDS))
    for seed in range(5):
        mutation = free_mutation(tree, tree.nodes[1], SPACE, {}, random.Random(seed))
        assert mutation is not None and not (mutation.key == "training.n_epochs" and mutation.new > 2)


LINEAR = parse_space(
    {
        "training.data_augmentation_loop": {"type": "int", "low": 10, "high": 60},
        "training.learning_rate_embedding_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    }
)
LINEAR_ROOT = {"training.data_augmentation_loop": 15, "training.learning_rate_embedding_start": 2e-3}
NEARLY_W = {"connectivity_R2": 0.95, "cluster_accuracy": 0.75}


def _linear_tree(params: dict[str, float]) -> Tree:
    tree = Tree("b", 0, ucb_c=0.1, formula="ucb", robustness_repeats=1, weights=WEIGHTS)
    tree.add_node(dict(params), None, "", "root")
    tree.add_pending(1, "t0", 0)
    tree.complete("t0", score(NEARLY_W, WEIGHTS), dict(NEARLY_W), classify(NEARLY_W, THRESHOLDS))
    return tree


def _decide_linear(tree: Tree, seed: int) -> Decision:
    decision = _decide(tree, LINEAR, LINEAR_ROOT, seed)
    assert decision is not None and decision.params is not None
    return decision


def test_lengthening_multiplies_a_linear_duration_by_2_5_to_4() -> None:
    for seed in range(20):
        decision = _decide_linear(_linear_tree(LINEAR_ROOT), seed)
        assert decision.params is not None
        new = decision.params["training.data_augmentation_loop"]
        assert 37 <= new <= 60  # 15 x 2.5 = 37.5 rounds to 37 or 38; 15 x 4 = 60 (the bound)
        assert decision.rule == ""  # longer first: focus-embedding waits


def test_focus_embedding_moves_lr_emb_once_training_cannot_be_longer() -> None:
    at_bound = {**LINEAR_ROOT, "training.data_augmentation_loop": 60}
    for seed in range(20):
        decision = _decide_linear(_linear_tree(at_bound), seed)
        assert decision.rule == "focus-embedding" and decision.params is not None
        ratio = decision.params["training.learning_rate_embedding_start"] / 2e-3
        assert 2.0 * 0.99 <= max(ratio, 1 / ratio) <= 5.0 * 1.01
