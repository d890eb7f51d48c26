"""Lineage early stopping under a real Tuner: the searcher's tree decides, Tune stops, the run is recorded
as stopped with its curve; the same after ``Tuner.restore``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from study_fakes import write_study

from ntune.study.records import read_trials
from ntune.tune.early_stop import LineageScheduler
from searchers.early_stop import NEVER_STOPPED, LineageRule
from searchers.testing import BASE, CURVE_POINTS, InterruptAfter, curve_quality, curve_trainable
from searchers.tree import Tree
from searchers.ucb import UCBTreeSearcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RULE = LineageRule(min_fraction=0.5, margin=0.05, patience=2)
N_ITER = 8
LR_W = "training.learning_rate_W_start"


def _tuner(storage: Path, marker: Path) -> tune.Tuner:
    searcher = UCBTreeSearcher(
        space={LR_W: {"type": "loguniform", "low": 1e-5, "high": 1e-1}},
        base_config=BASE,
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        n_iter_block=N_ITER,
        robustness_repeats=2,
        seed=3,
    )
    return tune.Tuner(
        curve_trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=1),
            scheduler=LineageScheduler(searcher, RULE),
            num_samples=-1,
        ),
        run_config=tune.RunConfig(
            name="lineage", storage_path=str(storage), callbacks=[InterruptAfter(str(marker), 4)], verbose=0
        ),
    )


def _expected(quality: float) -> list[tuple[float, float]]:
    return [(k / CURVE_POINTS, k / CURVE_POINTS * quality) for k in range(1, CURVE_POINTS + 1)]


def _flat(curve: list[tuple[float, float]]) -> list[float]:
    return [v for point in curve for v in point]


def _check(tree: Tree) -> int:
    """Every run's curve and class against the closed form; returns how many runs were stopped."""
    stopped = 0
    for node in tree.nodes.values():
        quality = curve_quality({"training": {"learning_rate_W_start": node.params[LR_W]}})
        full = _expected(quality)
        for k, run in enumerate(node.runs):
            child_first_run = node.parent is not None and k == 0
            parent_best = (
                max(tree.nodes[node.parent].runs, key=lambda r: r.score) if child_first_run else None
            )
            at = RULE.stop_at(full, parent_best.curve) if parent_best is not None else None
            if at is None:
                assert run.classification in ("converged", "partial") and run.status == "ok"
                assert _flat(run.curve) == pytest.approx(_flat(full))
                continue
            stopped += 1
            assert (run.status, run.classification) == ("stopped", "stopped")
            assert run.metrics["stopped_at"] == at
            assert _flat(run.curve) == pytest.approx(
                _flat([p for p in full if p[0] <= at])
            )  # its reports up to the stop
            assert run.score == pytest.approx(at * quality)  # scored as at its last report
    return stopped


def test_a_lagging_child_is_stopped_and_recorded_as_stopped_also_after_restore(
    ray_session: None, tmp_path: Path
) -> None:
    marker = tmp_path / "interrupt"
    marker.touch()
    with pytest.raises(Exception, match="simulated interruption"):
        _tuner(tmp_path, marker).fit()
    marker.unlink()
    experiment = tmp_path / "lineage"
    tuner = tune.Tuner.restore(str(experiment), trainable=curve_trainable)
    results = tuner.fit()
    searcher = tuner._local_tuner._tune_config.search_alg.searcher  # the restored UCBTreeSearcher
    scheduler = tuner._local_tuner._tune_config.scheduler
    assert scheduler.searcher is searcher  # one object after unpickling: the scheduler asks the restored tree
    tree = searcher.trees["connectivity_filling_factor=1.0"]
    assert tree.n_runs == N_ITER and tree.n_pending == 0
    assert _check(tree) >= 2
    stopped = [r.metrics for r in results if r.metrics.get("stopped_at") is not None]
    assert stopped and all(m["progress"] == m["stopped_at"] < 1 and not m["final"] for m in stopped)
    assert all(math.isclose(m["stopped_at"], 0.8) for m in stopped)  # patience 2 from 0.5: at 0.6 and 0.8


def test_ntune_run_with_early_stop_journals_each_stopped_trial(tmp_path: Path, ray_session: None) -> None:
    """The real trainer through ``ntune run``: with the most eager rule (a child behind its parent once,
    by any amount) a child is stopped; its record, its analysis entry and its tree run say so."""
    import ray

    study = write_study(
        tmp_path / "eager.yaml",
        "eager",
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        n_iter_block=8,
        scouts=0,
        robustness_repeats=1,  # no repeats: after the root every trial is a child
        max_concurrent_trials=1,  # every child's parent has finished, with its curve
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        early_stop={"min_fraction": 0.0, "margin": 0.0, "patience": 1},
    )
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    cmd = [sys.executable, "-m", "ntune.cli.app", "run", str(study)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    exp_dir = tmp_path / "results" / "eager"
    records, _ = read_trials(exp_dir)
    stopped = [r for r in records if r["status"] == "stopped"]
    assert len(records) == 8 and stopped, [(r["status"], r["search"]["strategy"]) for r in records]
    for rec in stopped:
        assert rec["classification"] == "stopped" and 0 < rec["stopped_at"] < 1
        assert rec["search"]["strategy"] not in NEVER_STOPPED and rec["search"]["parent"] is not None
    analysis = (exp_dir / "analysis.md").read_text()
    assert analysis.count("stopped at ") >= len(stopped)
    assert all(r["status"] == "ok" for r in records if r["search"]["strategy"] in NEVER_STOPPED)
