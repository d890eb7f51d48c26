"""CUDA: training runs on the device end to end (dense/edge agreement on CUDA is in test_model.py)."""

from __future__ import annotations

import pytest
import torch

from ntune.config import config_from_dict
from ntune.data.simulate import simulate
from ntune.learn.metrics import REPORTED_METRICS
from ntune.learn.train import fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("backend", ["dense", "edge"])
def test_fit_on_cuda(backend: str) -> None:
    config = config_from_dict(
        {
            "simulation": {"n_neurons": 50, "n_frames": 1000, "device": "cpu"},
            "graph_model": {"backend": backend},
            "training": {"data_augmentation_loop": 5, "n_log_points": 3, "device": "cuda"},
        }
    )
    calls: list[dict] = []
    result = fit(config, simulate(config.simulation), on_progress=calls.append)
    assert result.status == "ok"
    assert result.model.W.device.type == "cuda"
    assert len(calls) == 4 and all(set(REPORTED_METRICS) <= set(c) for c in calls)
    assert result.metrics["iteration"] == result.metrics["n_iterations"] == int(1000 * 5 // 8 * 0.2)
