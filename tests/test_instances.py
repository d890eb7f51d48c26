"""Robustness across network instances in the search core: derived seeds, held-out confirmation,
data-limited repeats, and a restored search that continues identically."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest

from searchers.record import SEARCH_KEY
from searchers.robustness import Repeat, held_out_seed, instance_seed, is_robust, robustness, spread
from searchers.search import FINISHED, HELD_OUT, TreeSearch
from searchers.settings import SearchSettings
from searchers.ucb import UCBTreeSearcher

SPACE = {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
BLOCK = "connectivity_filling_factor=0.5"
BASE = {"simulation": {"seed": 42}, "training": {"learning_rate_W_start": 1e-3}}
GOOD = {"connectivity_R2": 0.99, "cluster_accuracy": 0.95}
BAD = {"connectivity_R2": 0.99, "cluster_accuracy": 0.5}


SETTINGS: dict[str, Any] = dict(
    space=SPACE,
    base_config=BASE,
    blocks={"simulation.connectivity_filling_factor": [0.5]},
    n_iter_block=3,
    robustness_repeats=2,
    instance_key="simulation.seed",
    held_out=3,
)


def _search(**kw: Any) -> TreeSearch:
    return TreeSearch(SearchSettings(**{**SETTINGS, **kw}))


def test_derived_network_seeds_are_fixed_numbers() -> None:
    """The seeds are part of a study's identity: the same on every machine, release and restore."""
    assert [instance_seed(0, BLOCK, i, 42) for i in range(4)] == [42, 1060599954, 225336694, 1854062764]
    assert [held_out_seed(0, BLOCK, i, 42) for i in range(3)] == [265231719, 1220961055, 7241203]
    assert instance_seed(1, BLOCK, 1, 42) == 1541232800  # another study seed, another network
    assert instance_seed(0, "connectivity_filling_factor=1.0", 1, 42) == 548023224  # another block


def test_held_out_seeds_never_meet_search_seeds() -> None:
    search = {instance_seed(s, BLOCK, i, 43) for s in range(5) for i in range(1, 200)}
    held = {held_out_seed(s, BLOCK, i, 43) for s in range(5) for i in range(200)}
    assert all(x % 2 == 0 for x in search) and all(x % 2 == 1 for x in held)
    assert 43 not in held and not search & held


def test_robustness_numbers_and_classes() -> None:
    repeats = [
        Repeat("converged", {"connectivity_R2": 0.99, "cluster_accuracy": 1.0}, 0.994, network=42),
        Repeat("converged", {"connectivity_R2": 0.97, "cluster_accuracy": 0.92}, 0.95, network=7),
        Repeat("data-limited", {"connectivity_R2": 0.3, "cluster_accuracy": 0.2}, 0.26, network=9),
    ]
    r = robustness(repeats, needed=2)
    assert (r.n, r.n_converged, r.n_data_limited, r.robust) == (2, 2, 1, True)
    assert r.R2_mean == pytest.approx(0.98) and r.R2_std == pytest.approx(0.01)
    assert r.R2_cv == pytest.approx(0.01 / 0.98)
    assert r.cluster_mean == pytest.approx(0.96) and r.cluster_std == pytest.approx(0.04)
    assert (r.worst_R2, r.worst_cluster, r.worst_network) == (0.97, 0.92, 7)
    assert r.spread == "stable-robust"
    assert spread([0.95, 0.8, 0.9]) == "stable"  # mean 0.883, CV 7.1 %
    assert spread([0.9, 0.6]) == "unstable"  # mean 0.75
    assert spread([0.99, 0.45]) == "catastrophic"
    assert math.isnan(robustness([], 2).R2_mean) and robustness([], 2).spread == ""
    assert not is_robust(["converged", "data-limited"], 2)  # one counted repeat of two
    assert is_robust(["converged", "data-limited", "converged"], 2)
    assert not is_robust(["converged", "partial-W"], 2)


