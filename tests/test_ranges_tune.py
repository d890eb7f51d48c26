"""Boundary probes under a real Tuner: after its budget a block probes where its robust config still
converges, and the journal records each probe (strategy ``boundary-probe``) and the interval found.

The trainable is ``searchers.testing.curve_trainable`` (it reports a final result, as the real trainer
does): R2 = cluster accuracy = exp(-(log10(lr_W / 1e-3))^2), so a run converges (both > 0.9) iff lr_W lies
within 10^+-0.325 of 1e-3, the robust root.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from study_fakes import BASE, study_dict

from ntune.study.info import study_info, total_budget
from ntune.study.journal import Journal
from ntune.study.load import study_from_dict
from ntune.study.records import read_trials
from ntune.tune.callbacks import JournalCallback
from ntune.tune.driver import build_searcher
from searchers.ranges import PROBE
from searchers.testing import curve_trainable

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LR = "training.learning_rate_W_start"


def test_a_tuned_block_probes_its_boundaries_after_its_budget(ray_session: None, tmp_path: Path) -> None:
    data = study_dict(
        "probes",
        base=BASE,
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        space={LR: {"type": "loguniform", "low": 1e-4, "high": 1e-1, "default": 1e-3}},
        n_iter_block=1,
        robustness_repeats=1,
        ranges={"trials": 10, "bisections": 1},
    )
    study, base = study_from_dict(data, tmp_path)
    info = study_info(study, base)
    exp_dir = tmp_path / "probes"
    exp_dir.mkdir()
    (exp_dir / "study.json").write_text(json.dumps(info))
    searcher = build_searcher(study, base, info)
    journal = Journal(exp_dir, searcher, info=info, tree_every_s=0.0)
    assert total_budget(info, list(searcher.trees)) == 11  # the root, then 10 probe trials
    tune.Tuner(
        curve_trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
            num_samples=total_budget(info, list(searcher.trees)),
            metric="score",
            mode="max",
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(tmp_path), callbacks=[JournalCallback(journal)], verbose=0
        ),
    ).fit()
    records, running = read_trials(exp_dir)
    assert not running and [r["search"]["strategy"] for r in records] == ["root", *[PROBE] * 10]
    probes = records[1:]
    assert all(r["search"]["parent"] == 1 for r in probes)  # children of the robust root
    values = sorted(r["params"][LR] for r in probes)
    # down: 5.62e-4 converged, 1.78e-4 and the bisection 3.16e-4 failed twice each; up the same, mirrored
    assert values == [
        1.78e-4,
        1.78e-4,
        3.16e-4,
        3.16e-4,
        5.62e-4,
        1.78e-3,
        3.16e-3,
        3.16e-3,
        5.62e-3,
        5.62e-3,
    ]
    assert [r["classification"] for r in probes if r["params"][LR] in (5.62e-4, 1.78e-3)] == ["converged"] * 2
    memory = (exp_dir / "memory.md").read_text()
    assert "#### connectivity_filling_factor=1.0: around node 1, 10/10 probe trials, done" in memory
    assert "| learning_rate_W_start | 0.001 | [0.000562, 0.00178] | 0.000316 | 0.00316 | 10 | yes |" in memory
    assert analysis_count(exp_dir) == 11


def analysis_count(exp_dir: Path) -> int:
    """The entries of analysis.md."""
    return (exp_dir / "analysis.md").read_text().count("Trial: ")
