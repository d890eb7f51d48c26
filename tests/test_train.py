"""fit(): convergence on a small network, divergence as a result, held-out frames, seeds, outputs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from ntune.cli.commands import train_command
from ntune.config import NtuneConfig, config_from_dict
from ntune.data.simulate import SimData, simulate
from ntune.learn.checkpoint import load_checkpoint
from ntune.learn.metrics import REPORTED_METRICS as METRIC_KEYS
from ntune.learn.train import fit


def _config(n: int = 20, frames: int = 500, **training: Any) -> NtuneConfig:
    return config_from_dict(
        {
            "simulation": {"n_neurons": n, "n_frames": frames, "device": "cpu"},
            "training": {"n_log_points": 4, "data_augmentation_loop": 2, "device": "cpu", **training},
        }
    )


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """fit leaves threads to its caller; one thread is fastest for these sizes on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small() -> SimData:
    return simulate(_config().simulation)


def test_progress_calls_carry_every_key(small: SimData) -> None:
    calls: list[dict[str, Any]] = []
    result = fit(_config(), small, on_progress=calls.append)
    assert result.status == "ok"
    assert len(calls) == 5  # n_log_points + the final call
    for call in calls:
        assert set(METRIC_KEYS) <= set(call)
    assert [c["final"] for c in calls] == [False] * 4 + [True]
    assert all(math.isnan(c["test_R2"]) for c in calls[:-1])
    assert math.isfinite(calls[-1]["test_R2"]) and math.isfinite(calls[-1]["final_loss"])
    assert calls[-1]["iteration"] == calls[-1]["n_iterations"] == int(500 * 2 // 8 * 0.2)
    assert calls[-1]["status"] == "ok" and calls[-1]["progress"] == 1.0
    assert result.history[-1] == result.metrics
    assert result.metrics["spectral_radius"] == pytest.approx(small.summary["spectral_radius"])


def test_huge_learning_rate_diverges_without_raising(small: SimData) -> None:
    config = _config(optimizer="sgd", learning_rate_W_start=1e4, learning_rate_start=1e4)
    calls: list[dict[str, Any]] = []
    result = fit(config, small, on_progress=calls.append)
    assert result.status == "diverged"
    m = result.metrics
    assert m["status"] == "diverged" and m["classification"] == "failed" and m["final"]
    assert m["connectivity_R2"] == 0.0 and m["cluster_accuracy"] == 0.0 and m["test_R2"] == 0.0
    assert math.isnan(m["final_loss"])
    assert m["iteration"] < m["n_iterations"]  # stopped early
    assert calls[-1] == m and set(METRIC_KEYS) <= set(m)


def test_held_out_frames_are_never_trained_on(small: SimData) -> None:
    poisoned = SimData(**{**small.__dict__, "y": small.y.copy()})
    n_train = len(small.y) - int(round(len(small.y) * 0.1))
    poisoned.y[n_train:] = np.nan  # any held-out frame in a batch would make the loss NaN
    assert fit(_config(), poisoned).status == "ok"
    poisoned.y[n_train - 1] = np.nan  # control: the last training frame is sampled at some point
    assert fit(_config(data_augmentation_loop=20), poisoned).status == "diverged"


def test_seed_makes_cpu_runs_reproducible(small: SimData) -> None:
    W = [fit(_config(seed=s), small).model.W.detach().clone() for s in (3, 3, 4)]
    assert torch.equal(W[0], W[1])
    assert not torch.allclose(W[0], W[2])


def test_edge_backend_trains_like_dense(small: SimData) -> None:
    dense = fit(_config(), small).model
    edge = fit(config_from_dict({**_config().model_dump(), "graph_model": {"backend": "edge"}}), small).model
    torch.testing.assert_close(dense.W, edge.W, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_train_command_writes_outputs(tmp_path: Path, small: SimData) -> None:
    out = tmp_path / "run"
    code = train_command(_config(), out=out, console=Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
    assert code == 0
    for name in ("config.yaml", "metrics.json", "checkpoint.pt", "W_scatter.png", "embedding.png", "lin_phi.png",
                 "lin_edge.png", "loss.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"] == _config() and ckpt["metrics"]["status"] == "ok"
    assert {"model", "optimizer", "config", "epoch", "metrics", "ntune_version"} <= set(ckpt)
    u = torch.from_numpy(small.u[:4])
    W = ckpt["model"].W_masked().detach().numpy()
    from ntune.learn.metrics import connectivity_R2

    assert connectivity_R2(W, small.W) == pytest.approx(metrics["connectivity_R2"], abs=1e-6)
    assert ckpt["model"](u).shape == (4, 20)


@pytest.mark.slow
def test_small_network_recovers_W() -> None:
    """A dense 100-neuron network: connectivity_R2 > 0.9 in a few thousand iterations (3750 iterations, ~15 s of one CPU core)."""
    config = config_from_dict(
        {
            "simulation": {"n_neurons": 100, "n_frames": 5000, "device": "cpu"},
            "training": {
                "data_augmentation_loop": 30,
                "learning_rate_W_start": 5e-3,
                "learning_rate_start": 2e-3,
                "learning_rate_embedding_start": 2e-2,
                "n_log_points": 5,
                "device": "cpu",
            },
        }
    )
    result = fit(config, simulate(config.simulation))
    assert result.status == "ok"
    assert result.metrics["connectivity_R2"] > 0.9
    assert result.metrics["connectivity_slope"] > 0.5
    assert result.metrics["test_pearson"] > 0.3
