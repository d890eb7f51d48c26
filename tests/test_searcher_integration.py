"""UCBTreeSearcher under a real Tuner: 2 blocks x 6 trials, interrupted, resumed with Tuner.restore."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from searchers.testing import InterruptAfter, conformance_kwargs, synthetic_trainable
from searchers.ucb import SEARCH_KEY, UCBTreeSearcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_ITER = 6


def _searcher() -> UCBTreeSearcher:
    return UCBTreeSearcher(**{**conformance_kwargs(), "n_iter_block": N_ITER})


def _tuner(storage: Path, marker: Path) -> tune.Tuner:
    return tune.Tuner(
        synthetic_trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(_searcher(), max_concurrent=2), num_samples=-1
        ),
        run_config=tune.RunConfig(
            name="ucb", storage_path=str(storage), callbacks=[InterruptAfter(str(marker), 5)], verbose=0
        ),
    )


def _check_trees(searcher: UCBTreeSearcher, trial_ids: set[str]) -> None:
    completed: list[str] = []
    for tree in searcher.trees.values():
        assert tree.n_runs == N_ITER and tree.n_pending == 0
        for node in tree.nodes.values():
            assert node.parent is None or node.parent in tree.nodes
            completed += [r.trial_id for r in node.runs]
    assert len(completed) == 2 * N_ITER and set(completed) == trial_ids


def test_interrupted_run_resumes_with_tuner_restore(ray_session: None, tmp_path: Path) -> None:
    marker = tmp_path / "interrupt"
    marker.write_text("")
    with pytest.raises(Exception, match="simulated interruption"):
        _tuner(tmp_path, marker).fit()
    marker.unlink()
    experiment = tmp_path / "ucb"
    interrupted = _searcher()
    interrupted.restore_from_dir(str(experiment))
    assert sum(t.n_runs for t in interrupted.trees.values()) < 2 * N_ITER  # checkpointed state lags
    assert tune.Tuner.can_restore(str(experiment))
    results = tune.Tuner.restore(str(experiment), trainable=synthetic_trainable).fit()
    frame = results.get_dataframe()
    assert len(results) == 2 * N_ITER and not results.errors
    assert frame["trial_id"].is_unique
    assert Counter(frame[f"config/{SEARCH_KEY}/block"]) == {
        "connectivity_filling_factor=1.0": N_ITER,
        "connectivity_filling_factor=0.25": N_ITER,
    }
    restored = _searcher()
    restored.restore_from_dir(str(experiment))
    _check_trees(restored, set(frame["trial_id"]))
