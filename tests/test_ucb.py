"""UCBTreeSearcher: routing between blocks, virtual visits, records, state."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ray.tune.search import Searcher

from searchers.testing import SPACE, conformance_kwargs, synthetic_result
from searchers.tree import Tree
from searchers.ucb import SEARCH_KEY, UCBTreeSearcher


def _searcher(**overrides) -> UCBTreeSearcher:
    return UCBTreeSearcher(**{**conformance_kwargs(), **overrides})


def test_virtual_visits_spread_four_pending_suggestions_over_different_parents() -> None:
    searcher = _searcher(blocks={"simulation.connectivity_filling_factor": [1.0]}, n_iter_block=12)
    tree = searcher.trees["connectivity_filling_factor=1.0"]
    tree.add_node(searcher.root_params, None)
    for optimizer in ["adamw", "rmsprop", "sgd"]:
        tree.add_node({**searcher.root_params, "training.optimizer": optimizer}, 1, "optimizer", "exploit")
    tree.add_node({**searcher.root_params, "training.batch_size": 3}, 1, "batch_size", "exploit")
    for node_id in tree.nodes:
        tree.add_pending(node_id, f"h{node_id}", 0)
        tree.complete(f"h{node_id}", 0.5, {"connectivity_R2": 0.5, "cluster_accuracy": 0.5}, "partial")
    parents = [searcher.suggest(f"p{i}")[SEARCH_KEY]["parent"] for i in range(4)]
    assert parents == [2, 3, 4, 5]


def test_without_virtual_visits_the_same_parent_would_repeat() -> None:
    tree = Tree("t", ucb_c=1.414)
    tree.add_node({"x": 0}, None)
    for x in (1, 2):
        tree.add_node({"x": x}, 1)
    for node_id in tree.nodes:
        tree.add_pending(node_id, f"h{node_id}", 0)
        tree.complete(f"h{node_id}", 0.5, {}, "partial")
    first = tree.ranked()[0].id
    tree.add_pending(first, "live", 1)
    assert tree.ranked()[0].id != first


def test_blocks_proceed_in_parallel_fewest_runs_plus_pending_first() -> None:
    searcher = _searcher(blocks={"simulation.connectivity_filling_factor": [1.0, 0.5, 0.25]})
    blocks = [searcher.suggest(f"t{i}")[SEARCH_KEY]["block"] for i in range(6)]
    assert (
        blocks
        == [
            "connectivity_filling_factor=1.0",
            "connectivity_filling_factor=0.5",
            "connectivity_filling_factor=0.25",
        ]
        * 2
    )


def test_records_count_runs_and_config_carries_block_and_node_values() -> None:
    searcher = _searcher(blocks={"simulation.connectivity_filling_factor": [0.25]})
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        record = config[SEARCH_KEY]
        assert record["run"] == i + 1 and config["simulation"]["connectivity_filling_factor"] == 0.25
        node = searcher.trees[record["block"]].nodes[record["node"]]
        for key, value in node.params.items():
            section, name = key.split(".")
            assert config[section][name] == value
        searcher.on_trial_complete(f"t{i}", synthetic_result(config, f"t{i}"))
    assert searcher.trees["connectivity_filling_factor=0.25"].n_runs == 4


def test_finished_once_every_budget_is_allocated_and_seed_key_none() -> None:
    searcher = _searcher(n_iter_block=2, seed_key=None)
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert all("seed" not in c["training"] or c["training"]["seed"] == 0 for c in configs)
    assert searcher.suggest("t4") == Searcher.FINISHED


def test_base_config_values_seed_the_root_and_space_defaults_win() -> None:
    searcher = _searcher()
    assert searcher.root_params["training.learning_rate_W_start"] == 1e-3
    space = {
        **SPACE,
        "training.learning_rate_W_start": {**SPACE["training.learning_rate_W_start"], "default": 2e-3},
    }
    assert _searcher(space=space).root_params["training.learning_rate_W_start"] == 2e-3


def test_block_label_and_tree_text() -> None:
    searcher = _searcher()
    assert searcher.block_label(0.25) == "connectivity_filling_factor=0.25"
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"connectivity_R2": 0.997, "cluster_accuracy": 0.95})
    text = searcher.tree_text(config[SEARCH_KEY]["block"])
    assert text.startswith("Node 1: UCB=0.978, parent=root, visits=1, R2=0.997, cluster=0.950")


def test_state_is_json_safe_and_rejects_other_blocks() -> None:
    searcher = _searcher()
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", synthetic_result(config, f"t{i}"))
    state = searcher.get_state()
    json.dumps({k: v for k, v in state.items() if k != "rng"})
    with pytest.raises(ValueError, match="do not match"):
        _searcher(blocks={"simulation.connectivity_filling_factor": [0.1]}).set_state(state)


def test_one_objective_study_classifies_from_its_threshold() -> None:
    searcher = _searcher(weights={"test_R2": 1.0}, thresholds={"test_R2": 0.8})
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"test_R2": 0.85})
    run = searcher.trees["connectivity_filling_factor=1.0"].nodes[1].runs[0]
    assert (run.classification, run.score) == ("converged", 0.85)


def test_the_search_core_imports_without_ray() -> None:
    code = (
        "import sys; import searchers.search, searchers.policy, searchers.checkpoint; "
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
