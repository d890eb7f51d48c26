"""A study seen in the Ray dashboard: the named job, readable trial actors, their logs, ntune's metrics.

The formatting tests need no Ray. The others start a real Ray head with its dashboard and metrics
endpoint on free loopback ports (``ray start --block``, its own ``--temp-dir``, stopped by the process
ids started here), run a tiny study against it with ``ntune run --address`` (2 blocks x 2 trials, 2 at
a time) while polling the dashboard's REST API and the node's Prometheus endpoint, then compare what
they served with the study's journal. Budget: about 1.5 minutes on 2 cores (the Chromium test
another ~15 s).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray_nodes import BIN, free_port, node_env, start_node, stop_nodes
from study_fakes import LR_W, TINY_RUN, write_study

from ntune.study.records import SEARCH_KEY, fmt, read_trials
from ntune.tune.observe import (
    BLOCK_METRICS,
    TRIAL_METRICS,
    block_values,
    final_line,
    job_metadata,
    progress_line,
    search_label,
    trial_label,
)
from searchers.packing import MEMBERS_KEY

NAME = "dashstudy"
N_LOG_POINTS = TINY_RUN["training"]["n_log_points"]
SAMPLE = re.compile(r"^(ray_ntune_\w+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

SEARCH = {
    "block": "connectivity_filling_factor=0.25",
    "node": 7,
    "strategy": "exploit",
    "mutation": "learning_rate_W_start: 0.001 -> 0.002",
}


# ---- formatting (no Ray)


def test_trial_label_names_block_node_strategy_and_mutation() -> None:
    assert search_label(SEARCH) == "ff=0.25 node 7 exploit lr_W 0.001->0.002"
    assert trial_label({SEARCH_KEY: {**SEARCH, "node": 0, "strategy": "root", "mutation": ""}}) == (
        "ff=0.25 node 0 root"
    )
    other = {"block": "n_neurons=100", "node": 2, "strategy": "explore", "mutation": "optimizer: adam -> sgd"}
    assert search_label(other) == "n_neurons=100 node 2 explore optimizer adam->sgd"
    packed = {MEMBERS_KEY: [{SEARCH_KEY: SEARCH}, {SEARCH_KEY: {**SEARCH, "node": 8}}]}
    assert trial_label(packed) == "ff=0.25 nodes 7,8 (population of 2)"


def test_log_lines_carry_the_evaluation_and_the_final_metrics() -> None:
    m = {"iteration": 250, "progress": 0.25, "loss": 0.0123, "connectivity_R2": 0.5, "cluster_accuracy": 0.75}
    assert progress_line("ff=0.25 node 7", {**m, "score": 0.6}) == (
        "[ntune] ff=0.25 node 7 | iteration 250 (0.25) loss 0.0123 connectivity_R2 0.5 "
        "cluster_accuracy 0.75 score 0.6"
    )
    final = {**m, "final": True, "status": "ok", "classification": "partial", "test_R2": 0.99}
    line = final_line("ff=0.25 node 7", final)
    assert line.startswith("[ntune] ff=0.25 node 7 | final: partial (status ok) connectivity_R2 0.5 ")
    assert "test_R2 0.99" in line and "score nan" in line


def test_block_gauge_values_and_job_metadata() -> None:
    row = {"block": "b", "trials": 3, "budget": 4, "running": 1, "best_R2": 0.9, "best_cluster": math.nan}
    values = block_values({**row, "best_score": 0.8})
    assert values == {
        "ntune_block_trials_done": 3.0,
        "ntune_block_trials_running": 1.0,
        "ntune_block_progress": 0.75,
        "ntune_block_best_connectivity_r2": 0.9,
        "ntune_block_best_score": 0.8,
    }
    assert set(values) < set(BLOCK_METRICS)
    assert job_metadata("q", "/r/q") == {
        "job_name": "ntune q",
        "ntune_study": "q",
        "ntune_experiment": "/r/q",
    }


# ---- a study on a real Ray head with its dashboard


@dataclass
class Head:
    address: str
    url: str  # the dashboard
    metrics_url: str  # the node's Prometheus endpoint
    env: dict[str, str]
    tmp: Path


@dataclass
class Watched:
    """What the dashboard and the metrics endpoint served while (and after) the study ran."""

    exp_dir: Path
    stdout: str
    returncode: int
    jobs: list[dict[str, Any]] = field(default_factory=list)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def ntune_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every ``ray_ntune_*`` sample of a Prometheus text page."""
    out = []
    for line in text.splitlines():
        if m := SAMPLE.match(line):
            out.append((m.group(1), dict(LABEL.findall(m.group(2))), float(m.group(3))))
    return out


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A Ray head (2 CPUs) with its dashboard and metrics endpoint on free ports; always stopped."""
    tmp = tmp_path_factory.mktemp("dashboard")
    root = Path(tempfile.mkdtemp(prefix="ntdb", dir="/tmp"))  # Ray's socket paths must stay short
    env = node_env(tmp)
    env["RAY_metrics_report_interval_ms"] = "1000"  # workers report their gauges every second
    port, dashboard, metrics = free_port(), free_port(), free_port()
    args = [
        "--head",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={free_port()}",
    ]
    proc = start_node(args, root, tmp / "head.log", env, cpus=2)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get(f"{url}/api/version")
                break
            except OSError:
                assert proc.poll() is None, (tmp / "head.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the dashboard did not come up in 120 s"
                time.sleep(0.5)
        yield Head(f"127.0.0.1:{port}", url, f"http://127.0.0.1:{metrics}/metrics", env, tmp)
    finally:
        stop_nodes([proc])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def watched(head: Head) -> Watched:
    """Runs the tiny study on ``head`` and polls the dashboard and the metrics endpoint every second."""
    run = {**TINY_RUN, "training": {**TINY_RUN["training"], "data_augmentation_loop": 60}}
    path = write_study(
        head.tmp / "study.yaml",
        NAME,
        base=run,
        space=LR_W,
        n_iter_block=2,
        max_concurrent_trials=2,
        resources={"cpu": 1, "gpu": 0},
        storage_path=str(head.tmp / "results"),
        data_limited={"check": False},  # the tiny network is data-limited at ff 1.0
    )
    out = head.tmp / "run.log"
    cmd = [str(BIN / "ntune"), "run", str(path), "--address", head.address]
    proc = subprocess.Popen(cmd, env=head.env, stdout=out.open("w"), stderr=subprocess.STDOUT)
    samples: list[tuple[str, dict[str, str], float]] = []
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            samples += ntune_samples(get(head.metrics_url))
        except OSError:
            pass  # the endpoint answers once the node's metrics agent is up
        time.sleep(1.0)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait()
    jobs = json.loads(get(f"{head.url}/api/jobs/"))
    actors = json.loads(get(f"{head.url}/logical/actors"))["data"]["actors"]
    return Watched(head.tmp / "results" / NAME, out.read_text(), rc, jobs, actors, samples)


def trial_actors(w: Watched) -> dict[str, str]:
    """actor id -> repr of the study's trial actors."""
    return {a: d["reprName"] for a, d in w.actors.items() if d.get("className") == "NtuneTrial"}


