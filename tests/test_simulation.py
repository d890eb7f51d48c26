"""PDE_N2 simulator: right-hand side by hand, first-order Euler convergence, seeds and summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ntune.config import SimulationConfig
from ntune.data.simulate import SimData, neuron_params, neuron_types, pde_n2_rhs, simulate


def _small(**fields: object) -> SimulationConfig:
    base: dict[str, object] = {
        "n_neurons": 30,
        "n_neuron_types": 2,
        "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]],
        "n_frames": 300,
        "start_frame": -100,
        "device": "cpu",
        "seed": 3,
    }
    base.update(fields)
    return SimulationConfig(**base)


def test_rhs_matches_hand_computation_on_three_neurons() -> None:
    u = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    W = torch.tensor([[0.0, 0.2, -0.4], [0.3, 0.0, 0.1], [-0.5, 0.6, 0.0]], dtype=torch.float64)
    g = torch.tensor([10.0, 10.0, 5.0], dtype=torch.float64)
    s = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    c = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    t0, t1, t2 = math.tanh(0.5), math.tanh(-1.0), math.tanh(2.0)
    expected = [
        -1.0 * 0.5 + 1.0 * t0 + 10.0 * (0.2 * t1 - 0.4 * t2),
        -1.0 * -1.0 + 2.0 * t1 + 10.0 * (0.3 * t0 + 0.1 * t2),
        -2.0 * 2.0 + 1.0 * t2 + 5.0 * (-0.5 * t0 + 0.6 * t1),
    ]
    # written out: tanh(0.5)=0.46211716, tanh(-1)=-0.76159416, tanh(2)=0.96402758
    assert expected == pytest.approx([-5.417181, 1.827191, -6.476048], abs=1e-6)
    assert pde_n2_rhs(u, W, g, s, c).tolist() == pytest.approx(expected, abs=1e-12)
    linear = [
        -0.5 + t0 + 10.0 * (0.2 * -1.0 - 0.4 * 2.0),
        1.0 + 2.0 * t1 + 10.0 * (0.3 * 0.5 + 0.1 * 2.0),
        -4.0 + t2 + 5.0 * (-0.5 * 0.5 + 0.6 * -1.0),
    ]
    assert pde_n2_rhs(u, W, g, s, c, phi="linear").tolist() == pytest.approx(linear, abs=1e-12)
    batch = torch.stack([u, 2 * u])  # (2, 3)
    out = pde_n2_rhs(batch, W, g, s, c)  # (2, 3)
    assert out.shape == (2, 3)
    assert out[0].tolist() == pytest.approx(expected, abs=1e-12)
    assert out[1].tolist() == pytest.approx(pde_n2_rhs(2 * u, W, g, s, c).tolist(), abs=1e-12)


def test_types_are_contiguous_blocks_and_params_per_neuron() -> None:
    types = neuron_types(8, 4)
    assert types.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    params = np.array([[10, 1, 1], [10, 2, 1], [10, 1, 2], [10, 2, 2]], dtype=np.float32)
    g, s, c = neuron_params(params, types)
    assert g.tolist() == [10] * 8
    assert s.tolist() == [1, 1, 2, 2, 1, 1, 2, 2]
    assert c.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]


def test_stored_y_is_the_rhs_and_u_follows_euler() -> None:
    data = simulate(_small())
    N = data.W.shape[0]
    g, s, c = (torch.from_numpy(v) for v in neuron_params(data.params, data.types))
    y = pde_n2_rhs(torch.from_numpy(data.u), torch.from_numpy(data.W), g, s, c).numpy()  # (T, N)
    np.testing.assert_allclose(data.y, y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.u[1:], data.u[:-1] + 0.01 * data.y[:-1], rtol=1e-5, atol=1e-5)
    assert data.u.shape == data.y.shape == (300, N)
    assert data.u.dtype == data.y.dtype == np.float32


def _closed_form_error(dt: float, t_end: float) -> float:
    config = _small(
        n_neurons=12,
        params=[[0.5, 0.0, 1.0], [0.5, 0.0, 2.0]],
        phi="linear",
        start_frame=0,
        delta_t=dt,
        n_frames=round(t_end / dt) + 1,
        lorentz_exponent=1.5,
    )
    data = simulate(config)
    u0 = data.u[0].astype(np.float64)  # (N,)
    g, _, c = neuron_params(data.params.astype(np.float64), data.types)
    A = -np.diag(c) + np.diag(g) @ data.W.astype(np.float64)  # (N, N)
    exact = scipy.linalg.expm(t_end * A) @ u0  # (N,)
    return float(np.linalg.norm(data.u[-1] - exact))


def test_euler_converges_at_first_order_to_expm() -> None:
    errors = [_closed_form_error(dt, 1.0) for dt in (0.02, 0.01, 0.005)]
    assert errors[0] > 1e-3  # far above float32 rounding, so the ratio measures the scheme
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(1.7 < r < 2.3 for r in ratios), (errors, ratios)


def test_same_seed_same_data_other_seed_different() -> None:
    a, b, other = simulate(_small()), simulate(_small()), simulate(_small(seed=4))
    for name in ("u", "y", "W", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.summary == b.summary
    assert not np.array_equal(a.W, other.W)
    assert not np.array_equal(a.u, other.u)


def test_noise_is_seeded_and_has_the_configured_level() -> None:
    config = _small(noise_model_level=0.05, n_frames=2000)
    a, b = simulate(config), simulate(config)
    np.testing.assert_array_equal(a.u, b.u)
    residual = a.u[1:] - a.u[:-1] - 0.01 * a.y[:-1]  # (T-1, N) the noise added per step
    assert residual.std() == pytest.approx(0.05, rel=0.02)
    clean = simulate(_small(n_frames=2000))
    np.testing.assert_array_equal(a.W, clean.W)
    assert not np.array_equal(a.u, clean.u)


def test_summary_keys_and_spectral_radius() -> None:
    data = simulate(_small(connectivity_filling_factor=0.5))
    assert isinstance(data, SimData) and data.path is None
    for key in (
        "spectral_radius",
        "activity_std",
        "activity_max_abs",
        "effective_rank",
        "n_synapses",
        "connectivity_filling_factor",
        "finite",
    ):
        assert key in data.summary
    rho = np.max(np.abs(np.linalg.eigvals(data.W.astype(np.float64))))
    assert data.summary["spectral_radius"] == pytest.approx(rho, rel=1e-9)
    assert data.summary["n_synapses"] == data.mask.sum()
    assert data.summary["activity_std"] == pytest.approx(float(data.u.std()), rel=1e-4)
    assert 1.0 <= data.summary["effective_rank"] <= data.W.shape[0]
    assert data.summary["finite"] == 1.0
