"""Population training: K configs of one block trained as one batched model; equals ``fit`` per member.

For members k = 1..K with their own W_k, a_k, lin_edge_k and lin_phi_k (stacked on a leading axis):

    pred_{k,i} = lin_phi_k([u_{k,i}, a_{k,i}]) + sum_{j != i} W_{k,ij} * lin_edge_k(u_{k,j})

Every member keeps its own seed (init and frame sampling, drawn exactly as ``fit`` draws them), learning
rates (W, a, MLPs), L1 coefficient, W init scale, gradient clip, iteration count and optimizer state;
the loss terms are ``train.loss_terms`` with one norm per member. Members that differ in a structural
setting (data, batch size, epoch length, optimizer kind, scheduler, layer sizes, back end, device) are
trained as separate groups. A member whose loss becomes non-finite is frozen and reported ``diverged``
at the same check ``fit`` would stop at; the others go on unchanged (members share no arithmetic).
On CUDA the step (forward, backward, clip, optimizer) is captured once in a CUDA graph and replayed;
frames are sampled on the device and the loop synchronises only at the divergence checks and log points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ntune.config import NtuneConfig
from ntune.data.simulate import SimData, resolve_device
from ntune.learn.model import SignalGNN
from ntune.learn.optim import BatchedOptimizer, Plateau
from ntune.learn.train import (
    CHECK_EVERY,
    LOSS_TERMS,
    N_IMAGES,
    TrainResult,
    _complete,
    _diverged_metrics,
    _log_tensorboard,
    _progress_keys,
    _writer,
    final_metrics,
    fit,
    init_model,
    iteration_counts,
    l1_coefficient,
    log_points,
    loss_terms,
    train_frames,
    w_metrics,
)

__all__ = ["BatchedOptimizer", "PopulationGNN", "groups", "structure_key", "train_population"]

MemberProgress = Callable[[int, dict[str, Any]], None]


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

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        h = x.reshape(shape[0], -1, shape[-1])  # (K, M, in)
        for i, (w, b) in enumerate(zip(self.weight, self.bias, strict=True)):
            h = torch.baddbmm(b, h, w)  # (K, M, out)
            if i < len(self.weight) - 1:
                h = torch.relu(h)
        return h.reshape(*shape[:-1], h.shape[-1])  # (K, ..., out)

    def member(self, k: int, mlp: nn.Module) -> None:
        """Copy member k's weights into ``mlp`` (an :class:`ntune.learn.model.MLP` of the same shape)."""
        linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        for lin, w, b in zip(linears, self.weight, self.bias, strict=True):
            lin.weight.copy_(w[k].mT)
            lin.bias.copy_(b[k, 0])


class PopulationGNN(nn.Module):
    """K SignalGNN members stacked: a (K, N, emb), W (K, N, N), batched lin_edge and lin_phi (dense back end)."""

    def __init__(self, members: list[SignalGNN]) -> None:
        super().__init__()
        self.n_members, self.n_neurons = len(members), members[0].n_neurons
        self.a = nn.Parameter(torch.stack([m.a.detach() for m in members]))  # (K, N, emb)
        self.W = nn.Parameter(torch.stack([m.W.detach() for m in members]))  # (K, N, N)
        self.lin_edge = BatchedMLP([m.lin_edge for m in members])
        self.lin_phi = BatchedMLP([m.lin_phi for m in members])
        self.register_buffer("mask", members[0].mask.clone())  # (N, N)

    def W_masked(self) -> Tensor:
        return self.W * self.mask  # (K, N, N)

    def param_groups(self) -> list[list[Tensor]]:
        """The optimizer's groups, in the order of the learning rates: [W], [a], the MLPs' parameters."""
        return [[self.W], [self.a], [*self.lin_edge.parameters(), *self.lin_phi.parameters()]]

    def edge_term(self, u: Tensor) -> Tensor:
        """lin_edge_k applied elementwise: u (K, ...) -> (K, ...)."""
        return self.lin_edge(u.unsqueeze(-1)).squeeze(-1)

    def phi_term(self, u: Tensor) -> Tensor:
        """lin_phi_k([u_i, a_{k,i}]) for u (K, batch, N) -> (K, batch, N)."""
        a = self.a.unsqueeze(1).expand(-1, u.shape[1], -1, -1)  # (K, batch, N, emb)
        return self.lin_phi(torch.cat([u.unsqueeze(-1), a], dim=-1)).squeeze(-1)  # (K, batch, N)

    def forward(self, u: Tensor, h: Tensor | None = None) -> Tensor:
        """Predicted du/dt (K, batch, N) for u (K, batch, N); ``h`` = lin_edge(u) when already computed."""
        if h is None:
            h = self.edge_term(u)  # (K, batch, N)
        return self.phi_term(u) + torch.bmm(h, self.W_masked().mT)  # (K, batch, N)

    @torch.no_grad()
    def member(self, k: int, template: SignalGNN) -> SignalGNN:
        """Member k as a standalone SignalGNN (``template`` gives the architecture; it is filled in place)."""
        template.a.copy_(self.a[k])
        template.W.copy_(self.W[k])
        self.lin_edge.member(k, template.lin_edge)
        self.lin_phi.member(k, template.lin_phi)
        return template


