"""The space-filling start: scouts are a Latin hypercube over the numeric parameters, children of the root."""

from __future__ import annotations

import math
from typing import Any

import pytest

from searchers.dotted import get_dotted
from searchers.record import SEARCH_KEY
from searchers.space import parse_domain
from searchers.ucb import UCBTreeSearcher

SPACE = {
    "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
    "training.data_augmentation_loop": {"type": "int", "low": 10, "high": 60},
    "training.optimizer": {"type": "choice", "values": ["adam", "sgd"]},
}
BASE = {
    "training": {
        "learning_rate_W_start": 1e-3,
        "coeff_W_L1": 1e-5,
        "data_augmentation_loop": 15,
        "optimizer": "adam",
    }
}
CONVERGED = {"connectivity_R2": 0.99, "cluster_accuracy": 0.99, "status": "ok"}
POOR = {"connectivity_R2": 0.5, "cluster_accuracy": 0.5, "status": "ok"}
NEARLY_W = {"connectivity_R2": 0.95, "cluster_accuracy": 0.75, "status": "ok"}  # partial-W


def _searcher(n_scouts: int, **kwargs: Any) -> UCBTreeSearcher:
    return UCBTreeSearcher(space=SPACE, base_config=BASE, n_scouts=n_scouts, n_iter_block=8, seed=3, **kwargs)


def _quantile(key: str, value: float) -> float:
    spec = SPACE[key]
    if spec["type"] == "loguniform":
        return (math.log(value) - math.log(spec["low"])) / (math.log(spec["high"]) - math.log(spec["low"]))
    return (value - spec["low"]) / (spec["high"] - spec["low"])


def test_at_quantile_closed_forms() -> None:
    log = parse_domain("x", {"type": "loguniform", "low": 1e-4, "high": 1e-1})
    assert log.at_quantile(0.5) == pytest.approx(10**-2.5, rel=1e-3)
    assert log.at_quantile(0.0) == pytest.approx(1e-4) and log.at_quantile(1.0) == pytest.approx(1e-1)
    assert parse_domain("n", {"type": "int", "low": 10, "high": 60}).at_quantile(0.5) == 35
    assert parse_domain("u", {"type": "uniform", "low": 0, "high": 2}).at_quantile(0.25) == 0.5
    choice = parse_domain("c", {"type": "choice", "values": ["a", "b", "c"]})
    assert [choice.at_quantile(q) for q in (0.0, 0.34, 0.99, 1.0)] == ["a", "b", "c", "c"]


def _strata(configs: list[dict[str, Any]], key: str, n: int) -> list[int]:
    return sorted(int(_quantile(key, get_dotted(c, key)) * n) for c in configs)


def test_first_scout_is_the_root_trained_longer() -> None:
    """Scout 1 changes only the cost key, by LONGER_RANGE (x 2.5-4): the tree's first move from a nearly root."""
    searcher = _searcher(2)
    root, first = searcher.suggest("root"), searcher.suggest("scout 1")
    record = first[SEARCH_KEY]
    assert (record["strategy"], record["parent"]) == ("scout", root[SEARCH_KEY]["node"])
    loops = first["training"]["data_augmentation_loop"]
    assert 37 <= loops <= 60 and record["mutation"] == f"scout 1/2: data_augmentation_loop: 15 -> {loops}"
    assert {k: first["training"][k] for k in BASE["training"]} == {
        **BASE["training"],
        "data_augmentation_loop": loops,
    }


def test_other_scouts_form_a_latin_hypercube_of_root_children() -> None:
    """With the root still running, scouts 2..n are one per stratum (of n - 1) of every numeric key."""
    n = 4
    searcher = _searcher(n)
    configs = [searcher.suggest(str(i)) for i in range(n + 2)]
    records = [c[SEARCH_KEY] for c in configs]
    assert [r["strategy"] for r in records[: n + 1]] == ["root"] + ["scout"] * n
    assert records[n + 1]["strategy"] != "scout"
    assert all(r["parent"] == records[0]["node"] for r in records[1 : n + 1])
    scouts = configs[2 : n + 1]
    for key in ("training.learning_rate_W_start", "training.coeff_W_L1"):
        assert _strata(scouts, key, n - 1) == list(range(n - 1)), key
    assert all(c["training"]["optimizer"] == "adam" for c in scouts)  # choices keep the root's value
    # the cost is sliced over [root, high] = [15, 60]: stratum j of m is [15 + 45 j / m, 15 + 45 (j + 1) / m]
    loops = sorted(c["training"]["data_augmentation_loop"] for c in scouts)
    for j, v in enumerate(loops):  # within its stratum, up to the integer rounding
        assert 15 + 45 * j / (n - 1) - 0.5 <= v <= 15 + 45 * (j + 1) / (n - 1) + 0.5, loops


def test_without_a_cost_key_every_scout_is_in_the_latin_hypercube() -> None:
    space = {k: v for k, v in SPACE.items() if k != "training.data_augmentation_loop"}
    n = 3
    searcher = UCBTreeSearcher(space=space, base_config=BASE, n_scouts=n, n_iter_block=8, seed=3)
    configs = [searcher.suggest(str(i)) for i in range(n + 1)]
    assert [c[SEARCH_KEY]["strategy"] for c in configs] == ["root"] + ["scout"] * n
    for key in ("training.learning_rate_W_start", "training.coeff_W_L1"):
        assert _strata(configs[1:], key, n) == list(range(n)), key


