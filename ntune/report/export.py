"""What ``ntune status``, ``export`` and ``report`` compute from an experiment (no Ray, no printing).

Each function takes an :class:`~ntune.study.experiment.Experiment` (study info, ledger, search trees):
the one the driver's journal holds at the end of ``ntune run``, or one read back from the experiment
folder (:func:`ntune.study.experiment.read_experiment`; finished, running and interrupted experiments
alike) by ``ntune status``, ``export`` and ``report`` in another shell. The functions return data
(rows, written paths); :mod:`ntune.cli.commands` prints them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from functools import partial
from pathlib import Path
from typing import Any

from ntune.config import ConfigError, config_from_dict, dump_config
from ntune.plots import Curve, plot_landscape, plot_learning_curves, plot_range_slice, plot_tree, save_figure
from ntune.report.optuna_study import INSTALL, have_optuna, report_sections, write_journal
from ntune.report.upstream_yaml import export_upstream
from ntune.study.confirm import confirmation_lines
from ntune.study.experiment import TREE_DIR, Experiment, read_experiment, tree_files
from ntune.study.guards import safe_name
from ntune.study.info import memory_section
from ntune.study.numbers import as_float
from ntune.study.ranges import RANGE_FIELDS, BlockRanges, range_rows, region_dicts
from ntune.study.records import fmt
from ntune.study.render import block_ranges_text, render_table
from searchers.ranges import log_scale
from searchers.record import HELD_OUT

FORMATS = ("yaml", "csv", "json", "ucb-txt", "upstream", "optuna", "ranges")
OPTUNA_FILE = "optuna.log"  # EXP/optuna.log: the Optuna journal of ``export --format optuna``
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
    "networks",
    "R2_mean",
    "R2_cv",
    "worst_R2",
    "worst_cluster",
    "spread",
    "held_out",
    "held_out_done",
    "held_out_total",
)


def load_experiment(
    exp_dir: str | Path,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str], list[dict]]:
    """(study info, completed records, running trial id -> block, per-block summary rows) of a folder."""
    exp = read_experiment(exp_dir)
    return exp.info, exp.records, exp.running, exp.ledger.rows()


def best_records(records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """block -> the record of its best trial (best run of the node its held-out runs confirm, else of the
    best robust node, else of the best node)."""
    by_id = {r["trial_id"]: r for r in records}
    return {row["block"]: by_id[row["best_trial"]] for row in rows if row["best_trial"] in by_id}


def status_rows(exp: Experiment, *, stopped: bool = False) -> tuple[str, str, list[dict[str, Any]]]:
    """(title, caption, per-block rows) of ``ntune status``; ``stopped``: its driver has ended, nothing runs.

    The title counts the search's trials against the blocks' budgets and, once some are due, the held-out
    runs against those the study runs as it stands (:meth:`ntune.study.ledger.Ledger.expected_held_out`).
    """
    ledger = exp.ledger
    rows = ledger.rows(stopped=stopped)
    running = 0 if stopped else len(ledger.running)
    total = sum(r["budget"] for r in rows)
    held, due, probes = ledger.n_held_out, ledger.expected_held_out(), ledger.n_probes
    title = (
        f"{exp.info['study']['name']}: {len(ledger.records) - held - probes}/{total} trials done, "
        f"{running} running"
    )
    if held or due:
        title += f", {held}/{max(held, due)} held-out runs"
    if probes:
        title += f", {probes} boundary probes"
    caption = (
        f"block = {exp.info['block_key']}; held-out k/K: best config converged on k of K held-out networks; "
        "R2 / cluster: best over the block's trials; nets, worst: the best config's repeats"
    )
    return title, caption, rows


def _write_summary(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r[k] for k in SUMMARY_FIELDS})


def _yaml_header(rec: dict[str, Any], robust: bool, confirmation: list[str]) -> str:
    """The exported config's comment lines: the run it is, then each repeat of its config, their
    robustness and the held-out networks (``confirmation``: :func:`ntune.study.confirm.confirmation_lines`)."""
    m = rec["metrics"]
    return (
        f"# ntune export: best config of block {rec['block']} "
        f"(node {rec['search'].get('node')}, trial {rec['trial_id']}, {'robust' if robust else 'not robust'})\n"
        f"# connectivity_R2={fmt(m['connectivity_R2'])} cluster_accuracy={fmt(m['cluster_accuracy'])} "
        f"score={rec['score']:.3f} classification={rec['classification']}\n"
        + "".join(f"# {line}\n" for line in confirmation)
        + "# run it with: ntune train THIS_FILE\n"
    )


def export(
    exp: Experiment, *, out: Path | None, fmt: str, template: Path | None = None
) -> list[tuple[str, str]]:
    """Write the best config per block (``yaml``, ``upstream``), ``summary.csv``, ``summary.json``, the ucb
    trees or an Optuna journal.

    yaml: ``<out>/<block>.yaml`` (default out: EXP/best) plus ``summary.csv`` (EXP/summary.csv by
    default, else ``<out>/summary.csv``); csv: the summary only; json: summary rows and best configs
    in one file; ucb-txt: the searcher's tree text per block (``exp.texts``); upstream: the upstream
    YAML ``template`` filled in per block, ``<out>/<block>.yaml`` (default out: EXP/upstream; see
    :mod:`ntune.report.upstream_yaml`); optuna: one Optuna study per block in a journal file, ``out``
    (default EXP/optuna.log; a folder: ``<out>/optuna.log``; see :mod:`ntune.report.optuna_study`);
    ranges: ``ranges.csv`` and ``ranges.json`` (one row per block and parameter: where training works
    around the block's robust config, :data:`ntune.study.ranges.RANGE_FIELDS`) and ``regions.json`` (each
    block's working regions) in ``out`` (default EXP).
    Returns (kind, text) messages in order: ``("wrote", path)``, ``("note", text)`` or ``("tree", label)``
    followed by ``("text", tree text)``. A bad format, a missing or unused template, Optuna missing or a
    field upstream cannot take raise :class:`~ntune.config.ConfigError` before anything is written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    if fmt == "upstream" and template is None:
        raise ConfigError("--template: --format upstream fills in an upstream NeuralGraph YAML; give one")
    if fmt != "upstream" and template is not None:
        raise ConfigError(f"--template: only --format upstream uses a template, not --format {fmt}")
    if fmt == "optuna" and not have_optuna():
        raise ConfigError(f"--format optuna: Optuna is not installed; {INSTALL}")
    rows = exp.ledger.rows()
    base = out if out is not None else exp.exp_dir
    done: list[tuple[str, str]] = []
    if fmt in ("yaml", "csv"):
        _write_summary(rows, base / "summary.csv")
        done.append(("wrote", str(base / "summary.csv")))
    if fmt == "yaml":
        done += _export_yaml(exp, rows, out if out is not None else exp.exp_dir / "best")
    elif fmt == "json":
        best = best_records(exp.records, rows)
        path = base / "summary.json"
        base.mkdir(parents=True, exist_ok=True)
        payload = {
            "study": exp.info["study"]["name"],
            "blocks": rows,
            "best": {k: v["config"] for k, v in best.items()},
        }
        path.write_text(json.dumps(payload, indent=2, default=_json_default))
        done.append(("wrote", str(path)))
    elif fmt == "upstream":
        assert template is not None
        best = best_records(exp.records, rows)
        done += export_upstream(
            best, exp.info, template, out if out is not None else exp.exp_dir / "upstream"
        )
    elif fmt == "optuna":
        path = exp.exp_dir / OPTUNA_FILE if out is None else out / OPTUNA_FILE if out.is_dir() else out
        done += write_journal(exp, path)
    elif fmt == "ranges":
        done += _export_ranges(exp, base)
    elif fmt == "ucb-txt":
        if out is None:
            for label, text in exp.texts.items():
                done += [("tree", safe_name(label)), ("text", text)]
        else:
            out.mkdir(parents=True, exist_ok=True)
            for label, text in exp.texts.items():
                path = out / f"{safe_name(label)}.txt"
                path.write_text(text)
                done.append(("wrote", str(path)))
    return done


def _export_yaml(exp: Experiment, rows: list[dict[str, Any]], folder: Path) -> list[tuple[str, str]]:
    """``<folder>/<block>.yaml``: the best config of each block, runnable with ``ntune train``."""
    best = best_records(exp.records, rows)
    robust = {r["block"]: r["robust"] for r in rows}
    folder.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, str]] = []
    for label, rec in best.items():
        path = folder / f"{safe_name(label)}.yaml"
        header = _yaml_header(rec, robust[label], confirmation_lines(exp.ledger, label))
        path.write_text(header + dump_config(config_from_dict(rec["config"])))
        done.append(("wrote", str(path)))
    if not best:
        done.append(("note", "no completed trial yet: nothing to export"))
    return done


