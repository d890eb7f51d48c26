"""The training loss of a SignalGNN (DESIGN.md, "Training"), one definition for ``fit`` and the population.

    loss = ||pred - y||_2 + coeff_W_L1 ||W||_1 + coeff_lin_phi_zero ||lin_phi([0, a])||_2
           + coeff_edge_diff ||relu(lin_edge(u) - lin_edge(u + xnorm / 150))||_2

The first norm is one un-squared norm over the batch; the last term makes lin_edge monotone (it fixes
the sign of W). For PDE_N4, lin_edge([u_j, a_j]) takes each source's embedding, in both the prediction and
the monotonicity term (``model.edge_term`` of frames (..., batch, N) evaluates source j with a_j). The L1 weight follows upstream's two phases (:func:`l1_coefficient`) and may be applied as
a proximal step instead of a loss term (:func:`soft_threshold_`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ntune.config import NtuneConfig

LOSS_TERMS = ("prediction", "W_L1", "lin_phi_zero", "edge_diff")


def loss_terms(model: Any, u: Tensor, y: Tensor, coeffs: tuple[Any, Any, Any], xnorm: float) -> Tensor:
    """The four weighted loss terms for frames u, y (..., batch, N); coeffs = (W_L1, lin_phi_zero, edge_diff).

    One definition for the single model and the population: with a SignalGNN, u (batch, N) and float
    coefficients give (4,); with a :class:`~ntune.learn.model.PopulationGNN`, u (K, batch, N) and (K,)
    coefficient tensors give (K, 4), every norm taken per member over its last two dimensions.
    """
    coeff_L1, coeff_phi_zero, coeff_edge_diff = coeffs
    zero = u.new_zeros(u.shape[:-2])  # () or (K,)
    phi_zero, edge_diff = zero, zero
    if _active(coeff_edge_diff) and xnorm > 0:
        h_both = model.edge_term(torch.cat([u, u + xnorm / 150], dim=-2))  # (..., 2 batch, N)
        h, h_next = h_both.chunk(2, dim=-2)  # (..., batch, N) each
        edge_diff = coeff_edge_diff * _norm(torch.relu(h - h_next))
    else:
        h = model.edge_term(u)  # (..., batch, N)
    msg, W_norm = model.synapses(h)  # (..., batch, N), () or (K,)
    prediction = _norm(model.phi_term(u) + msg - y)
    W_L1 = coeff_L1 * W_norm
    if _active(coeff_phi_zero):
        phi_zero = coeff_phi_zero * torch.linalg.vector_norm(model.phi_at_zero(), dim=-1)  # () or (K,)
    return torch.stack([prediction, W_L1, phi_zero, edge_diff], dim=-1)  # (..., 4)


def _active(coeff: Any) -> bool:
    """A tensor coefficient (one per member) is always evaluated; a float one only when positive."""
    return isinstance(coeff, Tensor) or coeff > 0


def _norm(x: Tensor, ord: int = 2) -> Tensor:
    """The ``ord``-norm over the last two dimensions: () for (batch, N), (K,) for (K, batch, N)."""
    return torch.linalg.vector_norm(x, ord, dim=(-2, -1))


def l1_coefficient(config: NtuneConfig, epoch: int) -> float:
    """Weight of ||W||_1 in ``epoch``: first_coeff_L1 in the first n_epochs_init epochs (upstream's two-phase
    L1), else coeff_W_L1, divided by the filling factor when coeff_W_L1_scale_by_filling."""
    tc, ff = config.training, config.simulation.connectivity_filling_factor
    if epoch < tc.n_epochs_init:
        return tc.first_coeff_L1
    return tc.coeff_W_L1 / ff if tc.coeff_W_L1_scale_by_filling else tc.coeff_W_L1


@torch.no_grad()
def soft_threshold_(W: Tensor, threshold: float) -> None:
    """Proximal step of threshold * ||W||_1 in place: W <- sign(W) max(|W| - threshold, 0)."""
    if threshold > 0:
        W.copy_(torch.sign(W) * torch.clamp(W.abs() - threshold, min=0.0))  # (N, N)
