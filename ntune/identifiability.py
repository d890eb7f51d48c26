"""What the data can decide about W: the least-squares oracle, the ceiling, silent neurons (no Ray, no torch).

With the true self-dynamics and the true transfer function phi the PDE_N2 target is linear in W:

    z_i(t) = (y_i(t) + c_i u_i(t) - s_i tanh(u_i(t))) / g_i = sum_j W_ij phi(u_j(t))

The **oracle** regresses z on phi(u) over the training frames, one least-squares problem per row, all rows
in one solve (one SVD of the design, shared by every right-hand side). The design is centred (an intercept
per row): a learner's lin_phi absorbs any constant, so a presynaptic neuron whose phi(u_j) is constant
over the training frames (a **silent** neuron) determines nothing and its column comes out 0.

* ``R2_exact``: connectivity_R2 of the oracle W with the exact target (~1 when phi(u) has full rank).
* ``ceiling``: the same with Gaussian noise of ``noise`` (1 %) times the std of y added to the target;
  it collapses where phi(u) is ill-conditioned, since the solve amplifies the noise by 1/s_min.
* ``condition``: s_max / s_min of the centred phi(u) (inf when a column is constant).
* ``silent``: presynaptic neurons whose phi(u_j) has std < ``SILENT_STD`` over the training frames.

Frames: at most ``max_frames(N) = max(MIN_FRAMES, FRAMES_PER_NEURON * N)`` evenly spaced training frames
(20 000 at N = 1000: an SVD of a 20 000 x 1000 float64 matrix, seconds on one core). Consecutive frames
are nearly collinear (dt = 0.01), so a stride loses little of the span of phi(u); the noise is scaled by
sqrt(F / T_train) so that the subsampled estimate has the variance the full-data estimate would have
(X_F^T X_F ~ (F / T) X^T X). ``docs/science.md`` compares subsampled and full-data ceilings.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

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


def oracle(
    u: np.ndarray,
    y: np.ndarray,
    W: np.ndarray,
    params: np.ndarray,
    types: np.ndarray,
    *,
    phi: str = "tanh",
    noise: float = NOISE,
    test_fraction: float = TEST_FRACTION,
    frames: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Identifiability of one data set: u, y (T, N), true W (N, N), params (n_types, 3) [g, s, c], types (N,).

    Returns ``ceiling``, ``R2_exact``, ``phi_condition``, ``n_silent``, ``ident_frames``, ``ident_time_s``
    (floats) and ``silent`` (list of neuron indices).
    """
    start = time.perf_counter()
    T, N = u.shape
    n_train = T - int(round(T * test_fraction))
    F = min(n_train, frames or max_frames(N))
    idx = np.linspace(0, n_train - 1, F).round().astype(np.int64)  # (F,)
    u_f = np.asarray(u[idx], dtype=np.float64)  # (F, N)
    y_f = np.asarray(y[idx], dtype=np.float64)  # (F, N)
    p = np.asarray(params, dtype=np.float64)[np.asarray(types)]  # (N, 3)
    g, s, c = p[:, 0], p[:, 1], p[:, 2]  # (N,) each
    X = _phi(u_f, phi)  # (F, N)
    X -= X.mean(axis=0)
    z = (y_f + c * u_f - s * np.tanh(u_f)) / g  # (F, N)
    rng = np.random.default_rng(seed)
    y_std = float(np.asarray(y[: n_train : max(1, n_train // F)], dtype=np.float64).std())
    sigma = noise * y_std * math.sqrt(F / n_train)
    z_noisy = z + sigma * rng.standard_normal(z.shape) / g  # (F, N)
    Z = np.concatenate([z, z_noisy], axis=1)  # (F, 2N): both targets share one solve
    Z -= Z.mean(axis=0)
    U, sv, Vt = np.linalg.svd(X, full_matrices=False)  # (F, N), (N,), (N, N)
    keep = sv > sv[0] * max(F, N) * np.finfo(np.float64).eps  # lstsq's default cutoff
    coef = Vt[keep].T @ ((U[:, keep].T @ Z) / sv[keep, None])  # (N, 2N) = W^T for both targets
    W_exact, W_noisy = coef[:, :N].T, coef[:, N:].T  # (N, N) each, row i = postsynaptic
    phi_std = X.std(axis=0)  # (N,)
    silent = np.flatnonzero(phi_std < SILENT_STD)
    cond = float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf
    return {
        "ceiling": _r2(W_noisy, W),
        "R2_exact": _r2(W_exact, W),
        "phi_condition": cond,
        "n_silent": float(len(silent)),
        "ident_frames": float(F),
        "ident_time_s": time.perf_counter() - start,
        "silent": [int(j) for j in silent],
    }


def of_data(data: Any) -> dict[str, Any]:
    """:func:`oracle` of a :class:`ntune.simulate.SimData`."""
    return oracle(data.u, data.y, data.W, data.params, data.types, phi=data.config.phi)


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


# ---- studies: ceilings per block, probe budgets, and the text the journal, status and report show


def study_ceilings(study: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """What a study's info needs before it starts: ``{"ceilings": {label: ...}, "block_budgets": {label: n}}``
    (``study.block_trials``, then the probe budgets of the data-limited blocks).

    ``study`` is a :class:`ntune.study_config.StudyConfig`, ``base`` its resolved base config. Each block's
    data are loaded or simulated (through the cache, so trials reuse them) and their ceiling read; a block
    whose ceiling is below the connectivity_R2 threshold gets ``study.data_limited.probe_trials`` trials.
    Empty when ``study.data_limited.check`` is off.
    """
    from ntune.config import config_from_dict, set_dotted
    from ntune.records import block_label
    from ntune.simulate import load_or_simulate

    budgets: dict[str, int] = {block_label(study.block_key, v): n for v, n in study.block_budgets().items()}
    if not study.data_limited.check:
        return {"block_budgets": budgets} if budgets else {}
    threshold = study.objective.thresholds.get("connectivity_R2")
    ceilings: dict[str, dict[str, Any]] = {}
    for value in study.block_values:
        config = dict(copy.deepcopy(base))
        set_dotted(config, study.block_key, value)
        data = load_or_simulate(config_from_dict(config).simulation)
        label = block_label(study.block_key, value)
        # no compute time here: study.json must compare equal on resume, even after the cache was rebuilt
        entry: dict[str, Any] = {k: _finite(data.summary.get(k)) for k in SUMMARY_KEYS if k != "ident_time_s"}
        entry["silent"] = list(data.silent or [])
        entry["data_limited"] = threshold is not None and is_data_limited(data.summary, threshold)
        ceilings[label] = entry
        if entry["data_limited"]:
            budgets[label] = min(study.data_limited.probe_trials, budgets.get(label, study.n_iter_block))
    return {"ceilings": ceilings, "block_budgets": budgets}


def _finite(x: Any) -> float | str | None:
    """JSON-safe number: None for missing or NaN, "inf" for infinity (study.json must compare equal)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return "inf" if math.isinf(float(x)) else float(x)


def block_budget(info: Mapping[str, Any], label: str) -> int:
    """Trials the block ``label`` of a study info gets (its probe budget when data-limited)."""
    return int((info.get("block_budgets") or {}).get(label, info["study"]["n_iter_block"]))


def total_budget(info: Mapping[str, Any], labels: list[str]) -> int:
    """The study's whole budget over the block ``labels``."""
    return sum(block_budget(info, label) for label in labels)


def ceiling_of(info: Mapping[str, Any], label: str) -> float:
    """The block's ceiling from a study info (NaN when not computed)."""
    value = ((info.get("ceilings") or {}).get(label) or {}).get("ceiling")
    return math.nan if value is None else float(value)


def _threshold(info: Mapping[str, Any]) -> float:
    return float(info["study"]["objective"]["thresholds"].get("connectivity_R2", 0.0))


def console_lines(info: Mapping[str, Any]) -> list[str]:
    """What the console prints at the start of a study: one line per block, then what data-limited means."""
    ceilings = info.get("ceilings") or {}
    if not ceilings:
        return []
    threshold = _threshold(info)
    lines = ["identifiability (least-squares W with the true dynamics, 1 % target noise):"]
    for label, entry in ceilings.items():
        line = "  " + block_line(label, _numbers(entry), threshold)
        if entry.get("data_limited"):
            n = block_budget(info, label)
            line += f"; probing with {n} trial{'s' if n != 1 else ''} only"
        lines.append(line)
    return lines


def _numbers(entry: Mapping[str, Any]) -> dict[str, float]:
    return {k: math.nan if v is None else float(v) for k, v in entry.items() if k in SUMMARY_KEYS}


def memory_section(info: Mapping[str, Any], level: int = 2) -> str:
    """The Identifiability section (a ``level`` heading) of memory.md and the report; empty without ceilings."""
    ceilings = info.get("ceilings") or {}
    if not ceilings:
        return ""
    threshold = _threshold(info)
    out = [
        f"\n{'#' * level} Identifiability\n\n",
        "Ceiling = connectivity_R2 of the least-squares W given the true self-dynamics and phi, with 1 % noise "
        "on the target: no trainer can be expected to beat it.\n\n",
    ]
    for label, entry in ceilings.items():
        numbers = _numbers(entry)
        out.append(f"- {label}: {verdict(numbers, threshold)}")
        if entry.get("data_limited"):
            out.append(
                f". Data-limited: probe budget {block_budget(info, label)} trial(s); failed configs here say "
                "nothing about the hyperparameters"
            )
        out.append("\n")
    return "".join(out)


def probe_budgets(study: Any, info: Mapping[str, Any]) -> dict[Any, int]:
    """block value -> trials for the searcher's ``block_budgets`` (the data-limited blocks of ``info``)."""
    from ntune.records import block_label

    budgets = info.get("block_budgets") or {}
    return {
        v: budgets[block_label(study.block_key, v)]
        for v in study.block_values
        if block_label(study.block_key, v) in budgets
    }
