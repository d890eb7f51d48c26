"""SignalGNN: the learned PDE_N2 and PDE_N4 models, with a dense and a torch_geometric edge back end.

    PDE_N2: pred_i = lin_phi([u_i, a_i]) + sum_{j != i} W_ij * lin_edge(u_j)
    PDE_N4: pred_i = lin_phi([u_i, a_i]) + sum_{j != i} W_ij * lin_edge([u_j, a_j])

PDE_N4's transfer function phi((u_j - h_j) / w_j) depends on the source neuron's type, so its lin_edge
also reads the source's embedding a_j (upstream NeuralGraph's Signal_Propagation for PDE_N4).
One convention everywhere: the edge (j -> i) carries W[i, j] (row i of W is the postsynaptic neuron).
In both models the message depends on the source only, so the sum is exactly ``h @ (W * mask).T`` with
h_j = lin_edge(...) computed once per neuron and frame: one GEMM over a batch of frames (the dense back
end, the default). The edge back end computes the same sum by message passing over an ``edge_index``
(complete graph, or a given sparse edge set).

:class:`PopulationGNN` stacks K SignalGNNs of one shape (dense back end) on a leading member axis, so a
population (:mod:`ntune.learn.population`) trains them as one model:

    pred_{k,i} = lin_phi_k([u_{k,i}, a_{k,i}]) + sum_{j != i} W_{k,ij} * lin_edge_k(u_{k,j})
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from ntune.config import GraphModelConfig
from ntune.learn.piecewise import Layer, piecewise_forward
from ntune.learn.synapses import off_diagonal_l1, off_diagonal_sum, off_diagonal_synapses

LIN_EDGE_EVALS = ("auto", "pieces", "mlp")
SIGNAL_MODELS = ("PDE_N2", "PDE_N4")
# Below this many inputs the MLP is cheaper than finding its pieces (one thread: 0.7 ms against 0.5 ms at
# 1 600 inputs, 0.9 against 1.0 at 3 200; benchmarks/README.md).
PIECES_MIN_ROWS = 2500


def by_pieces(lin_edge_eval: str, device: torch.device, rows: int) -> bool:
    """Whether a scalar lin_edge of ``rows`` inputs is evaluated piece by piece: ``pieces`` always, ``auto``
    on CPU from ``PIECES_MIN_ROWS`` inputs, ``mlp`` never."""
    auto = lin_edge_eval == "auto" and device.type == "cpu" and rows >= PIECES_MIN_ROWS
    return lin_edge_eval == "pieces" or auto


class MLP(nn.Module):
    """``n_layers`` linear layers ``in -> hidden -> ... -> hidden -> out`` with ReLU between them."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for k in range(n_layers):
            layers.append(nn.Linear(dims[k], dims[k + 1]))
            if k < n_layers - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def split_first_layer(mlp: MLP, a: Tensor) -> tuple[Tensor, Tensor]:
    """The first layer of an MLP of input [u, a_i] split by input: the weight of u (hidden,) and the
    per-neuron part a_i W_a^T + b (N, hidden), computed once per call instead of once per frame."""
    first = mlp.net[0]
    return first.weight[:, 0], torch.addmm(first.bias, a, first.weight[:, 1:].T)  # (h,), (N, h)


def mlp_of_scalar_and_embedding(mlp: MLP, u: Tensor, a: Tensor) -> Tensor:
    """``mlp([u_i, a_i])`` for u (..., N) and a (N, emb) -> (..., N), with the first layer split by input."""
    w_u, c = split_first_layer(mlp, a)  # (h,), (N, h)
    z = torch.addcmul(c, u.unsqueeze(-1), w_u)  # (..., N, hidden): the first layer's output
    return mlp.net[1:](z).squeeze(-1)  # (..., N)


