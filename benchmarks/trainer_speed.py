"""Training-step time of SignalGNN back ends, measured in one run, printed with ratios.

    .venv/bin/python benchmarks/trainer_speed.py [--sizes 100 300 1000] [--batch 8] [--threads 1] [--device cpu]

One step = the full training loss of ntune.learn.loss.loss_terms (prediction + L1 + lin_phi-zero + edge
monotonicity), backward, Adam step, on a complete graph of N neurons. Models:

* ``reference``: :class:`ntune.learn.reference.ReferenceGNN`, every term evaluated directly:
  ``lin_edge(u) @ (W * mask).T`` with lin_edge and lin_phi layer by layer (the step before the fast one);
* ``fast``: ntune's default SignalGNN: on CPU lin_edge as its linear pieces (:mod:`ntune.learn.piecewise`,
  from 2 500 inputs per call), lin_phi's per-neuron first layer once per step, W's diagonal in O(N)
  (:mod:`ntune.learn.synapses`); the same function and gradients;
* ``edge``: ntune's torch_geometric back end (lin_edge once per node, W_ij * h_j per edge, scatter-add);
* ``upstream``: the upstream form, lin_edge evaluated inside ``message`` for every edge and frame
  (``--upstream-max-n`` bounds it: its activations take E * batch * hidden floats per layer).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing

from ntune.learn.allocator import keep_freed_memory
from ntune.learn.loss import loss_terms
from ntune.learn.model import SignalGNN
from ntune.learn.reference import ReferenceGNN


class PerEdgeMLP(MessagePassing):
    r"""Upstream message passing: :math:`m_i = \sum_{j} W_{ij}\,\mathrm{lin\_edge}(u_j)`, MLP per edge."""

    def __init__(self, lin_edge: torch.nn.Module) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.lin_edge = lin_edge

    def forward(self, u: Tensor, edge_index: Tensor, W_edge: Tensor) -> Tensor:
        return self.propagate(edge_index, u=u, W_edge=W_edge)

    def message(self, u_j: Tensor, W_edge: Tensor) -> Tensor:
        return W_edge.unsqueeze(-1) * self.lin_edge(u_j.unsqueeze(-1)).squeeze(-1)  # (E, batch)


class UpstreamGNN(SignalGNN):
    """SignalGNN whose synaptic sum runs lin_edge on every edge (the upstream Signal_Propagation form)."""

    def __init__(self, n_neurons: int) -> None:
        super().__init__(n_neurons, backend="edge", lin_edge_eval="mlp")
        self.per_edge = PerEdgeMLP(self.lin_edge)
        self._u = torch.zeros(0)

    def edge_term(self, u: Tensor) -> Tensor:
        self._u = u  # the message evaluates lin_edge again on every edge, from u, as upstream does
        return super().edge_term(u)

    def message(self, h: Tensor) -> Tensor:
        u = self._u[: h.shape[0]]  # (batch, N): the first half when the monotonicity term doubled u
        src, dst = self.edge_index
        return self.per_edge(u.T, self.edge_index, self.W[dst, src]).T  # (batch, N)

    def synapses(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.message(h), self.W_L1()


def step_time(model: SignalGNN, batch: int, device: torch.device, min_time: float, max_steps: int) -> float:
    """Median seconds per training step after two warm-up steps."""
    n = model.n_neurons
    u_all = 3.0 * torch.randn(64, n, device=device)  # (frames, N)
    y_all = torch.randn(64, n, device=device)  # (frames, N)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as ntune.learn.optim
    coeffs = (1e-5, 1.0, 100.0)

    def step() -> None:
        idx = torch.randint(64, (batch,), device=device)
        terms = loss_terms(model, u_all[idx], y_all[idx], coeffs, 5.0)  # (4,)
        opt.zero_grad(set_to_none=True)
        terms.sum().backward()
        opt.step()

    for _ in range(2):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_steps and (time.perf_counter() - start < min_time or len(times) < 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timed steps per cell")
    parser.add_argument("--upstream-max-n", type=int, default=1000)
    parser.add_argument(
        "--no-keep-freed-memory",
        action="store_true",
        help="time the fast step with glibc's default allocator too",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}")

    def timed(make: Callable[[int], SignalGNN], n: int, max_steps: int) -> float:
        torch.manual_seed(0)
        return 1e3 * step_time(make(n).to(device), args.batch, device, args.min_time, max_steps)

    # today's step first, with glibc's default allocator; then the allocator as fit() sets it on CPU
    reference = {n: timed(ReferenceGNN, n, 1000) for n in args.sizes}
    edge = {n: timed(lambda n: SignalGNN(n, backend="edge"), n, 200) for n in args.sizes}
    upstream = {n: timed(UpstreamGNN, n, 20) for n in args.sizes if n <= args.upstream_max_n}
    if not args.no_keep_freed_memory:
        keep_freed_memory()
    kept = {n: timed(ReferenceGNN, n, 1000) for n in args.sizes}
    fast = {n: timed(SignalGNN, n, 1000) for n in args.sizes}
    allocator = "default allocator" if args.no_keep_freed_memory else "keep_freed_memory"
    print(
        "reference: today's step, default allocator; ref+alloc: the same step with the allocator of fast; "
        f"fast: ntune's step, {allocator}"
    )
    print(
        f"{'N':>6} {'reference ms':>13} {'ref+alloc ms':>13} {'fast ms':>9} {'reference/fast':>15} "
        f"{'ref+alloc/fast':>15} {'edge ms':>9} {'upstream ms':>12} {'upstream/fast':>14}"
    )
    for n in args.sizes:
        up = upstream.get(n, float("nan"))
        print(
            f"{n:>6} {reference[n]:>13.3f} {kept[n]:>13.3f} {fast[n]:>9.3f} {reference[n] / fast[n]:>14.2f}x "
            f"{kept[n] / fast[n]:>14.2f}x {edge[n]:>9.3f} {up:>12.3f} {up / fast[n]:>13.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