def test_a_scout_never_costs_less_than_the_root() -> None:
    """A root at the cost key's upper bound keeps it in every scout; one at 50 gives scouts in [50, 60]."""
    for root_loops, allowed in ((60, {60}), (50, set(range(50, 61)))):
        base = {"training": {**BASE["training"], "data_augmentation_loop": root_loops}}
        searcher = UCBTreeSearcher(space=SPACE, base_config=base, n_scouts=4, n_iter_block=8, seed=5)
        configs = [searcher.suggest(str(i)) for i in range(5)]
        assert [c[SEARCH_KEY]["strategy"] for c in configs] == ["root"] + ["scout"] * 4
        assert {c["training"]["data_augmentation_loop"] for c in configs[1:]} <= allowed


def test_quantile_inverts_at_quantile() -> None:
    log = parse_domain("x", {"type": "loguniform", "low": 1e-4, "high": 1e-1, "allow_zero": True})
    assert log.quantile(10**-2.5) == pytest.approx(0.5) and log.quantile(0.0) == 0.0
    assert parse_domain("n", {"type": "int", "low": 10, "high": 60}).quantile(15) == pytest.approx(0.1)
    assert parse_domain("n", {"type": "int", "low": 10, "high": 60}).quantile(99) == 1.0


def test_robustness_test_of_a_poor_roots_scout_comes_before_the_next_scout() -> None:
    searcher = _searcher(3, robustness_repeats=2)
    searcher.suggest("root")
    searcher.suggest("scout 1")
    searcher.on_trial_complete("root", POOR)
    assert searcher.suggest("scout 2")[SEARCH_KEY]["strategy"] == "scout"  # a poor start: keep scattering
    searcher.on_trial_complete("scout 1", CONVERGED)
    assert searcher.suggest("next")[SEARCH_KEY]["strategy"] == "robustness-test"


@pytest.mark.parametrize(
    "first", [CONVERGED, NEARLY_W, {"connectivity_R2": 0.5, "cluster_accuracy": 0.99, "status": "ok"}]
)
def test_scouts_stop_once_a_run_met_an_objective(first: dict[str, Any]) -> None:
    """Converged, partial-W or partial-E: the tree refines from that run instead of scattering more."""
    searcher = _searcher(3, robustness_repeats=1)
    searcher.suggest("root")
    assert searcher.suggest("scout 1")[SEARCH_KEY]["strategy"] == "scout"  # the root still running: blind
    searcher.on_trial_complete("root", first)
    records = [searcher.suggest(str(i))[SEARCH_KEY] for i in range(3)]
    assert all(r["strategy"] != "scout" for r in records)


def test_a_nearly_root_replicates_its_lengthening_in_flight() -> None:
    """The quickstart at ff 1.0 without noise: the root meets R2 only while its lengthening runs; the next
    trial is a second seed of that lengthening (its robustness test), not another length or a scout."""
    searcher = _searcher(2, robustness_repeats=2)
    searcher.suggest("root")
    longer = searcher.suggest("scout 1")
    searcher.on_trial_complete("root", NEARLY_W)
    again = searcher.suggest("next")
    assert again[SEARCH_KEY]["strategy"] == "replicate"
    assert again[SEARCH_KEY]["node"] == longer[SEARCH_KEY]["node"]
    assert {k: again["training"][k] for k in BASE["training"]} == {
        k: longer["training"][k] for k in BASE["training"]
    }
    assert again["training"]["seed"] != longer["training"]["seed"]
    searcher.on_trial_complete("scout 1", CONVERGED)
    searcher.on_trial_complete("next", CONVERGED)
    tree = searcher.trees[longer[SEARCH_KEY]["block"]]
    assert tree.nodes[longer[SEARCH_KEY]["node"]].robust
    assert searcher.suggest("after")[SEARCH_KEY]["strategy"] not in ("robustness-test", "replicate", "scout")


def test_no_replicate_once_a_run_converged_or_without_repeats() -> None:
    """A converged root gets its own robustness test; the lengthening in flight is not replicated."""
    searcher = _searcher(2, robustness_repeats=2)
    searcher.suggest("root")
    longer = searcher.suggest("scout 1")[SEARCH_KEY]["node"]
    searcher.on_trial_complete("root", CONVERGED)
    test = searcher.suggest("root again")[SEARCH_KEY]
    assert (test["strategy"], test["node"]) == ("robustness-test", 1)
    assert searcher.suggest("next")[SEARCH_KEY]["node"] != longer
    single = _searcher(2, robustness_repeats=1)
    single.suggest("root")
    longer = single.suggest("scout 1")[SEARCH_KEY]["node"]
    single.on_trial_complete("root", NEARLY_W)
    record = single.suggest("next")[SEARCH_KEY]
    assert record["node"] != longer and record["strategy"] == "exploit"


def test_no_scouts_by_default_and_validation() -> None:
    searcher = UCBTreeSearcher(space=SPACE, base_config=BASE, n_iter_block=8, seed=3)
    searcher.suggest("root")
    searcher.on_trial_complete("root", POOR)
    assert searcher.suggest("next")[SEARCH_KEY]["strategy"] == "exploit"
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="n_scouts"):
            _searcher(bad)  # type: ignore[arg-type]


def test_restored_searcher_scouts_identically() -> None:
    """State saved between two scouts: the restored searcher suggests exactly what the original does."""
    a = _searcher(3)
    for i in range(2):
        a.suggest(str(i))
    a.on_trial_complete("0", POOR)
    b = _searcher(3)
    b.set_state(a.get_state())
    for i in range(2, 6):
        ca, cb = a.suggest(str(i)), b.suggest(str(i))
        assert ca == cb
        a.on_trial_complete(str(i), POOR)
        b.on_trial_complete(str(i), POOR)
