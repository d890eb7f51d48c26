"""What the data can decide about W: the least-squares oracle, the ceiling, silent neurons (no Ray, no torch).

With the true self-dynamics and the true transfer function phi the PDE_N2 target is linear in W:

    z_i(t) = (y_i(t) + c_i u_i(t) - s_i tanh(u_i(t))) / g_i = sum_j W_ij phi(u_j(t))

PDE_N4 (:mod:`ntune.data.pde_n4`) is linear in W the same way; its edge term is per source neuron:

    z_i(t) = (y_i(t) + a_i u_i(t) - b_i - s_i tanh(u_i(t))) / g_i = sum_j W_ij phi((u_j(t) - h_j) / w_j)

so the regressor of column j is x_j(t) = phi((u_j(t) - h_j) / w_j), with the true w_j and h_j of the
source neuron's type (the "true transfer function" the oracle is given), and everything below applies
with x in place of phi(u): ``phi_condition`` and ``silent`` are then about x.

The **oracle** regresses z on phi(u) over the training frames, one least-squares problem per row, all rows
in one solve (one SVD of the design, shared by every right-hand side). The design is centred (an intercept
per row): a learner's lin_phi absorbs any constant, so a presynaptic neuron whose phi(u_j) barely moves
over the training frames (a **silent** neuron, std < ``SILENT_STD``) determines nothing: its column is
left out of the solve and comes out 0, the entries of W the data cannot decide. (Kept in the solve, a
nearly constant column would add a near-null direction along which the target noise is amplified by
1/s_min into every row of W: a ceiling of 0.0009 on a network where the trainer reached R2 0.87.)

* ``R2_exact``: connectivity_R2 of the oracle W with the exact target (~1 when phi(u) has full rank and
  no neuron is silent).
* ``ceiling``: the same with Gaussian noise of ``noise`` (1 %) times the std of y added to the target;
  it is lowered by the silent neurons' columns (their share of W) and collapses where the active columns
  of phi(u) are ill-conditioned, since the solve amplifies the noise by 1/s_min.
* ``condition``: s_max / s_min of the centred phi(u) of the active (not silent) neurons (inf when all
  are silent).
* ``silent``: presynaptic neurons whose phi(u_j) has std < ``SILENT_STD`` over the training frames.

Frames: at most ``max_frames(N) = max(MIN_FRAMES, FRAMES_PER_NEURON * N)`` evenly spaced training frames
(20 000 at N = 1000: an SVD of a 20 000 x 1000 float64 matrix, seconds on one core). Consecutive frames
are nearly collinear (dt = 0.01), so a stride loses little of the span of phi(u); the noise is scaled by
sqrt(F / T_train) so that the subsampled estimate has the variance the full-data estimate would have
(X_F^T X_F ~ (F / T) X^T X). ``docs/science.md`` compares subsampled and full-data ceilings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

ORACLE_VERSION = (
    2  # 2: silent columns left out of the solve; cached numbers of another version are recomputed
)
NOISE = 0.01  # target noise, fraction of std(y)
SILENT_STD = 1e-3  # std of phi(u_j) over the training frames below which neuron j is silent
MIN_FRAMES = 4000
FRAMES_PER_NEURON = 20
TEST_FRACTION = 0.1  # the trainer's default held-out tail; the oracle sees the training frames only
IDENTIFIABLE = 0.95  # ceiling from which a block counts as identifiable (quickstart goal)
SUMMARY_KEYS = ("ceiling", "R2_exact", "phi_condition", "n_silent", "ident_frames", "ident_time_s")
SILENT_REMEDY = (
    "process noise (simulation.noise_model_level ~0.3 woke every silent neuron at N = 100, ff 0.05) or a "
    "larger network; more frames do not wake neurons resting at a fixed point"
)
FRAMES_REMEDY = (
    "more frames (N = 1000, ff 0.05: ceiling 0.0000 at 20 000 frames, 0.9998 at 100 000) or process noise"
)


def remedy(summary: Mapping[str, Any]) -> str:
    """What would make the data decide W (docs/science.md measures each remedy)."""
    return SILENT_REMEDY if float(summary.get("n_silent", 0) or 0) > 0 else FRAMES_REMEDY


def max_frames(n_neurons: int) -> int:
    """How many evenly spaced training frames the oracle uses at most for a network of ``n_neurons``."""
    return max(MIN_FRAMES, FRAMES_PER_NEURON * n_neurons)


def _phi(u: np.ndarray, phi: str) -> np.ndarray:
    return np.tanh(u) if phi == "tanh" else u


def _r2(W_hat: np.ndarray, W: np.ndarray) -> float:
    """Squared Pearson correlation of the off-diagonal entries (= metrics.connectivity_R2)."""
    off = ~np.eye(W.shape[0], dtype=bool)
    x, y = W[off].astype(np.float64), W_hat[off].astype(np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0 or syy == 0 or not math.isfinite(syy):
        return 0.0
    return float((dx @ dy) ** 2 / (sxx * syy))


def regression(
    u: np.ndarray, y: np.ndarray, p: np.ndarray, phi: str, model: str = "PDE_N2"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design x (F, N), target z (F, N) with z = x W^T exactly, and gains g (N,) of one model.

    ``u``, ``y`` (F, N) float64; ``p`` (N, 3) per-neuron [g, s, c] (PDE_N2) or (N, 6) [a, b, g, s, w, h]
    (PDE_N4). See the module docstring for the two forms.
    """
    if model == "PDE_N4":
        a, b, g, s, w, h = p.T  # (N,) each
        x = _phi((u - h) / w, phi)  # (F, N) regressor of column j: phi((u_j - h_j) / w_j)
        return x, (y + a * u - b - s * np.tanh(u)) / g, g
    g, s, c = p.T  # (N,) each
    return _phi(u, phi), (y + c * u - s * np.tanh(u)) / g, g  # (F, N), (F, N), (N,)


