r"""A ReLU MLP of one scalar input, evaluated exactly as the piecewise-linear function it is.

An MLP :math:`f: \mathbb{R} \to \mathbb{R}` with ReLU between its linear layers is continuous and
piecewise linear: on each piece :math:`p` every hidden unit is either on or off, so

.. math::
    f(x) = \alpha_p x + \beta_p, \qquad
    \alpha_p = w_L^\top D_{L-1,p} W_{L-1} \cdots D_{1,p} w_1, \quad
    \beta_p = \text{the same chain applied to the biases},

with :math:`D_{l,p}` the 0/1 diagonal of the units of layer :math:`l` that are on in piece :math:`p`.
The pieces are found layer by layer: within an interval where the earlier layers' masks are fixed, the
pre-activation of layer :math:`l` is affine in :math:`x`, and each of its units switches at most once
there (at :math:`-B/A`). The structure (breakpoints, masks) is computed without gradient in float64;
:math:`\alpha, \beta` are computed with autograd from the parameters, so for ``rows`` inputs the forward
pass and every parameter gradient cost O(pieces x hidden^2 + rows log pieces) instead of
O(rows x hidden^2): the gradient of :math:`\sum_i g_i f(x_i)` is the chain above contracted with the
per-piece sums :math:`\sum_{i \in p} g_i` and :math:`\sum_{i \in p} g_i x_i`, which the gather's backward
(an index-add over rows) forms.

Rows within ``tol`` of a breakpoint are evaluated by the MLP itself, so a row on a kink gets exactly the
subgradient autograd gives (ReLU'(0) = 0) and float rounding near a kink cannot pick the other piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

NEAR = 1e-5  # rows closer than NEAR * (1 + |x|) to a breakpoint take the MLP's own path


@dataclass
class Pieces:
    """The piecewise-linear structure of a scalar ReLU MLP: ``breakpoints`` (P - 1,) sorted, float64, and
    per hidden layer the 0/1 masks of its units on each of the P pieces, ``masks[l]`` (P, hidden_l)."""

    breakpoints: Tensor
    masks: list[Tensor]

    @property
    def n(self) -> int:
        """The number of pieces P."""
        return len(self.breakpoints) + 1


class Affine(Protocol):
    """One linear layer: ``weight`` (out, in) and ``bias`` (out,), as an ``nn.Linear`` has them."""

    @property
    def weight(self) -> Tensor: ...

    @property
    def bias(self) -> Tensor: ...


@dataclass
class Layer:
    """An affine layer from tensors (views of stacked parameters keep their gradients): weight (out, in)."""

    weight: Tensor
    bias: Tensor


MLPLike = nn.Module | Sequence[Affine]  # an MLP module, or its linear layers in order (ReLU between)


def _linears(mlp: MLPLike) -> list[Affine]:
    layers: list[Affine] = (
        [m for m in mlp.modules() if isinstance(m, nn.Linear)] if isinstance(mlp, nn.Module) else list(mlp)
    )
    if not layers or layers[0].weight.shape[1] != 1 or layers[-1].weight.shape[0] != 1:
        raise ValueError("piecewise evaluation needs an MLP of one input and one output")
    return layers


def _mlp(mlp: MLPLike, x: Tensor) -> Tensor:
    """The MLP itself on x (rows, 1) -> (rows, 1): the module's own forward, or the layers with ReLU between."""
    if isinstance(mlp, nn.Module):
        return mlp(x)
    layers = _linears(mlp)
    for k, layer in enumerate(layers):
        x = torch.addmm(layer.bias, x, layer.weight.T)  # (rows, out)
        if k < len(layers) - 1:
            x = torch.relu(x)
    return x


def _representatives(breakpoints: Tensor) -> Tensor:
    """One point inside each of the len + 1 intervals the sorted ``breakpoints`` cut the line into."""
    if len(breakpoints) == 0:
        return breakpoints.new_zeros(1)
    inner = (breakpoints[:-1] + breakpoints[1:]) / 2  # (P - 2,)
    span = float(breakpoints[-1] - breakpoints[0]) + 1.0
    ends = torch.stack([breakpoints[0] - span, breakpoints[-1] + span])
    return torch.cat([ends[:1], inner, ends[1:]])  # (P,)


