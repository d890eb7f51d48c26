"""What ``ntune status``, ``export`` and ``report`` compute from an experiment folder (no Ray, no printing).

All three work on finished, running and interrupted experiments: they read ``study.json`` and
``trials.jsonl`` (written by the journal as trials start and complete), nothing Tune keeps in memory.
The functions return data (rows, written paths); :mod:`ntune.cli.commands` prints them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from ntune.config import ConfigError, config_from_dict, dump_config
from ntune.plots import plot_landscape, save_figure
from ntune.study.guards import safe_name
from ntune.study.info import memory_section, read_info
from ntune.study.journal import save_tree_plot
from ntune.study.ledger import Ledger
from ntune.study.records import fmt, read_trials
from ntune.study.render import render_table

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
    ledger = Ledger(info).extend(records)
    ledger.running = running
    return info, records, running, ledger.rows()


def best_records(records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """block -> the record of its best trial (best run of the best robust node, else of the best node)."""
    by_id = {r["trial_id"]: r for r in records}
    return {row["block"]: by_id[row["best_trial"]] for row in rows if row["best_trial"] in by_id}


def status_rows(exp_dir: str | Path, *, stopped: bool = False) -> tuple[str, str, list[dict[str, Any]]]:
    """(title, caption, per-block rows) of ``ntune status``; ``stopped``: its driver has ended, nothing runs."""
    info, records, running, rows = load_experiment(exp_dir)
    if stopped:
        running = {}
        rows = Ledger(info).extend(records).rows()
    study = info["study"]
    total = sum(r["budget"] for r in rows)
    title = f"{study['name']}: {len(records)}/{total} trials done, {len(running)} running"
    caption = f"block = {info['block_key']}; best R2 / cluster over the block's trials"
    return title, caption, rows


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


def export(exp_dir: str | Path, *, out: Path | None, fmt: str) -> list[tuple[str, str]]:
    """Write the best config per block (``yaml``), ``summary.csv``, ``summary.json`` or the ucb trees.

    yaml: ``<out>/<block>.yaml`` (default out: EXP/best) plus ``summary.csv`` (EXP/summary.csv by
    default, else ``<out>/summary.csv``); csv: the summary only; json: summary rows and best configs
    in one file; ucb-txt: the searcher's tree text per block. Returns (kind, text) messages in order:
    ``("wrote", path)``, ``("note", text)`` or ``("tree", label)`` followed by ``("text", tree text)``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    exp_dir = Path(exp_dir)
    info, records, _, rows = load_experiment(exp_dir)
    base = out if out is not None else exp_dir
    best = best_records(records, rows)
    robust = {r["block"]: r["robust"] for r in rows}
    done: list[tuple[str, str]] = []
    if fmt in ("yaml", "csv"):
        summary = (out if out is not None else exp_dir) / "summary.csv"
        _write_summary(rows, summary)
        done.append(("wrote", str(summary)))
    if fmt == "yaml":
        folder = out if out is not None else exp_dir / "best"
        folder.mkdir(parents=True, exist_ok=True)
        for label, rec in best.items():
            path = folder / f"{safe_name(label)}.yaml"
            path.write_text(_yaml_header(rec, robust[label]) + dump_config(config_from_dict(rec["config"])))
            done.append(("wrote", str(path)))
        if not best:
            done.append(("note", "no completed trial yet: nothing to export"))
    elif fmt == "json":
        path = base / "summary.json"
        base.mkdir(parents=True, exist_ok=True)
        payload = {
            "study": info["study"]["name"],
            "blocks": rows,
            "best": {k: v["config"] for k, v in best.items()},
        }
        path.write_text(json.dumps(payload, indent=2, default=_json_default))
        done.append(("wrote", str(path)))
    elif fmt == "ucb-txt":
        src = exp_dir / "ucb"
        texts = {p.stem: p.read_text() for p in sorted(src.glob("*.txt"))} if src.is_dir() else {}
        if out is None:
            for label, text in texts.items():
                done += [("tree", label), ("text", text)]
        else:
            out.mkdir(parents=True, exist_ok=True)
            for label, text in texts.items():
                (out / f"{label}.txt").write_text(text)
                done.append(("wrote", str(out / f"{label}.txt")))
    return done


def _json_default(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else str(x)


def _tails(trial_dir: str) -> list[Path]:
    """The last one and two components of a trial folder's path (``<trial>``, ``<trial>/member<k>``)."""
    parts = Path(trial_dir).parts if trial_dir else ()
    return [Path(*parts[-k:]) for k in (1, 2) if len(parts) >= k]


def trial_folder(exp_dir: Path, trial_dir: str) -> Path | None:
    """The folder holding a trial's W_scatter.png: ``trial_dir`` itself, else the same trial folder
    inside ``exp_dir`` (an experiment moved, or mirrored from object storage); None when neither has it."""
    if not trial_dir:
        return None
    for folder in [Path(trial_dir), *(exp_dir / t for t in _tails(trial_dir))]:
        if (folder / "W_scatter.png").is_file():
            return folder
    return None


def report_inputs(exp_dir: str | Path) -> list[str]:
    """Paths relative to ``exp_dir`` that :func:`report` shows from trial folders, where they may be:
    each block's best W scatter (used to fetch them for an experiment on object storage)."""
    _, records, _, rows = load_experiment(exp_dir)
    best = best_records(records, rows).values()
    return [(t / "W_scatter.png").as_posix() for rec in best for t in _tails(rec["trial_dir"])]


def report(exp_dir: str | Path) -> Path:
    """Write EXP/report.md (comparison table, landscape plot, trees, best scatters); returns its path."""
    exp_dir = Path(exp_dir)
    info, records, running, rows = load_experiment(exp_dir)
    folder = exp_dir / "report"
    folder.mkdir(exist_ok=True)
    lines = [f"# Study report: {info['study']['name']}\n\n", info["study"].get("description", "") + "\n\n"]
    lines.append(f"{len(records)} trials completed, {len(running)} running.\n\n## Comparison\n\n")
    lines.append(render_table(rows) + memory_section(info))
    numeric = all(isinstance(r["value"], int | float) for r in rows)
    if numeric and records:
        save_figure(lambda ax: plot_landscape(ax, rows, info["block_key"]), folder / "landscape.png", (6, 4))
        lines.append("\n![best R2 and cluster accuracy per block](report/landscape.png)\n")
    best = best_records(records, rows)
    for r in rows:
        label = r["block"]
        lines.append(f"\n## {label}\n\n")
        if not r["trials"]:
            lines.append("No completed trial.\n")
            continue
        ucb = exp_dir / "ucb" / f"{safe_name(label)}.txt"
        if ucb.is_file():  # the tree as the searcher holds it (the journal writes its text)
            text = ucb.read_text()
            tree_png = exp_dir / "trees" / f"{safe_name(label)}.png"
            save_tree_plot(text, tree_png, label)
            lines.append(f"![tree of {label}](trees/{tree_png.name})\n\n")
            lines.append("```\n" + text.rstrip() + "\n```\n\n")
        rec = best.get(label)
        if rec is None:
            continue
        lines.append(
            f"Best: node {rec['search'].get('node')}, trial {rec['trial_id']}, score {rec['score']:.3f}\n\n"
        )
        folder = trial_folder(exp_dir, rec["trial_dir"])
        if folder is not None:
            scatter = folder / "W_scatter.png"
            lines.append(f"![W scatter of {label}]({os.path.relpath(scatter, exp_dir)})\n")
    path = exp_dir / "report.md"
    path.write_text("".join(lines))
    return path