def oracle(
    u: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    params: np.ndarray,
    types: np.ndarray,
    *,
    phi: str = "tanh",
    model: str = "PDE_N2",
    noise: float = NOISE,
    test_fraction: float = TEST_FRACTION,
    frames: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Identifiability of one data set: u, y (T, N), true W (N, N), params (n_types, 3) [g, s, c] for
    ``model`` PDE_N2 or (n_types, 6) [a, b, g, s, w, h] for PDE_N4, types (N,).

    Returns ``ceiling``, ``R2_exact``, ``phi_condition``, ``n_silent``, ``ident_frames``, ``ident_time_s``,
    ``ident_version`` (floats) and ``silent`` (list of neuron indices).
    """
    start = time.perf_counter()
    T, N = u.shape
    n_train = T - int(round(T * test_fraction))
    F = min(n_train, frames or max_frames(N))
    idx = np.linspace(0, n_train - 1, F).round().astype(np.int64)  # (F,)
    u_f = np.asarray(u[idx], dtype=np.float64)  # (F, N)
    y_f = np.asarray(y[idx], dtype=np.float64)  # (F, N)
    p = np.asarray(params, dtype=np.float64)[np.asarray(types)]  # (N, 3) or (N, 6)
    X, z, g = regression(u_f, y_f, p, phi, model)  # (F, N), (F, N), (N,)
    X -= X.mean(axis=0)
    rng = np.random.default_rng(seed)
    y_std = float(np.asarray(y[: n_train : max(1, n_train // F)], dtype=np.float64).std())
    sigma = noise * y_std * math.sqrt(F / n_train)
    z_noisy = z + sigma * rng.standard_normal(z.shape) / g  # (F, N)
    Z = np.concatenate([z, z_noisy], axis=1)  # (F, 2N): both targets share one solve
    Z -= Z.mean(axis=0)
    phi_std = X.std(axis=0)  # (N,)
    silent = np.flatnonzero(phi_std < SILENT_STD)
    active = np.flatnonzero(phi_std >= SILENT_STD)  # (n_active,) the columns the data determine
    coef = np.zeros((N, 2 * N))  # (N, 2N) = W^T for both targets; a silent neuron's column stays 0
    cond = math.inf
    if len(active):
        U, sv, Vt = np.linalg.svd(X[:, active], full_matrices=False)  # (F, A), (A,), (A, A)
        keep = sv > sv[0] * max(F, N) * np.finfo(np.float64).eps  # lstsq's default cutoff
        coef[active] = Vt[keep].T @ ((U[:, keep].T @ Z) / sv[keep, None])  # (A, 2N)
        cond = float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf
    W_exact, W_noisy = coef[:, :N].T, coef[:, N:].T  # (N, N) each, row i = postsynaptic
    return {
        "ceiling": _r2(W_noisy, W),
        "R2_exact": _r2(W_exact, W),
        "phi_condition": cond,
        "n_silent": float(len(silent)),
        "ident_frames": float(F),
        "ident_time_s": time.perf_counter() - start,
        "ident_version": float(ORACLE_VERSION),
        "silent": [int(j) for j in silent],
    }


def of_data(data: Any) -> dict[str, Any]:
    """:func:`oracle` of a :class:`ntune.data.simulate.SimData`."""
    cfg = data.config
    return oracle(data.u, data.y, data.W, data.params, data.types, phi=cfg.phi, model=cfg.signal_model_name)


def is_data_limited(summary: Mapping[str, Any], threshold: float) -> bool:
    """True when the data's ceiling is below the R^2 ``threshold`` (no hyperparameter can reach it)."""
    ceiling = summary.get("ceiling")
    return ceiling is not None and math.isfinite(float(ceiling)) and float(ceiling) < threshold


def verdict(summary: Mapping[str, Any], threshold: float = 0.9) -> str:
    """One plain-words sentence on what the data can decide about W."""
    ceiling = float(summary.get("ceiling", math.nan))
    if not math.isfinite(ceiling):
        return "identifiability unknown (no ceiling computed)"
    n_silent = int(summary.get("n_silent", 0))
    cond = float(summary.get("phi_condition", math.nan))
    why = f"condition number of phi(u) {cond:.2g}" + (f", {n_silent} silent neurons" if n_silent else "")
    if ceiling >= max(threshold, IDENTIFIABLE):
        return f"identifiable: with the true dynamics, W is recoverable to R2 {_r2_text(ceiling)} ({why})"
    if ceiling >= threshold:
        return f"barely identifiable: ceiling R2 {ceiling:.3f} is close to the threshold {threshold} ({why})"
    return (
        f"data-limited: even the true dynamics recover W only to R2 {_r2_text(ceiling)} < {threshold} ({why}); "
        f"no hyperparameter can fix this; what would help: {remedy(summary)}"
    )


def _r2_text(r2: float) -> str:
    """0.9998 as "0.9998" (not "1"), 1.6e-05 as "1.6e-05"."""
    return f"{r2:.4f}" if r2 >= 1e-3 or not math.isfinite(r2) else f"{r2:.2g}"


def block_line(label: str, summary: Mapping[str, Any], threshold: float) -> str:
    """One console / report line for a block: its ceiling and, when data-limited, what would help."""
    ceiling = float(summary.get("ceiling", math.nan))
    head = f"{label}: ceiling R2 {_r2_text(ceiling)}, condition {float(summary.get('phi_condition', math.nan)):.2g}"
    head += f", {int(summary.get('n_silent', 0))} silent"
    if is_data_limited(summary, threshold):
        return f"{head} -> DATA-LIMITED (< {threshold}); what would help: {remedy(summary)}"
    return head
