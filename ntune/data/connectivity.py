"""True connectivity W: Lorentz, Gaussian, chaotic or low-rank entries, Dale's law, filling-factor mask.

Convention (everywhere in ntune): row i of W is the postsynaptic neuron, so neuron i receives
``sum_j W[i, j] phi(u_j)``. All draws come from one ``numpy.random.Generator`` in this order:
the entry values (N x N values; for ``low_rank`` the N x r values of U, then the r x N of V), then
N x N uniforms for the mask. The uniforms are drawn even when the filling factor is 1, so with one seed
a sparser network is a subset of a denser one (same W values, nested masks) and everything drawn
afterwards (u0, noise) is the same. Dale's law draws nothing: it acts on the drawn values before the
mask (upstream applies it before its mask too), and masking commutes with it.

Upstream (NeuralGraph ``src/NeuralGraph/generators/utils.py``, ``init_connectivity``):

* ``chaotic``: ``randn(N, N) * sqrt(1 / N)``; ``connectivity_init`` is not used.
* ``low_rank``: ``U @ V / sqrt(rank * N)`` with U (N, rank) and V (rank, N) standard normal.
* every type then has its diagonal zeroed, so a low-rank W is of rank ``rank`` only off the diagonal.
* Dale's law: ``W <- |W|``, then the columns ``j >= int(N * Dale_law_factor)`` are negated (column =
  presynaptic neuron): the first ``floor(N * factor)`` neurons are excitatory, the others inhibitory.
"""

from __future__ import annotations

import math
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


def chaotic_W(n_neurons: int, rng: np.random.Generator) -> np.ndarray:
    """Standard normal samples divided by sqrt(N) (a spectral radius near 1); (N, N) float64."""
    return rng.standard_normal((n_neurons, n_neurons)) / np.sqrt(n_neurons)  # (N, N)


def low_rank_W(n_neurons: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """U V / sqrt(rank N) with U (N, rank) then V (rank, N) standard normal; (N, N) float64 of rank ``rank``."""
    U = rng.standard_normal((n_neurons, rank))  # (N, r)
    V = rng.standard_normal((rank, n_neurons))  # (r, N)
    return U @ V / np.sqrt(rank * n_neurons)  # (N, N)


DALE_EPS = 1e-9  # floor(N * factor) of a product that float rounding put just below an integer


def n_excitatory(n_neurons: int, factor: float) -> int:
    """floor(N * factor): how many presynaptic neurons (the first ones) are excitatory under Dale's law.

    Upstream takes ``int(N * factor)``; the ``DALE_EPS`` guard keeps 100 * 0.29 = 28.999999999999996 at 29.
    """
    return min(n_neurons, math.floor(n_neurons * factor + DALE_EPS))


def dale_law(W: np.ndarray, factor: float) -> np.ndarray:
    """|W| with the columns j >= n_excitatory(N, factor) negated: every column has one sign; (N, N)."""
    out = np.abs(W)  # (N, N)
    out[:, n_excitatory(W.shape[1], factor) :] *= -1.0
    return out


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
    elif config.connectivity_type == "chaotic":
        W = chaotic_W(n, rng)
    elif config.connectivity_type == "low_rank":
        W = low_rank_W(n, config.connectivity_rank, rng)
    else:
        mean, std = config.connectivity_init
        W = gaussian_W(n, rng, mean, std)
    if config.Dale_law:
        W = dale_law(W, config.Dale_law_factor)
    mask = filling_mask(n, config.connectivity_filling_factor, rng)
    return (W * mask).astype(np.float32), mask


def spectral_radius(W: np.ndarray) -> float:
    """Largest absolute eigenvalue of W."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))
