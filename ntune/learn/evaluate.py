"""Evaluation of a trained SignalGNN against the simulation it was trained on (DESIGN.md, "Metrics").

PDE_N2 and PDE_N4 alike: the true transfer function is phi(u) for PDE_N2 and phi((u - h_j) / w_j), one per
source neuron j, for PDE_N4 (:func:`true_edge`); the gain g is column ``g`` of the params rows
(``ntune.config.PARAM_COLUMNS``); the rollout integrates the simulator's own right-hand side.

* :func:`w_metrics`: connectivity_R2, the scale-corrected slope, the W diagnosis and cluster_accuracy of
  the current model (every log point).
* :func:`final_metrics`: those, the held-out rollout test (test_R2, test_pearson) and the final loss (the
  end of a run); :func:`diverged_metrics` stands in for them when a run diverged.
* :func:`rollout`, :func:`curves`, :func:`scale_corrected_W`: what the metrics and the figures read.
* :func:`figures`: matplotlib figures of the model (W scatter, embedding, lin_phi, lin_edge, loss).

The numbers themselves are the pure numpy functions of :mod:`ntune.learn.metrics`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ntune.config import PARAM_COLUMNS, TrainingConfig
from ntune.data.pde_n4 import edge_input, pde_n4_params, pde_n4_rhs
from ntune.data.simulate import SimData, neuron_params, pde_n2_rhs
from ntune.learn import metrics as M
from ntune.learn.loss import LOSS_TERMS
from ntune.learn.model import SignalGNN

ROLLOUT_EVERY = 10  # rollout snapshot spacing for test_R2


def final_metrics(
    model: SignalGNN,
    data: SimData,
    tc: TrainingConfig,
    base: dict[str, Any],
    losses: np.ndarray,
    n_train: int,
) -> dict[str, Any]:
    """Metrics of a finished run: W metrics, held-out rollout test, final loss (last 5 % of iterations).

    ``base`` (run constants such as spectral_radius) is copied in; ``losses`` (iterations, 4) are the loss
    terms of every iteration; the rollout starts at frame ``n_train``, the first held-out one.
    """
    n_roll = min(tc.n_rollout_frames, len(data.u) - n_train)
    test_R2, test_pearson = math.nan, math.nan
    if n_roll >= 2:
        test_R2, test_pearson = M.rollout_scores(*rollout(model, data, n_train, n_roll), every=ROLLOUT_EVERY)
    tail = max(1, int(math.ceil(0.05 * len(losses))))
    final_loss = float(losses[-tail:, 0].mean())
    return {
        **base,
        **w_metrics(model, data, tc.cluster_method),
        "test_R2": test_R2,
        "test_pearson": test_pearson,
        "loss": final_loss,
        "final_loss": final_loss,
    }


def diverged_metrics(base: dict[str, Any]) -> dict[str, Any]:
    """The final metrics of a diverged run: the scores 0, the losses NaN, ``base`` copied in."""
    zeros = ("connectivity_R2", "cluster_accuracy", "test_R2", "test_pearson", "cross")
    return {**base, **dict.fromkeys(zeros, 0.0), "loss": math.nan, "final_loss": math.nan}


def w_metrics(model: SignalGNN, data: SimData, method: str) -> dict[str, Any]:
    """connectivity_R2, scale-corrected slope, W diagnosis and cluster_accuracy of the current model."""
    from threadpoolctl import threadpool_limits

    W = model.W_masked().detach().cpu().numpy()  # (N, N)
    c = curves(model, data)
    gain = _edge_gain(c, data)
    g, _, _ = _g_and_range(data)
    diag = M.w_diagnosis(W, data.W)
    with threadpool_limits(limits=torch.get_num_threads()):
        acc = M.cluster_accuracy(model.a.detach().cpu().numpy(), data.types, method)
    return {
        "connectivity_R2": M.connectivity_R2(W, data.W),
        "connectivity_slope": M.connectivity_slope(W, data.W, gain, g),
        "zero_band": diag["zero_band"],
        "cross": diag["cross"],
        "cluster_accuracy": acc,
    }


def _is_n4(data: SimData) -> bool:
    return data.config.signal_model_name == "PDE_N4"


def true_edge(data: SimData, u: np.ndarray) -> np.ndarray:
    """The true transfer function at u (P,): phi(u) (P,) for PDE_N2, phi((u - h_j) / w_j) (P, N) per source
    neuron j for PDE_N4."""
    if _is_n4(data):
        _, _, _, _, w, h = pde_n4_params(np.asarray(data.params, dtype=np.float64), data.types)  # (N,) each
        return edge_input(u[:, None], w, h, data.config.phi)  # (P, N)
    return np.tanh(u) if data.config.phi == "tanh" else u  # (P,)


def _edge_gain(c: dict[str, np.ndarray], data: SimData) -> float | np.ndarray:
    """The gain of lin_edge against the true transfer function: one number (PDE_N2) or one per source (N,)
    (PDE_N4: lin_edge([u, a_j]) may scale each source's curve differently, and W_ij absorbs it)."""
    phi_true = true_edge(data, c["u"])
    return M.edge_gains(c["lin_edge"], phi_true) if _is_n4(data) else M.edge_gain(c["lin_edge"], phi_true)


def _g_and_range(data: SimData) -> tuple[np.ndarray, float, float]:
    """The true coupling gains g (N,) (column g of the params rows) and the 1-99 % range of the activity u."""
    if _is_n4(data):
        column = PARAM_COLUMNS["PDE_N4"].index("g")
        g = np.asarray(data.params, dtype=np.float64)[data.types, column]  # (N,)
    else:
        g = np.asarray(neuron_params(data.params, data.types)[0], dtype=np.float64)  # (N,)
    lo, hi = np.percentile(data.u[:: max(1, len(data.u) // 2000)], [1, 99])
    return g, float(lo), float(hi)


@torch.no_grad()
def curves(model: SignalGNN, data: SimData, n_points: int = 200) -> dict[str, np.ndarray]:
    """lin_edge and lin_phi (P, N) (per neuron) sampled at u (P,) over the 1-99 % range of the activity;
    lin_edge is (P,) for PDE_N2 and (P, N), one curve per source neuron, for PDE_N4."""
    _, lo, hi = _g_and_range(data)
    dev = model.W.device
    u = torch.linspace(lo, hi, n_points, device=dev)  # (P,)
    u_all = u.unsqueeze(1).expand(-1, model.n_neurons).contiguous()  # (P, N)
    edge = model.edge_term(u_all if model.edge_embedding else u)  # (P, N) or (P,)
    phi = model.phi_term(u_all)  # (P, N)
    return {"u": u.cpu().numpy(), "lin_edge": edge.cpu().numpy(), "lin_phi": phi.cpu().numpy()}


def scale_corrected_W(model: SignalGNN, data: SimData, c: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Learned W on the true scale (N, N): ``gain * W_ij / g_i``, the gain of lin_edge against the true
    transfer function (PDE_N4: of source j's curve); ``c``: :func:`curves`, computed if None."""
    c = c if c is not None else curves(model, data)
    g, _, _ = _g_and_range(data)
    W = model.W_masked().detach().cpu().numpy()  # (N, N)
    return M.scale_corrected(W, _edge_gain(c, data), g)


@torch.no_grad()
def rollout(model: SignalGNN, data: SimData, start: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Euler rollouts (n_frames, N) of the learned and the true model (the simulator's right-hand side,
    PDE_N2 or PDE_N4) from frame ``start`` of the data."""
    dev = model.W.device
    dt, phi = data.config.delta_t, data.config.phi
    W = torch.from_numpy(data.W).to(dev)  # (N, N)
    split = pde_n4_params if _is_n4(data) else neuron_params
    p = [torch.as_tensor(v, device=dev) for v in split(data.params, data.types)]  # (N,) each
    u_learned = torch.from_numpy(data.u[start]).to(dev)  # (N,)
    u_true = u_learned.clone()  # (N,)
    out = torch.empty(2, n_frames, model.n_neurons, device=dev)  # (2, T, N)
    for t in range(n_frames):
        out[0, t], out[1, t] = u_learned, u_true
        u_learned = u_learned + dt * model(u_learned)  # (N,)
        rhs = pde_n4_rhs(u_true, W, *p, phi=phi) if _is_n4(data) else pde_n2_rhs(u_true, W, *p, phi=phi)
        u_true = u_true + dt * rhs  # (N,)
    learned, true = out.cpu().numpy()  # (T, N) each
    return learned, true


def figures(
    model: SignalGNN,
    data: SimData,
    row: dict[str, Any],
    losses: np.ndarray | None = None,
    kinds: tuple[str, ...] = ("W_scatter", "embedding", "lin_phi", "lin_edge", "loss"),
) -> dict[str, Any]:
    """Matplotlib figures (Agg) of the model: W scatter, embedding, lin_phi, lin_edge and the loss curve.

    ``row`` is a metrics dict (the scatter and embedding titles read it); the loss curve needs ``losses``
    (iterations, 4) and is skipped without them. Returns kind -> figure, already closed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntune import plots

    c = curves(model, data)
    out = {}
    for kind in kinds:
        if kind == "loss" and losses is None:
            continue
        fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=80)
        fig.subplots_adjust(left=0.16, right=0.96, bottom=0.13, top=0.9)  # fixed: tight_layout is slow
        if kind == "W_scatter":
            plots.plot_W_scatter(ax, scale_corrected_W(model, data, c), data.W, row)
        elif kind == "embedding":
            plots.plot_embedding(
                ax, model.a.detach().cpu().numpy(), data.types, float(row["cluster_accuracy"])
            )
        elif kind == "lin_phi":
            plots.plot_lin_phi(ax, c["u"], c["lin_phi"], data.types, data.params)
        elif kind == "lin_edge" and _is_n4(data):
            plots.plot_lin_edge_per_source(ax, c["u"], c["lin_edge"], true_edge(data, c["u"]), data.types)
        elif kind == "lin_edge":
            plots.plot_lin_edge(ax, c["u"], c["lin_edge"], data.config.phi)
        else:
            plots.plot_loss(ax, losses, LOSS_TERMS)
        out[kind] = fig
        plt.close(fig)
    return out
