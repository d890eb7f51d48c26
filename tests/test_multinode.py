"""A real two-node Ray cluster on loopback: ``ntune run --address`` spreads trials over both nodes.

The test starts a head and a second node with ``ray start --block`` (1 CPU each, no GPU, each with its
own ``--temp-dir`` and its own ports), waits until both are alive, runs a tiny study (2 blocks x 2
trials, 1 CPU per trial, 2 at a time) with the ``ntune`` console script, then checks that trials ran on
both nodes (``ray_node_id`` in each trial's metrics.json), that the journal and ``ntune export`` are
complete, and stops both nodes by the process ids it started (never a bare ``ray stop``: that would end
every Ray cluster on the machine). Budget: about 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_nodes import BIN, free_port, node_env, start_node, stop_nodes, wait_for_nodes
from study_fakes import write_study

from ntune.study.records import read_trials

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tiny_study(path: Path, storage: Path, name: str = "multinode") -> Path:
    """A 2 blocks x 2 trials study of a 16-neuron network, 1 CPU per trial, 2 trials at a time."""
    return write_study(
        path,
        name,
        n_iter_block=2,
        resources={"cpu": 1, "gpu": 0},
        max_concurrent_trials=2,
        storage_path=str(storage),
    )


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """A Ray head and a second node on 127.0.0.1; yields (address, node ids, env); always stopped."""
    # short temp dirs: Ray's unix socket paths must stay under 107 characters
    roots = [Path(tempfile.mkdtemp(prefix="ntmn", dir="/tmp")) for _ in range(2)]
    env = node_env(tmp_path)
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        head_args = ["--head", f"--port={port}", "--include-dashboard=false"]
        head_args.append(f"--ray-client-server-port={free_port()}")
        procs.append(start_node(head_args, roots[0], tmp_path / "head.log", env))
        wait_for_nodes(address, 1, env)
        procs.append(start_node([f"--address={address}"], roots[1], tmp_path / "worker.log", env))
        ids = wait_for_nodes(address, 2, env)
        logs = "".join((tmp_path / f).read_text()[-2000:] for f in ("head.log", "worker.log"))
        assert len(ids) == 2, f"the second node did not join: {logs}"
        yield address, ids, env
    finally:
        stop_nodes(procs)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def test_study_spreads_over_two_nodes(
    tmp_path: Path, two_nodes: tuple[str, list[str], dict[str, str]]
) -> None:
    address, node_ids, env = two_nodes
    # what docker/slurm.sbatch polls to know the head is up (a head without dashboard must answer it)
    status = subprocess.run(
        [str(BIN / "ray"), "status", f"--address={address}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stdout[-2000:] + status.stderr[-2000:]
    print("\n" + status.stdout)
    study = tiny_study(tmp_path / "multinode.yaml", tmp_path / "results")
    t0 = time.monotonic()
    run = subprocess.run(
        [str(BIN / "ntune"), "run", str(study), "--address", address],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert f"joined Ray cluster at {address}" in run.stdout

    exp_dir = tmp_path / "results" / "multinode"
    records, running = read_trials(exp_dir)
    assert len(records) == 4 and running == {}
    assert all(r["status"] == "ok" for r in records)
    ran_on = Counter(
        json.loads((Path(r["trial_dir"]) / "metrics.json").read_text())["ray_node_id"] for r in records
    )
    assert set(ran_on) == set(node_ids), f"trials ran on {dict(ran_on)}, cluster nodes {node_ids}"
    split = "/".join(str(ran_on[n]) for n in node_ids)
    print(f"\nmulti-node study: {len(records)} trials in {wall:.0f} s, split across the two nodes {split}")

    # the journal: one analysis.md entry and one completion event per trial, a tree per block
    analysis = (exp_dir / "analysis.md").read_text()
    assert len(analysis.split("## Iter ")[1:]) == 4
    events = [json.loads(line) for line in (exp_dir / "trials.jsonl").read_text().splitlines()]
    assert Counter(e["event"] for e in events)["complete"] == 4
    assert sorted(p.stem for p in (exp_dir / "ucb").glob("*.txt")) == [
        "connectivity_filling_factor=0.5",
        "connectivity_filling_factor=1.0",
    ]
    for r in records:
        trial_dir = Path(r["trial_dir"])
        assert (trial_dir / "config.yaml").is_file() and (trial_dir / "W_scatter.png").is_file()

    # the export, as a user runs it afterwards: one runnable YAML per block and the summary
    out = subprocess.run(
        [str(BIN / "ntune"), "export", str(exp_dir), "--out", str(tmp_path / "best")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    best = sorted(p.name for p in (tmp_path / "best").glob("*.yaml"))
    assert best == ["connectivity_filling_factor=0.5.yaml", "connectivity_filling_factor=1.0.yaml"]
    assert (tmp_path / "best" / "summary.csv").read_text().count("\n") >= 3
