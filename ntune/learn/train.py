"""Train a SignalGNN on simulated PDE_N2 data: ``fit(config, data) -> TrainResult``.

Upstream semantics (NeuralGraph ``data_train_signal``): param groups W / a / MLPs, iterations per epoch
``int(n_frames * data_augmentation_loop // batch_size * 0.2)``, ``batch_size`` random training frames per
iteration, loss = ||pred - y||_2 + L1 on W + lin_phi-zero + lin_edge monotonicity. The last
``test_fraction`` of the frames is never trained on; the rollout test starts there. Frames are sampled by
indexing tensors already on the device and losses are accumulated on the device, so the loop never
synchronises except at the ~``n_log_points`` evaluations and the divergence checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ntune.config import NtuneConfig, TrainingConfig
from ntune.data.simulate import SimData, neuron_params, pde_n2_rhs, resolve_device
from ntune.learn import metrics as M
from ntune.learn.checkpoint import load_checkpoint, save_checkpoint
from ntune.learn.model import SignalGNN

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["METRIC_KEYS", "TrainResult", "fit", "load_checkpoint", "save_checkpoint"]

METRIC_KEYS = (
    "connectivity_R2", "connectivity_slope", "zero_band", "cross", "cluster_accuracy", "test_R2",
    "test_pearson", "loss", "final_loss", "training_time_min", "spectral_radius",
    "connectivity_filling_factor", "iteration", "n_iterations", "epoch", "progress", "status",
    "classification", "final",
)  # fmt: skip
LOSS_TERMS = ("prediction", "W_L1", "lin_phi_zero", "edge_diff")
CHECK_EVERY = 100  # iterations between divergence checks (one device sync each)
N_IMAGES = 20  # scatter + embedding images per run in TensorBoard
ROLLOUT_EVERY = 10  # rollout snapshot spacing for test_R2

Progress = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """What ``fit`` returns: status ("ok" | "diverged"), final metrics, the model and the evaluation history."""

    status: str
    metrics: dict[str, Any]
    model: SignalGNN
    history: list[dict[str, Any]]
    config: NtuneConfig | None = None
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
    losses: np.ndarray = field(default_factory=lambda: np.zeros((0, len(LOSS_TERMS)), np.float32))


def make_optimizer(model: SignalGNN, tc: TrainingConfig) -> torch.optim.Optimizer:
    """Param groups W / a / MLPs at learning_rate_W_start / learning_rate_embedding_start / learning_rate_start."""
    mlps = list(model.lin_edge.parameters()) + list(model.lin_phi.parameters())
    groups = [
        {"params": [model.W], "lr": tc.learning_rate_W_start, "name": "W"},
        {"params": [model.a], "lr": tc.learning_rate_embedding_start, "name": "a"},
        {"params": mlps, "lr": tc.learning_rate_start, "name": "mlp"},
    ]
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups)
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    return kinds[tc.optimizer](groups, fused=True)  # one kernel per step (CPU and CUDA)


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainingConfig, n_iterations: int) -> Any:
    """None, cosine annealing over all iterations (stepped per iteration) or reduce-on-plateau (per log point)."""
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, n_iterations))
    if tc.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


def loss_terms(model: Any, u: Tensor, y: Tensor, coeffs: tuple[Any, Any, Any], xnorm: float) -> Tensor:
    """The four weighted loss terms for frames u, y (..., batch, N); coeffs = (W_L1, lin_phi_zero, edge_diff).

    One definition for the single model and the population: with a SignalGNN, u (batch, N) and float
    coefficients give (4,); with a :class:`~ntune.learn.population.PopulationGNN`, u (K, batch, N) and (K,)
    coefficient tensors give (K, 4), every norm taken per member over its last two dimensions.
    """
    coeff_L1, coeff_phi_zero, coeff_edge_diff = coeffs
    zero = u.new_zeros(u.shape[:-2])  # () or (K,)
    phi_zero, edge_diff = zero, zero
    if _active(coeff_edge_diff) and xnorm > 0:
        h_both = model.edge_term(torch.cat([u, u + xnorm / 150], dim=-2))  # (..., 2 batch, N)
        h, h_next = h_both.chunk(2, dim=-2)  # (..., batch, N) each
        edge_diff = coeff_edge_diff * _norm(torch.relu(h - h_next))
    else:
        h = model.edge_term(u)  # (..., batch, N)
    pred = model(u, h)  # (..., batch, N)
    prediction = _norm(pred - y)
    W_L1 = coeff_L1 * _norm(model.W_masked(), 1)
    if _active(coeff_phi_zero):
        at_zero = torch.cat([torch.zeros_like(model.a[..., :1]), model.a], dim=-1)  # (..., N, 1 + emb)
        phi_zero = coeff_phi_zero * _norm(model.lin_phi(at_zero))
    return torch.stack([prediction, W_L1, phi_zero, edge_diff], dim=-1)  # (..., 4)


def _active(coeff: Any) -> bool:
    """A tensor coefficient (one per member) is always evaluated; a float one only when positive."""
    return isinstance(coeff, Tensor) or coeff > 0


def _norm(x: Tensor, ord: int = 2) -> Tensor:
    """The ``ord``-norm over the last two dimensions: () for (batch, N), (K,) for (K, batch, N)."""
    return torch.linalg.vector_norm(x, ord, dim=(-2, -1))


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


def init_model(config: NtuneConfig, n_neurons: int, dev: torch.device) -> SignalGNN:
    """The SignalGNN of ``config`` initialised from ``training.seed`` alone (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        model = SignalGNN.from_config(config.graph_model, n_neurons)
    return model.to(dev)


def log_points(n_iterations: int, n_log_points: int) -> set[int]:
    """The iteration counts after which the model is evaluated (the last one is ``n_iterations``)."""
    return set(np.linspace(0, n_iterations, n_log_points + 1)[1:].round().astype(int).tolist())


def final_metrics(
    model: SignalGNN,
    data: SimData,
    tc: TrainingConfig,
    base: dict[str, Any],
    losses: np.ndarray,
    n_train: int,
) -> dict[str, Any]:
    """Metrics of a finished run: W metrics, held-out rollout test, final loss (last 5 % of iterations)."""
    n_roll = min(tc.n_rollout_frames, len(data.u) - n_train)
    test_R2, test_pearson = math.nan, math.nan
    if n_roll >= 2:
        test_R2, test_pearson = M.rollout_scores(*rollout(model, data, n_train, n_roll), every=ROLLOUT_EVERY)
    tail = max(1, int(math.ceil(0.05 * len(losses))))
    final_loss = float(losses[-tail:, 0].mean())
    return {
        **base,
        **w_metrics(model, data, tc.cluster_method),
        "test_R2": test_R2,
        "test_pearson": test_pearson,
        "loss": final_loss,
        "final_loss": final_loss,
    }


def l1_coefficient(config: NtuneConfig, epoch: int) -> float:
    """Weight of ||W||_1 in ``epoch``: first_coeff_L1 in the first n_epochs_init epochs (upstream's two-phase
    L1), else coeff_W_L1, divided by the filling factor when coeff_W_L1_scale_by_filling."""
    tc, ff = config.training, config.simulation.connectivity_filling_factor
    if epoch < tc.n_epochs_init:
        return tc.first_coeff_L1
    return tc.coeff_W_L1 / ff if tc.coeff_W_L1_scale_by_filling else tc.coeff_W_L1


@torch.no_grad()
def soft_threshold_(W: Tensor, threshold: float) -> None:
    """Proximal step of threshold * ||W||_1 in place: W <- sign(W) max(|W| - threshold, 0)."""
    if threshold > 0:
        W.copy_(torch.sign(W) * torch.clamp(W.abs() - threshold, min=0.0))  # (N, N)


def _g_and_range(data: SimData) -> tuple[np.ndarray, float, float]:
    g = np.asarray(neuron_params(data.params, data.types)[0], dtype=np.float64)  # (N,)
    lo, hi = np.percentile(data.u[:: max(1, len(data.u) // 2000)], [1, 99])
    return g, float(lo), float(hi)


@torch.no_grad()
def curves(model: SignalGNN, data: SimData, n_points: int = 200) -> dict[str, np.ndarray]:
    """lin_edge and lin_phi (per neuron) sampled over the 1-99 % range of the activity."""
    _, lo, hi = _g_and_range(data)
    dev = model.W.device
    u = torch.linspace(lo, hi, n_points, device=dev)  # (P,)
    edge = model.edge_term(u)  # (P,)
    phi = model.phi_term(u.unsqueeze(1).expand(-1, model.n_neurons).contiguous())  # (P, N)
    return {"u": u.cpu().numpy(), "lin_edge": edge.cpu().numpy(), "lin_phi": phi.cpu().numpy()}


def w_metrics(model: SignalGNN, data: SimData, method: str) -> dict[str, Any]:
    """connectivity_R2, scale-corrected slope, W diagnosis and cluster_accuracy of the current model."""
    from threadpoolctl import threadpool_limits

    W = model.W_masked().detach().cpu().numpy()
    c = curves(model, data)
    phi_true = np.tanh(c["u"]) if data.config.phi == "tanh" else c["u"]
    gain = M.edge_gain(c["lin_edge"], phi_true)
    g, _, _ = _g_and_range(data)
    diag = M.w_diagnosis(W, data.W)
    with threadpool_limits(limits=torch.get_num_threads()):
        acc = M.cluster_accuracy(model.a.detach().cpu().numpy(), data.types, method)
    return {
        "connectivity_R2": M.connectivity_R2(W, data.W),
        "connectivity_slope": M.connectivity_slope(W, data.W, gain, g),
        "zero_band": diag["zero_band"],
        "cross": diag["cross"],
        "cluster_accuracy": acc,
    }


def scale_corrected_W(model: SignalGNN, data: SimData, c: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Learned W on the true scale (N, N): ``edge_gain * W_ij / g_i`` (``c``: :func:`curves`, computed if None)."""
    c = c if c is not None else curves(model, data)
    phi_true = np.tanh(c["u"]) if data.config.phi == "tanh" else c["u"]
    g, _, _ = _g_and_range(data)
    W = model.W_masked().detach().cpu().numpy()  # (N, N)
    return M.scale_corrected(W, M.edge_gain(c["lin_edge"], phi_true), g)


@torch.no_grad()
def rollout(model: SignalGNN, data: SimData, start: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Euler rollouts (n_frames, N) of the learned and the true model from frame ``start`` of the data."""
    dev = model.W.device
    dt = data.config.delta_t
    W = torch.from_numpy(data.W).to(dev)  # (N, N)
    g, s, c = (torch.as_tensor(v, device=dev) for v in neuron_params(data.params, data.types))
    u_learned = torch.from_numpy(data.u[start]).to(dev)  # (N,)
    u_true = u_learned.clone()
    out = torch.empty(2, n_frames, model.n_neurons, device=dev)  # (2, T, N)
    for t in range(n_frames):
        out[0, t], out[1, t] = u_learned, u_true
        u_learned = u_learned + dt * model(u_learned)
        u_true = u_true + dt * pde_n2_rhs(u_true, W, g, s, c, data.config.phi)
    out = out.cpu().numpy()
    return out[0], out[1]


def fit(
    config: NtuneConfig,
    data: SimData,
    *,
    on_progress: Progress | None = None,
    log_dir: str | Path | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train a SignalGNN on ``data``; never raises on divergence (status "diverged" instead).

    ``on_progress(metrics)`` is called about ``training.n_log_points`` times and once at the end, each time
    with every key of ``METRIC_KEYS``. TensorBoard events go to ``log_dir`` when given.
    """
    tc = config.training
    dev = torch.device(resolve_device(device or tc.device))
    n_frames, n_neurons = data.u.shape
    u_train, y_train, xnorm = train_frames(data, tc, dev)  # (T_train, N) each
    n_train = len(u_train)
    model = init_model(config, n_neurons, dev)
    optimizer = make_optimizer(model, tc)
    n_iter_epoch, n_iterations = iteration_counts(n_frames, tc)
    scheduler = make_scheduler(optimizer, tc, n_iterations)
    ff = config.simulation.connectivity_filling_factor
    gen = torch.Generator(device=dev).manual_seed(tc.seed)
    log_at = log_points(n_iterations, tc.n_log_points)
    losses = torch.zeros(n_iterations, len(LOSS_TERMS), device=dev)  # (iterations, 4)
    writer = _writer(log_dir)
    base = {
        "spectral_radius": float(data.summary.get("spectral_radius", math.nan)),
        "connectivity_filling_factor": ff,
        "n_iterations": n_iterations,
    }
    history: list[dict[str, Any]] = []
    status, done, epoch, last_log = "running", 0, 0, 0
    start = time.perf_counter()

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
            is_log = done in log_at
            if (is_log or done % CHECK_EVERY == 0) and not bool(torch.isfinite(losses[it]).all()):
                status = "diverged"
                break
            if is_log:
                recent = float(losses[last_log:done, 0].mean())
                last_log = done
                if tc.scheduler == "plateau":
                    scheduler.step(recent)
                row = {**base, **w_metrics(model, data, tc.cluster_method), "loss": recent}
                row.update(_progress_keys(done, n_iterations, epoch, start, final=False))
                history.append(_complete(row))
                _log_tensorboard(writer, model, data, row, losses[:done], len(history), tc.n_log_points)
                if on_progress is not None:
                    on_progress(dict(history[-1]))
        if status == "diverged":
            break

    losses_np = losses[:done].cpu().numpy()
    final = _progress_keys(done, n_iterations, epoch, start, final=True)
    if status == "diverged":
        final.update(_diverged_metrics(base))
    else:
        status = "ok"
        final.update(final_metrics(model, data, tc, base, losses_np, n_train))
    final["status"] = status
    final = _complete(final)
    history.append(final)
    if writer is not None:
        _log_tensorboard(writer, model, data, final, losses[:done], N_IMAGES, N_IMAGES)
        writer.close()
    if on_progress is not None:
        on_progress(dict(final))
    return TrainResult(status, final, model, history, config, optimizer.state_dict(), epoch, losses_np)


def _progress_keys(done: int, n_iterations: int, epoch: int, start: float, *, final: bool) -> dict[str, Any]:
    return {
        "iteration": done,
        "epoch": epoch,
        "progress": done / n_iterations,
        "training_time_min": (time.perf_counter() - start) / 60.0,
        "final": final,
        "status": "running",
    }


def _complete(row: dict[str, Any]) -> dict[str, Any]:
    """Every key of METRIC_KEYS (NaN where unknown yet), with the classification filled in."""
    out = {k: row.get(k, math.nan) for k in METRIC_KEYS}
    out["classification"] = M.classify(out)
    return out


def _diverged_metrics(base: dict[str, Any]) -> dict[str, Any]:
    zeros = ("connectivity_R2", "cluster_accuracy", "test_R2", "test_pearson", "cross")
    return {**base, **dict.fromkeys(zeros, 0.0), "loss": math.nan, "final_loss": math.nan}


def _writer(log_dir: str | Path | None) -> SummaryWriter | None:
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _log_tensorboard(
    writer: SummaryWriter | None,
    model: SignalGNN,
    data: SimData,
    row: dict[str, Any],
    losses: Tensor,
    k: int,
    n: int,
) -> None:
    """Scalars at every evaluation; W scatter and embedding images about N_IMAGES times per run."""
    if writer is None:
        return
    step = int(row["iteration"])
    recent = losses[-max(1, len(losses) // 20) :].mean(dim=0).cpu().numpy()  # (4,)
    for name, value in zip(LOSS_TERMS, recent, strict=True):
        writer.add_scalar(f"loss/{name}", float(value), step)
    for key in ("connectivity_R2", "cluster_accuracy", "connectivity_slope", "zero_band"):
        value = float(row[key])
        if math.isfinite(value):
            writer.add_scalar(f"metrics/{key}", value, step)
    if k % max(1, n // N_IMAGES) == 0 and row["status"] != "diverged":
        for name, fig in figures(model, data, row, kinds=("W_scatter", "embedding")).items():
            writer.add_figure(name, fig, step)


def figures(
    model: SignalGNN,
    data: SimData,
    row: dict[str, Any],
    losses: np.ndarray | None = None,
    kinds: tuple[str, ...] = ("W_scatter", "embedding", "lin_phi", "lin_edge", "loss"),
) -> dict[str, Any]:
    """Matplotlib figures (Agg) of the model: W scatter, embedding, lin_phi, lin_edge and the loss curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntune import plots

    c = curves(model, data)
    out = {}
    for kind in kinds:
        if kind == "loss" and losses is None:
            continue
        fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=80)
        fig.subplots_adjust(left=0.16, right=0.96, bottom=0.13, top=0.9)  # fixed: tight_layout is slow
        if kind == "W_scatter":
            plots.plot_W_scatter(ax, scale_corrected_W(model, data, c), data.W, row)
        elif kind == "embedding":
            plots.plot_embedding(
                ax, model.a.detach().cpu().numpy(), data.types, float(row["cluster_accuracy"])
            )
        elif kind == "lin_phi":
            plots.plot_lin_phi(ax, c["u"], c["lin_phi"], data.types, data.params)
        elif kind == "lin_edge":
            plots.plot_lin_edge(ax, c["u"], c["lin_edge"], data.config.phi)
        else:
            plots.plot_loss(ax, losses, LOSS_TERMS)
        out[kind] = fig
        plt.close(fig)
    return out