class WeightedSum(MessagePassing):
    r"""Sum of source features weighted by W over the edges of a graph.

    .. math::
        \mathbf{m}_i = \sum_{j \in \mathcal{N}(i)} W_{ij} \, \mathbf{h}_j

    where the edge (j -> i) carries ``W[i, j]`` and ``h_j = lin_edge(u_j)`` is computed once per node
    (the message depends on the source only). Node features are ``(N, batch)``: one column per frame.
    """

    def __init__(self) -> None:
        super().__init__(aggr="add", node_dim=0)

    def forward(self, h: Tensor, edge_index: Tensor, W_edge: Tensor) -> Tensor:
        """``h`` (N, batch), ``edge_index`` (2, E) rows [source j, target i], ``W_edge`` (E,) -> (N, batch)."""
        return self.propagate(edge_index, h=h, W_edge=W_edge)

    def message(self, h_j: Tensor, W_edge: Tensor) -> Tensor:
        return W_edge.unsqueeze(-1) * h_j  # (E, batch)


def complete_edge_index(n_neurons: int, device: torch.device | str | None = None) -> Tensor:
    """All ordered pairs j != i as a (2, N*(N-1)) int64 edge_index, rows [source j, target i]."""
    idx = torch.arange(n_neurons, device=device)
    j, i = torch.meshgrid(idx, idx, indexing="xy")  # j varies along columns, i along rows
    keep = i != j
    return torch.stack([j[keep], i[keep]])  # (2, N*(N-1))


def mask_from_edge_index(edge_index: Tensor, n_neurons: int) -> Tensor:
    """Boolean (N, N) adjacency with ``mask[i, j] = True`` for each edge (j -> i), diagonal removed."""
    mask = torch.zeros(n_neurons, n_neurons, dtype=torch.bool, device=edge_index.device)
    mask[edge_index[1], edge_index[0]] = True
    mask.fill_diagonal_(False)
    return mask


