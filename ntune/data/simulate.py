"""Simulator of PDE_N2, du_i/dt = -c_i u_i + s_i tanh(u_i) + g_i sum_j W_ij phi(u_j), and of PDE_N4
(:mod:`ntune.data.pde_n4`), explicit Euler.

Randomness: one ``numpy.random.Generator(PCG64(simulation.seed))`` draws, in this order, the W
entries and the mask uniforms (:mod:`ntune.data.connectivity`), u0 ~ 5 N(0, 1) (N values), then the
process noise in chunks of ``NOISE_CHUNK`` steps (only when ``noise_model_level > 0``). All draws
happen on the CPU, so one seed gives the same network and, up to float rounding, the same data on
CPU and CUDA.

Time: ``-start_frame`` burn-in steps from u0 are discarded; stored frame 0 is the state after them.
Each step computes y = rhs(u) (stored with u when the frame is stored) and then
``u <- u + dt * y + noise_model_level * N(0, 1)``.

torch is imported inside the functions that need it, so a cached ``ntune simulate`` starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntune.config import ConfigError, SimulationConfig
from ntune.data.connectivity import make_connectivity, spectral_radius
from ntune.data.pde_n4 import pde_n4_params, pde_n4_step

if TYPE_CHECKING:
    import torch


Progress = Callable[[int, int], None]
Rhs = Callable[["torch.Tensor", "torch.Tensor"], None]  # rhs(u, y) writes du/dt of u (N,) into y (N,)
NOISE_CHUNK = 1024
# Intra-op threads of the CPU Euler loop up to this N. One (N, N) mat-vec per step is too small to
# share: on 2 busy cores 2 threads took 5.6 ms/step against 0.11 ms/step for 1 (benchmarks/README.md).
SINGLE_THREAD_MAX_N = 4096
PROGRESS_EVERY = 1000
RANK_FRAMES = 2000
# Upstream's activity SVD (analyze_data_svd): at most 1024 neurons (stride), 1e7 values (frame stride),
# 100 components; the effective rank at p is the number of components that reach p of their variance.
VARIANCE_MAX_NEURONS = 1024
VARIANCE_MAX_VALUES = 10_000_000
VARIANCE_MAX_COMPONENTS = 100
VARIANCE_CHUNK = 2048  # frames per float64 block of the Gram matrix
TRAINED_MODELS = ("PDE_N2", "PDE_N4")


@dataclass
class SimData:
    """One simulated data set (see the module docstring for how it is made)."""

    u: np.ndarray  # (T, N) float32 activity at stored frames
    y: np.ndarray  # (T, N) float32 exact du/dt at each stored frame (the target)
    W: np.ndarray  # (N, N) float32 true connectivity, masked, zero diagonal; row i = postsynaptic
    mask: np.ndarray  # (N, N) bool, True where an off-diagonal synapse exists
    types: np.ndarray  # (N,) int64 neuron type, contiguous blocks
    params: np.ndarray  # (n_types, 3) float32 rows [g, s, c]; PDE_N4: (n_types, 6) [a, b, g, s, w, h]
    config: SimulationConfig
    summary: dict[str, float]  # spectral_radius, activity_std, effective_rank(_90, _99), ceiling, ...
    path: Path | None = None  # cache entry, None if not cached
    silent: list[int] | None = (
        None  # silent presynaptic neurons (ntune.data.identifiability), None if not computed
    )


def neuron_types(n_neurons: int, n_types: int) -> np.ndarray:
    """(N,) int64: contiguous blocks, neuron i has type ``i * n_types // N``."""
    return (np.arange(n_neurons) * n_types // n_neurons).astype(np.int64)


def check_trainable(config: SimulationConfig) -> None:
    """Raise :class:`ConfigError` when the trainer cannot learn ``config``'s model (one not in TRAINED_MODELS)."""
    if config.signal_model_name not in TRAINED_MODELS:
        raise ConfigError(
            f"simulation.signal_model_name: {config.signal_model_name} is simulated, its trainer is not "
            f"built yet (trainable: {', '.join(TRAINED_MODELS)}); `ntune simulate` works for it"
        )


def neuron_params(params: Any, types: Any) -> tuple[Any, Any, Any]:
    """Per-neuron g, s, c, each (N,), from PDE_N2 rows ``params`` (n_types, 3) and ``types`` (N,).

    Works for numpy arrays and torch tensors alike (returns the same kind). Rows of another width
    (PDE_N4's [a, b, g, s, w, h]: :func:`ntune.data.pde_n4.pde_n4_params`) raise :class:`ConfigError`.
    """
    if params.shape[-1] != 3:
        raise ConfigError(
            f"simulation.params: rows have {params.shape[-1]} columns, but PDE_N2 reads [g, s, c]; "
            "PDE_N4 rows [a, b, g, s, w, h] are split by ntune.data.pde_n4.pde_n4_params"
        )
    p = params[types]  # (N, 3)
    return p[:, 0], p[:, 1], p[:, 2]


def pde_n2_rhs(
    u: torch.Tensor, W: torch.Tensor, g: torch.Tensor, s: torch.Tensor, c: torch.Tensor, phi: str = "tanh"
) -> torch.Tensor:
    """du/dt = -c*u + s*tanh(u) + g * (phi(u) @ W.T); u (..., N), W (N, N), g/s/c (N,) -> (..., N)."""
    import torch

    tanh_u = torch.tanh(u)  # (..., N)
    phi_u = tanh_u if phi == "tanh" else u  # (..., N)
    return -c * u + s * tanh_u + g * (phi_u @ W.T)  # (..., N)


def pde_n2_step(W: torch.Tensor, g: torch.Tensor, s: torch.Tensor, c: torch.Tensor, phi: str = "tanh") -> Rhs:
    """``rhs(u, y)`` that writes :func:`pde_n2_rhs` of u (N,) into y (N,), reusing its buffers (no allocation)."""
    import torch

    neg_c = -c  # (N,)
    tanh_u, msg = torch.empty_like(c), torch.empty_like(c)  # (N,) each

    def rhs(u: torch.Tensor, y: torch.Tensor) -> None:
        torch.tanh(u, out=tanh_u)
        torch.mv(W, tanh_u if phi == "tanh" else u, out=msg)  # (N,) sum_j W_ij phi(u_j)
        torch.mul(g, msg, out=y)
        y.addcmul_(s, tanh_u).addcmul_(neg_c, u)

    return rhs


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; other names unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def simulate(config: SimulationConfig, *, progress: Progress | None = None) -> SimData:
    """Simulate the network of ``config`` (no cache); ``progress(done, total)`` is called every 1000 steps."""
    import torch

    rng = np.random.Generator(np.random.PCG64(config.seed))
    W, mask = make_connectivity(config, rng)  # (N, N), (N, N)
    n, n_burn, n_frames = config.n_neurons, -config.start_frame, config.n_frames
    types = neuron_types(n, config.n_neuron_types)  # (N,)
    params = np.asarray(config.params, dtype=np.float32)  # (n_types, 3) or (n_types, 6)
    u0 = (5.0 * rng.standard_normal(n)).astype(np.float32)  # (N,)

    device = torch.device(resolve_device(config.device))
    u_all = np.empty((n_frames, n), dtype=np.float32)  # (T, N)
    y_all = np.empty((n_frames, n), dtype=np.float32)  # (T, N)
    on_cpu = device.type == "cpu"
    u_out = torch.from_numpy(u_all) if on_cpu else torch.empty((n_frames, n), device=device)  # (T, N)
    y_out = torch.from_numpy(y_all) if on_cpu else torch.empty((n_frames, n), device=device)  # (T, N)
    split = pde_n4_params if config.signal_model_name == "PDE_N4" else neuron_params
    per_neuron = [torch.from_numpy(np.ascontiguousarray(v)).to(device) for v in split(params, types)]  # (N,)
    threads = torch.get_num_threads()
    if on_cpu and n <= SINGLE_THREAD_MAX_N:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            W_t = torch.from_numpy(W).to(device)  # (N, N)
            step = pde_n4_step if config.signal_model_name == "PDE_N4" else pde_n2_step
            rhs = step(W_t, *per_neuron, phi=config.phi)
            _integrate(torch.from_numpy(u0).to(device), rhs, config, rng, u_out, y_out, n_burn, progress)
            if not on_cpu:
                u_all[:] = u_out.cpu().numpy()
                y_all[:] = y_out.cpu().numpy()
    finally:
        torch.set_num_threads(threads)
    summary = summarize(u_all, W, mask)
    return SimData(u_all, y_all, W, mask, types, params, config, summary, None)


def _integrate(
    u0: torch.Tensor,
    rhs: Rhs,
    config: SimulationConfig,
    rng: np.random.Generator,
    u_out: torch.Tensor,
    y_out: torch.Tensor,
    n_burn: int,
    progress: Progress | None,
) -> None:
    """Euler loop writing stored frames into ``u_out``/``y_out`` (T, N) in place; no allocation per step."""
    import torch

    n_frames, n = u_out.shape
    total = n_burn + n_frames
    dt, level = config.delta_t, config.noise_model_level
    u = u0.clone()  # (N,) working state
    y_burn = torch.empty_like(u)  # (N,)
    noise = None
    for step in range(total):
        t = step - n_burn
        y = y_out[t] if t >= 0 else y_burn  # (N,)
        rhs(u, y)
        if t >= 0:
            u_out[t].copy_(u)
        if step == total - 1:
            break
        u.add_(y, alpha=dt)
        if level > 0:
            k = step % NOISE_CHUNK
            if k == 0:
                chunk = rng.standard_normal((NOISE_CHUNK, n), dtype=np.float32) * np.float32(level)
                noise = torch.from_numpy(chunk).to(u.device)  # (NOISE_CHUNK, N)
            u.add_(noise[k])
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(step + 1, total)
    if progress is not None:
        progress(total, total)


def effective_rank(u: np.ndarray, max_frames: int = RANK_FRAMES) -> float:
    """Participation ratio (sum s^2)^2 / sum s^4 of the singular values s of the centred activity.

    Uses at most ``max_frames`` evenly spaced frames of u (T, N); 1 for one mode, N for isotropic activity.
    """
    idx = np.linspace(0, len(u) - 1, min(len(u), max_frames)).astype(np.int64)
    x = u[idx].astype(np.float64)  # (frames, N)
    x -= x.mean(axis=0)
    s2 = np.linalg.svd(x, compute_uv=False) ** 2  # (min(frames, N),)
    denom = float(np.sum(s2**2))
    return float(np.sum(s2) ** 2 / denom) if denom > 0 else 0.0


def variance_ranks(u: np.ndarray, levels: tuple[float, ...] = (0.9, 0.99)) -> tuple[int, ...]:
    """Upstream's activity complexity: per level p, the fewest components of u whose variance reaches p.

    As upstream's ``analyze_data_svd`` reports "effective rank (90% var)" and "(99% var)": the activity
    u (T, N) is not centred; at most ``VARIANCE_MAX_NEURONS`` neurons (every ceil(N / 1024)-th) and
    ``VARIANCE_MAX_VALUES`` values (every ceil(T N' / 1e7)-th frame) are used; the squared singular
    values s_1^2 >= s_2^2 >= ... of the top k = min(100, min(T', N') - 1) components are kept, and the
    rank at p is 1 + the first index where cumsum(s^2) / sum(s^2) >= p. The s^2 are the eigenvalues of the
    Gram matrix X^T X, accumulated in float64 blocks of ``VARIANCE_CHUNK`` frames (upstream's randomized
    SVD approximates the same values).
    """
    T, N = u.shape
    x = u[:, :: -(-N // VARIANCE_MAX_NEURONS)]  # (T, N')
    x = x[:: -(-(T * x.shape[1]) // VARIANCE_MAX_VALUES)]  # (T', N')
    gram = np.zeros((x.shape[1], x.shape[1]))  # (N', N')
    for start in range(0, len(x), VARIANCE_CHUNK):
        block = np.asarray(x[start : start + VARIANCE_CHUNK], dtype=np.float64)  # (chunk, N')
        gram += block.T @ block
    k = max(1, min(VARIANCE_MAX_COMPONENTS, min(x.shape) - 1))
    s2 = np.clip(np.linalg.eigvalsh(gram)[::-1][:k], 0.0, None)  # (k,) descending
    total = float(s2.sum())
    if total <= 0:
        return tuple(0 for _ in levels)
    cum = np.cumsum(s2) / total  # (k,)
    return tuple(int(min(np.searchsorted(cum, p), k - 1)) + 1 for p in levels)


def summarize(u: np.ndarray, W: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Scalar description of a data set (also printed by ``ntune simulate``).

    The eigenvalues and the SVD run on one BLAS thread: on shared cores two threads were up to 10x slower.
    """
    from threadpoolctl import threadpool_limits

    n = W.shape[0]
    n_syn = int(mask.sum())
    finite = bool(np.isfinite(u).all())
    with threadpool_limits(1):
        rho = spectral_radius(W)
        rank = effective_rank(u) if finite else float("nan")
        rank_90, rank_99 = variance_ranks(u) if finite else (float("nan"), float("nan"))
    return {
        "spectral_radius": rho,
        "activity_std": float(u.std(dtype=np.float64)) if finite else float("nan"),
        "activity_max_abs": float(np.abs(u).max()) if finite else float("nan"),
        "effective_rank": rank,
        "effective_rank_90": float(rank_90),
        "effective_rank_99": float(rank_99),
        "n_synapses": float(n_syn),
        "connectivity_filling_factor": n_syn / (n * (n - 1)) if n > 1 else 0.0,
        "finite": float(finite),
    }