def structure_key(config: NtuneConfig) -> tuple[Any, ...]:
    """Settings that members of one batched group share (data and shapes); the rest may differ per member."""
    tc, gc = config.training, config.graph_model
    return (
        config.simulation_hash(),
        gc.embedding_dim,
        gc.hidden_dim,
        gc.n_layers,
        gc.backend,
        tc.W_L1_proximal,
        tc.n_epochs_init > 0,
        tc.batch_size,
        tc.data_augmentation_loop,
        tc.optimizer,
        tc.scheduler,
        tc.test_fraction,
        resolve_device(tc.device),
    )


def batchable(config: NtuneConfig) -> bool:
    """Whether the batched trainer covers this config: the dense back end, one L1 phase, L1 as a loss term
    (the edge back end, upstream's two-phase L1 and the proximal L1 step are trained by ``fit``)."""
    tc = config.training
    return config.graph_model.backend == "dense" and tc.n_epochs_init == 0 and not tc.W_L1_proximal


def groups(configs: list[NtuneConfig]) -> list[list[int]]:
    """Member indices grouped by :func:`structure_key`, in order of first appearance."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for k, c in enumerate(configs):
        out.setdefault(structure_key(c), []).append(k)
    return list(out.values())


def train_population(
    configs: list[NtuneConfig],
    data: SimData,
    *,
    on_progress: MemberProgress | None = None,
    log_dirs: list[str | Path | None] | None = None,
) -> list[TrainResult]:
    """Train every config on ``data``; result k is what ``fit(configs[k], data)`` returns, up to rounding.

    ``on_progress(k, metrics)`` is called at member k's log points and once at its end, as ``fit`` calls
    its ``on_progress``. Members that are not :func:`batchable` are trained one by one with ``fit``.
    """
    log_dirs = log_dirs or [None] * len(configs)
    results: list[TrainResult | None] = [None] * len(configs)
    for members in groups(configs):
        if not batchable(configs[members[0]]):
            for k in members:
                report = (lambda m, k=k: on_progress(k, m)) if on_progress else None
                results[k] = fit(configs[k], data, on_progress=report, log_dir=log_dirs[k])
            continue
        for k, result in zip(
            members,
            _train_group(
                [configs[k] for k in members], data, on_progress, [log_dirs[k] for k in members], members
            ),
            strict=True,
        ):
            results[k] = result
    return [r for r in results if r is not None]


def _coefficients(configs: list[NtuneConfig], dev: torch.device) -> tuple[Any, Any, Any]:
    """(W_L1, lin_phi_zero, edge_diff) as (K,) tensors; 0.0 where every member's is 0 (term skipped as in fit)."""
    rows = [
        (
            l1_coefficient(c, epoch=0),  # batchable members have one L1 phase (n_epochs_init == 0)
            c.training.coeff_lin_phi_zero,
            c.training.coeff_edge_diff,
        )
        for c in configs
    ]
    cols = [torch.tensor(col, device=dev) if any(col) else 0.0 for col in zip(*rows, strict=True)]
    return cols[0], cols[1], cols[2]