class SignalGNN(nn.Module):
    """Embeddings a (N, embedding_dim), connectivity W (N, N), MLPs lin_edge and lin_phi.

    ``signal_model_name`` ``"PDE_N2"`` gives lin_edge one input u_j; ``"PDE_N4"`` gives it [u_j, a_j]
    (1 + embedding_dim inputs; always evaluated as an MLP, never piece by piece). ``backend`` is ``"dense"``
    (one GEMM) or ``"edge"`` (torch_geometric message passing). ``edge_index`` restricts the synapses the
    model may use (default: the complete graph without self-loops); the dense back end uses the same set
    as a mask, so both back ends compute the same function.
    """

    def __init__(
        self,
        n_neurons: int,
        *,
        embedding_dim: int = 2,
        hidden_dim: int = 64,
        n_layers: int = 3,
        W_init_std: float = 0.01,
        backend: str = "dense",
        edge_index: Tensor | None = None,
        lin_edge_eval: str = "auto",
        signal_model_name: str = "PDE_N2",
    ) -> None:
        super().__init__()
        if signal_model_name not in SIGNAL_MODELS:
            raise ValueError(
                f"signal_model_name {signal_model_name!r} is not one of {', '.join(SIGNAL_MODELS)}"
            )
        if signal_model_name == "PDE_N4" and lin_edge_eval == "pieces":
            raise ValueError(
                "lin_edge_eval 'pieces' needs a lin_edge of one scalar input; PDE_N4's takes [u_j, a_j]"
            )
        if backend not in ("dense", "edge"):
            raise ValueError(f"backend {backend!r} is not one of 'dense', 'edge'")
        if lin_edge_eval not in LIN_EDGE_EVALS:
            raise ValueError(f"lin_edge_eval {lin_edge_eval!r} is not one of {', '.join(LIN_EDGE_EVALS)}")
        self.n_neurons = n_neurons
        self.backend = backend
        self.lin_edge_eval = lin_edge_eval
        self.signal_model_name = signal_model_name
        self.edge_embedding = signal_model_name == "PDE_N4"  # lin_edge reads the source's embedding a_j
        self.a = nn.Parameter(torch.ones(n_neurons, embedding_dim))  # (N, emb)
        self.W = nn.Parameter(torch.randn(n_neurons, n_neurons) * W_init_std)  # (N, N)
        self.lin_edge = MLP(1 + embedding_dim if self.edge_embedding else 1, 1, hidden_dim, n_layers)
        self.lin_phi = MLP(1 + embedding_dim, 1, hidden_dim, n_layers)
        self.complete = edge_index is None  # the mask only removes the diagonal (ntune.learn.synapses)
        if edge_index is None:
            mask = ~torch.eye(n_neurons, dtype=torch.bool)
        else:
            mask = mask_from_edge_index(edge_index, n_neurons)
        self.register_buffer("mask", mask.float())  # (N, N)
        self.register_buffer(
            "edge_index", self._edges_of(mask) if backend == "edge" else None, persistent=False
        )
        self.propagate_W = WeightedSum()

    @classmethod
    def from_config(
        cls, config: GraphModelConfig, n_neurons: int, edge_index: Tensor | None = None
    ) -> SignalGNN:
        """Build from the ``graph_model`` section of a config."""
        return cls(
            n_neurons,
            embedding_dim=config.embedding_dim,
            hidden_dim=config.hidden_dim,
            n_layers=config.n_layers,
            W_init_std=config.W_init_std,
            backend=config.backend,
            edge_index=edge_index,
            lin_edge_eval=config.lin_edge_eval,
            signal_model_name=config.signal_model_name,
        )

    @staticmethod
    def _edges_of(mask: Tensor) -> Tensor:
        i, j = torch.nonzero(mask, as_tuple=True)
        return torch.stack([j, i])  # (2, E) rows [source j, target i]

    def W_masked(self) -> Tensor:
        """The connectivity the model uses: W with the diagonal and absent synapses zeroed."""
        return self.W * self.mask  # (N, N)

    def W_L1(self) -> Tensor:
        """||W_masked||_1 (a 0-dim tensor); on the complete graph without the (N, N) mask multiply."""
        if self.complete:
            return off_diagonal_l1(self.W)
        return torch.linalg.vector_norm(self.W_masked(), 1)

    def phi_term(self, u: Tensor) -> Tensor:
        """Self-dynamics lin_phi([u_i, a_i]) for u (batch, N) -> (batch, N)."""
        return mlp_of_scalar_and_embedding(self.lin_phi, u, self.a)  # (batch, N)

    def phi_at_zero(self) -> Tensor:
        """lin_phi([0, a_i]) (N,): the self-dynamics at rest (the lin_phi-zero loss term)."""
        return self.lin_phi.net[1:](split_first_layer(self.lin_phi, self.a)[1]).squeeze(-1)

    def edge_term(self, u: Tensor) -> Tensor:
        """h = lin_edge of the sources. PDE_N2: lin_edge(u) elementwise, u (...,) -> (...,), piece by piece
        (:mod:`ntune.learn.piecewise`) when ``lin_edge_eval`` is ``pieces``, or ``auto`` on CPU with
        ``PIECES_MIN_ROWS`` inputs or more. PDE_N4: lin_edge([u_j, a_j]) for u (..., N) -> (..., N), the
        first layer split by input (the embedding's part once per call)."""
        if self.edge_embedding:
            return mlp_of_scalar_and_embedding(self.lin_edge, u, self.a)  # (..., N)
        if by_pieces(self.lin_edge_eval, u.device, u.numel()):
            return piecewise_forward(self.lin_edge, u)
        return self.lin_edge(u.unsqueeze(-1)).squeeze(-1)

    def message(self, h: Tensor) -> Tensor:
        """The synaptic sum m_i = sum_j W_ij h_j for h = :meth:`edge_term` (u) (batch, N) -> (batch, N)."""
        if self.backend == "dense" and self.complete:
            return off_diagonal_sum(h, self.W)  # (batch, N)
        if self.backend == "dense":
            return h @ self.W_masked().T  # (batch, N)
        src, dst = self.edge_index
        W_edge = self.W[dst, src]  # (E,)
        return self.propagate_W(h.T, self.edge_index, W_edge).T  # (batch, N)

    def synapses(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(:meth:`message` (h), :meth:`W_L1`) for the loss; on the complete graph in one pass for W's gradient."""
        if self.backend == "dense" and self.complete:
            return off_diagonal_synapses(h, self.W)
        return self.message(h), self.W_L1()

    def forward(self, u: Tensor, h: Tensor | None = None) -> Tensor:
        """Predicted du/dt for activity u (batch, N) or (N,); ``h`` = :meth:`edge_term` (u) when already computed."""
        squeeze = u.dim() == 1
        if squeeze:
            u = u.unsqueeze(0)  # (1, N)
        if h is None:
            h = self.edge_term(u)  # (batch, N)
        pred = self.phi_term(u) + self.message(h)  # (batch, N)
        return pred.squeeze(0) if squeeze else pred


class BatchedMLP(nn.Module):
    """K MLPs of one shape as batched products: x (K, ..., in) -> (K, ..., out), ReLU between layers."""

    def __init__(self, mlps: list[nn.Module]) -> None:
        super().__init__()
        layers = [[m for m in mlp.modules() if isinstance(m, nn.Linear)] for mlp in mlps]
        self.weight = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().mT for ls in layers]))  # (K, in, out)
            for i in range(len(layers[0]))
        )
        self.bias = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in layers]).unsqueeze(1))  # (K, 1, out)
            for i in range(len(layers[0]))
        )

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """The MLPs on x (K, ..., in) -> (K, ..., out); with ``start`` > 0, x is layer ``start - 1``'s output
        before its ReLU and the layers from ``start`` on are applied."""
        shape = x.shape
        h = x.reshape(shape[0], -1, shape[-1])  # (K, M, in)
        for i in range(start, len(self.weight)):
            if i > 0:
                h = torch.relu(h)
            h = torch.baddbmm(self.bias[i], h, self.weight[i])  # (K, M, out)
        return h.reshape(*shape[:-1], h.shape[-1])  # (K, ..., out)

    def layers(self, k: int) -> list[Layer]:
        """Member k's linear layers as views of the stacked parameters (gradients flow into them)."""
        return [Layer(w[k].mT, b[k, 0]) for w, b in zip(self.weight, self.bias, strict=True)]

    def split_first_layer(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """For inputs [u, a_i]: the weight of u (K, 1, hidden) and the per-neuron part
        a_i W_a^T + b (K, N, hidden) of the first layer, computed once per call (a: (K, N, emb))."""
        w0 = self.weight[0]  # (K, 1 + emb, hidden)
        return w0[:, :1], torch.baddbmm(self.bias[0], a, w0[:, 1:])

    def member(self, k: int, mlp: nn.Module) -> None:
        """Copy member k's weights into ``mlp`` (an :class:`ntune.learn.model.MLP` of the same shape)."""
        linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        for lin, w, b in zip(linears, self.weight, self.bias, strict=True):
            lin.weight.copy_(w[k].mT)
            lin.bias.copy_(b[k, 0])


class PopulationGNN(nn.Module):
    """K SignalGNN members stacked: a (K, N, emb), W (K, N, N), batched lin_edge and lin_phi (dense back end).

    It evaluates what its members would, the way ``fit`` does: lin_edge piece by piece per member under the
    members' ``lin_edge_eval`` rule, lin_phi with its first layer split by input, and on the complete graph
    the synaptic sum and L1 without the (K, N, N) mask multiply (:mod:`ntune.learn.synapses`).
    """

    def __init__(self, members: list[SignalGNN]) -> None:
        super().__init__()
        if any(m.edge_embedding for m in members):
            raise ValueError("a PopulationGNN batches PDE_N2 members only; PDE_N4 configs are trained by fit")
        self.n_members, self.n_neurons = len(members), members[0].n_neurons
        self.lin_edge_eval, self.complete = members[0].lin_edge_eval, members[0].complete
        self.a = nn.Parameter(torch.stack([m.a.detach() for m in members]))  # (K, N, emb)
        self.W = nn.Parameter(torch.stack([m.W.detach() for m in members]))  # (K, N, N)
        self.lin_edge = BatchedMLP([m.lin_edge for m in members])
        self.lin_phi = BatchedMLP([m.lin_phi for m in members])
        self.register_buffer("mask", members[0].mask.clone())  # (N, N)

    def W_masked(self) -> Tensor:
        return self.W * self.mask  # (K, N, N)

    def W_L1(self) -> Tensor:
        """||W_masked_k||_1 per member, (K,)."""
        return torch.linalg.vector_norm(self.W_masked(), 1, dim=(-2, -1))

    def param_groups(self) -> list[list[Tensor]]:
        """The optimizer's groups, in the order of the learning rates: [W], [a], the MLPs' parameters."""
        return [[self.W], [self.a], [*self.lin_edge.parameters(), *self.lin_phi.parameters()]]

    def edge_term(self, u: Tensor) -> Tensor:
        """lin_edge_k applied elementwise: u (K, ...) -> (K, ...); on CPU piece by piece per member where
        :meth:`SignalGNN.edge_term` would be (``lin_edge_eval``, ``PIECES_MIN_ROWS`` rows). On CUDA always
        as the MLP: the population captures its step in a CUDA graph, which needs fixed shapes."""
        if u.device.type == "cpu" and by_pieces(self.lin_edge_eval, u.device, u[0].numel()):
            return torch.stack(
                [piecewise_forward(self.lin_edge.layers(k), u[k]) for k in range(self.n_members)]
            )  # (K, ...)
        return self.lin_edge(u.unsqueeze(-1)).squeeze(-1)

    def phi_at_zero(self) -> Tensor:
        """lin_phi_k([0, a_{k,i}]) (K, N)."""
        return self.lin_phi(self.lin_phi.split_first_layer(self.a)[1], start=1).squeeze(-1)

    def phi_term(self, u: Tensor) -> Tensor:
        """lin_phi_k([u_i, a_{k,i}]) for u (K, batch, N) -> (K, batch, N)."""
        w_u, c = self.lin_phi.split_first_layer(self.a)  # (K, 1, h), (K, N, h)
        z = torch.addcmul(c.unsqueeze(1), u.unsqueeze(-1), w_u.unsqueeze(1))  # (K, batch, N, h)
        return self.lin_phi(z, start=1).squeeze(-1)  # (K, batch, N)

    def message(self, h: Tensor) -> Tensor:
        """m_{k,i} = sum_j W_{k,ij} h_{k,j}: h (K, batch, N) -> (K, batch, N)."""
        return torch.bmm(h, self.W_masked().mT)

    def synapses(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(:meth:`message` (h), :meth:`W_L1`); on the complete graph in one pass for W's gradient."""
        if self.complete:
            return off_diagonal_synapses(h, self.W)
        return self.message(h), self.W_L1()

    def forward(self, u: Tensor, h: Tensor | None = None) -> Tensor:
        """Predicted du/dt (K, batch, N) for u (K, batch, N); ``h`` = lin_edge(u) when already computed."""
        if h is None:
            h = self.edge_term(u)  # (K, batch, N)
        return self.phi_term(u) + self.message(h)  # (K, batch, N)

    @torch.no_grad()
    def member(self, k: int, template: SignalGNN) -> SignalGNN:
        """Member k as a standalone SignalGNN (``template`` gives the architecture; it is filled in place)."""
        template.a.copy_(self.a[k])
        template.W.copy_(self.W[k])
        self.lin_edge.member(k, template.lin_edge)
        self.lin_phi.member(k, template.lin_phi)
        return template
