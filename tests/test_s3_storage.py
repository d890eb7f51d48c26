"""A study on S3-compatible object storage: moto's S3 server on 127.0.0.1, a one-node Ray cluster.

``ntune run`` with ``storage_path: s3://ntune-test/studies`` (endpoint in $AWS_ENDPOINT_URL) is killed
(SIGKILL) right after its first completion, then run again: it resumes and completes the budget. The
test then checks the bucket (journal files, trial folders, Tune's state, the export), and runs
``ntune status``, ``export`` and ``report`` on the ``s3://`` URI. The Ray node and moto are stopped by
the process ids and objects the test started. Budget: about 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import S3_BUCKET as BUCKET
from test_multinode import BIN, free_port, node_env, start_node, stop_nodes, tiny_study, wait_for_nodes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORAGE = f"s3://{BUCKET}/studies"


def _objects(url: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` in the bucket: key (relative to prefix) -> content."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix) + 1 :]] = body
    return out


def _completions(url: str, prefix: str) -> int:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    try:
        text = client.get_object(Bucket=BUCKET, Key=f"{prefix}/trials.jsonl")["Body"].read().decode()
    except ClientError:
        return 0
    return sum(json.loads(line).get("event") == "complete" for line in text.splitlines() if line.strip())


def test_study_on_s3_runs_resumes_and_is_read_back(tmp_path: Path, s3_endpoint: str) -> None:
    t0 = time.monotonic()
    env = node_env(tmp_path)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_endpoint,
        NTUNE_MIRROR_DIR=str(tmp_path / "mirror"),
    )
    root = Path(tempfile.mkdtemp(prefix="nts3", dir="/tmp"))  # Ray's socket paths stay short
    port = free_port()
    address = f"127.0.0.1:{port}"
    head_args = [
        "--head",
        f"--port={port}",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}",
    ]
    procs = [start_node(head_args, root, tmp_path / "head.log", env)]
    try:
        wait_for_nodes(address, 1, env)
        study = tiny_study(tmp_path / "s3.yaml", tmp_path / "unused", name="s3study")
        study.write_text(study.read_text().replace(str(tmp_path / "unused"), STORAGE))
        prefix = "studies/s3study"
        run = [str(BIN / "ntune"), "run", str(study), "--address", address]

        # an interrupted run: killed (no grace) right after its first completion reached the bucket
        first = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while _completions(s3_endpoint, prefix) < 1:
            assert first.poll() is None, first.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no completion reached the bucket"
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        out = first.communicate(timeout=60)[0]
        assert f"experiment: {STORAGE}/s3study" in out, out[-4000:]
        assert _completions(s3_endpoint, prefix) < 4

        second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
        out = second.stdout + second.stderr
        assert second.returncode == 0, out[-4000:]
        assert "resuming experiment" in out and f"uploaded to {STORAGE}/s3study" in out, out[-4000:]

        files = _objects(s3_endpoint, prefix)
        for name in ("study.json", "trials.jsonl", "analysis.md", "memory.md", "tuner.pkl", "summary.csv"):
            assert name in files, sorted(files)
        assert sorted(k for k in files if k.startswith("ucb/")) == [
            "ucb/connectivity_filling_factor=0.5.txt",
            "ucb/connectivity_filling_factor=1.0.txt",
        ]
        assert len([k for k in files if k.startswith("best/") and k.endswith(".yaml")]) == 2
        events = [json.loads(line) for line in files["trials.jsonl"].decode().splitlines() if line.strip()]
        done = {e["trial_id"]: e for e in events if e["event"] == "complete"}
        assert len(done) == 4 and all(r["status"] == "ok" for r in done.values())
        assert Counter(e["event"] for e in events)["resume"] == 1
        assert files["analysis.md"].decode().count("## Iter ") == 4
        for trial_id in done:  # each trial's own folder, uploaded by Tune from the node that ran it
            trial = {k.split("/", 1)[1] for k in files if k.startswith(f"{trial_id}_")}
            assert {"config.yaml", "metrics.json", "W_scatter.png"} <= trial, (trial_id, sorted(files))

        uri = f"{STORAGE}/s3study"
        status = subprocess.run([str(BIN / "ntune"), "status", uri], env=env, capture_output=True, text=True)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "4/4 trials done, 0 running" in status.stdout, status.stdout

        export = subprocess.run(
            [str(BIN / "ntune"), "export", uri, "--format", "json"], env=env, capture_output=True, text=True
        )
        assert export.returncode == 0 and f"uploaded to {uri}" in export.stdout, export.stdout + export.stderr
        summary = json.loads(_objects(s3_endpoint, prefix)["summary.json"])
        assert summary["study"] == "s3study" and len(summary["best"]) == 2
        local = tmp_path / "best"
        export = subprocess.run(
            [str(BIN / "ntune"), "export", uri, "--out", str(local)], env=env, capture_output=True, text=True
        )
        assert export.returncode == 0, export.stdout + export.stderr
        assert len(list(local.glob("*.yaml"))) == 2 and (local / "summary.csv").is_file()

        report = subprocess.run([str(BIN / "ntune"), "report", uri], env=env, capture_output=True, text=True)
        assert report.returncode == 0, report.stdout + report.stderr
        files = _objects(s3_endpoint, prefix)
        text = files["report.md"].decode()
        assert "## connectivity_filling_factor=0.5" in text and "report/landscape.png" in files
        scatters = [line.split("(")[-1].rstrip(")") for line in text.splitlines() if "W scatter" in line]
        assert len(scatters) == 2 and all(s in files for s in scatters), (scatters, sorted(files))
        print(
            f"\nS3 study (kill after 1 completion, resume, status, export, report): {time.monotonic() - t0:.0f} s"
        )
    finally:
        stop_nodes(procs)
        shutil.rmtree(root, ignore_errors=True)
