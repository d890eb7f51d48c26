"""The fast CPU step computes the reference step's function: piecewise lin_edge, split lin_phi, off-diagonal W.

Values and every parameter gradient are compared with autograd on the direct evaluation (float64 to
1e-9, float32 to float tolerance), on random and trained MLPs, with inputs on breakpoints and ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ntune.config import load_config
from ntune.data.simulate import simulate
from ntune.learn.loss import loss_terms
from ntune.learn.model import MLP, SignalGNN, complete_edge_index
from ntune.learn.piecewise import coefficients, pieces, piecewise_forward
from ntune.learn.reference import ReferenceGNN
from ntune.learn.synapses import off_diagonal_l1, off_diagonal_sum, off_diagonal_synapses

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _grads(mlp: torch.nn.Module, out: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * g).sum(), list(mlp.parameters())))


def _compare(mlp: torch.nn.Module, x: torch.Tensor, rtol: float) -> None:
    g = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    ref = mlp(x.unsqueeze(-1)).squeeze(-1)
    out = piecewise_forward(mlp, x)
    scale = float(ref.abs().max())
    assert torch.allclose(out, ref, rtol=0, atol=rtol * scale)
    for a, b in zip(_grads(mlp, out, g), _grads(mlp, ref, g), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=rtol * max(float(b.abs().max()), 1.0))


def _mlp(seed: int, hidden: int, n_layers: int, dtype: torch.dtype = torch.float64) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, hidden, n_layers).to(dtype)


@pytest.mark.parametrize(("hidden", "n_layers"), [(64, 3), (8, 2), (16, 4), (64, 2)])
@pytest.mark.parametrize("seed", range(3))
def test_random_mlp_values_and_gradients_equal_autograd(hidden: int, n_layers: int, seed: int) -> None:
    mlp = _mlp(seed, hidden, n_layers)
    x = 3 * torch.randn(4000, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x = torch.cat([x, torch.tensor([0.0, 1e3, -1e3, 50.0, -50.0], dtype=torch.float64)])
    _compare(mlp, x, 1e-9)


def test_inputs_on_breakpoints_and_ties_get_autograds_subgradient() -> None:
    mlp = _mlp(0, 64, 3)
    bp = pieces(mlp).breakpoints
    assert len(bp) > 64  # both hidden layers switch inside the range
    x = torch.cat([bp, bp, bp[:5], bp + 1e-12, bp - 1e-12])  # every kink, twice, and a hair either side
    _compare(mlp, x, 1e-9)
    # on a kink of the first layer the unit is off (ReLU'(0) = 0), which neither neighbour piece says:
    layer = mlp.net[0]
    kink = -(layer.bias[0] / layer.weight[0, 0]).detach().reshape(1)
    _compare(mlp, kink, 1e-9)


def test_each_piece_is_the_line_through_the_mlp() -> None:
    mlp = _mlp(1, 64, 3)
    structure = pieces(mlp)
    alpha, beta = coefficients(mlp, structure)
    bp = structure.breakpoints
    inner = (bp[:-1] + bp[1:]) / 2  # (P - 2,) one point inside each bounded piece
    for lo, hi in (
        (inner - 1e-9 * 0, inner),
        (bp[:-1] + 1e-7 * (bp[1:] - bp[:-1]), bp[1:] - 1e-7 * (bp[1:] - bp[:-1])),
    ):
        ref = mlp(torch.stack([lo, hi]).reshape(-1, 1)).reshape(2, -1)
        k = torch.arange(1, len(bp))
        assert torch.allclose(ref[0], alpha[k] * lo + beta[k], atol=1e-12)
        assert torch.allclose(ref[1], alpha[k] * hi + beta[k], atol=1e-12)
    # at most one switch per unit and layer-1 interval: P <= 1 + h1 + (h1 + 1) h2
    assert structure.n <= 1 + 64 + 65 * 64


def test_a_trained_mlp_in_float32() -> None:
    mlp = _mlp(2, 64, 3, torch.float32)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    x = torch.linspace(-6, 6, 512).unsqueeze(-1)
    for _ in range(300):  # fit tanh: the function lin_edge learns in PDE_N2
        opt.zero_grad()
        ((mlp(x) - torch.tanh(x)) ** 2).mean().backward()
        opt.step()
    assert pieces(mlp).n >= 20
    _compare(mlp, 3 * torch.randn(16000, generator=torch.Generator().manual_seed(0)), 2e-5)


def test_off_diagonal_sum_and_l1_equal_the_masked_forms() -> None:
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(30, 30, dtype=torch.float64, generator=gen, requires_grad=True)
    h = torch.randn(5, 30, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = 1 - torch.eye(30, dtype=torch.float64)
    assert torch.autograd.gradcheck(off_diagonal_sum, (h, W))
    assert torch.autograd.gradcheck(off_diagonal_l1, (W,))
    assert torch.autograd.gradcheck(
        lambda h, W: off_diagonal_synapses(h, W)[0].sum() + 0.7 * off_diagonal_synapses(h, W)[1], (h, W)
    )
    g = torch.randn(5, 30, dtype=torch.float64, generator=gen)
    fast = torch.autograd.grad((off_diagonal_sum(h, W) * g).sum() + 0.3 * off_diagonal_l1(W), (h, W))
    ref = torch.autograd.grad(((h @ (W * mask).T) * g).sum() + 0.3 * (W * mask).abs().sum(), (h, W))
    for a, b in zip(fast, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert float(fast[1].diagonal().abs().max()) == 0.0
    msg, l1 = off_diagonal_synapses(h, W)
    fused = torch.autograd.grad((msg * g).sum() + 0.3 * l1, (h, W))
    for a, b in zip(fused, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_off_diagonal_synapses_per_member_equal_each_member_alone() -> None:
    """With a member axis, W (K, N, N) and h (K, batch, N): every member's message, L1 and gradients are
    what the member alone gives (and gradcheck holds for the batched form)."""
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(3, 12, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    h = torch.randn(3, 4, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(3, 4, 12, dtype=torch.float64, generator=gen)
    c = torch.tensor([0.3, 0.0, 1.7], dtype=torch.float64)  # one L1 weight per member
    assert torch.autograd.gradcheck(
        lambda h, W: (off_diagonal_synapses(h, W)[0] * g).sum() + (c * off_diagonal_synapses(h, W)[1]).sum(),
        (h, W),
    )
    msg, l1 = off_diagonal_synapses(h, W)
    assert msg.shape == (3, 4, 12) and l1.shape == (3,)
    grads = torch.autograd.grad((msg * g).sum() + (c * l1).sum(), (h, W))
    for k in range(3):
        msg_k, l1_k = off_diagonal_synapses(h[k], W[k])
        assert torch.allclose(msg[k], msg_k, atol=1e-12) and torch.allclose(l1[k], l1_k, atol=1e-12)
        alone = torch.autograd.grad((msg_k * g[k]).sum() + c[k] * l1_k, (h, W))
        assert torch.allclose(grads[0][k], alone[0][k], atol=1e-12)
        assert torch.allclose(grads[1][k], alone[1][k], atol=1e-12)
        assert float(grads[1][k].diagonal().abs().max()) == 0.0


def _pair(n: int, dtype: torch.dtype = torch.float32) -> tuple[SignalGNN, ReferenceGNN]:
    torch.manual_seed(0)
    fast = SignalGNN(n, lin_edge_eval="pieces").to(dtype)
    ref = ReferenceGNN(n, lin_edge_eval="mlp").to(dtype)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def test_one_step_of_the_loss_equals_the_reference_in_float64() -> None:
    fast, ref = _pair(60, torch.float64)
    gen = torch.Generator().manual_seed(0)
    u = 3 * torch.randn(8, 60, dtype=torch.float64, generator=gen)
    y = torch.randn(8, 60, dtype=torch.float64, generator=gen)
    coeffs = (1e-3, 1.0, 100.0)
    terms = [loss_terms(m, u, y, coeffs, 5.0) for m in (fast, ref)]
    assert torch.allclose(terms[0], terms[1], rtol=1e-12)
    grads = [
        torch.autograd.grad(t.sum(), list(m.parameters())) for t, m in zip(terms, (fast, ref), strict=True)
    ]
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def frames() -> tuple[torch.Tensor, torch.Tensor, float]:
    """u, y (2000, 100) of the quickstart network with process noise, and its xnorm."""
    config = load_config(QUICKSTART)
    data = simulate(config.simulation.model_copy(update={"n_frames": 2000, "noise_model_level": 0.3}))
    return torch.from_numpy(data.u), torch.from_numpy(data.y), float(round(1.5 * float(data.u.std())))


def _train(
    model: SignalGNN, frames: tuple[torch.Tensor, torch.Tensor, float], steps: int = 300
) -> np.ndarray:
    """The loss terms (steps, 4) of ``steps`` Adam steps (the quickstart's learning rates) on batches of 8."""
    u_all, y_all, xnorm = frames
    batches = torch.randint(len(u_all), (steps, 8), generator=torch.Generator().manual_seed(0))
    mlps = [*model.lin_edge.parameters(), *model.lin_phi.parameters()]
    groups = [
        {"params": [model.W], "lr": 5e-3},
        {"params": [model.a], "lr": 2e-3},
        {"params": mlps, "lr": 2e-3},
    ]
    opt = torch.optim.Adam(groups)
    out = []
    for idx in batches:
        terms = loss_terms(model, u_all[idx], y_all[idx], (1e-5, 1.0, 100.0), xnorm)
        opt.zero_grad()
        terms.sum().backward()
        opt.step()
        out.append(terms.detach().double().numpy())
    return np.array(out)


def test_training_stays_within_rounding_of_the_reference_step(frames: tuple) -> None:
    """Training amplifies rounding: the reference with W moved by one float32 ulp drifts from itself by
    0.3 % to 30 % per loss term over 300 steps. The fast step may drift from the reference as far, not further."""
    fast, ref = _pair(100)
    ulp = ReferenceGNN(100, lin_edge_eval="mlp")
    ulp.load_state_dict(ref.state_dict())
    with torch.no_grad():
        ulp.W.copy_(torch.nextafter(ulp.W, torch.full_like(ulp.W, 1.0)))
    exact = _train(ref, frames)
    rounding = np.abs(_train(ulp, frames) - exact).max(axis=0)  # (4,)
    drift = np.abs(_train(fast, frames) - exact).max(axis=0)  # (4,)
    assert (rounding > 0).all()
    assert (drift <= 3 * rounding).all(), (drift, rounding)
    assert torch.equal(fast.W.diagonal(), ref.W.diagonal())  # the diagonal never moves


def test_a_given_synapse_set_keeps_the_mask() -> None:
    model = SignalGNN(20, edge_index=complete_edge_index(20)[:, ::3])
    assert not model.complete
    u = torch.randn(4, 20)
    h = model.edge_term(u)
    assert torch.allclose(model(u, h), model.phi_term(u) + h @ model.W_masked().T)
    assert torch.allclose(model.W_L1(), model.W_masked().abs().sum())
