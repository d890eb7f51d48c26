"""The one objective: score and classification by metric name, defaults, failed statuses."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from searchers.objective import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, FAILED_STATUSES, classify, score


def test_defaults() -> None:
    assert DEFAULT_WEIGHTS == {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
    assert DEFAULT_THRESHOLDS == {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}


def test_score_clips_and_zeroes_failures() -> None:
    assert score({"connectivity_R2": 0.5, "cluster_accuracy": 1.2}) == 0.6 * 0.5 + 0.4 * 1.0
    assert score({"connectivity_R2": -0.3, "cluster_accuracy": math.nan}) == 0.0
    assert score({"connectivity_R2": 0.5}, {"connectivity_R2": 1.0}) == 0.5
    for status in FAILED_STATUSES:
        assert score({"connectivity_R2": 1.0, "cluster_accuracy": 1.0, "status": status}) == 0.0
    assert score(None) == 0.0


@pytest.mark.parametrize(
    ("r2", "cluster", "expected"),
    [
        (0.95, 0.95, "converged"),
        (0.95, 0.5, "partial-W"),
        (0.5, 0.95, "partial-E"),
        (0.5, 0.5, "partial"),
        (0.05, 0.05, "failed"),
        (math.nan, 0.05, "failed"),
        (0.05, 0.5, "partial"),
        (0.9, 0.95, "partial-E"),  # thresholds are strict
        (math.nan, 0.95, "partial-E"),
    ],
)
def test_classify_reads_the_metric_names_not_their_order(r2: float, cluster: float, expected: str) -> None:
    metrics = {"connectivity_R2": r2, "cluster_accuracy": cluster}
    assert classify(metrics, {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}) == expected
    assert classify(metrics, {"cluster_accuracy": 0.9, "connectivity_R2": 0.9}) == expected


def test_classify_one_objective_and_failed_status() -> None:
    one = {"connectivity_R2": 0.9}
    assert classify({"connectivity_R2": 0.95}, one) == "converged"
    assert classify({"connectivity_R2": 0.5}, one) == "partial"
    assert classify({"connectivity_R2": 0.05}, one) == "failed"
    assert classify({"connectivity_R2": 0.95, "status": "diverged"}, one) == "failed"


def test_trainer_and_searcher_share_the_objective() -> None:
    import ntune.learn.metrics
    import searchers
    import searchers.tree

    assert ntune.learn.metrics.classify is classify and ntune.learn.metrics.score is score
    assert searchers.classify is classify
    assert not hasattr(searchers.tree, "classify")


def test_status_export_report_import_no_ray(tmp_path: Path) -> None:
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from typer.testing import CliRunner
from study_fakes import make_experiment
from ntune.cli.app import app
exp = Path({str(tmp_path / "exp")!r})
make_experiment(exp)
for args in (["status", str(exp)], ["export", str(exp)], ["report", str(exp)]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
assert (exp / "report.md").is_file() and (exp / "best").is_dir()
print("ray" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_typed_records_round_trip() -> None:
    from searchers.record import SearchRecord
    from searchers.testing import conformance_kwargs
    from searchers.ucb import SEARCH_KEY, UCBTreeSearcher

    searcher = UCBTreeSearcher(**conformance_kwargs())
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    records = [SearchRecord.from_dict(c[SEARCH_KEY]) for c in (first, second)]
    assert [(r.id, r.parent_id, r.node, r.strategy) for r in records] == [
        (1, None, 1, "root"),
        (2, None, 1, "root"),
    ]
    assert records[0].to_dict() == first[SEARCH_KEY]
    assert searcher.ucb_scores(records[1].block).startswith("Node 2: UCB=")


def test_trial_record_is_the_jsonl_line() -> None:
    from ntune.study.records import TrialRecord, make_record

    info = {
        "block_key": "b.v",
        "study": {
            "space": {},
            "objective": {"weights": {"connectivity_R2": 1.0}, "thresholds": {"connectivity_R2": 0.9}},
        },
    }
    rec = make_record(info, "t", {"b": {"v": 1}}, {"final": True, "connectivity_R2": 0.95})
    assert list(rec)[:3] == ["event", "trial_id", "time"]
    assert (rec["block"], rec["score"], rec["classification"]) == ("v=1", 0.95, "converged")
    assert TrialRecord.from_dict({**rec, "iter": 3}).to_dict() == rec
