r"""The synaptic sum and the L1 of W on the complete graph, with the diagonal handled in O(N).

On the complete graph the mask only removes the diagonal, so the (N, N) multiply ``W * mask`` (and the
same multiply in the backward pass) is replaced by a correction of the N self-terms:

.. math::
    m_{b,i} = \sum_{j \ne i} W_{ij} h_{b,j} = (h W^\top)_{b,i} - W_{ii} h_{b,i}, \qquad
    \|W \odot M\|_1 = \|W\|_1 - \sum_i |W_{ii}|,

and the gradients of the diagonal are zero, as through the mask: the diagonal of W never changes and
takes no part in the model. Each function below makes one pass over W for its value and one for its
gradient (the GEMM's output, or ``sign(W)`` scaled in place).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class OffDiagonalSum(torch.autograd.Function):
    """``h @ (W with a zero diagonal).T`` for h (batch, N), W (N, N) -> (batch, N)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, W: Tensor) -> Tensor:
        ctx.save_for_backward(h, W)
        return torch.addcmul(h @ W.T, h, W.diagonal(), value=-1.0)  # (batch, N)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        h, W = ctx.saved_tensors
        grad_h = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.addcmul(grad @ W, grad, W.diagonal(), value=-1.0)  # (batch, N)
        if ctx.needs_input_grad[1]:
            grad_W = grad.T @ h  # (N, N)
            grad_W.diagonal().zero_()
        return grad_h, grad_W


class OffDiagonalL1(torch.autograd.Function):
    """``sum_{i != j} |W_ij|`` for W (N, N) -> (); its gradient is sign(W) off the diagonal."""

    @staticmethod
    def forward(ctx: Any, W: Tensor) -> Tensor:
        ctx.save_for_backward(W)
        return W.abs().sum() - W.diagonal().abs().sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (W,) = ctx.saved_tensors
        grad_W = torch.sign(W).mul_(grad)  # (N, N)
        grad_W.diagonal().zero_()
        return grad_W


class OffDiagonalSynapses(torch.autograd.Function):
    """Both at once, ``(h @ W_off.T, ||W_off||_1)``: W's gradient is built in one buffer,
    ``sign(W) g_L1`` with ``g_msg.T @ h`` added by the GEMM itself. With a leading member axis,
    h (K, batch, N) and W (K, N, N) give (K, batch, N) and (K,): every member on its own."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(h, W)
        diag = W.diagonal(dim1=-2, dim2=-1).unsqueeze(-2)  # (..., 1, N)
        msg = torch.addcmul(h @ W.mT, h, diag, value=-1.0)  # (..., batch, N)
        return msg, W.abs().sum(dim=(-2, -1)) - diag.abs().sum(dim=(-2, -1))

    @staticmethod
    def backward(ctx: Any, grad_msg: Tensor, grad_l1: Tensor) -> tuple[Tensor | None, Tensor | None]:
        h, W = ctx.saved_tensors
        grad_h = grad_W = None
        diag = W.diagonal(dim1=-2, dim2=-1).unsqueeze(-2)  # (..., 1, N)
        if ctx.needs_input_grad[0]:
            grad_h = torch.addcmul(grad_msg @ W, grad_msg, diag, value=-1.0)  # (..., batch, N)
        if ctx.needs_input_grad[1]:
            grad_W = torch.sign(W).mul_(grad_l1[..., None, None])  # (..., N, N)
            if W.dim() == 2:
                grad_W.addmm_(grad_msg.T, h)
            else:
                grad_W.baddbmm_(grad_msg.mT, h)
            grad_W.diagonal(dim1=-2, dim2=-1).zero_()
        return grad_h, grad_W


def off_diagonal_synapses(h: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """(m, l1): ``m[b, i] = sum_{j != i} W[i, j] h[b, j]`` (batch, N) and ``sum_{i != j} |W[i, j]|``;
    per member for h (K, batch, N), W (K, N, N): (K, batch, N) and (K,)."""
    return OffDiagonalSynapses.apply(h, W)


def off_diagonal_sum(h: Tensor, W: Tensor) -> Tensor:
    """m (batch, N) with ``m[b, i] = sum_{j != i} W[i, j] h[b, j]``."""
    return OffDiagonalSum.apply(h, W)


def off_diagonal_l1(W: Tensor) -> Tensor:
    """``sum_{i != j} |W[i, j]|`` (a 0-dim tensor)."""
    return OffDiagonalL1.apply(W)