@pytest.mark.integration
@pytest.mark.slow
def test_job_carries_the_study_name(watched: Watched) -> None:
    assert watched.returncode == 0, watched.stdout[-4000:]
    ours = [j for j in watched.jobs if (j.get("metadata") or {}).get("ntune_study") == NAME]
    assert len(ours) == 1, watched.jobs
    assert ours[0]["metadata"] == job_metadata(NAME, str(watched.exp_dir))
    assert ours[0]["type"] == "DRIVER"


@pytest.mark.integration
@pytest.mark.slow
def test_each_trial_actor_is_named_after_its_trial(watched: Watched) -> None:
    records, _ = read_trials(watched.exp_dir)
    assert len(records) == 4
    expected = sorted(search_label(r["search"]) for r in records)
    assert sorted(trial_actors(watched).values()) == expected  # one actor per trial, each named right
    assert all(re.fullmatch(r"ff=(1\.0|0\.5) node \d+ \S.*", name) for name in expected), expected


@pytest.mark.integration
@pytest.mark.slow
def test_trial_log_holds_its_progress_lines(watched: Watched, head: Head) -> None:
    records = {search_label(r["search"]): r for r in read_trials(watched.exp_dir)[0]}
    for actor_id, name in trial_actors(watched).items():
        text = get(f"{head.url}/api/v0/logs/file?actor_id={actor_id}&suffix=out")  # the Log link
        ours = [line for line in text.splitlines() if line.startswith("[ntune]")]
        progress = [line for line in ours if line.startswith(f"[ntune] {name} | iteration ")]
        finals = [line for line in ours if line.startswith(f"[ntune] {name} | final: ")]
        assert len(progress) == N_LOG_POINTS and len(finals) == 1 and len(ours) == N_LOG_POINTS + 1, text
        m = records[name]["metrics"]
        assert f"connectivity_R2 {fmt(m['connectivity_R2'])} " in finals[0], (finals[0], m)
        assert f"cluster_accuracy {fmt(m['cluster_accuracy'])} " in finals[0], (finals[0], m)


