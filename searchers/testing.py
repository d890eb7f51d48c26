"""Conformance tests every searcher variant passes (in the style of Optuna's ``pytest_samplers``).

Subclass ``SearcherConformance`` in a test module and override ``make_searcher`` (and, if the
variant's constructor differs, ``bad_values``)::

    class TestPuct(SearcherConformance):
        def make_searcher(self, **overrides):
            return UCBTreeSearcher(**{**conformance_kwargs(), "formula": "puct", **overrides})

No Ray instance is started: the tests drive ``suggest``/``on_trial_complete`` directly.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

import pytest
from ray.tune import Callback
from ray.tune.search import Searcher

from searchers.objective import score
from searchers.ucb import SEARCH_KEY, UCBTreeSearcher, get_dotted

SPACE: dict[str, dict[str, Any]] = {
    "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "training.learning_rate_embedding_start": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
    "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
    "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]},
    "training.batch_size": {"type": "int", "low": 1, "high": 16},
}
BASE = {
    "simulation": {"connectivity_filling_factor": 1.0},
    "training": {"learning_rate_W_start": 1e-3, "seed": 0},
}


def conformance_kwargs() -> dict[str, Any]:
    """Small constructor arguments shared by the suite: 2 blocks x 8 runs."""
    return {
        "space": SPACE,
        "base_config": BASE,
        "blocks": {"simulation.connectivity_filling_factor": [1.0, 0.25]},
        "n_iter_block": 8,
        "seed": 3,
    }


def synthetic_result(config: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """A deterministic dual-objective result: R2 peaks at lr_W ~ 3e-3, cluster at lr_emb ~ 1e-3."""
    lr_w = get_dotted(config, "training.learning_rate_W_start", 1e-3)
    lr_emb = get_dotted(config, "training.learning_rate_embedding_start", 1e-3)
    noise = random.Random(f"{trial_id}-{get_dotted(config, 'training.seed', 0)}").gauss(0, 0.02)
    r2 = math.exp(-((math.log10(lr_w) + 2.5) ** 2)) + noise
    cluster = math.exp(-((math.log10(lr_emb) + 3.0) ** 2))
    return {"connectivity_R2": r2, "cluster_accuracy": cluster, "status": "ok", "zero_band": 0.0}


class SearcherConformance:
    """Behaviour any UCB-tree-compatible searcher must show; subclasses override ``make_searcher``."""

    bad_values: tuple[tuple[str, Any], ...] = (
        ("n_iter_block", 0),
        ("ucb_c", -1.0),
        ("formula", "greedy"),
        ("robustness_repeats", 0),
        ("retry_failed", -1),
        ("mode", "maximize"),
        ("blocks", {"a.b": [1], "c.d": [2]}),
        ("blocks", {"a.b": []}),
        ("space", {"x": {"type": "loguniform", "low": 1.0, "high": 0.1}}),
        ("space", {"x": {"type": "choice", "values": []}}),
        ("space", {"x": {"type": "normal", "low": 0, "high": 1}}),
        ("space", {"x": {"type": "uniform", "low": 0, "high": 1, "default": 2}}),
    )

    def make_searcher(self, **overrides: Any) -> Any:
        """The searcher under test (a Searcher with ``trees``, ``space`` and ``outcomes``), built from
        ``conformance_kwargs()`` updated with ``overrides``."""
        return UCBTreeSearcher(**{**conformance_kwargs(), **overrides})

    def drive(self, searcher: Any, n: int, *, start: int = 0, finish: bool = True) -> list[dict[str, Any]]:
        """``n`` suggest/complete rounds (results from ``synthetic_result``); returns the search records."""
        records = []
        for i in range(start, start + n):
            config = searcher.suggest(f"t{i}")
            assert isinstance(config, dict), f"suggestion {i} was {config!r}"
            records.append(dict(config[SEARCH_KEY]))
            if finish:
                searcher.on_trial_complete(f"t{i}", synthetic_result(config, f"t{i}"))
        return records

    def test_bad_values_raise_value_error_naming_the_argument(self) -> None:
        for name, value in self.bad_values:
            with pytest.raises(ValueError) as info:
                self.make_searcher(**{name: value})
            message = str(info.value)
            assert name in message or "space[" in message, (name, message)

    def test_suggestion_is_complete_config_with_search_record(self) -> None:
        config = self.make_searcher().suggest("t0")
        record = config[SEARCH_KEY]
        assert set(record) >= {
            "block",
            "block_value",
            "node",
            "parent",
            "strategy",
            "mutation",
            "run",
            "seed",
        }
        assert record["strategy"] == "root" and record["mutation"] == "" and record["parent"] is None
        assert config["training"]["seed"] == record["seed"]
        assert config["simulation"]["connectivity_filling_factor"] == record["block_value"]
        assert record["block"] == f"connectivity_filling_factor={record['block_value']}"

    def test_duplicate_and_unknown_ids_never_raise(self) -> None:
        searcher = self.make_searcher()
        config = searcher.suggest("t0")
        searcher.on_trial_complete("t0", synthetic_result(config, "t0"))
        searcher.on_trial_complete("t0", synthetic_result(config, "t0"))
        searcher.on_trial_complete("never-suggested", {"connectivity_R2": 1.0})
        runs = sum(len(n.runs) for t in searcher.trees.values() for n in t.nodes.values())
        assert runs == 1
        assert [o["kind"] for o in searcher.outcomes] == ["duplicate", "unknown"]

    def test_error_missing_and_nan_results_score_zero(self) -> None:
        searcher = self.make_searcher()
        results = [None, {"connectivity_R2": math.nan, "cluster_accuracy": math.nan}, {"status": "diverged"}]
        for i, result in enumerate([*results, {"connectivity_R2": 0.95, "cluster_accuracy": 0.95}]):
            searcher.suggest(f"t{i}")
            searcher.on_trial_complete(f"t{i}", result, error=(i == 0))
        runs = {r.trial_id: r for t in searcher.trees.values() for n in t.nodes.values() for r in n.runs}
        assert [runs[f"t{i}"].score for i in range(3)] == [0.0, 0.0, 0.0]
        assert runs["t0"].status == "error" and runs["t2"].classification == "failed"
        assert runs["t3"].classification == "converged" and runs["t3"].score == pytest.approx(0.95)

    def test_same_seed_same_sequence(self) -> None:
        assert self.drive(self.make_searcher(), 12) == self.drive(self.make_searcher(), 12)
        assert self.drive(self.make_searcher(), 12) != self.drive(self.make_searcher(seed=4), 12)

    def test_save_restore_with_unfinished_trials_continues_exactly(self, tmp_path: os.PathLike) -> None:
        original = self.make_searcher()
        self.drive(original, 5)
        pending = [original.suggest("p0"), original.suggest("p1")]
        path = os.path.join(tmp_path, "state.pkl")
        original.save(path)
        restored = self.make_searcher()
        restored.restore(path)
        for searcher in (original, restored):
            for i, config in enumerate(pending):
                searcher.on_trial_complete(f"p{i}", synthetic_result(config, f"p{i}"))
        assert self.drive(restored, 6, start=5) == self.drive(original, 6, start=5)
        assert restored.get_state()["rng"] == original.get_state()["rng"]

    def test_budget_then_finished_and_none_only_while_live(self) -> None:
        searcher = self.make_searcher()
        searcher.set_max_concurrency(1)
        first = searcher.suggest("a")
        assert searcher.suggest("b") is None
        searcher.on_trial_complete("a", synthetic_result(first, "a"))
        records = self.drive(searcher, 15, start=1)
        assert searcher.suggest("last") == Searcher.FINISHED
        per_block = {label: t.n_runs for label, t in searcher.trees.items()}
        assert per_block == {label: 8 for label in searcher.trees} and len(records) == 15

    def test_every_child_changes_one_parameter_in_range_and_is_new(self) -> None:
        searcher = self.make_searcher()
        self.drive(searcher, 16)
        for tree in searcher.trees.values():
            keys = set()
            for node in tree.nodes.values():
                key = tuple(sorted((k, repr(v)) for k, v in node.params.items()))
                assert key not in keys
                keys.add(key)
                for name, value in node.params.items():
                    assert searcher.space[name].contains(value), (name, value)
                if node.parent is not None and node.strategy != "transfer":
                    parent = tree.nodes[node.parent].params
                    assert sum(parent[k] != v for k, v in node.params.items()) == 1, node.mutation


def synthetic_trainable(config: dict[str, Any]) -> None:
    """A cheap Tune function trainable (importable by Ray workers): one report of ``synthetic_result``."""
    from ray import tune

    time.sleep(0.05)
    result = synthetic_result(config, str(config[SEARCH_KEY]["seed"]))
    result["score"] = score(
        result, {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
    )  # Tune checks the metric
    tune.report(result)


CURVE_POINTS = 5  # reports of ``curve_trainable``, at progress 0.2, 0.4, ..., 1.0


def curve_quality(config: dict[str, Any]) -> float:
    """The final R2 and cluster accuracy of ``curve_trainable``: 1 at lr_W = 1e-3 (the base config),
    exp(-(log10(lr_W / 1e-3))^2) elsewhere."""
    lr_w = get_dotted(config, "training.learning_rate_W_start", 1e-3)
    return math.exp(-(math.log10(lr_w / 1e-3) ** 2))


def curve_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable with a learning curve: at progress p = k / CURVE_POINTS it reports
    R2 = cluster accuracy = p x :func:`curve_quality`, score the same, ``final`` on the last report."""
    from ray import tune

    quality = curve_quality(config)
    for k in range(1, CURVE_POINTS + 1):
        time.sleep(0.05)
        progress = k / CURVE_POINTS
        value = progress * quality
        final = k == CURVE_POINTS
        tune.report(
            {
                "progress": progress,
                "connectivity_R2": value,
                "cluster_accuracy": value,
                "score": value,
                "status": "ok",
                "final": final,
            }
        )


class InterruptAfter(Callback):
    """A crash of the driver: raise once ``count`` trials completed while the ``marker`` file exists."""

    def __init__(self, marker: str, count: int) -> None:
        self.marker, self.count = marker, count

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        done = sum(t.status == "TERMINATED" for t in trials)
        if os.path.exists(self.marker) and done >= self.count:
            raise RuntimeError("simulated interruption")
