"""``ntune status``, ``ntune export`` and ``ntune report``: read an experiment folder, never Ray.

All three work on finished, running and interrupted experiments: they read ``study.json`` and
``trials.jsonl`` (written by the journal as trials start and complete), nothing Tune keeps in memory.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ntune.config import ConfigError, config_from_dict, dump_config
from ntune.identifiability import memory_section
from ntune.journal import render_table, save_tree_plot
from ntune.records import block_summary, fmt, group_nodes, read_info, read_trials

FORMATS = ("yaml", "csv", "json", "ucb-txt")
SUMMARY_FIELDS = (
    "block",
    "value",
    "trials",
    "budget",
    "running",
    "converged",
    "failed",
    "ceiling",
    "best_R2",
    "best_cluster",
    "best_score",
    "robust",
    "best_node",
    "best_trial",
    "L1",
    "lr_W",
    "state",
)


def load_experiment(
    exp_dir: str | Path,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str], list[dict]]:
    """(study info, completed records, running trial id -> block, per-block summary rows)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"{exp_dir}: no such experiment folder")
    info = read_info(exp_dir)
    records, running = read_trials(exp_dir)
    return info, records, running, block_summary(info, records, running)


def best_records(records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """block -> the record of its best trial (best run of the best robust node, else of the best node)."""
    by_id = {r["trial_id"]: r for r in records}
    return {row["block"]: by_id[row["best_trial"]] for row in rows if row["best_trial"] in by_id}


def status_command(exp_dir: str | Path, *, console: Console) -> None:
    """Print the per-block table of an experiment."""
    info, records, running, rows = load_experiment(exp_dir)
    study = info["study"]
    total = sum(r["budget"] for r in rows)
    table = Table(
        title=f"{study['name']}: {len(records)}/{total} trials done, {len(running)} running",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption=f"block = {info['block_key']}; best R2 / cluster over the block's trials",
    )
    for col in (
        "block",
        "done",
        "run",
        "conv",
        "fail",
        "ceiling",
        "R2",
        "cluster",
        "robust",
        "L1",
        "lr_W",
        "state",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["value"]),
            f"{r['trials']}/{r['budget']}",
            str(r["running"]),
            str(r["converged"]),
            str(r["failed"]),
            fmt(r["ceiling"], 3),
            fmt(r["best_R2"], 3),
            fmt(r["best_cluster"], 3),
            "yes" if r["robust"] else "no",
            fmt(r["L1"], 2),
            fmt(r["lr_W"], 2),
            r["state"],
        )
    console.print(table)


def _write_summary(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r[k] for k in SUMMARY_FIELDS})


def _yaml_header(rec: dict[str, Any], robust: bool) -> str:
    m = rec["metrics"]
    return (
        f"# ntune export: best config of block {rec['block']} "
        f"(node {rec['search'].get('node')}, trial {rec['trial_id']}, {'robust' if robust else 'not robust'})\n"
        f"# connectivity_R2={fmt(m['connectivity_R2'])} cluster_accuracy={fmt(m['cluster_accuracy'])} "
        f"score={rec['score']:.3f} classification={rec['classification']}\n"
        "# run it with: ntune train THIS_FILE\n"
    )


