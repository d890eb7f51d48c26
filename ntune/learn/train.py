"""Train a SignalGNN on simulated PDE_N2 or PDE_N4 data: ``fit(config, data) -> TrainResult``.

Upstream semantics (NeuralGraph ``data_train_signal``): param groups W / a / MLPs, iterations per epoch
``int(n_frames * data_augmentation_loop // batch_size * 0.2)``, ``batch_size`` random training frames per
iteration, loss = ||pred - y||_2 + L1 on W + lin_phi-zero + lin_edge monotonicity. The last
``test_fraction`` of the frames is never trained on; the rollout test starts there. Frames are sampled by
indexing tensors already on the device and losses are accumulated on the device, so the loop never
synchronises except at the ~``n_log_points`` evaluations and the divergence checks.

The pieces: the loss (:mod:`ntune.learn.loss`), the optimizer and scheduler (:mod:`ntune.learn.optim`),
the evaluations (:mod:`ntune.learn.evaluate`) and the loop's bookkeeping (:mod:`ntune.learn.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ntune.config import NtuneConfig, TrainingConfig
from ntune.data.simulate import SimData, check_trainable, resolve_device
from ntune.learn.allocator import keep_freed_memory
from ntune.learn.loop import Progress, RunLog
from ntune.learn.loss import LOSS_TERMS, l1_coefficient, loss_terms, soft_threshold_
from ntune.learn.model import SignalGNN
from ntune.learn.optim import make_optimizer, make_scheduler

__all__ = ["TrainResult", "fit"]


@dataclass
class TrainResult:
    """What ``fit`` returns: status ("ok" | "diverged"), final metrics, the model and the evaluation history.

    ``losses`` (iterations done, 4) holds the ``LOSS_TERMS`` of every iteration; ``optimizer_state`` and
    ``epoch`` are what a checkpoint stores (:func:`ntune.learn.checkpoint.save_checkpoint`).
    """

    status: str
    metrics: dict[str, Any]
    model: SignalGNN
    history: list[dict[str, Any]]
    config: NtuneConfig | None = None
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
    losses: np.ndarray = field(default_factory=lambda: np.zeros((0, len(LOSS_TERMS)), np.float32))


def train_frames(data: SimData, tc: TrainingConfig, dev: torch.device) -> tuple[Tensor, Tensor, float]:
    """Training frames u, y (T_train, N) on ``dev`` (the held-out tail removed) and xnorm = round(1.5 std(u))."""
    n_frames = len(data.u)
    n_train = n_frames - int(round(n_frames * tc.test_fraction))
    u_train = torch.from_numpy(np.ascontiguousarray(data.u[:n_train])).to(dev)  # (T_train, N)
    y_train = torch.from_numpy(np.ascontiguousarray(data.y[:n_train])).to(dev)  # (T_train, N)
    xnorm = float(round(1.5 * float(data.u[:n_train].std(dtype=np.float64))))
    return u_train, y_train, xnorm


def iteration_counts(n_frames: int, tc: TrainingConfig) -> tuple[int, int]:
    """(iterations per epoch, all iterations): ``int(n_frames * data_augmentation_loop // batch_size * 0.2)``."""
    n_iter_epoch = max(1, int(n_frames * tc.data_augmentation_loop // tc.batch_size * 0.2))
    return n_iter_epoch, tc.n_epochs * n_iter_epoch


def init_model(
    config: NtuneConfig, n_neurons: int, dev: torch.device, model_class: type[SignalGNN] = SignalGNN
) -> SignalGNN:
    """The SignalGNN of ``config`` initialised from ``training.seed`` alone (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        model = model_class.from_config(config.graph_model, n_neurons)
    return model.to(dev)


def fit(
    config: NtuneConfig,
    data: SimData,
    *,
    on_progress: Progress | None = None,
    log_dir: str | Path | None = None,
    device: str | None = None,
    model_class: type[SignalGNN] = SignalGNN,
) -> TrainResult:
    """Train a SignalGNN on ``data``; never raises on divergence (status "diverged" instead).

    ``model_class`` :class:`ntune.learn.reference.ReferenceGNN` trains with the reference step (the same
    function evaluated directly; ``benchmarks/fast_step_results.py`` compares the trained results).

    ``on_progress(metrics)`` is called about ``training.n_log_points`` times and once at the end, each time
    with every key of ``ntune.learn.metrics.REPORTED_METRICS``. TensorBoard events go to ``log_dir`` when given.
    """
    check_trainable(config.simulation)  # a model ntune simulates but cannot train: refused up front
    tc = config.training
    dev = torch.device(resolve_device(device or tc.device))
    if dev.type == "cpu":
        keep_freed_memory()  # (N, N) buffers are reused between steps instead of mapped anew
    n_frames, n_neurons = data.u.shape
    u_train, y_train, xnorm = train_frames(data, tc, dev)  # (T_train, N) each
    n_train = len(u_train)
    model = init_model(config, n_neurons, dev, model_class)
    optimizer = make_optimizer(model, tc)
    n_iter_epoch, n_iterations = iteration_counts(n_frames, tc)
    scheduler = make_scheduler(optimizer, tc, n_iterations)
    gen = torch.Generator(device=dev).manual_seed(tc.seed)
    losses = torch.zeros(n_iterations, len(LOSS_TERMS), device=dev)  # (iterations, 4)
    run = RunLog(config, data, losses, n_iterations, n_train, on_progress=on_progress, log_dir=log_dir)
    status, done, epoch = "ok", 0, 0

    for epoch in range(tc.n_epochs):
        coeff_L1 = l1_coefficient(config, epoch)
        coeffs = (0.0 if tc.W_L1_proximal else coeff_L1, tc.coeff_lin_phi_zero, tc.coeff_edge_diff)
        frames = torch.randint(
            n_train, (n_iter_epoch, tc.batch_size), generator=gen, device=dev
        )  # (iters, batch)
        for k in range(n_iter_epoch):
            it = epoch * n_iter_epoch + k
            u, y = u_train[frames[k]], y_train[frames[k]]  # (batch, N) each
            terms = loss_terms(model, u, y, coeffs, xnorm)  # (4,)
            optimizer.zero_grad(set_to_none=True)
            terms.sum().backward()
            if tc.gradient_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.gradient_clip)
            optimizer.step()
            if tc.W_L1_proximal:
                soft_threshold_(model.W, optimizer.param_groups[0]["lr"] * coeff_L1)
            if tc.scheduler == "cosine":
                scheduler.step()
            losses[it] = terms.detach()
            done = it + 1
            if run.due(done) and not bool(torch.isfinite(losses[it]).all()):
                status = "diverged"
                break
            if run.is_log_point(done):
                recent = run.loss_since_last_log(done)
                if tc.scheduler == "plateau":
                    scheduler.step(recent)
                run.log_point(model, done, epoch, recent)
        if status == "diverged":
            break

    final, losses_np = run.finish(model, done, epoch, status)
    return TrainResult(status, final, model, run.history, config, optimizer.state_dict(), epoch, losses_np)
