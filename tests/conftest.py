"""Shared fixtures: one real Ray instance per test session, a private data cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    """Every test uses a cache folder of the session, never ~/.cache/ntune."""
    path = tmp_path_factory.getbasetemp() / "ntune-cache"
    monkeypatch.setenv("NTUNE_CACHE", str(path))
    return path
