"""``ntune status --watch``: the running-trial reader on a hand-made folder, and the live table itself."""

from __future__ import annotations

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
import yaml
from study_fakes import STUDY, TINY_RUN, make_experiment

from ntune.report.live import watch_view
from ntune.study.running import LIVE_FILE, LiveBoard, live_entry, read_running

BIN = Path(sys.executable).parent


def add_running(exp: Path, starts: list[tuple[str, str]], board: dict[str, dict[str, Any]]) -> None:
    """Append ``start`` events to trials.jsonl and write running.json as a driver would."""
    with open(exp / "trials.jsonl", "a") as f:
        for trial_id, block in starts:
            f.write(json.dumps({"event": "start", "trial_id": trial_id, "block": block}) + "\n")
    (exp / LIVE_FILE).write_text(json.dumps(board))


RESULT = {
    "block": "connectivity_filling_factor=1.0",
    "node": 3,
    "strategy": "exploit",
    "progress": 0.25,
    "iteration": 125,
    "n_iterations": 500,
    "connectivity_R2": 0.5,
    "cluster_accuracy": 0.75,
    "loss": 12.5,
    "ray_node_id": "abcdef0123456789",
    "score": 0.6,  # not kept
}


def test_watch_view_joins_the_journal_and_running_json(tmp_path: Path) -> None:
    exp = tmp_path / "fake"
    make_experiment(exp, n=4)  # t0..t3 recorded: 2 of each block's budget of 3
    board = {
        "t8": live_entry(RESULT, now=1000.0),
        "t1": live_entry({**RESULT, "progress": 0.9}, now=990.0),  # recorded since: stale
    }
    add_running(
        exp, [("t8", "connectivity_filling_factor=1.0"), ("t9", "connectivity_filling_factor=0.5")], board
    )

    view = watch_view(exp)
    assert (view.done, view.total, view.finished) == (4, 6, False)
    assert view.title == "fake: 4/6 trials done, 2 running"
    assert [(r["block"], r["trials"], r["running"]) for r in view.rows] == [
        ("connectivity_filling_factor=1.0", 2, 1),
        ("connectivity_filling_factor=0.5", 2, 1),
    ]
    assert [r.trial_id for r in view.running] == ["t8"]
    t8 = view.running[0]
    assert (t8.block, t8.node, t8.strategy, t8.ray_node_id) == (
        "connectivity_filling_factor=1.0",
        3,
        "exploit",
        "abcdef0123456789",
    )
    assert (t8.progress, t8.iteration, t8.n_iterations) == (0.25, 125.0, 500.0)
    assert (t8.connectivity_R2, t8.cluster_accuracy, t8.loss, t8.updated) == (0.5, 0.75, 12.5, 1000.0)
    assert view.waiting == [("t9", "connectivity_filling_factor=0.5")]  # started, no evaluation yet

    # the rest of the budget recorded: finished, nothing running, whatever running.json still holds
    full = tmp_path / "full"
    make_experiment(full)
    (full / LIVE_FILE).write_text(json.dumps(board))
    done = watch_view(full)
    assert (done.done, done.total, done.finished, done.running, done.waiting) == (6, 6, True, [], [])


def test_live_board_writes_when_due_and_reads_back(tmp_path: Path) -> None:
    board = LiveBoard(tmp_path, every_s=2.0)
    assert read_running(tmp_path) == {}  # no file yet
    assert board.update("a", RESULT, now=10.0) is True
    assert board.update("b", {"block": "x", "progress": 0.5}, now=11.0) is False  # within 2 s: kept in memory
    assert sorted(read_running(tmp_path)) == ["a"]
    assert board.update("b", {"block": "x", "progress": 0.75}, now=12.5) is True
    got = read_running(tmp_path)
    assert sorted(got) == ["a", "b"] and got["b"].progress == 0.75 and got["b"].node == -1
    assert math.isnan(got["b"].connectivity_R2)  # not reported yet
    board.remove("a", now=13.0)  # a trial's end is written at once
    assert sorted(read_running(tmp_path)) == ["b"]
    board.clear()
    assert read_running(tmp_path) == {}
    (tmp_path / LIVE_FILE).write_text("{not json")
    assert read_running(tmp_path) == {}