@pytest.mark.integration
@pytest.mark.slow
def test_metrics_endpoint_serves_trial_and_block_gauges(watched: Watched) -> None:
    records = read_trials(watched.exp_dir)[0]
    names = {s[0].removeprefix("ray_") for s in watched.samples}
    assert set(TRIAL_METRICS) | set(BLOCK_METRICS) <= names, names
    blocks = {r["block"] for r in records}
    by_trial = {r["trial_id"]: r for r in records}
    final_r2 = 0
    for name, labels, _ in watched.samples:
        assert labels["study"] == NAME and labels["block"] in blocks, labels
        if name.startswith("ray_ntune_trial_"):
            rec = by_trial[labels["trial"]]
            assert (labels["block"], labels["node"]) == (rec["block"], str(rec["search"]["node"]))
    # a trial seen at progress 1 shows its final connectivity_R2 in the same scrape
    for k, (name, labels, value) in enumerate(watched.samples):
        if name == "ray_ntune_trial_progress" and value == 1.0:
            same = [s for s in watched.samples[max(0, k - 40) : k + 40] if s[1] == labels]
            r2 = [v for n, _, v in same if n == "ray_ntune_trial_connectivity_r2"]
            assert r2 and math.isclose(r2[-1], by_trial[labels["trial"]]["metrics"]["connectivity_R2"])
            final_r2 += 1
    assert final_r2 > 0, "no trial was seen at progress 1"
    done = {}
    for name, labels, value in watched.samples:
        if name == "ray_ntune_block_trials_done":
            assert value in (0.0, 1.0, 2.0)
            done[labels["block"]] = max(done.get(labels["block"], 0.0), value)
    assert set(done) == blocks and all(v >= 1 for v in done.values()), done


@pytest.mark.integration
@pytest.mark.slow
def test_actors_page_shows_trial_names_in_chromium(watched: Watched, head: Head) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    names = set(trial_actors(watched).values())
    assert names
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={head.tmp / 'chromium'}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        f"{head.url}/#/actors",
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    shown = {name for name in names if name in dom}
    assert shown, dom[-3000:]


@pytest.mark.integration
@pytest.mark.slow
def test_embedded_ray_job_carries_the_metadata(tmp_path: Path) -> None:
    """``ntune run`` without --address: the job of the Ray it starts carries the same metadata."""
    code = (
        "import json, ray\n"
        "from rich.console import Console\n"
        "from ntune.tune.driver import _start_ray\n"
        f"assert _start_ray(None, Console(), {job_metadata(NAME, '/x')!r})\n"
        "from urllib.request import urlopen\n"
        "from ray._private.worker import get_dashboard_url\n"
        "jobs = json.load(urlopen(f'http://{get_dashboard_url()}/api/jobs/', timeout=30))\n"
        "print(json.dumps([j['metadata'] for j in jobs]))\n"
        "ray.shutdown()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=node_env(tmp_path), capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metadata = json.loads(out.stdout.strip().splitlines()[-1])
    assert job_metadata(NAME, "/x") in metadata, metadata
