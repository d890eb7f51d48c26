"""Optimizers and learning-rate schedules: torch.optim for one model, their batched twins for a population.

``fit`` steps :func:`make_optimizer` and :func:`make_scheduler` (param groups W / a / MLPs). A population
steps :class:`BatchedOptimizer` and :class:`Plateau`: torch.optim's arithmetic with one learning rate per
member and group. Member k's update reads only member k's slices (parameters, gradients, state,
``lr[k]``), so a member follows the trajectory :func:`make_optimizer` gives the same config alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ntune.config import TrainingConfig

if TYPE_CHECKING:
    from ntune.learn.model import SignalGNN

BETAS, EPS, ADAMW_DECAY, RMS_ALPHA = (0.9, 0.999), 1e-8, 1e-2, 0.99  # torch.optim defaults


def make_optimizer(model: SignalGNN, tc: TrainingConfig) -> torch.optim.Optimizer:
    """Param groups W / a / MLPs at learning_rate_W_start / learning_rate_embedding_start / learning_rate_start."""
    mlps = list(model.lin_edge.parameters()) + list(model.lin_phi.parameters())
    groups = [
        {"params": [model.W], "lr": tc.learning_rate_W_start, "name": "W"},
        {"params": [model.a], "lr": tc.learning_rate_embedding_start, "name": "a"},
        {"params": mlps, "lr": tc.learning_rate_start, "name": "mlp"},
    ]
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups)
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    return kinds[tc.optimizer](groups, fused=True)  # one kernel per step (CPU and CUDA)


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainingConfig, n_iterations: int) -> Any:
    """None, cosine annealing over all iterations (stepped per iteration) or reduce-on-plateau (per log point)."""
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, n_iterations))
    if tc.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


class BatchedOptimizer:
    """Adam / AdamW / RMSprop / SGD (torch.optim defaults) with one learning rate per member and group.

    ``lr`` (K, 3) holds the W, a and MLP learning rates. Adam and AdamW call torch's fused kernels on
    member k's slices with ``lr[k, group]`` (a device tensor, so the step can be graph-captured), which is
    the arithmetic of ``torch.optim.Adam(fused=True)`` on that member alone; SGD and RMSprop are the same
    elementwise formulas as torch.optim's, vectorised over members. ``step_count`` lives on the device.
    """

    def __init__(self, groups: Sequence[Sequence[Tensor]], kind: str, lr: Tensor) -> None:
        """``groups[g]``: the (K, ...) parameters stepped at ``lr[:, g]`` (W, a, the MLPs)."""
        self.kind = kind
        self.params = [(p, g) for g, group in enumerate(groups) for p in group]
        self.lr = lr  # (K, 3)
        self.step_count = torch.zeros((), device=lr.device)
        n_state = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 0}[kind]
        self.state = {
            i: [torch.zeros_like(p) for _ in range(n_state)] for i, (p, _) in enumerate(self.params)
        }

    def _lr(self, p: Tensor, group: int) -> Tensor:
        return self.lr[:, group].reshape(-1, *([1] * (p.dim() - 1)))  # (K, 1, ...)

    @torch.no_grad()
    def clip_(self, max_norm: list[float]) -> None:
        """clip_grad_norm_ per member: grads of member k scaled to norm <= max_norm[k] (0: no clipping)."""
        for k, limit in enumerate(max_norm):
            if limit <= 0:
                continue
            grads = [p.grad[k] for p, _ in self.params]
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, (limit / (total + 1e-6)).clamp(max=1.0))

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        if self.kind in ("adam", "adamw"):
            self._fused_adam()
            return
        for i, (p, group) in enumerate(self.params):
            g, lr = p.grad, self._lr(p, group)
            if self.kind == "sgd":
                p.sub_(lr * g)
            else:
                (v,) = self.state[i]
                v.mul_(RMS_ALPHA).addcmul_(g, g, value=1 - RMS_ALPHA)
                p.sub_(lr * g / (v.sqrt() + EPS))

    def _fused_adam(self) -> None:
        fused = torch._fused_adam_ if self.kind == "adam" else torch._fused_adamw_
        decay = 0.0 if self.kind == "adam" else ADAMW_DECAY
        for k in range(self.lr.shape[0]):
            for group in range(3):
                ids = [i for i, (_, g) in enumerate(self.params) if g == group]
                fused(
                    [self.params[i][0][k] for i in ids],
                    [self.params[i][0].grad[k] for i in ids],
                    [self.state[i][0][k] for i in ids],
                    [self.state[i][1][k] for i in ids],
                    [],
                    [self.step_count] * len(ids),
                    amsgrad=False,
                    lr=self.lr[k, group],
                    beta1=BETAS[0],
                    beta2=BETAS[1],
                    weight_decay=decay,
                    eps=EPS,
                    maximize=False,
                )

    @torch.no_grad()
    def freeze(self, k: int) -> None:
        """Stop member k: zero its parameters, optimizer state and learning rates (finite, no updates)."""
        self.lr[k] = 0.0
        for i, (p, _) in enumerate(self.params):
            p[k] = 0.0
            for s in self.state[i]:
                s[k] = 0.0

    def state_dict(self, k: int) -> dict[str, Any]:
        """Member k's optimizer state (kind, step, learning rates, moment tensors) on the CPU."""
        return {
            "kind": self.kind,
            "step": int(self.step_count),
            "lr": self.lr[k].tolist(),
            "state": {i: [s[k].detach().cpu() for s in st] for i, st in self.state.items()},
        }


class Plateau:
    """ReduceLROnPlateau(factor=0.5, patience=2) rules per member, stepped at the member's log points."""

    def __init__(self) -> None:
        self.best, self.bad = math.inf, 0

    def step(self, value: float, lr: Tensor) -> None:
        if value < self.best * (1 - 1e-4):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        if self.bad > 2:
            new = lr * 0.5
            lr.copy_(torch.where(lr - new > 1e-8, new, lr))
            self.bad = 0
