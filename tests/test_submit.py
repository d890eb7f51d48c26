"""``ntune submit``: a study as a Ray Job on a real local Ray head (127.0.0.1, its own ports and temp dir).

The slow test starts a head with its dashboard (``ray start --head --block``, 2 CPUs, in its own
session, stopped by its process ids, never a bare ``ray stop``), submits a 2-trial study with
``ntune submit --follow`` from another process, and reads the result with ``ntune status``. The fast
tests check what is refused before anything is submitted, and how the study files travel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ray_nodes import free_port, node_env, start_node, stop_nodes
from study_fakes import TINY_RUN, study_dict

from ntune.study.load import load_study
from ntune.study.records import read_trials
from ntune.tune.submit import entrypoint, job_name, stage_study
from ntune.yamlio import read_yaml

BIN = Path(sys.executable).parent


def write_study(folder: Path, storage: str, name: str = "submitted") -> Path:
    """A 2 blocks x 1 trial study of the 16-neuron network whose base config is a file next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY_RUN))
    data = study_dict(
        name,
        base="tiny.yaml",
        n_iter_block=1,
        resources={"cpu": 1, "gpu": 0},
        max_concurrent_trials=2,
        storage_path=storage,
        data_limited={"check": False},
    )
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ntune(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ntune"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


# ---- before anything is submitted


def test_refuses_bad_address_unreachable_head_and_relative_storage(tmp_path: Path) -> None:
    study = write_study(tmp_path / "s", str(tmp_path / "results"))
    gcs = ntune("submit", str(study), "--address", "127.0.0.1:6379")
    assert gcs.returncode == 2
    assert "--address: '127.0.0.1:6379' is not the dashboard's URL" in gcs.stderr
    down = ntune("submit", str(study), "--address", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2, down.stdout + down.stderr
    assert down.stderr.startswith("error: --address: cannot reach the Ray dashboard at http://127.0.0.1:")
    assert len(down.stderr.strip().splitlines()) == 1 and down.stdout == ""
    relative = write_study(tmp_path / "r", "./ntune_results")
    rel = ntune("submit", str(relative), "--address", "http://127.0.0.1:8265")
    assert rel.returncode == 2
    assert "storage_path: './ntune_results' is relative" in rel.stderr
    bad = ntune("submit", str(study), "--address", "http://127.0.0.1:8265", "--set", "n_iter_block=0")
    assert bad.returncode == 2 and "n_iter_block" in bad.stderr


def test_study_files_travel_with_their_relative_base(tmp_path: Path) -> None:
    study = write_study(tmp_path / "s", "/shared/results")
    staged = tmp_path / "staged"
    staged.mkdir()
    assert stage_study(study, staged) == "study.yaml"
    assert sorted(p.name for p in staged.iterdir()) == ["study.yaml", "tiny.yaml"]
    assert load_study(staged / "study.yaml") == load_study(study)  # the same study, so the same study.json

    # a base outside the study's folder is inlined: the staged study stands alone
    outside = tmp_path / "o" / "studies"
    outside.mkdir(parents=True)
    data = read_yaml(study)
    data["base"] = "../tiny_base.yaml"
    (tmp_path / "o" / "tiny_base.yaml").write_text(yaml.safe_dump(TINY_RUN))
    (outside / "mine.yaml").write_text(yaml.safe_dump(data))
    inline = tmp_path / "inline"
    inline.mkdir()
    assert stage_study(outside / "mine.yaml", inline) == "mine.yaml"
    assert [p.name for p in inline.iterdir()] == ["mine.yaml"]
    assert read_yaml(inline / "mine.yaml")["base"] == TINY_RUN
    assert load_study(inline / "mine.yaml")[1] == load_study(outside / "mine.yaml")[1]

    assert entrypoint("study.yaml", ["training.n_epochs=2"], "x y", None, True) == (
        "ntune run study.yaml --set training.n_epochs=2 --name 'x y' --fresh"
    )
    assert (
        job_name("sparsity", time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))) == "ntune-sparsity-20260102-030405"
    )


