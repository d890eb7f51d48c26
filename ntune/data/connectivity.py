"""True connectivity W of a PDE_N2 network: Lorentz or Gaussian entries, filling-factor mask, zero diagonal.

Convention (everywhere in ntune): row i of W is the postsynaptic neuron, so neuron i receives
``sum_j W[i, j] phi(u_j)``. All draws come from one ``numpy.random.Generator`` in this order:
the N x N entry values, then N x N uniforms for the mask. The uniforms are drawn even when the
filling factor is 1, so with one seed a sparser network is a subset of a denser one (same W values,
nested masks) and everything drawn afterwards (u0, noise) is the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ntune.config import SimulationConfig

LORENTZ_CUTOFF = 25.0

# Upstream NeuralGraph (src/NeuralGraph/generators/utils.py, init_connectivity) divides Lorentz samples
# by N**e with e = 0.7 (N < 2000), 0.675 (N < 4000), 0.67 (N < 8000), 0.66 (N == 8000), 0.5 (N > 8000).
# Rows (bound, e): the first row with N < bound wins.
UPSTREAM_LORENTZ_EXPONENTS: tuple[tuple[float, float], ...] = (
    (2_000, 0.7),
    (4_000, 0.675),
    (8_000, 0.67),
    (8_001, 0.66),
    (float("inf"), 0.5),
)


def lorentz_exponent(n_neurons: int, exponent: float | None = None) -> float:
    """The exponent e of the N**e normalisation: ``exponent`` if given, else upstream's table."""
    if exponent is not None:
        return float(exponent)
    for bound, value in UPSTREAM_LORENTZ_EXPONENTS:
        if n_neurons < bound:
            return value
    raise AssertionError("unreachable: the last bound is infinite")


def lorentz_W(n_neurons: int, rng: np.random.Generator, exponent: float | None = None) -> np.ndarray:
    """Standard Cauchy samples, |x| > 25 set to 0, divided by N**exponent; (N, N) float64, diagonal not zeroed."""
    x = rng.standard_cauchy((n_neurons, n_neurons))  # (N, N)
    x[np.abs(x) > LORENTZ_CUTOFF] = 0.0
    return x / n_neurons ** lorentz_exponent(n_neurons, exponent)


def gaussian_W(n_neurons: int, rng: np.random.Generator, mean: float, std: float) -> np.ndarray:
    """N(mean, std^2) samples divided by sqrt(N); (N, N) float64, diagonal not zeroed."""
    return rng.normal(mean, std, (n_neurons, n_neurons)) / np.sqrt(n_neurons)  # (N, N)


def filling_mask(n_neurons: int, filling_factor: float, rng: np.random.Generator) -> np.ndarray:
    """(N, N) bool: each off-diagonal entry kept with probability ``filling_factor``; diagonal False."""
    mask = rng.random((n_neurons, n_neurons)) < filling_factor  # (N, N)
    np.fill_diagonal(mask, False)
    return mask


def make_connectivity(config: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """W (N, N) float32 (masked, zero diagonal, no rescaling by the filling factor) and its mask (N, N) bool."""
    n = config.n_neurons
    if config.connectivity_type == "Lorentz":
        W = lorentz_W(n, rng, config.lorentz_exponent)
    else:
        mean, std = config.connectivity_init
        W = gaussian_W(n, rng, mean, std)
    mask = filling_mask(n, config.connectivity_filling_factor, rng)
    return (W * mask).astype(np.float32), mask


def spectral_radius(W: np.ndarray) -> float:
    """Largest absolute eigenvalue of W."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))
