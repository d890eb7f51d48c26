"""A study's time budget: wall time over sessions, the projection, the refusal, and a real run cut by it."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from study_fakes import SPACE, write_study

from ntune.config import ConfigError
from ntune.study.clock import Projection, duration, elapsed_seconds, project, sessions
from ntune.study.config import StudyConfig
from ntune.study.records import read_trials
from ntune.tune.deadline import time_budget, time_left

T0 = dt.datetime(2026, 12, 5, 10, 0, 0)


def _at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


# two sessions: 0-600 s (two trials), then a resume an hour later, 4200-4500 s; the gap does not count
EVENTS: list[dict[str, Any]] = [
    {"event": "start", "trial_id": "a", "time": _at(0)},
    {"event": "start", "trial_id": "b", "time": _at(0)},
    {"event": "complete", "trial_id": "a", "time": _at(300)},
    {"event": "complete", "trial_id": "b", "time": _at(600)},
    {"event": "start", "trial_id": "c", "time": _at(600)},
    {"event": "resume", "time": _at(4200)},
    {"event": "start", "trial_id": "c", "time": _at(4200)},
    {"event": "complete", "trial_id": "c", "time": _at(4500)},
]


def test_the_wall_time_of_a_study_sums_its_sessions() -> None:
    assert sessions(EVENTS) == [
        (T0, T0 + dt.timedelta(seconds=600)),
        (T0 + dt.timedelta(seconds=4200), T0 + dt.timedelta(seconds=4500)),
    ]
    assert elapsed_seconds(EVENTS) == 900.0
    assert elapsed_seconds(EVENTS, now=T0 + dt.timedelta(seconds=4600)) == 1000.0
    assert elapsed_seconds([{"event": "start", "trial_id": "x"}]) == 0.0  # unstamped (older journals)


def test_the_projection_of_trials_left_and_of_the_budget() -> None:
    now = T0 + dt.timedelta(seconds=4500)
    p = project(EVENTS, remaining_trials=5, concurrency=2, budget_h=0.5, now=now, remaining_most=9)
    assert p == Projection(900.0, 1800.0, 600.0, 5, 2, 9)  # 900 s x 2 slots / 3 trials = 600 s a trial
    assert p.left_s == 900.0 and p.to_finish_s == 1800.0 and p.cut_by_budget  # 3 rounds of 600 s > 900 s
    assert (
        p.text(now)
        == "ran 15 min, of a 30 min time budget (15 min left); 5 to 9 trials left, the budget ends at 11:30 before they are done"
    )
    free = project(EVENTS, remaining_trials=5, concurrency=2, budget_h=None, now=now)
    assert math.isnan(free.left_s) and not free.cut_by_budget
    assert free.text(now) == "ran 15 min; 5 trials left, finish ~11:45"
    assert project([], remaining_trials=0, concurrency=1, budget_h=None).text(now) == "ran 0 s"
    assert [duration(s) for s in (40, 720, 3900)] == ["40 s", "12 min", "1 h 05 min"]


def _study(budget_h: float | None) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "budget",
            "base": {},
            "blocks": {"simulation.connectivity_filling_factor": [1.0]},
            "space": SPACE,
            "time_budget_h": budget_h,
        }
    )


def test_a_spent_budget_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    assert time_left(_study(None), tmp_path, fresh=False) is None
    assert time_left(_study(0.5), tmp_path, fresh=False) == 900.0
    assert time_left(_study(0.5), tmp_path, fresh=True) == 1800.0
    assert time_left(_study(0.5), tmp_path / "new", fresh=False) == 1800.0
    with pytest.raises(ConfigError, match=r"time_budget_h: 0\.25 h are spent \(15 min run so far\)"):
        time_left(_study(0.25), tmp_path, fresh=False)


def test_the_watchdog_interrupts_once_the_budget_is_spent() -> None:
    received: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        with time_budget(0.2) as spent:
            time.sleep(1.0)
        assert spent.is_set() and received == [signal.SIGINT]
        with time_budget(None) as free, time_budget(5.0) as later:
            time.sleep(0.1)
        assert not free.is_set() and not later.is_set() and received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, old)


def _run(study: Path, address: str, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "ntune.cli.app",
        "run",
        str(study),
        *(a for o in overrides for a in ("--set", o)),
    ]
    env = dict(os.environ, RAY_ADDRESS=address)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
@pytest.mark.slow
def test_a_study_stops_when_its_budget_is_spent_and_goes_on_when_it_is_raised(
    tmp_path: Path, ray_session: None
) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    study = write_study(
        tmp_path / "budget.yaml",
        "budget",
        space=SPACE,
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        set=["training.data_augmentation_loop=300"],  # a few seconds per trial: 3 rounds of 2 outlast 12 s
        time_budget_h=12 / 3600,
    )
    exp_dir = tmp_path / "results" / "budget"
    cut = _run(study, address)
    out = cut.stdout + cut.stderr
    assert cut.returncode == 130, out
    assert "the time budget is spent after" in out and "raise time_budget_h and run again to resume" in out
    done = len(read_trials(exp_dir)[0])
    assert done < 6, out
    more = _run(study, address, "time_budget_h=1")
    out = more.stdout + more.stderr
    assert more.returncode == 0, out
    assert "resuming experiment" in out and "of a 1 h 00 min time budget" in out
    records, running = read_trials(exp_dir)
    assert len(records) == 6 and running == {}


def test_a_study_json_written_before_new_fields_still_resumes() -> None:
    """study.json of an older version (no time_budget_h, no graph_model.lin_edge_eval) compares equal to
    today's info of the same study; a raised budget is no other study, a changed field is."""
    from ntune.config import config_from_dict
    from ntune.tune.experiment_dir import comparable

    base = config_from_dict({}).model_dump(mode="json")
    study = _study(None).model_dump(mode="json")
    info = {"study": study, "block_key": "simulation.connectivity_filling_factor", "base": base}
    old_base = {**base, "graph_model": {k: v for k, v in base["graph_model"].items() if k != "lin_edge_eval"}}
    old = {**info, "study": {k: v for k, v in study.items() if k != "time_budget_h"}, "base": old_base}
    assert comparable(old) == comparable(info)
    assert comparable({**info, "study": {**study, "time_budget_h": 2.0}}) == comparable(info)
    assert comparable({**info, "study": {**study, "ucb_c": 0.5}}) != comparable(info)
