"""The bookkeeping of a training loop, one :class:`RunLog` per run: ``fit``'s, and each population member's.

A run is evaluated at ~``n_log_points`` iterations (:func:`log_points`) and checked for a non-finite loss
there and every ``CHECK_EVERY`` iterations (each check is one device sync). At a log point it reports
every key of ``REPORTED_METRICS``: the W metrics, the mean prediction loss since the last log point and
the progress keys; at its end, the final metrics. Each report is appended to the run's history, written to
TensorBoard when a log folder is given and passed to ``on_progress``. Its ``classification`` uses the
default thresholds, connectivity_R2 alone on a network of one neuron type (cluster_accuracy is undefined
there); a study classifies again with its own objective.

The loop itself (sampling, the step, the divergence test, the schedulers) stays with its owner: ``fit``
tests one loss row at a time, a population every member's row at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from ntune.config import NtuneConfig
from ntune.data.identifiability import is_data_limited
from ntune.data.simulate import SimData
from ntune.learn import metrics as M
from ntune.learn.evaluate import diverged_metrics, figures, final_metrics, w_metrics
from ntune.learn.loss import LOSS_TERMS
from ntune.learn.metrics import REPORTED_METRICS
from ntune.learn.model import SignalGNN
from searchers.objective import DEFAULT_THRESHOLDS

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

CHECK_EVERY = 100  # iterations between divergence checks (one device sync each)
N_IMAGES = 20  # scatter + embedding images per run in TensorBoard

Progress = Callable[[dict[str, Any]], None]


def log_points(n_iterations: int, n_log_points: int) -> set[int]:
    """The iteration counts after which the model is evaluated (the last one is ``n_iterations``)."""
    return set(np.linspace(0, n_iterations, n_log_points + 1)[1:].round().astype(int).tolist())


class RunLog:
    """Log points, divergence checks, reports, history and TensorBoard of one run of ``config`` on ``data``.

    ``losses`` (iterations, 4) is the run's loss history, written by the loop (one row of
    ``LOSS_TERMS`` per iteration) and read here up to the iteration count ``done`` the loop passes in.
    ``n_train`` is the number of training frames (the rollout test starts after them). The clock of
    ``training_time_min`` starts when the RunLog is made.
    """

    def __init__(
        self,
        config: NtuneConfig,
        data: SimData,
        losses: Tensor,
        n_iterations: int,
        n_train: int,
        *,
        on_progress: Progress | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        self.config, self.data, self.losses = config, data, losses
        self.n_iterations, self.n_train = n_iterations, n_train
        self.on_progress = on_progress
        self.log_at = log_points(n_iterations, config.training.n_log_points)
        self.base = {
            "spectral_radius": float(data.summary.get("spectral_radius", math.nan)),
            "ceiling": float(
                data.summary.get("ceiling", math.nan)
            ),  # of this network (ntune.data.identifiability)
            "data_limited": is_data_limited(data.summary, DEFAULT_THRESHOLDS["connectivity_R2"]),
            # activity complexity: principal components reaching 90 % / 99 % of the variance (upstream's figure)
            "effective_rank_90": float(data.summary.get("effective_rank_90", math.nan)),
            "effective_rank_99": float(data.summary.get("effective_rank_99", math.nan)),
            "connectivity_filling_factor": config.simulation.connectivity_filling_factor,
            "n_iterations": n_iterations,
        }
        one_type = config.simulation.n_neuron_types < 2
        self.thresholds = {"connectivity_R2": DEFAULT_THRESHOLDS["connectivity_R2"]} if one_type else None
        self.history: list[dict[str, Any]] = []
        self.last_log = 0
        self.writer = _writer(log_dir)
        self.start = time.perf_counter()

    def is_log_point(self, done: int) -> bool:
        """Whether the run is evaluated after ``done`` iterations."""
        return done in self.log_at

    def due(self, done: int) -> bool:
        """Whether the loss is checked for NaN/inf after ``done`` iterations (log points, every CHECK_EVERY)."""
        return self.is_log_point(done) or done % CHECK_EVERY == 0

    def loss_since_last_log(self, done: int) -> float:
        """Mean prediction loss of the iterations since the last log point; this one becomes the last."""
        recent = float(self.losses[self.last_log : done, 0].mean())
        self.last_log = done
        return recent

    def log_point(self, model: SignalGNN, done: int, epoch: int, recent: float) -> None:
        """Evaluate ``model`` after ``done`` iterations and report it with the loss ``recent``."""
        tc = self.config.training
        row = {**self.base, **w_metrics(model, self.data, tc.cluster_method), "loss": recent}
        row.update(self._progress(done, epoch, final=False))
        self.history.append(complete(row, self.thresholds))
        _log_tensorboard(
            self.writer, model, self.data, row, self.losses[:done], len(self.history), tc.n_log_points
        )
        if self.on_progress is not None:
            self.on_progress(dict(self.history[-1]))

    def finish(
        self, model: SignalGNN, done: int, epoch: int, status: str
    ) -> tuple[dict[str, Any], np.ndarray]:
        """The final report of a run that ended with ``status`` ("ok" | "diverged") after ``done`` iterations.

        Returns the final metrics and the loss history (done, 4) on the CPU; closes the TensorBoard writer.
        """
        losses_np = self.losses[:done].cpu().numpy()  # (done, 4)
        final = self._progress(done, epoch, final=True)
        if status == "diverged":
            final.update(diverged_metrics(self.base))
        else:
            final.update(
                final_metrics(model, self.data, self.config.training, self.base, losses_np, self.n_train)
            )
        final["status"] = status
        final = complete(final, self.thresholds)
        self.history.append(final)
        if self.writer is not None:
            _log_tensorboard(self.writer, model, self.data, final, self.losses[:done], N_IMAGES, N_IMAGES)
            self.writer.close()
        if self.on_progress is not None:
            self.on_progress(dict(final))
        return final, losses_np

    def _progress(self, done: int, epoch: int, *, final: bool) -> dict[str, Any]:
        return {
            "iteration": done,
            "epoch": epoch,
            "progress": done / self.n_iterations,
            "training_time_min": (time.perf_counter() - self.start) / 60.0,
            "final": final,
            "status": "running",
        }


def complete(row: dict[str, Any], thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Every key of REPORTED_METRICS (NaN where unknown yet), with the classification under ``thresholds``
    (None: the default ones) filled in."""
    out = {k: row.get(k, math.nan) for k in REPORTED_METRICS}
    out["classification"] = M.classify(out, thresholds)
    return out


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
    """Scalars at every evaluation; W scatter and embedding images about N_IMAGES times per run.

    ``losses`` (done, 4): the loss terms so far; ``k`` of ``n``: this evaluation's number and their count.
    """
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
