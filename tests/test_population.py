"""Population training: a member trains like the same config alone; a diverging member changes no other.

Equivalence is asserted in float64: a member's losses equal ``fit``'s to 1e-6 relative over the first 60
iterations (they start at 1e-15: same init, frames, loss, clip, optimizer and schedule). Training here is
chaotic: fit against itself, with the input frames changed by one ulp, differs by 6e-9 after 60 and 6e-5
after 150 iterations (float64), as much as a member does; so later iterations are compared through the
final metrics, and the float32 quickstart through its final metrics (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ntune.config import NtuneConfig, config_from_dict
from ntune.data.simulate import SimData, simulate
from ntune.learn import model as model_module
from ntune.learn.population import groups, train_population
from ntune.learn.train import fit

N_EQUAL = 60  # iterations over which float64 losses agree to 1e-6 relative


def _config(**training: object) -> NtuneConfig:
    return config_from_dict(
        {
            "simulation": {"n_neurons": 20, "n_frames": 1000, "n_neuron_types": 2, "device": "cpu",
                           "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]]},
            "training": {"data_augmentation_loop": 6, "n_log_points": 2, "n_rollout_frames": 50,
                         "device": "cpu", **training},
        }
    )  # fmt: skip


@pytest.fixture
def data64() -> Iterator[SimData]:
    """Simulated in float32, then trained in float64 (rounding differences stay ~1e-16)."""
    data = simulate(_config().simulation)
    data.u, data.y, data.W = (x.astype(np.float64) for x in (data.u, data.y, data.W))
    torch.set_default_dtype(torch.float64)
    yield data
    torch.set_default_dtype(torch.float32)


def _assert_losses_equal(alone: np.ndarray, member: np.ndarray, n: int = N_EQUAL) -> None:
    assert alone.shape == member.shape
    a, b = alone[:n], member[:n]
    scale = np.abs(a).max(axis=0)  # (4,)
    np.testing.assert_array_less(np.abs(a - b).max(axis=0), 1e-6 * scale + 1e-300)


def test_each_member_trains_like_the_same_config_alone(data64: SimData) -> None:
    configs = [
        _config(seed=0),
        _config(seed=1, learning_rate_W_start=3e-3, coeff_W_L1=1e-4, gradient_clip=0.5),
        _config(seed=2, learning_rate_embedding_start=1e-2, learning_rate_start=1e-3, n_epochs=2),
    ]
    configs[2].graph_model.W_init_std = 0.05
    results = train_population(configs, data64)
    for config, member in zip(configs, results, strict=True):
        alone = fit(config, data64)
        assert member.status == alone.status == "ok"
        assert member.metrics["iteration"] == alone.metrics["iteration"]
        _assert_losses_equal(alone.losses, member.losses)
        for key in ("connectivity_R2", "cluster_accuracy"):
            assert member.metrics[key] == pytest.approx(alone.metrics[key], abs=0.05)
    assert len(results[2].losses) == 2 * len(results[0].losses)  # own iteration count


@pytest.mark.parametrize(
    "training",
    [{"optimizer": "adamw"}, {"optimizer": "rmsprop"}, {"optimizer": "sgd", "learning_rate_W_start": 0.05},
     {"scheduler": "cosine"}, {"scheduler": "plateau", "n_log_points": 8}],
)  # fmt: skip
def test_optimizers_and_schedulers_match_fit(data64: SimData, training: dict) -> None:
    configs = [_config(seed=3, **training), _config(seed=4, learning_rate_start=2e-3, **training)]
    for config, member in zip(configs, train_population(configs, data64), strict=True):
        _assert_losses_equal(fit(config, data64).losses, member.losses, n=30)


def test_a_diverging_member_is_frozen_and_changes_no_other() -> None:
    good = [_config(seed=0), _config(seed=1, coeff_W_L1=1e-4)]
    bad = _config(seed=2, learning_rate_W_start=1e3, learning_rate_start=1e9)
    data = simulate(good[0].simulation)
    calls: list[tuple[int, dict]] = []
    with_bad = train_population([good[0], bad, good[1]], data, on_progress=lambda k, m: calls.append((k, m)))
    without = train_population(good, data)
    assert with_bad[1].status == "diverged" == with_bad[1].metrics["status"]
    assert with_bad[1].metrics["iteration"] == fit(bad, data).metrics["iteration"] < 150
    for member, reference in zip((with_bad[0], with_bad[2]), without, strict=True):
        assert member.status == "ok"
        np.testing.assert_array_equal(member.losses, reference.losses)
        assert member.metrics["connectivity_R2"] == reference.metrics["connectivity_R2"]
    finals = [k for k, m in calls if m["final"]]
    assert sorted(finals) == [0, 1, 2] and finals[0] == 1  # the diverged member reports first


def test_structural_settings_form_groups(data64: SimData) -> None:
    configs = [
        _config(seed=0),
        _config(seed=1, batch_size=4),
        _config(seed=2),
        _config(seed=3, optimizer="sgd"),
    ]
    assert groups(configs) == [[0, 2], [1], [3]]
    results = train_population(configs, data64)
    _assert_losses_equal(fit(configs[1], data64).losses, results[1].losses, n=40)
    assert [len(r.losses) for r in results] == [150, 300, 150, 150]


def test_members_evaluated_piece_by_piece_train_like_fit(data64: SimData) -> None:
    """lin_edge_eval 'pieces': each member's lin_edge is evaluated as its piecewise-linear function (the
    fast CPU step ``fit`` takes at N = 1000), lin_phi with its split first layer, the synapses without
    the mask multiply; losses equal ``fit``'s, which evaluates the same way, and the plain MLP's."""
    configs = [_config(seed=5), _config(seed=6, learning_rate_W_start=3e-3, coeff_W_L1=1e-4)]
    for config in configs:
        config.graph_model.lin_edge_eval = "pieces"
    calls: list[int] = []
    original = model_module.piecewise_forward

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_module, "piecewise_forward", counted)
        results = train_population(configs, data64)
    assert len(calls) >= 2 * 150  # every member, every iteration
    for config, member in zip(configs, results, strict=True):
        _assert_losses_equal(fit(config, data64).losses, member.losses)
        as_mlp = config.model_copy(deep=True)
        as_mlp.graph_model.lin_edge_eval = "mlp"
        _assert_losses_equal(fit(as_mlp, data64).losses, member.losses)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_population_on_cuda_graph_matches_cpu() -> None:
    """The CUDA path (frames sampled on the device, step captured in a CUDA graph) trains like ``fit`` on CUDA.

    A CUDA generator draws other frames than a CPU one with the same seed, so the frame-dependent loss
    terms are compared with ``fit`` on the same device, and only the frame-free terms (W L1, lin_phi at
    zero: same initial model) and the end result with the CPU path.
    """
    configs = [_config(seed=0), _config(seed=1, learning_rate_W_start=3e-3, gradient_clip=0.5)]
    data = simulate(configs[0].simulation)
    cpu = train_population(configs, data)
    cuda_configs = [
        c.model_copy(update={"training": c.training.model_copy(update={"device": "cuda"})}) for c in configs
    ]
    calls: list[int] = []
    gpu = train_population(cuda_configs, data, on_progress=lambda k, m: calls.append(k))
    for config, a, b in zip(cuda_configs, cpu, gpu, strict=True):
        assert b.status == "ok" and b.model.W.device.type == "cuda"
        assert len(a.losses) == len(b.losses)
        alone = fit(config, data).losses
        np.testing.assert_allclose(b.losses[:20], alone[:20], rtol=1e-3)  # graph replays track eager fit
        np.testing.assert_allclose(a.losses[0, 1:3], b.losses[0, 1:3], rtol=1e-5)  # frame-free terms
        assert b.metrics["connectivity_R2"] == pytest.approx(a.metrics["connectivity_R2"], abs=0.1)
    assert calls.count(0) == calls.count(1) == 3  # 2 log points + final, per member