# ---- a real head


def wait_for_dashboard(url: str, timeout: float = 120) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            JobSubmissionClient(url).list_jobs()
            return
        except Exception:  # noqa: BLE001  # not up yet, whatever the error
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head with its dashboard on 127.0.0.1 (2 CPUs); yields (dashboard URL, env); always stopped."""
    root = Path(tempfile.mkdtemp(prefix="ntsub", dir="/tmp"))  # short: Ray's socket paths are limited
    env = node_env(tmp_path)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # the job's `ntune run` is this venv's
    dash = free_port()
    args = [
        "--head",
        f"--port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={free_port()}",
    ]
    procs = [start_node(args, root, tmp_path / "head.log", env)]
    try:
        url = f"http://127.0.0.1:{dash}"
        try:
            wait_for_dashboard(url)
        except Exception:  # noqa: BLE001
            pytest.fail(
                "the head's dashboard did not come up:\n" + (tmp_path / "head.log").read_text()[-3000:]
            )
        yield url, env
    finally:
        stop_nodes(procs)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.slow
def test_submit_runs_a_study_as_a_ray_job(tmp_path: Path, head: tuple[str, dict[str, str]]) -> None:
    from ray.job_submission import JobSubmissionClient

    url, env = head
    storage = tmp_path / "results"
    study = write_study(tmp_path / "laptop", str(storage))
    t0 = time.monotonic()
    out = ntune("submit", str(study), "--address", url, "--follow", env=env, timeout=540)
    wall = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    job_id = out.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    assert job_id.startswith("ntune-submitted-")
    assert f"dashboard: {url}/#/jobs/{job_id}" in out.stdout
    assert f"ntune status {storage / 'submitted'} --watch" in out.stdout
    assert f"job {job_id}: SUCCEEDED" in out.stdout
    assert "2 blocks x 1 trials" in out.stdout  # the driver's own output, from the job's log

    info = JobSubmissionClient(url).get_job_info(job_id)
    assert str(info.status).rsplit(".", 1)[-1] == "SUCCEEDED"
    assert info.submission_id == job_id
    assert info.metadata["ntune_study"] == "submitted"
    assert info.metadata["ntune_experiment"] == str(storage / "submitted")
    assert info.entrypoint == "ntune run study.yaml"

    exp = storage / "submitted"
    records, running = read_trials(exp)
    assert len(records) == 2 and running == {}
    assert all(r["status"] == "ok" for r in records)
    assert read_yaml(study)["base"] == "tiny.yaml"
    status = ntune("status", str(exp), env=env)
    assert status.returncode == 0, status.stderr
    assert "submitted: 2/2 trials done, 0 running" in status.stdout
    print(f"\nntune submit --follow: 2-trial study as a Ray Job in {wall:.0f} s")


class _Head:
    """A job client whose head has no job agent for its first ``missing`` submissions (Ray's answer)."""

    def __init__(
        self, missing: int, error: str = "No available agent to submit job, please try again later."
    ) -> None:
        self.missing, self.error, self.calls = missing, error, 0

    def submit_job(self, **job: object) -> str:
        self.calls += 1
        if self.calls <= self.missing:
            raise RuntimeError(f"Request failed with status code 500: {self.error}.")
        return str(job["submission_id"])


def test_a_head_without_its_job_agent_yet_is_asked_again() -> None:
    from ntune.tune.submit import submit_when_ready

    head = _Head(missing=2)
    submit_when_ready(head, wait_s=5.0, pause_s=0.01, submission_id="j")
    assert head.calls == 3
    late = _Head(missing=100)
    with pytest.raises(RuntimeError, match="No available agent"):
        submit_when_ready(late, wait_s=0.05, pause_s=0.01, submission_id="j")
    assert 2 <= late.calls <= 6
    other = _Head(missing=1, error="Job with submission_id j already exists")
    with pytest.raises(RuntimeError, match="already exists"):
        submit_when_ready(other, wait_s=5.0, pause_s=0.01, submission_id="j")
    assert other.calls == 1  # any other refusal is final at once
