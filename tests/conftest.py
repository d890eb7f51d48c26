"""Shared fixtures: one real Ray instance per test session, a private data cache, a local S3 server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

S3_BUCKET = "ntune-test"  # the bucket the s3_endpoint fixture creates

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real Ray instance (2 CPUs, no GPU, no dashboard), shared by all integration tests."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test uses a cache folder (and object-storage mirror folder) of the session, never ~/.cache/ntune."""
    path = tmp_path_factory.getbasetemp() / "ntune-cache"
    monkeypatch.setenv("NTUNE_CACHE", str(path))
    monkeypatch.setenv("NTUNE_MIRROR_DIR", str(tmp_path_factory.getbasetemp() / "ntune-mirror"))
    return path


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free loopback port with one empty bucket; yields its URL; always stopped.

    Sets $AWS_ENDPOINT_URL and test credentials for this process (and what it starts).
    """
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", url),
    ):
        monkeypatch.setenv(key, value)
    try:
        client = boto3.client(
            "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client.create_bucket(Bucket=S3_BUCKET)
        yield url
    finally:
        server.stop()
