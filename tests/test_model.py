"""SignalGNN: dense and edge back ends compute the same function and gradients; edge convention."""

from __future__ import annotations

import pytest
import torch

from ntune.learn.model import SignalGNN, complete_edge_index

N = 12


def _pair(edge_index: torch.Tensor | None, device: str) -> tuple[SignalGNN, SignalGNN]:
    torch.manual_seed(0)
    dense = SignalGNN(N, backend="dense", edge_index=edge_index, W_init_std=0.5)
    with torch.no_grad():
        dense.a.normal_()  # distinct embeddings so lin_phi differs per neuron
    edge = SignalGNN(N, backend="edge", edge_index=edge_index)
    edge.load_state_dict(dense.state_dict())
    return dense.to(device), edge.to(device)


def _sparse_edges() -> torch.Tensor:
    full = complete_edge_index(N)
    keep = torch.rand(full.shape[1], generator=torch.Generator().manual_seed(1)) < 0.3
    return full[:, keep]


def _check_agreement(edge_index: torch.Tensor | None, device: str) -> None:
    dense, edge = _pair(edge_index, device)
    u = 3.0 * torch.randn(5, N, generator=torch.Generator().manual_seed(2)).to(device)  # (batch, N)
    y = torch.randn(5, N, generator=torch.Generator().manual_seed(3)).to(device)
    p_dense, p_edge = dense(u), edge(u)
    torch.testing.assert_close(p_dense, p_edge, atol=1e-5, rtol=0)
    (p_dense - y).norm(2).backward()
    (p_edge - y).norm(2).backward()
    for (name, a), (_, b) in zip(dense.named_parameters(), edge.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=0, msg=f"gradient of {name}")
    assert dense.W.grad.abs().sum() > 0


@pytest.mark.parametrize("sparse", [False, True], ids=["complete", "sparse"])
def test_dense_and_edge_agree_cpu(sparse: bool) -> None:
    _check_agreement(_sparse_edges() if sparse else None, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sparse", [False, True], ids=["complete", "sparse"])
def test_dense_and_edge_agree_cuda(sparse: bool) -> None:
    _check_agreement(_sparse_edges() if sparse else None, "cuda")


def test_edge_j_to_i_carries_W_ij() -> None:
    """With the single edge 0 -> 1, only neuron 1 receives input, through W[1, 0]; the rest is masked."""
    edge_index = torch.tensor([[0], [1]])  # source 0, target 1
    for backend in ("dense", "edge"):
        model = SignalGNN(3, backend=backend, edge_index=edge_index)
        with torch.no_grad():
            model.W.copy_(torch.tensor([[0.0, 5.0, 7.0], [2.0, 0.0, 11.0], [13.0, 17.0, 0.0]]))
        u = torch.tensor([[1.0, -0.5, 0.25]])
        h = model.edge_term(u)  # (1, 3)
        expected = model.phi_term(u)
        expected[0, 1] += 2.0 * h[0, 0]
        torch.testing.assert_close(model(u), expected)
        model(u).sum().backward()
        assert torch.count_nonzero(model.W.grad) == 1 and model.W.grad[1, 0] != 0, backend


def test_diagonal_masked_and_shapes() -> None:
    model = SignalGNN(7, W_init_std=1.0)
    assert model.a.shape == (7, 2) and torch.all(model.a == 1)
    assert torch.all(model.W_masked().diagonal() == 0)
    assert model(torch.zeros(7)).shape == (7,)
    assert model(torch.zeros(4, 7)).shape == (4, 7)
