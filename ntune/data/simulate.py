"""PDE_N2 simulator: du_i/dt = -c_i u_i + s_i tanh(u_i) + g_i sum_j W_ij phi(u_j), explicit Euler.

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

from ntune.config import SimulationConfig
from ntune.data.connectivity import make_connectivity, spectral_radius

if TYPE_CHECKING:
    import torch


Progress = Callable[[int, int], None]
NOISE_CHUNK = 1024
# Intra-op threads of the CPU Euler loop up to this N. One (N, N) mat-vec per step is too small to
# share: on 2 busy cores 2 threads took 5.6 ms/step against 0.11 ms/step for 1 (benchmarks/README.md).
SINGLE_THREAD_MAX_N = 4096
PROGRESS_EVERY = 1000
RANK_FRAMES = 2000


@dataclass
class SimData:
    """One simulated data set (see the module docstring for how it is made)."""

    u: np.ndarray  # (T, N) float32 activity at stored frames
    y: np.ndarray  # (T, N) float32 exact du/dt at each stored frame (the target)
    W: np.ndarray  # (N, N) float32 true connectivity, masked, zero diagonal; row i = postsynaptic
    mask: np.ndarray  # (N, N) bool, True where an off-diagonal synapse exists
    types: np.ndarray  # (N,) int64 neuron type, contiguous blocks
    params: np.ndarray  # (n_types, 3) float32 rows [g, s, c]
    config: SimulationConfig
    summary: dict[str, float]  # spectral_radius, activity_std, effective_rank, n_synapses, ceiling, ...
    path: Path | None = None  # cache entry, None if not cached
    silent: list[int] | None = (
        None  # silent presynaptic neurons (ntune.data.identifiability), None if not computed
    )


def neuron_types(n_neurons: int, n_types: int) -> np.ndarray:
    """(N,) int64: contiguous blocks, neuron i has type ``i * n_types // N``."""
    return (np.arange(n_neurons) * n_types // n_neurons).astype(np.int64)


def neuron_params(params: Any, types: Any) -> tuple[Any, Any, Any]:
    """Per-neuron g, s, c, each (N,), from per-type rows ``params`` (n_types, 3) and ``types`` (N,).

    Works for numpy arrays and torch tensors alike (returns the same kind).
    """
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
    params = np.asarray(config.params, dtype=np.float32)  # (n_types, 3)
    u0 = (5.0 * rng.standard_normal(n)).astype(np.float32)  # (N,)

    device = torch.device(resolve_device(config.device))
    u_all = np.empty((n_frames, n), dtype=np.float32)  # (T, N)
    y_all = np.empty((n_frames, n), dtype=np.float32)  # (T, N)
    on_cpu = device.type == "cpu"
    u_out = torch.from_numpy(u_all) if on_cpu else torch.empty((n_frames, n), device=device)  # (T, N)
    y_out = torch.from_numpy(y_all) if on_cpu else torch.empty((n_frames, n), device=device)  # (T, N)
    g, s, c = (torch.from_numpy(np.ascontiguousarray(v)).to(device) for v in neuron_params(params, types))
    threads = torch.get_num_threads()
    if on_cpu and n <= SINGLE_THREAD_MAX_N:
        torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            _integrate(
                torch.from_numpy(u0).to(device),
                torch.from_numpy(W).to(device),
                g,
                s,
                c,
                config,
                rng,
                u_out,
                y_out,
                n_burn,
                progress,
            )
            if not on_cpu:
                u_all[:] = u_out.cpu().numpy()
                y_all[:] = y_out.cpu().numpy()
    finally:
        torch.set_num_threads(threads)
    summary = summarize(u_all, W, mask)
    return SimData(u_all, y_all, W, mask, types, params, config, summary, None)


def _integrate(
    u0: torch.Tensor,
    W: torch.Tensor,
    g: torch.Tensor,
    s: torch.Tensor,
    c: torch.Tensor,
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
    neg_c = -c  # (N,)
    u = u0.clone()  # (N,) working state
    tanh_u, msg, y_burn = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)  # (N,) each
    phi_u = tanh_u if config.phi == "tanh" else u  # (N,) alias, refreshed by the tanh below
    noise = None
    for step in range(total):
        t = step - n_burn
        y = y_out[t] if t >= 0 else y_burn  # (N,)
        torch.tanh(u, out=tanh_u)
        torch.mv(W, phi_u, out=msg)  # (N,) sum_j W_ij phi(u_j)
        torch.mul(g, msg, out=y)
        y.addcmul_(s, tanh_u).addcmul_(neg_c, u)
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
    return {
        "spectral_radius": rho,
        "activity_std": float(u.std(dtype=np.float64)) if finite else float("nan"),
        "activity_max_abs": float(np.abs(u).max()) if finite else float("nan"),
        "effective_rank": rank,
        "n_synapses": float(n_syn),
        "connectivity_filling_factor": n_syn / (n * (n - 1)) if n > 1 else 0.0,
        "finite": float(finite),
    }
