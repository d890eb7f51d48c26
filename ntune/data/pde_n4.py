"""PDE_N4 right-hand side: du_i/dt = -a_i u_i + b_i + s_i tanh(u_i) + g_i sum_j W_ij phi((u_j - h_j) / w_j).

Upstream: NeuralGraph ``src/NeuralGraph/generators/PDE_N4.py``. ``simulation.params`` has one row
``[a, b, g, s, w, h]`` per neuron type (decay, offset, gain, self-excitation, width, threshold). a, b, g
and s belong to the receiving neuron i; the width w and the threshold h of the transfer function belong
to the SOURCE neuron j (upstream's message reads ``w_j``, ``h_j``), so the edge term of column j is
phi((u_j - h_j) / w_j), one function of u_j per source neuron. With one neuron type and w = 1, h = 0
it is PDE_N2's phi(u_j) plus the offset b.

torch is imported inside the functions, as in :mod:`ntune.data.simulate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

N_COLUMNS = 6  # [a, b, g, s, w, h]


def pde_n4_params(params: Any, types: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Per-neuron a, b, g, s, w, h, each (N,), from rows ``params`` (n_types, 6) and ``types`` (N,).

    Works for numpy arrays and torch tensors alike (returns the same kind).
    """
    p = params[types]  # (N, 6)
    return p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5]


def edge_input(u: Any, w: Any, h: Any, phi: str = "tanh") -> Any:
    """phi((u - h) / w), elementwise over the last axis (N); numpy arrays or torch tensors, same shape as u."""
    x = (u - h) / w  # (..., N)
    if phi == "linear":
        return x
    return np.tanh(x) if isinstance(x, np.ndarray) else x.tanh()


def pde_n4_rhs(
    u: torch.Tensor,
    W: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    g: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    h: torch.Tensor,
    phi: str = "tanh",
) -> torch.Tensor:
    """du/dt = -a*u + b + s*tanh(u) + g * (phi((u - h)/w) @ W.T); u (..., N), W (N, N), a..h (N,) -> (..., N)."""
    import torch

    return -a * u + b + s * torch.tanh(u) + g * (edge_input(u, w, h, phi) @ W.T)  # (..., N)


def pde_n4_step(
    W: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    g: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    h: torch.Tensor,
    phi: str = "tanh",
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``rhs(u, y)`` that writes :func:`pde_n4_rhs` of u (N,) into y (N,), reusing its buffers (no allocation)."""
    import torch

    neg_a = -a  # (N,)
    x, tanh_u, msg = torch.empty_like(a), torch.empty_like(a), torch.empty_like(a)  # (N,) each

    def rhs(u: torch.Tensor, y: torch.Tensor) -> None:
        torch.sub(u, h, out=x)
        x.div_(w)  # (N,) (u_j - h_j) / w_j
        if phi == "tanh":
            x.tanh_()
        torch.mv(W, x, out=msg)  # (N,) sum_j W_ij phi((u_j - h_j) / w_j)
        torch.mul(g, msg, out=y)
        torch.tanh(u, out=tanh_u)
        y.addcmul_(s, tanh_u).addcmul_(neg_a, u).add_(b)

    return rhs