def _block_ranges(exp: Experiment) -> list[BlockRanges]:
    return [found for label in exp.ledger.labels() if (found := exp.ledger.ranges(label)) is not None]


def _export_ranges(exp: Experiment, folder: Path) -> list[tuple[str, str]]:
    """``ranges.csv``, ``ranges.json`` and ``regions.json`` in ``folder``; a note when the study has no
    ``ranges`` (nothing is written then)."""
    blocks = _block_ranges(exp)
    if not blocks:
        return [("note", "the study has no ranges section: no boundary probes to export")]
    rows = [row for found in blocks for row in range_rows(found)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ranges.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RANGE_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "|".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    (folder / "ranges.json").write_text(json.dumps(rows, indent=2, default=_json_default))
    regions = {found.label: region_dicts(found) for found in blocks}
    (folder / "regions.json").write_text(json.dumps(regions, indent=2, default=_json_default))
    return [("wrote", str(folder / name)) for name in ("ranges.csv", "ranges.json", "regions.json")]


def _json_default(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else str(x)


def _tails(trial_dir: str) -> list[Path]:
    """The last one and two components of a trial folder's path (``<trial>``, ``<trial>/member<k>``)."""
    parts = Path(trial_dir).parts if trial_dir else ()
    return [Path(*parts[-k:]) for k in (1, 2) if len(parts) >= k]


def trial_folder(exp_dir: Path, trial_dir: str, holding: str = "W_scatter.png") -> Path | None:
    """The folder holding a trial's file ``holding``: ``trial_dir`` itself, else the same trial folder
    inside ``exp_dir`` (an experiment moved, or mirrored from object storage); None when neither has it."""
    if not trial_dir:
        return None
    for folder in [Path(trial_dir), *(exp_dir / t for t in _tails(trial_dir))]:
        if (folder / holding).is_file():
            return folder
    return None


def report_inputs(exp: Experiment) -> list[str]:
    """Paths relative to the experiment folder that :func:`report` shows from trial folders, where they may
    be: each block's best W scatter (used to fetch them for an experiment on object storage)."""
    best = best_records(exp.records, exp.ledger.rows()).values()
    return [(t / "W_scatter.png").as_posix() for rec in best for t in _tails(rec["trial_dir"])]


def report(exp: Experiment) -> Path:
    """Write EXP/report.md (comparison table, landscape plot, trees, per block its Pareto front and parameter
    importances from Optuna, best scatters); returns its path."""
    exp_dir, info, records = exp.exp_dir, exp.info, exp.records
    rows = exp.ledger.rows()
    folder = exp_dir / "report"
    folder.mkdir(exist_ok=True)
    lines = [f"# Study report: {info['study']['name']}\n\n", info["study"].get("description", "") + "\n\n"]
    lines.append(f"{len(records)} trials completed, {len(exp.ledger.running)} running.\n\n## Comparison\n\n")
    lines.append(render_table(rows, info["block_key"]) + memory_section(info))
    numeric = all(isinstance(r["value"], int | float) for r in rows)
    if numeric and records:
        save_figure(lambda ax: plot_landscape(ax, rows, info["block_key"]), folder / "landscape.png", (6, 4))
        lines.append("\n![best R2 and cluster accuracy per block](report/landscape.png)\n")
    best = best_records(records, rows)
    fronts = report_sections(exp, folder, folder.name)
    for r in rows:
        label = r["block"]
        lines.append(f"\n## {label}\n\n")
        if not r["trials"]:
            lines.append("No completed trial.\n")
            continue
        lines += _tree_section(exp, label) + fronts.get(label, [])
        rec = best.get(label)
        if rec is None:
            continue
        lines.append(
            f"Best: node {rec['search'].get('node')}, trial {rec['trial_id']}, score {rec['score']:.3f}\n\n"
        )
        lines += _robustness_section(exp, label)
        lines += _ranges_section(exp, label, folder)
        trial = trial_folder(exp_dir, rec["trial_dir"])
        if trial is not None:
            scatter = trial / "W_scatter.png"
            lines.append(f"![W scatter of {label}]({os.path.relpath(scatter, exp_dir)})\n")
        curves = learning_curves(exp, label, rec)
        if curves:
            png = folder / f"curves_{safe_name(label)}.png"
            save_figure(partial(plot_learning_curves, curves=curves), png, (6, 4))
            lines.append(f"\n![learning curves of the best config of {label}]({folder.name}/{png.name})\n")
    path = exp_dir / "report.md"
    path.write_text("".join(lines))
    return path


CURVE_KEYS = ("iteration", "connectivity_R2", "cluster_accuracy")


def learning_curves(exp: Experiment, label: str, best: dict[str, Any]) -> list[Curve]:
    """The learning curves of block ``label``'s best config: every run of its node (repeats and held-out
    networks), each (``net <network>`` or ``held-out net <network>``, iteration, connectivity R^2, cluster
    accuracy) at every report, read from the trial folder's ``progress.csv``; runs without one are left out."""
    node = (best.get("search") or {}).get("node")
    curves: list[Curve] = []
    for rec in exp.records:
        search = rec.get("search") or {}
        if node is None or rec.get("block") != label or search.get("node") != node:
            continue
        folder = trial_folder(
            exp.exp_dir, rec.get("trial_dir", ""), "progress.csv"
        )  # a stopped run: no scatter
        if folder is None:
            continue
        progress = folder / "progress.csv"
        with progress.open(newline="") as f:
            points = [[as_float(row.get(k)) for k in CURVE_KEYS] for row in csv.DictReader(f)]
        points = [p for p in points if all(math.isfinite(v) for v in p)]
        if points:
            held = "held-out " if search.get("strategy") == HELD_OUT else ""
            it, r2, cluster = (list(col) for col in zip(*points, strict=True))
            curves.append((f"{held}net {search.get('network', '?')}", it, r2, cluster))
    return curves


def _robustness_section(exp: Experiment, label: str) -> list[str]:
    """A block's robustness in the report: its best config's repeats and held-out networks, a list."""
    lines = confirmation_lines(exp.ledger, label)
    if not lines:
        return []
    items = [f"  - {line.strip()}\n" if line.startswith(" ") else f"- {line}\n" for line in lines]
    return ["### Robustness\n\n", *items, "\n"]


def _ranges_section(exp: Experiment, label: str, folder: Path) -> list[str]:
    """A block's operating ranges in the report: the table, its working regions and one slice plot per
    parameter (score against value through the robust config; :func:`ntune.plots.plot_range_slice`)."""
    found = exp.ledger.ranges(label)
    if found is None:
        return []
    lines = ["### Operating ranges\n\n", block_ranges_text(found, level=4)]
    for interval in found.intervals if found.centre is not None else []:
        domain = found.space[interval.key]
        png = folder / f"ranges_{safe_name(label)}_{safe_name(domain.short)}.png"
        draw = partial(
            plot_range_slice,
            points=found.slice(interval.key),
            name=domain.short,
            robust=interval.robust,
            interval=None if not domain.is_numeric else (interval.low, interval.high),
            log=log_scale(domain),
            choices=domain.values,
        )
        save_figure(draw, png, (5, 3))
        lines.append(f"![{domain.short} slice of {label}]({folder.name}/{png.name})\n")
    return [*lines, "\n"]


def _tree_section(exp: Experiment, label: str) -> list[str]:
    """A block's tree in the report: its plot (from the tree data) and its text, as the searcher holds it."""
    lines = []
    data, text = exp.trees.get(label), exp.texts.get(label)
    if data is not None:
        png = tree_files(exp.exp_dir, label).plot
        save_figure(partial(plot_tree, tree=data, title=label), png)
        lines.append(f"![tree of {label}]({TREE_DIR}/{png.name})\n\n")
    if text is not None:
        lines.append("```\n" + text.rstrip() + "\n```\n\n")
    return lines
