"""Console commands over experiment folders: ``ntune status``, ``export``, ``report`` (print only).

Each calls the data function of :mod:`ntune.export` and prints what it returns. No Ray.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from ntune.export import export, report, status_rows
from ntune.records import fmt

STATUS_COLUMNS = ("block", "done", "run", "conv", "fail", "R2", "cluster", "robust", "L1", "lr_W", "state")


def status_command(exp_dir: str | Path, *, console: Console, stopped: bool = False) -> None:
    """Print the per-block table of an experiment; ``stopped``: its driver has ended, nothing runs."""
    title, caption, rows = status_rows(exp_dir, stopped=stopped)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption=caption)
    for col in STATUS_COLUMNS:
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["value"]),
            f"{r['trials']}/{r['budget']}",
            str(r["running"]),
            str(r["converged"]),
            str(r["failed"]),
            fmt(r["best_R2"], 3),
            fmt(r["best_cluster"], 3),
            "yes" if r["robust"] else "no",
            fmt(r["L1"], 2),
            fmt(r["lr_W"], 2),
            r["state"],
        )
    console.print(table)


def export_command(exp_dir: str | Path, *, out: Path | None, fmt: str, console: Console) -> None:
    """Export (see :func:`ntune.export.export`) and print what was written."""
    for kind, text in export(exp_dir, out=out, fmt=fmt):
        if kind == "wrote":
            console.print(f"wrote {text}")
        elif kind == "tree":
            console.print(f"[bold]{text}[/]", highlight=False)
        elif kind == "text":
            console.print(text, highlight=False, markup=False)
        else:
            console.print(text)


def report_command(exp_dir: str | Path, *, console: Console) -> None:
    """Write EXP/report.md and print its path."""
    console.print(f"wrote {report(exp_dir)}")
