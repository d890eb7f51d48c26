"""The space-filling start: scouts are a Latin hypercube over the numeric parameters, children of the root."""

from __future__ import annotations

import math
from typing import Any

import pytest

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


def test_scouts_form_a_latin_hypercube_of_root_children() -> None:
    """With the root still running, the next n suggestions are scouts, one per stratum of every numeric key."""
    n = 3
    searcher = _searcher(n)
    configs = [searcher.suggest(str(i)) for i in range(n + 2)]
    records = [c[SEARCH_KEY] for c in configs]
    assert [r["strategy"] for r in records[: n + 1]] == ["root"] + ["scout"] * n
    assert records[n + 1]["strategy"] != "scout"
    assert all(r["parent"] == records[0]["node"] for r in records[1 : n + 1])
    scouts = configs[1 : n + 1]
    for key in ("learning_rate_W_start", "coeff_W_L1"):
        strata = sorted(int(_quantile(f"training.{key}", c["training"][key]) * n) for c in scouts)
        assert strata == list(range(n)), key
    assert all(c["training"]["optimizer"] == "adam" for c in scouts)  # choices keep the root's value
    # the cost is sliced over [root, high] = [15, 60]: stratum j of n is [15 + 45 j / n, 15 + 45 (j + 1) / n]
    loops = sorted(c["training"]["data_augmentation_loop"] for c in scouts)
    for j, v in enumerate(loops):  # within its stratum, up to the integer rounding
        assert 15 + 45 * j / n - 0.5 <= v <= 15 + 45 * (j + 1) / n + 0.5, loops


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


def test_lengthening_a_nearly_root_comes_before_the_second_scout() -> None:
    """The quickstart at ff 1.0 without noise: the root meets R2 only, so its next child trains longer."""
    searcher = _searcher(2)
    searcher.suggest("root")
    searcher.suggest("scout 1")
    searcher.on_trial_complete("root", NEARLY_W)
    config = searcher.suggest("next")
    assert (config[SEARCH_KEY]["strategy"], config[SEARCH_KEY]["parent"]) == ("exploit", 1)
    assert config[SEARCH_KEY]["mutation"].startswith("data_augmentation_loop: 15 -> ")
    assert config["training"]["data_augmentation_loop"] >= 2.5 * 15  # LONGER_RANGE: x 2.5-4
    assert config["training"]["learning_rate_W_start"] == BASE["training"]["learning_rate_W_start"]


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