def _train_group(
    configs: list[NtuneConfig],
    data: SimData,
    on_progress: MemberProgress | None,
    log_dirs: list[str | Path | None],
    ids: list[int],
) -> list[TrainResult]:
    """One batched group (equal :func:`structure_key`): the loop of ``fit`` over K members at once."""
    K, tc0 = len(configs), configs[0].training
    dev = torch.device(resolve_device(tc0.device))
    n_frames, n_neurons = data.u.shape
    u_train, y_train, xnorm = train_frames(data, tc0, dev)  # (T_train, N) each
    n_train = len(u_train)
    singles = [init_model(c, n_neurons, dev) for c in configs]  # exactly fit's init, reused as templates
    model = PopulationGNN(singles)
    n_iter_epoch = iteration_counts(n_frames, tc0)[0]
    n_iters = [iteration_counts(n_frames, c.training)[1] for c in configs]
    lr = torch.tensor(
        [
            [
                c.training.learning_rate_W_start,
                c.training.learning_rate_embedding_start,
                c.training.learning_rate_start,
            ]
            for c in configs
        ],
        device=dev,
    )  # (K, 3) fmt: skip
    opt = BatchedOptimizer(model.param_groups(), tc0.optimizer, lr)
    lr_base = lr.clone()  # (K, 3)
    cosine_T = torch.tensor(n_iters, device=dev, dtype=torch.float32).unsqueeze(1)  # (K, 1)
    coeffs = _coefficients(configs, dev)
    clip = [c.training.gradient_clip for c in configs]
    gens = [torch.Generator(device=dev).manual_seed(c.training.seed) for c in configs]
    log_at = [log_points(n, c.training.n_log_points) for n, c in zip(n_iters, configs, strict=True)]
    losses = torch.zeros(K, max(n_iters), len(LOSS_TERMS), device=dev)  # (K, iterations, 4)
    writers = [_writer(d) for d in log_dirs]
    base = [
        {
            "spectral_radius": float(data.summary.get("spectral_radius", math.nan)),
            "connectivity_filling_factor": c.simulation.connectivity_filling_factor,
            "n_iterations": n,
        }
        for c, n in zip(configs, n_iters, strict=True)
    ]
    history: list[list[dict[str, Any]]] = [[] for _ in configs]
    plateaus = [Plateau() for _ in configs]
    results: list[TrainResult | None] = [None] * K
    alive, last_log = set(range(K)), [0] * K

    def step(idx: Tensor) -> Tensor:
        """One iteration of every member on frames idx (K, batch): loss, backward, clip, update."""
        u, y = u_train[idx], y_train[idx]  # (K, batch, N) each
        terms = loss_terms(model, u, y, coeffs, xnorm)  # (K, 4)
        for p, _ in opt.params:
            p.grad = None
        terms.sum().backward()
        if any(c > 0 for c in clip):
            opt.clip_(clip)
        if tc0.scheduler == "cosine":
            with torch.no_grad():
                opt.lr.copy_(lr_base * 0.5 * (1 + torch.cos(math.pi * opt.step_count / cosine_T)))
        opt.step()
        return terms.detach()  # (K, 4)

    run = _cuda_graph(step, K, tc0.batch_size, dev) if dev.type == "cuda" else step

    def finish(k: int, done: int, status: str) -> None:
        tc, member = configs[k].training, model.member(k, singles[k])
        losses_np = losses[k, :done].cpu().numpy()
        final = _progress_keys(done, n_iters[k], (done - 1) // n_iter_epoch, start, final=True)
        if status == "diverged":
            final.update(_diverged_metrics(base[k]))
        else:
            final.update(final_metrics(member, data, tc, base[k], losses_np, n_train))
        final["status"] = status
        final = _complete(final)
        history[k].append(final)
        if writers[k] is not None:
            _log_tensorboard(writers[k], member, data, final, losses[k, :done], N_IMAGES, N_IMAGES)
            writers[k].close()
        if on_progress is not None:
            on_progress(ids[k], dict(final))
        epoch = (done - 1) // n_iter_epoch
        results[k] = TrainResult(
            status, final, member, history[k], configs[k], opt.state_dict(k), epoch, losses_np
        )
        opt.freeze(k)
        lr_base[k] = 0.0
        alive.discard(k)

    def log(k: int, done: int) -> None:
        tc = configs[k].training
        recent = float(losses[k, last_log[k] : done, 0].mean())
        last_log[k] = done
        if tc.scheduler == "plateau":
            plateaus[k].step(recent, opt.lr[k])
        member = model.member(k, singles[k])
        row = {**base[k], **w_metrics(member, data, tc.cluster_method), "loss": recent}
        row.update(_progress_keys(done, n_iters[k], (done - 1) // n_iter_epoch, start, final=False))
        history[k].append(_complete(row))
        _log_tensorboard(writers[k], member, data, row, losses[k, :done], len(history[k]), tc.n_log_points)
        if on_progress is not None:
            on_progress(ids[k], dict(history[k][-1]))

    start = time.perf_counter()
    frames = torch.empty(0)
    for it in range(max(n_iters)):
        if it % n_iter_epoch == 0:  # each member draws its epoch exactly as fit does
            frames = torch.stack(
                [
                    torch.randint(n_train, (n_iter_epoch, tc0.batch_size), generator=g, device=dev)
                    for g in gens
                ],
                dim=1,
            )  # (iters, K, batch)
        losses[:, it] = run(frames[it % n_iter_epoch])  # (K, 4)
        done = it + 1
        check = sorted(k for k in alive if done in log_at[k] or done % CHECK_EVERY == 0)
        if not check:
            continue
        finite = torch.isfinite(losses[:, it]).all(dim=-1).tolist()  # one sync per check
        for k in check:
            if not finite[k]:
                finish(k, done, "diverged")
            elif done in log_at[k]:
                log(k, done)
                if done == n_iters[k]:
                    finish(k, done, "ok")
        if not alive:
            break
    return [r for r in results if r is not None]


def _cuda_graph(step: Callable[[Tensor], Tensor], K: int, batch: int, dev: torch.device) -> Callable:
    """``step`` captured in a CUDA graph after three eager warm-up iterations (which are real iterations).

    The returned callable copies the frame indices into a static buffer, replays the graph and returns a
    copy of the loss terms: no host synchronisation, one launch per iteration.
    """
    idx_static = torch.zeros(K, batch, dtype=torch.long, device=dev)  # (K, batch)
    graph: list[Any] = []
    out: list[Tensor] = []
    calls = [0]
    side = torch.cuda.Stream(device=dev)

    def run(idx: Tensor) -> Tensor:
        calls[0] += 1
        if calls[0] <= 3:
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                terms = step(idx)
            torch.cuda.current_stream(dev).wait_stream(side)
            return terms
        if not graph:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out.append(step(idx_static))
            graph.append(g)
        idx_static.copy_(idx)
        graph[0].replay()
        return out[0].clone()

    return run
