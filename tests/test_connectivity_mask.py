"""True connectivity: filling-factor mask statistics, zero diagonal, Lorentz bound, Gaussian option."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntune.config import SimulationConfig
from ntune.data.connectivity import LORENTZ_CUTOFF, lorentz_exponent, make_connectivity, spectral_radius

N = 400
P_CUTOFF = 1.0 - 2.0 / math.pi * math.atan(LORENTZ_CUTOFF)  # P(|Cauchy| > 25), set to 0


def _connectivity(**fields: object) -> tuple[np.ndarray, np.ndarray]:
    config = SimulationConfig(n_neurons=N, n_neuron_types=1, params=[[10.0, 1.0, 1.0]], **fields)
    return make_connectivity(config, np.random.default_rng(7))


def _within_3_sigma(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 3.0 * math.sqrt(n * p * (1.0 - p)) + 1e-9


@pytest.mark.parametrize("ff", [1.0, 0.25, 0.05])
def test_off_diagonal_fraction_matches_filling_factor(ff: float) -> None:
    W, mask = _connectivity(connectivity_filling_factor=ff)
    off = ~np.eye(N, dtype=bool)
    n_off = N * (N - 1)
    assert W.shape == mask.shape == (N, N) and W.dtype == np.float32 and mask.dtype == bool
    assert _within_3_sigma(int(mask[off].sum()), n_off, ff)
    # W is zero outside the mask; inside it, Lorentz samples beyond the cutoff are zero too
    assert not W[~mask].any()
    assert _within_3_sigma(int((W[off] != 0).sum()), n_off, ff * (1.0 - P_CUTOFF))
    assert not np.diag(W).any() and not np.diag(mask).any()


def test_lorentz_values_bounded() -> None:
    W, _ = _connectivity()
    bound = LORENTZ_CUTOFF / N**0.7
    assert lorentz_exponent(N) == 0.7
    assert np.abs(W).max() <= bound * (1 + 1e-6)
    assert np.abs(W).max() > 0.5 * bound  # heavy tail: values near the bound occur
    # Cauchy median |x| is 1, so the median non-zero |W| is about 1 / N**0.7
    assert np.median(np.abs(W[W != 0])) * N**0.7 == pytest.approx(1.0, rel=0.1)


def test_sparser_network_is_a_subset_of_a_denser_one() -> None:
    W_dense, mask_dense = _connectivity(connectivity_filling_factor=0.5)
    W_sparse, mask_sparse = _connectivity(connectivity_filling_factor=0.25)
    assert not (mask_sparse & ~mask_dense).any()
    np.testing.assert_array_equal(W_sparse[mask_sparse], W_dense[mask_sparse])


def test_gaussian_option() -> None:
    W, mask = _connectivity(connectivity_type="Gaussian", connectivity_init=[0.0, 2.0])
    off = ~np.eye(N, dtype=bool)
    values = W[off].astype(np.float64) * math.sqrt(N)
    assert values.std() == pytest.approx(2.0, rel=0.02)
    assert abs(values.mean()) < 0.02
    assert np.count_nonzero(W[off]) == N * (N - 1)
    assert not np.diag(W).any() and mask[off].all()
    # circular law: the spectral radius of an iid (0, sigma^2 / N) matrix is about sigma
    assert spectral_radius(W) == pytest.approx(2.0, rel=0.1)