def export_command(exp_dir: str | Path, *, out: Path | None, fmt: str, console: Console) -> None:
    """Write the best config per block (``yaml``), ``summary.csv``, ``summary.json`` or the ucb trees.

    yaml: ``<out>/<block>.yaml`` (default out: EXP/best) plus ``summary.csv`` beside the folder's
    parent (EXP/summary.csv by default, else ``<out>/summary.csv``); csv: the summary only; json:
    summary rows and best configs in one file; ucb-txt: the searcher's tree text per block.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    exp_dir = Path(exp_dir)
    info, records, _, rows = load_experiment(exp_dir)
    base = out if out is not None else exp_dir
    best = best_records(records, rows)
    robust = {r["block"]: r["robust"] for r in rows}
    if fmt in ("yaml", "csv"):
        summary = (out if out is not None else exp_dir) / "summary.csv"
        _write_summary(rows, summary)
        console.print(f"wrote {summary}")
    if fmt == "yaml":
        folder = out if out is not None else exp_dir / "best"
        folder.mkdir(parents=True, exist_ok=True)
        for label, rec in best.items():
            path = folder / f"{label}.yaml"
            path.write_text(_yaml_header(rec, robust[label]) + dump_config(config_from_dict(rec["config"])))
            console.print(f"wrote {path}")
        if not best:
            console.print("no completed trial yet: nothing to export")
    elif fmt == "json":
        path = base / "summary.json"
        base.mkdir(parents=True, exist_ok=True)
        payload = {
            "study": info["study"]["name"],
            "blocks": rows,
            "best": {k: v["config"] for k, v in best.items()},
        }
        path.write_text(json.dumps(payload, indent=2, default=_json_default))
        console.print(f"wrote {path}")
    elif fmt == "ucb-txt":
        src = exp_dir / "ucb"
        texts = {p.stem: p.read_text() for p in sorted(src.glob("*.txt"))} if src.is_dir() else {}
        if out is None:
            for label, text in texts.items():
                console.print(f"[bold]{label}[/]\n{text}", highlight=False)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for label, text in texts.items():
                (out / f"{label}.txt").write_text(text)
                console.print(f"wrote {out / f'{label}.txt'}")


def _json_default(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else str(x)


def _landscape(rows: list[dict[str, Any]], path: Path, block_key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(r["value"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r["best_R2"] for r in rows], "o-", label="best connectivity R$^2$")
    ax.plot(xs, [r["best_cluster"] for r in rows], "s-", label="best cluster accuracy")
    ax.axhline(0.9, color="0.6", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(block_key.split(".")[-1])
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report_command(exp_dir: str | Path, *, console: Console) -> None:
    """Write EXP/report.md with the comparison table, the landscape plot, the trees, the best scatters."""
    exp_dir = Path(exp_dir)
    info, records, running, rows = load_experiment(exp_dir)
    folder = exp_dir / "report"
    folder.mkdir(exist_ok=True)
    lines = [f"# Study report: {info['study']['name']}\n\n", info["study"].get("description", "") + "\n\n"]
    lines.append(f"{len(records)} trials completed, {len(running)} running.\n\n## Comparison\n\n")
    lines.append(render_table(rows) + memory_section(info))
    numeric = all(isinstance(r["value"], int | float) for r in rows)
    if numeric and records:
        _landscape(rows, folder / "landscape.png", info["block_key"])
        lines.append("\n![best R2 and cluster accuracy per block](report/landscape.png)\n")
    nodes = group_nodes(records)
    best = best_records(records, rows)
    for r in rows:
        label = r["block"]
        lines.append(f"\n## {label}\n\n")
        if label not in nodes:
            lines.append("No completed trial.\n")
            continue
        tree_png = exp_dir / "trees" / f"{label}.png"
        save_tree_plot(nodes[label], tree_png, label)
        lines.append(f"![tree of {label}](trees/{label}.png)\n\n")
        ucb = exp_dir / "ucb" / f"{label}.txt"
        if ucb.is_file():
            lines.append("```\n" + ucb.read_text().rstrip() + "\n```\n\n")
        rec = best.get(label)
        if rec is None:
            continue
        lines.append(
            f"Best: node {rec['search'].get('node')}, trial {rec['trial_id']}, score {rec['score']:.3f}\n\n"
        )
        scatter = Path(rec["trial_dir"]) / "W_scatter.png" if rec["trial_dir"] else None
        if scatter is not None and scatter.is_file():
            lines.append(f"![W scatter of {label}]({os.path.relpath(scatter, exp_dir)})\n")
    path = exp_dir / "report.md"
    path.write_text("".join(lines))
    console.print(f"wrote {path}")
