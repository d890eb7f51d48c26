"""Population training: K configs of one block trained as one batched model; equals ``fit`` per member.

For members k = 1..K with their own W_k, a_k, lin_edge_k and lin_phi_k (stacked on a leading axis in a
:class:`~ntune.learn.model.PopulationGNN`):

    pred_{k,i} = lin_phi_k([u_{k,i}, a_{k,i}]) + sum_{j != i} W_{k,ij} * lin_edge_k(u_{k,j})

Every member keeps its own seed (init and frame sampling, drawn exactly as ``fit`` draws them), learning
rates (W, a, MLPs), L1 coefficient, W init scale, gradient clip, iteration count and optimizer state;
the loss terms are :func:`ntune.learn.loss.loss_terms` with one norm per member, and each member's log
points, reports and final metrics are kept by its own :class:`ntune.learn.loop.RunLog`, as in ``fit``.
Members that differ in a structural setting (data, batch size, epoch length, optimizer kind, scheduler,
layer sizes, back end, device) are trained as separate groups. A member whose loss becomes non-finite is
frozen and reported ``diverged`` at the same check ``fit`` would stop at; the others go on unchanged
(members share no arithmetic). On CUDA the step (forward, backward, clip, optimizer) is captured once in a
CUDA graph and replayed; frames are sampled on the device and the loop synchronises only at the
divergence checks and log points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ntune.config import NtuneConfig, TrainingConfig
from ntune.data.simulate import SimData, resolve_device
from ntune.learn.allocator import keep_freed_memory
from ntune.learn.loop import RunLog
from ntune.learn.loss import LOSS_TERMS, l1_coefficient, loss_terms
from ntune.learn.model import PopulationGNN, SignalGNN
from ntune.learn.optim import BatchedOptimizer, Plateau
from ntune.learn.train import TrainResult, fit, init_model, iteration_counts, train_frames

__all__ = ["groups", "structure_key", "train_population"]

MemberProgress = Callable[[int, dict[str, Any]], None]


def structure_key(config: NtuneConfig) -> tuple[Any, ...]:
    """Settings that members of one batched group share (data and shapes); the rest may differ per member."""
    tc, gc = config.training, config.graph_model
    return (
        config.simulation_hash(),
        gc.embedding_dim,
        gc.hidden_dim,
        gc.n_layers,
        gc.backend,
        gc.lin_edge_eval,
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
    """Whether the batched trainer covers this config: PDE_N2, the dense back end, one L1 phase, L1 as a loss
    term (PDE_N4, the edge back end, upstream's two-phase L1 and the proximal L1 step are trained by ``fit``)."""
    tc, gc = config.training, config.graph_model
    dense_n2 = gc.signal_model_name == "PDE_N2" and gc.backend == "dense"
    return dense_n2 and tc.n_epochs_init == 0 and not tc.W_L1_proximal


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
                report = partial(on_progress, k) if on_progress else None
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


@dataclass
class _Group:
    """The batched state of one group (equal :func:`structure_key`) of K members.

    ``singles`` are the members' SignalGNNs as ``fit`` initialises them: the source of the batched
    ``model`` and the templates each member is copied into for its evaluations and its result.
    """

    configs: list[NtuneConfig]
    u_train: Tensor  # (T_train, N)
    y_train: Tensor  # (T_train, N)
    xnorm: float
    singles: list[SignalGNN]
    model: PopulationGNN
    opt: BatchedOptimizer
    lr_base: Tensor  # (K, 3) the learning rates cosine annealing starts from; 0 for finished members
    cosine_T: Tensor  # (K, 1) each member's iteration count
    plateaus: list[Plateau]
    coeffs: tuple[Any, Any, Any]
    clip: list[float]
    gens: list[torch.Generator]
    n_iter_epoch: int
    n_iters: list[int]
    losses: Tensor  # (K, iterations, 4)

    @property
    def tc0(self) -> TrainingConfig:
        """The training section of the first member: its structural settings are every member's."""
        return self.configs[0].training


def _build_group(configs: list[NtuneConfig], data: SimData) -> _Group:
    """Every member initialised, seeded and scheduled exactly as ``fit`` would, stacked into one group."""
    tc0 = configs[0].training
    dev = torch.device(resolve_device(tc0.device))
    if dev.type == "cpu":
        keep_freed_memory()
    n_frames, n_neurons = data.u.shape
    u_train, y_train, xnorm = train_frames(data, tc0, dev)  # (T_train, N) each
    singles = [init_model(c, n_neurons, dev) for c in configs]  # exactly fit's init, reused as templates
    model = PopulationGNN(singles)
    n_iters = [iteration_counts(n_frames, c.training)[1] for c in configs]
    tcs = [c.training for c in configs]
    lr = torch.tensor(
        [[tc.learning_rate_W_start, tc.learning_rate_embedding_start, tc.learning_rate_start] for tc in tcs],
        device=dev,
    )  # (K, 3) the W, a and MLP learning rates
    return _Group(
        configs=configs,
        u_train=u_train,
        y_train=y_train,
        xnorm=xnorm,
        singles=singles,
        model=model,
        opt=BatchedOptimizer(model.param_groups(), tc0.optimizer, lr),
        lr_base=lr.clone(),  # (K, 3)
        cosine_T=torch.tensor(n_iters, device=dev, dtype=torch.float32).unsqueeze(1),  # (K, 1)
        plateaus=[Plateau() for _ in configs],
        coeffs=_coefficients(configs, dev),
        clip=[c.training.gradient_clip for c in configs],
        gens=[torch.Generator(device=dev).manual_seed(c.training.seed) for c in configs],
        n_iter_epoch=iteration_counts(n_frames, tc0)[0],
        n_iters=n_iters,
        losses=torch.zeros(len(configs), max(n_iters), len(LOSS_TERMS), device=dev),  # (K, iterations, 4)
    )


def _train_group(
    configs: list[NtuneConfig],
    data: SimData,
    on_progress: MemberProgress | None,
    log_dirs: list[str | Path | None],
    ids: list[int],
) -> list[TrainResult]:
    """One batched group (equal :func:`structure_key`): the loop of ``fit`` over K members at once.

    ``ids[k]`` is member k's index for ``on_progress``; ``log_dirs[k]`` its TensorBoard folder.
    """
    g = _build_group(configs, data)
    dev = g.u_train.device
    step = partial(_step, g)
    run_step = _CudaGraphStep(step, len(configs), g.tc0.batch_size, dev) if dev.type == "cuda" else step
    n_train = len(g.u_train)
    reports = [partial(on_progress, i) if on_progress is not None else None for i in ids]
    runs = [
        RunLog(c, data, g.losses[k], g.n_iters[k], n_train, on_progress=reports[k], log_dir=log_dirs[k])
        for k, c in enumerate(configs)
    ]
    results: list[TrainResult | None] = [None] * len(configs)
    alive = set(range(len(configs)))
    frames = torch.empty(0)

    for it in range(max(g.n_iters)):
        if it % g.n_iter_epoch == 0:
            frames = _epoch_frames(g, n_train)  # (iters, K, batch)
        g.losses[:, it] = run_step(frames[it % g.n_iter_epoch])  # (K, 4)
        done = it + 1
        check = sorted(k for k in alive if runs[k].due(done))
        if not check:
            continue
        finite = torch.isfinite(g.losses[:, it]).all(dim=-1).tolist()  # one sync per check
        for k in check:
            if not finite[k]:
                results[k] = _finish(g, k, runs[k], done, "diverged")
            elif runs[k].is_log_point(done):
                _log(g, k, runs[k], done)
                if done == g.n_iters[k]:
                    results[k] = _finish(g, k, runs[k], done, "ok")
            if results[k] is not None:
                alive.discard(k)
        if not alive:
            break
    return [r for r in results if r is not None]


def _epoch_frames(g: _Group, n_train: int) -> Tensor:
    """The training frames (iterations per epoch, K, batch) of one epoch, each member drawing exactly as fit."""
    shape = (g.n_iter_epoch, g.tc0.batch_size)
    dev = g.u_train.device
    return torch.stack([torch.randint(n_train, shape, generator=gen, device=dev) for gen in g.gens], dim=1)


def _step(g: _Group, idx: Tensor) -> Tensor:
    """One iteration of every member on frames idx (K, batch): loss, backward, clip, update; returns (K, 4)."""
    u, y = g.u_train[idx], g.y_train[idx]  # (K, batch, N) each
    terms = loss_terms(g.model, u, y, g.coeffs, g.xnorm)  # (K, 4)
    for p, _ in g.opt.params:
        p.grad = None
    terms.sum().backward()
    if any(c > 0 for c in g.clip):
        g.opt.clip_(g.clip)
    if g.tc0.scheduler == "cosine":
        with torch.no_grad():
            g.opt.lr.copy_(
                g.lr_base * 0.5 * (1 + torch.cos(math.pi * g.opt.step_count / g.cosine_T))
            )  # (K, 3)
    g.opt.step()
    return terms.detach()  # (K, 4)


def _log(g: _Group, k: int, run: RunLog, done: int) -> None:
    """Member k's log point after ``done`` iterations: its plateau schedule, then its evaluation and report."""
    tc = g.configs[k].training
    recent = run.loss_since_last_log(done)
    if tc.scheduler == "plateau":
        g.plateaus[k].step(recent, g.opt.lr[k])
    run.log_point(g.model.member(k, g.singles[k]), done, (done - 1) // g.n_iter_epoch, recent)


def _finish(g: _Group, k: int, run: RunLog, done: int, status: str) -> TrainResult:
    """Member k's end after ``done`` iterations: its final report and result; then it is frozen."""
    member = g.model.member(k, g.singles[k])
    epoch = (done - 1) // g.n_iter_epoch
    final, losses_np = run.finish(member, done, epoch, status)
    result = TrainResult(
        status, final, member, run.history, g.configs[k], g.opt.state_dict(k), epoch, losses_np
    )
    g.opt.freeze(k)
    g.lr_base[k] = 0.0
    return result


class _CudaGraphStep:
    """``step`` captured in a CUDA graph after ``WARMUP`` eager warm-up iterations (which are real iterations).

    Each call copies the frame indices (K, batch) into a static buffer, replays the graph and returns a
    copy of the loss terms (K, 4): no host synchronisation, one launch per iteration.
    """

    WARMUP = 3

    def __init__(self, step: Callable[[Tensor], Tensor], K: int, batch: int, dev: torch.device) -> None:
        self.step, self.dev = step, dev
        self.idx = torch.zeros(K, batch, dtype=torch.long, device=dev)  # (K, batch) the graph's input
        self.graph: torch.cuda.CUDAGraph | None = None
        self.terms: Tensor | None = None  # (K, 4) the graph's output
        self.calls = 0
        self.side = torch.cuda.Stream(device=dev)

    def __call__(self, idx: Tensor) -> Tensor:
        self.calls += 1
        if self.calls <= self.WARMUP:
            self.side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(self.side):
                terms = self.step(idx)  # (K, 4)
            torch.cuda.current_stream(self.dev).wait_stream(self.side)
            return terms
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.terms = self.step(self.idx)
        self.idx.copy_(idx)
        self.graph.replay()
        assert self.terms is not None
        return self.terms.clone()  # (K, 4)