def ntune(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ntune"), *args], capture_output=True, text=True, timeout=timeout)


def test_watch_of_a_finished_experiment_exits_by_itself(tmp_path: Path) -> None:
    exp = tmp_path / "fake"
    make_experiment(exp)
    t0 = time.monotonic()
    out = ntune("status", str(exp), "--watch", "--interval", "0.2", timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 < 30
    assert "fake: 6/6 trials done, 0 running" in out.stdout
    assert "connectivity_filling_factor=1.0" not in out.stdout  # the table shows block values
    assert "study finished: 6/6 trials" in out.stdout
    assert out.stdout.count("fake: 6/6 trials done") == 1  # one final frame, not one per refresh
    bad = ntune("status", str(exp), "--watch", "--interval", "0")
    assert bad.returncode == 2 and "--interval: 0.0 must be a number of seconds > 0" in bad.stderr


def test_ctrl_c_ends_the_watch_of_a_running_study_cleanly(tmp_path: Path) -> None:
    exp = tmp_path / "fake"
    make_experiment(exp, n=4)
    add_running(exp, [("t8", "connectivity_filling_factor=1.0")], {"t8": live_entry(RESULT)})
    watch = subprocess.Popen(
        [str(BIN / "ntune"), "status", str(exp), "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, also under `&`
        env={**os.environ, "COLUMNS": "160"},  # wide enough for every column unabridged
    )
    time.sleep(6)  # the study never ends: only Ctrl-C stops the watch
    assert watch.poll() is None
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert "Traceback" not in err and "fake: 4/6 trials done, 1 running" in out
    assert "t8" in out and "##........  25%" in out and "125/500" in out, out


@pytest.mark.integration
@pytest.mark.slow
def test_watch_follows_a_running_study_to_its_end(tmp_path: Path) -> None:
    """A real study (2 trials of ~10 s at once): running.json shows their progress; --watch ends with it."""
    data = {
        **{k: v for k, v in STUDY.items() if k != "base"},
        "name": "watched",
        "base": {
            **TINY_RUN,
            "training": {**TINY_RUN["training"], "data_augmentation_loop": 100, "n_log_points": 8},
        },
        "n_iter_block": 1,
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 2,
        "storage_path": str(tmp_path / "results"),
        "data_limited": {"check": False},
    }
    study = tmp_path / "watched.yaml"
    study.write_text(yaml.safe_dump(data))
    exp = tmp_path / "results" / "watched"
    run = subprocess.Popen(
        [str(BIN / "ntune"), "run", str(study)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watch = None
    seen: dict[str, list[float]] = {}  # trial id -> every progress seen while it ran
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            if (exp / "trials.jsonl").is_file():
                if watch is None:
                    watch = subprocess.Popen(
                        [str(BIN / "ntune"), "status", str(exp), "--watch", "--interval", "0.5"],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                for r in watch_view(exp).running:
                    seen.setdefault(r.trial_id, []).append(r.progress)
            time.sleep(0.5)
        log = run.communicate(timeout=60)[0]
        assert run.returncode == 0, log[-4000:]
        assert watch is not None
        out, err = watch.communicate(timeout=60)  # ends by itself once both trials are recorded
    finally:
        for proc in (run, watch):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert watch.returncode == 0, err
    assert "watched: 2/2 trials done, 0 running" in out and "study finished: 2/2 trials" in out
    assert seen, "no running trial with progress was seen in running.json"
    # progress is in (0, 1] while a trial runs: 1.0 after its last report until Tune records its end
    assert all(0 < p <= 1 for values in seen.values() for p in values), seen
    assert any(0 < p < 1 for values in seen.values() for p in values), seen  # intermediate evaluations
    assert json.loads((exp / LIVE_FILE).read_text()) == {}  # every trial's entry removed at its end


def test_watch_reads_an_experiment_on_object_storage(tmp_path: Path, s3_endpoint: str) -> None:
    """On s3:// the journal files and running.json come down into the view mirror on every refresh."""
    from conftest import S3_BUCKET
    from rich.console import Console

    from ntune.cli.commands import watch_command
    from ntune.study.storage import Remote

    local = tmp_path / "fake"
    make_experiment(local, n=4)
    add_running(local, [("t8", "connectivity_filling_factor=1.0")], {"t8": live_entry(RESULT)})
    uri = f"s3://{S3_BUCKET}/watch/fake"
    remote = Remote(uri)
    assert LIVE_FILE in remote.push(local)
    console = Console(record=True, width=160)
    # the study never ends: a Ctrl-C after a few refreshes stops the watch (False: not finished)
    assert _interrupt_after(1.5, lambda: watch_command(uri, console=console, interval=0.5)) is False
    text = console.export_text()
    assert "fake: 4/6 trials done, 1 running" in text and "##........  25%" in text and "125/500" in text

    make_experiment(done := tmp_path / "done" / "fake")
    Remote(f"s3://{S3_BUCKET}/done/fake").push(done)
    finished = Console(record=True, width=160)
    assert watch_command(f"s3://{S3_BUCKET}/done/fake", console=finished, interval=0.5) is True
    assert "study finished: 6/6 trials" in finished.export_text()


def _interrupt_after(seconds: float, call: Any) -> Any:
    """``call()`` with a SIGALRM that raises KeyboardInterrupt after ``seconds`` (as Ctrl-C would)."""

    def ctrl_c(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
