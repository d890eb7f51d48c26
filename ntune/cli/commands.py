"""Console commands: ``ntune simulate``, ``train`` and, over experiment folders, ``status``, ``export``, ``report``.

Each calls a domain function (:func:`ntune.data.load.load_or_simulate`, :func:`ntune.learn.train.fit`,
:mod:`ntune.report.export`) and prints what it returns: progress bars and tables live here, not in the
domain modules. No Ray. The experiment commands read the experiment folder
(:func:`ntune.study.experiment.read_experiment`); ``ntune run`` prints the same tables from what its
driver holds (:func:`show_status`, :func:`show_export`).

An experiment given as a URI (``s3://bucket/prefix/name``) is first downloaded into its local mirror
(:func:`ntune.study.storage.open_experiment`); ``export`` and ``report`` write there and copy what they wrote
back up, next to the experiment's other files (``export --out DIR`` writes to the local DIR only).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ntune.report.export import export, report, report_inputs, status_rows
from ntune.report.live import WatchView, watch_view
from ntune.study.confirm import held_out_cell, worst_cell
from ntune.study.experiment import Experiment, read_experiment
from ntune.study.records import fmt
from ntune.study.storage import JOURNAL_DIRS, LIVE_FILE, open_experiment

if TYPE_CHECKING:
    from ntune.config import NtuneConfig

STATUS_COLUMNS = (
    "block",
    "held-out",
    "done",
    "run",
    "conv",
    "fail",
    "ceiling",
    "R2",
    "cluster",
    "nets",
    "worst R2 / cl",
    "robust",
    "L1",
    "lr_W",
    "state",
)


def status_table(title: str, caption: str, rows: list[dict[str, Any]]) -> Table:
    """The per-block table of ``ntune status`` (and of ``status --watch``) from :func:`ntune.report.export.status_rows`.

    Its headline is held-out k/K (the block's best config converged on k of its K held-out networks); nets
    and worst R2 / cluster are that config's counted repeats and its worst one.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption=caption)
    for col in STATUS_COLUMNS:
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["value"]),
            held_out_cell(r),
            f"{r['trials']}/{r['budget']}",
            str(r["running"]),
            str(r["converged"]),
            str(r["failed"]),
            fmt(r["ceiling"], 3),
            fmt(r["best_R2"], 3),
            fmt(r["best_cluster"], 3),
            str(r["networks"] or "-"),
            worst_cell(r),
            "yes" if r["robust"] else "no",
            fmt(r["L1"], 2),
            fmt(r["lr_W"], 2),
            r["state"],
        )
    return table


def show_status(exp: Experiment, *, console: Console, stopped: bool = False) -> None:
    """Print the per-block table of an experiment's data and its time line (wall time run, time budget,
    projected finish); ``stopped``: its driver has ended, nothing runs."""
    console.print(status_table(*status_rows(exp, stopped=stopped)))
    console.print(exp.ledger.projection().text(dt.datetime.now()))


def status_command(exp_dir: str | Path, *, console: Console) -> None:
    """``ntune status EXP``: print the per-block table of the experiment folder (or URI) ``exp_dir``."""
    local, _ = open_experiment(exp_dir)
    show_status(read_experiment(local), console=console)


RUNNING_COLUMNS = (
    "trial",
    "block",
    "node",
    "strategy",
    "progress",
    "iteration",
    "R2",
    "cluster",
    "loss",
    "on",
    "age",
)
BAR_WIDTH = 10  # characters of a running trial's progress bar


def progress_bar(fraction: float) -> str:
    """``#####.....  50%``: a fraction in [0, 1] as a text bar (``?`` when unknown)."""
    if math.isnan(fraction):
        return "?"
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * BAR_WIDTH)
    return f"{'#' * filled}{'.' * (BAR_WIDTH - filled)} {fraction:4.0%}"


