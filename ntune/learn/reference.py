"""The reference training step: SignalGNN evaluated layer by layer, as before the fast CPU step.

:class:`ReferenceGNN` computes the same function as :class:`ntune.learn.model.SignalGNN` the direct
way: lin_edge as an MLP over every scalar input, lin_phi over ``[u_i, a_i]`` for every frame and neuron,
and ``W * mask`` as an (N, N) multiply in the synaptic sum and the L1. ``benchmarks/trainer_speed.py``
times both in one run, and the tests hold the fast model's values and gradients to it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ntune.learn.model import SignalGNN


class ReferenceGNN(SignalGNN):
    """SignalGNN with the direct evaluation of every term (dense back end)."""

    def W_L1(self) -> Tensor:
        return torch.linalg.vector_norm(self.W_masked(), 1)

    def phi_term(self, u: Tensor) -> Tensor:
        a = self.a.unsqueeze(0).expand(u.shape[0], -1, -1)  # (batch, N, emb)
        return self.lin_phi(torch.cat([u.unsqueeze(-1), a], dim=-1)).squeeze(-1)  # (batch, N)

    def phi_at_zero(self) -> Tensor:
        at_zero = torch.cat([torch.zeros_like(self.a[:, :1]), self.a], dim=-1)  # (N, 1 + emb)
        return self.lin_phi(at_zero).squeeze(-1)  # (N,)

    def edge_term(self, u: Tensor) -> Tensor:
        if self.edge_embedding:  # PDE_N4: lin_edge over [u_j, a_j] for every frame and neuron
            a = self.a.expand(*u.shape, -1)  # (..., N, emb)
            return self.lin_edge(torch.cat([u.unsqueeze(-1), a], dim=-1)).squeeze(-1)  # (..., N)
        return self.lin_edge(u.unsqueeze(-1)).squeeze(-1)

    def message(self, h: Tensor) -> Tensor:
        return h @ self.W_masked().T  # (batch, N)

    def synapses(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.message(h), self.W_L1()
