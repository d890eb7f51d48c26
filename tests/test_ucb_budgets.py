"""UCBTreeSearcher(block_budgets=...): a block named there gets its own number of trials."""

from __future__ import annotations

from collections import Counter

import pytest
from ray.tune.search import Searcher

from searchers.ucb import SEARCH_KEY, UCBTreeSearcher

SPACE = {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
BLOCKS = {"simulation.connectivity_filling_factor": [1.0, 0.5]}


def test_block_budgets_cap_a_block() -> None:
    searcher = UCBTreeSearcher(space=SPACE, blocks=BLOCKS, n_iter_block=3, block_budgets={0.5: 1})
    blocks: Counter = Counter()
    for k in range(10):
        config = searcher.suggest(f"t{k}")
        if config == Searcher.FINISHED:
            break
        blocks[config[SEARCH_KEY]["block"]] += 1
        searcher.on_trial_complete(f"t{k}", {"connectivity_R2": 0.5, "cluster_accuracy": 0.5})
    assert blocks == {"connectivity_filling_factor=1.0": 3, "connectivity_filling_factor=0.5": 1}
    assert searcher.budget("connectivity_filling_factor=0.5") == 1


@pytest.mark.parametrize("budgets", [{0.3: 1}, {0.5: -1}, {0.5: 1.5}])
def test_bad_block_budgets_are_refused(budgets: dict) -> None:
    with pytest.raises(ValueError, match="block_budgets"):
        UCBTreeSearcher(space=SPACE, blocks=BLOCKS, block_budgets=budgets)


def test_block_overrides_set_a_block_root_and_base() -> None:
    overrides = {1.0: {"training.learning_rate_W_start": 2e-2, "training.n_epochs": 3}}
    base = {"training": {"learning_rate_W_start": 1e-3, "n_epochs": 1}}
    searcher = UCBTreeSearcher(
        space=SPACE, blocks=BLOCKS, base_config=base, block_overrides=overrides, seed=3
    )
    roots = {}
    for k in range(2):
        config = searcher.suggest(f"t{k}")
        roots[config[SEARCH_KEY]["block"]] = config["training"]
    assert roots["connectivity_filling_factor=1.0"] == {
        "learning_rate_W_start": 2e-2,
        "n_epochs": 3,
        "seed": roots["connectivity_filling_factor=1.0"]["seed"],
    }
    assert roots["connectivity_filling_factor=0.5"]["learning_rate_W_start"] == 1e-3
    assert roots["connectivity_filling_factor=0.5"]["n_epochs"] == 1
    assert searcher.base_config == base  # the shared base is not changed


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({0.3: {"training.n_epochs": 2}}, "block_overrides keys"),
        (
            {1.0: {"training.learning_rate_W_start": 1.0}},
            "block_overrides[1.0].training.learning_rate_W_start",
        ),
        ({1.0: {"simulation.connectivity_filling_factor": 0.5}}, "keys other than the block key"),
    ],
)
def test_bad_block_overrides_name_the_field(overrides: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        UCBTreeSearcher(space=SPACE, blocks=BLOCKS, block_overrides=overrides)
    assert needle in str(err.value)