def _affine(layers: Sequence[Affine], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Slope and offset (P, out) of the pre-activation after ``layers``, given the masks (P, hidden) of all
    but the last of them; differentiable in the layers' parameters (dtype of the parameters)."""
    A = layers[0].weight[:, 0].unsqueeze(0)  # (1, h1)
    B = layers[0].bias.unsqueeze(0)  # (1, h1)
    for layer, mask in zip(layers[1:], masks, strict=True):
        A = (A * mask) @ layer.weight.T  # (P, h_next)
        B = (B * mask) @ layer.weight.T + layer.bias  # (P, h_next)
    return A, B


@torch.no_grad()
def pieces(mlp: MLPLike) -> Pieces:
    """The breakpoints and per-piece masks of a scalar ReLU MLP (float64, no gradient)."""
    layers = [Layer(layer.weight.detach().double(), layer.bias.detach().double()) for layer in _linears(mlp)]
    breakpoints = layers[0].weight.new_zeros(0)  # (0,)
    for depth in range(1, len(layers)):
        c = _representatives(breakpoints)  # (P,)
        A, B = _affine(layers[:depth], _masks_at(layers, c, depth - 1))  # (P or 1, h): layer depth's input
        A, B = A.expand(len(c), -1), B.expand(len(c), -1)
        lo = torch.cat([c.new_full((1,), -torch.inf), breakpoints])[:, None]  # (P, 1)
        hi = torch.cat([breakpoints, c.new_full((1,), torch.inf)])[:, None]  # (P, 1)
        root = -B / torch.where(A == 0, torch.ones_like(A), A)  # (P, h)
        inside = (A != 0) & (root > lo) & (root < hi)
        breakpoints = torch.unique(torch.cat([breakpoints, root[inside]]))  # sorted
    c = _representatives(breakpoints)
    return Pieces(breakpoints, _masks_at(layers, c, len(layers) - 1))


def _masks_at(layers: Sequence[Affine], c: Tensor, n_hidden: int) -> list[Tensor]:
    """The 0/1 masks (P, h) of the first ``n_hidden`` hidden layers at the points ``c`` (P,)."""
    masks: list[Tensor] = []
    z = c[:, None] * layers[0].weight[:, 0] + layers[0].bias  # (P, h1)
    for layer in layers[1 : n_hidden + 1]:
        masks.append((z > 0).to(z.dtype))
        z = (z * masks[-1]) @ layer.weight.T + layer.bias  # (P, h_next)
    return masks


def coefficients(mlp: MLPLike, structure: Pieces) -> tuple[Tensor, Tensor]:
    """alpha, beta (P,) of ``f(x) = alpha_p x + beta_p`` on each piece, differentiable in the MLP's parameters."""
    layers = _linears(mlp)
    dtype = layers[0].weight.dtype
    masks = [m.to(dtype) for m in structure.masks]
    A, B = _affine(layers, masks)  # (P, 1) each
    return A[:, 0], B[:, 0]


def piecewise_forward(mlp: MLPLike, x: Tensor, structure: Pieces | None = None, near: float = NEAR) -> Tensor:
    """``mlp(x[..., None])[..., 0]`` for any-shaped ``x``, computed piece by piece (same value and
    parameter gradients as the MLP, to float tolerance); ``structure`` = :func:`pieces` (mlp) if given.
    ``mlp`` is an MLP module or the sequence of its linear layers (:class:`Layer`), ReLU between them."""
    structure = structure if structure is not None else pieces(mlp)
    alpha, beta = coefficients(mlp, structure)  # (P,) each
    flat = x.reshape(-1)  # (rows,)
    bp = structure.breakpoints.to(flat.dtype)  # (P - 1,)
    idx = torch.searchsorted(bp, flat.detach())  # (rows,) piece of each row
    out = alpha[idx] * flat + beta[idx]  # (rows,)
    if len(bp):
        left = bp[(idx - 1).clamp(min=0)]
        right = bp[idx.clamp(max=len(bp) - 1)]
        gap = torch.minimum((flat.detach() - left).abs(), (flat.detach() - right).abs())  # (rows,)
        close = gap <= near * (1 + flat.detach().abs())
        if bool(close.any()):
            rows = close.nonzero()[:, 0]  # (k,)
            out = out.index_put((rows,), _mlp(mlp, flat[rows].unsqueeze(-1))[:, 0])
    return out.reshape(x.shape)