def _run(search: TreeSearch, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Suggest and complete one at a time; ``results`` by strategy (default GOOD)."""
    configs = []
    for k in range(40):
        config = search.suggest(f"t{k}")
        if config == FINISHED:
            return configs
        assert isinstance(config, dict)
        configs.append(config)
        search.complete(f"t{k}", results.get(config[SEARCH_KEY]["strategy"], GOOD))
    raise AssertionError("the search never finished")


def test_repeats_train_on_new_networks_and_held_out_confirms_the_robust_config() -> None:
    search = _search()
    configs = _run(search, {})
    records = [c[SEARCH_KEY] for c in configs]
    strategies = [r["strategy"] for r in records]
    assert strategies[:2] == ["root", "robustness-test"] and strategies[-3:] == [HELD_OUT] * 3
    assert len(configs) == 3 + 3  # the search budget, then K held-out runs
    # run r of a config trains on network r of its block; the held-out ones on their own networks
    assert [c["simulation"]["seed"] for c in configs[:2]] == [42, instance_seed(0, BLOCK, 1, 42)]
    assert [c["simulation"]["seed"] for c in configs[3:]] == [
        held_out_seed(0, BLOCK, k, 42) for k in range(3)
    ]
    assert [r["network"] for r in records] == [c["simulation"]["seed"] for c in configs]
    assert {r["node"] for r in records[3:]} == {1} and [r["run"] for r in records[3:]] == [0, 1, 2]
    tree = search.trees[BLOCK]
    assert tree.n_runs == 3 and len(tree.nodes[1].runs) == 2  # held-out runs count for no budget or node
    assert tree.held_out.node == 1 and len(tree.held_out.runs) == 3
    assert len({c["training"]["seed"] for c in configs}) == 6  # and each run has its own training seed


def test_no_held_out_without_a_robust_config() -> None:
    search = _search()
    configs = _run(search, {"root": BAD, "exploit": BAD, "scout": BAD, "retry": BAD, "explore": BAD})
    assert HELD_OUT not in {c[SEARCH_KEY]["strategy"] for c in configs}
    assert len(configs) == 3


def test_the_search_waits_for_its_last_run_before_confirming() -> None:
    search = _search(n_iter_block=1, robustness_repeats=1)
    assert search.suggest("t0")[SEARCH_KEY]["strategy"] == "root"
    assert search.suggest("t1") is None  # not FINISHED: the root may become robust
    search.complete("t0", GOOD)
    assert search.suggest("t1")[SEARCH_KEY]["strategy"] == HELD_OUT


def test_a_data_limited_network_counts_neither_way() -> None:
    search = _search(held_out=0, n_iter_block=3)
    seeds = []
    for k, result in enumerate([GOOD, {**BAD, "connectivity_R2": 0.4, "data_limited": True}, GOOD]):
        config = search.suggest(f"t{k}")
        seeds.append(config["simulation"]["seed"])
        assert config[SEARCH_KEY]["node"] == 1  # the root, tested on a third network
        search.complete(f"t{k}", result)
    node = search.trees[BLOCK].nodes[1]
    assert [r.classification for r in node.runs] == ["converged", "data-limited", "converged"]
    assert node.robust and node.mean_score == pytest.approx(0.6 * 0.99 + 0.4 * 0.95)
    assert seeds == [instance_seed(0, BLOCK, i, 42) for i in range(3)]


def test_a_restored_search_continues_identically_through_held_out() -> None:
    search = _search()
    for k in range(4):  # the budget, then the first held-out run
        search.suggest(f"t{k}")
        search.complete(f"t{k}", GOOD)
    twin = _search()
    twin.set_state(copy.deepcopy(search.get_state()))
    for k in range(4, 6):
        a, b = search.suggest(f"t{k}"), twin.suggest(f"t{k}")
        assert a == b and a != FINISHED
        search.complete(f"t{k}", GOOD)
        twin.complete(f"t{k}", GOOD)
    assert search.suggest("t9") == twin.suggest("t9") == FINISHED


def test_adopt_records_a_held_out_run_the_state_missed() -> None:
    search = _search()
    for k in range(3):
        search.suggest(f"t{k}")
        search.complete(f"t{k}", GOOD)
    before = copy.deepcopy(search.get_state())
    config = search.suggest("t3")
    restored = _search()
    restored.set_state(before)
    assert restored.adopt("t3", config, GOOD)
    tree = restored.trees[BLOCK]
    assert tree.held_out.node == 1 and [r.trial_id for r in tree.held_out.runs] == ["t3"]
    assert tree.n_runs == 3


def test_settings_refuse_held_out_without_instances() -> None:
    with pytest.raises(ValueError, match="held_out"):
        _search(instance_key=None)
    with pytest.raises(ValueError, match="instance_key"):
        _search(instance_key="training.seed")


def test_the_ray_searcher_saves_and_restores_held_out(tmp_path: Any) -> None:
    kw = {**SETTINGS, "n_iter_block": 1, "robustness_repeats": 1, "held_out": 2}
    searcher = UCBTreeSearcher(**kw)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", GOOD)
    held = searcher.suggest("t1")
    assert held[SEARCH_KEY]["strategy"] == HELD_OUT
    searcher.save(str(tmp_path / "s.pkl"))
    again = UCBTreeSearcher(**kw)
    again.restore(str(tmp_path / "s.pkl"))
    again.on_trial_complete("t1", GOOD)
    assert again.suggest("t2") == searcher.suggest("t2")
    # a searcher pickled before network instances existed loads with them off
    old = pickle.loads(pickle.dumps(again))
    for name in ("instance_key", "held_out"):
        del old.search.settings.__dict__[name]
    del old.search.trees[BLOCK].__dict__["held_out"]
    revived = pickle.loads(pickle.dumps(old))
    assert revived.settings.instance_key is None and revived.settings.held_out == 0
    assert revived.trees[BLOCK].held_out.node is None


def test_a_trial_on_a_data_limited_network_is_judged_data_limited() -> None:
    from ntune.tune.trainable import judged

    weights, thresholds = {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}, {"connectivity_R2": 0.9}
    low = {"connectivity_R2": 0.5, "cluster_accuracy": 0.5, "status": "ok", "final": True}
    assert judged({**low, "ceiling": 0.8}, weights, thresholds)["classification"] == "data-limited"
    assert judged({**low, "ceiling": 0.95}, weights, thresholds)["classification"] == "partial"
    converged = judged({**low, "connectivity_R2": 0.95, "ceiling": 0.8}, weights, {"connectivity_R2": 0.9})
    assert converged["data_limited"] and converged["classification"] == "converged"
    crashed = judged({**low, "status": "diverged", "ceiling": 0.8}, weights, thresholds)
    assert crashed["classification"] == "failed"  # a diverged run is the config's, whatever the data
    assert judged({**low}, weights, thresholds)["data_limited"] is False  # no ceiling known