def running_table(view: WatchView, now: float) -> Table:
    """The running trials of a :class:`ntune.report.live.WatchView` with their latest evaluation."""
    table = Table(
        title=f"running trials: {len(view.running) + len(view.waiting)}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col in RUNNING_COLUMNS:
        table.add_column(
            col, justify="left" if col in ("trial", "block", "strategy") else "right", no_wrap=True
        )
    for r in view.running:
        iteration = "?" if math.isnan(r.iteration) else f"{r.iteration:.0f}/{r.n_iterations:.0f}"
        age = "?" if math.isnan(r.updated) else f"{max(now - r.updated, 0.0):.0f} s"
        table.add_row(
            r.trial_id,
            r.block.split("=", 1)[-1],
            str(r.node),
            r.strategy,
            progress_bar(r.progress),
            iteration,
            fmt(r.connectivity_R2, 3),
            fmt(r.cluster_accuracy, 3),
            fmt(r.loss, 3),
            r.ray_node_id[:8],
            age,
        )
    for trial_id, block in view.waiting:
        table.add_row(
            trial_id, block.split("=", 1)[-1], "", "", "starting", *[""] * (len(RUNNING_COLUMNS) - 5)
        )
    return table


def watch_frame(view: WatchView, *, interval: float, now: float) -> Group:
    """One frame of ``ntune status --watch``: the status table, the running trials, a footer line."""
    if view.finished:
        footer = f"study finished: {view.done}/{view.total} trials"
    else:
        footer = (
            f"{time.strftime('%H:%M:%S', time.localtime(now))}: refreshing every {interval:g} s; "
            "Ctrl-C stops watching (the study goes on)"
        )
    parts: list[Any] = [status_table(view.title, view.caption, view.rows)]
    if view.running or view.waiting:
        parts.append(running_table(view, now))
    parts.append(Text(footer))
    return Group(*parts)


def _watch_view(exp_dir: str | Path) -> WatchView:
    """The experiment's current :class:`WatchView`; of a URI: journal and running.json downloaded first."""
    local, remote = open_experiment(exp_dir)
    if remote is not None:
        remote.pull(local, (LIVE_FILE,))
    return watch_view(local)


def watch_command(exp_dir: str | Path, *, console: Console, interval: float) -> bool:
    """``ntune status EXP --watch``: a live table refreshed every ``interval`` s until the study ends.

    Returns True when the study finished, False when Ctrl-C stopped the watch first.
    """
    view = _watch_view(exp_dir)
    with Live(
        watch_frame(view, interval=interval, now=time.time()), console=console, auto_refresh=False
    ) as live:
        try:
            while not view.finished:
                time.sleep(interval)
                view = _watch_view(exp_dir)
                live.update(watch_frame(view, interval=interval, now=time.time()), refresh=True)
        except KeyboardInterrupt:
            return False
    return True


def export_command(
    exp_dir: str | Path, *, out: Path | None, fmt: str, console: Console, template: Path | None = None
) -> None:
    """``ntune export EXP``: export the experiment folder (or URI) ``exp_dir`` and print what was written.

    See :func:`ntune.report.export.export` (``template``: the upstream YAML of ``--format upstream``); an
    experiment on object storage gets the files written into its mirror copied back up (unless ``out``
    names another folder).
    """
    local, remote = open_experiment(exp_dir, ("ucb",))
    done = export(read_experiment(local, trees=fmt == "ucb-txt"), out=out, fmt=fmt, template=template)
    if remote is not None and out is None:
        wrote = [Path(text).relative_to(local).as_posix() for kind, text in done if kind == "wrote"]
        remote.push(local, wrote, ())
        done += [("note", f"uploaded to {remote.uri}: {', '.join(wrote)}")] if wrote else []
    show_export(done, console=console)


def show_export(done: list[tuple[str, str]], *, console: Console) -> None:
    """Print the (kind, text) messages of :func:`ntune.report.export.export`."""
    for kind, text in done:
        if kind == "wrote":
            console.print(f"wrote {text}")
        elif kind == "tree":
            console.print(f"[bold]{text}[/]", highlight=False)
        elif kind == "text":
            console.print(text, highlight=False, markup=False)
        else:
            console.print(text)


def report_command(exp_dir: str | Path, *, console: Console) -> None:
    """Write EXP/report.md and print its path (of an experiment on object storage: also copy it up)."""
    local, remote = open_experiment(exp_dir, JOURNAL_DIRS)
    exp = read_experiment(local, trees=True)
    if remote is not None:  # the best trials' W scatters, which the report shows
        remote.pull(local, report_inputs(exp), ())
    path = report(exp)
    console.print(f"wrote {path}")
    if remote is not None:
        remote.push(local, ("report.md",), ("report", "trees"))
        console.print(f"uploaded to {remote.uri}: report.md, report/, trees/")


def train_command(
    config: NtuneConfig, *, out: Path | None, console: Console, metrics_jsonl: Path | None = None
) -> int:
    """``ntune train``: progress bar with live loss and R^2, final metrics table, outputs in ``out``.

    ``out`` (default ``runs/train-<timestamp>``) receives config.yaml, metrics.json, checkpoint.pt, the PNGs
    and the TensorBoard events. ``metrics_jsonl`` (started empty) gets each progress report and the final
    metrics as one JSON line each, written as they come (what a study's command trainer follows). Returns
    0 when training finished, 1 when it diverged.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ntune.config import dump_config
    from ntune.data.load import load_or_simulate
    from ntune.learn.checkpoint import save_checkpoint
    from ntune.learn.evaluate import figures
    from ntune.learn.metrics import REPORTED_METRICS
    from ntune.learn.train import fit

    out = Path(out) if out is not None else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    with console.status("loading or simulating data"):
        data = load_or_simulate(config.simulation)
    console.print(f"data: {data.path}", highlight=False)
    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "{task.fields[live]}",
    )
    if metrics_jsonl is not None:
        metrics_jsonl.parent.mkdir(parents=True, exist_ok=True)
        metrics_jsonl.write_text("")
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("training", total=None, live="")

        def show(m: dict[str, Any]) -> None:
            live = f"loss {m['loss']:.4g}  R2 {m['connectivity_R2']:.3f}  cluster {m['cluster_accuracy']:.3f}"
            bar.update(task, total=m["n_iterations"], completed=m["iteration"], live=live)
            if metrics_jsonl is not None:
                with metrics_jsonl.open("a") as f:
                    f.write(json.dumps(m, default=str) + "\n")

        result = fit(config, data, on_progress=show, log_dir=out)
    save_checkpoint(result, out / "checkpoint.pt")
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    for name, fig in figures(result.model, data, result.metrics, result.losses).items():
        fig.savefig(out / f"{name}.png", dpi=120)
    table = Table(title=f"{result.status}: {result.metrics['classification']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in REPORTED_METRICS:
        value = result.metrics[key]
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"outputs: {out}  (tensorboard --logdir {out})", highlight=False)
    return 0 if result.status == "ok" else 1


def simulate_command(config: NtuneConfig, *, console: Console) -> None:
    """``ntune simulate``: progress bar, cache path, summary table, activity.png and connectivity.png."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar
    from rich.table import Table

    from ntune.data.identifiability import verdict
    from ntune.data.load import load_or_simulate
    from ntune.plots import save_data_plots

    sim = config.simulation
    start = time.perf_counter()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=-sim.start_frame + sim.n_frames)
        data = load_or_simulate(sim, progress=lambda done, total: bar.update(task, completed=done))
    elapsed = time.perf_counter() - start
    console.print(f"data: {data.path}  ({elapsed:.1f} s)", highlight=False)
    table = Table(title=f"{sim.signal_model_name}, {sim.n_neurons} neurons x {sim.n_frames} frames")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in data.summary.items():
        table.add_row(key, f"{value:.6g}")
    console.print(table)
    r90, r99 = (
        data.summary.get("effective_rank_90", math.nan),
        data.summary.get("effective_rank_99", math.nan),
    )
    console.print(
        f"activity complexity: effective rank {r90:.0f} (90 % var), {r99:.0f} (99 % var)", highlight=False
    )
    silent = f"\nsilent neurons: {data.silent}" if data.silent else ""
    console.print(f"identifiability: {verdict(data.summary)}{silent}", highlight=False)
    assert data.path is not None
    save_data_plots(data, data.path)
    console.print(f"plots: {data.path / 'activity.png'}, {data.path / 'connectivity.png'}", highlight=False)
