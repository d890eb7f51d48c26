"""Trial records of a study, and what they add up to: nodes, per-block summary, mutation effects.

A record is one line of ``trials.jsonl`` (see :mod:`ntune.journal`): the trial's search record
(block, node, parent, strategy, mutation, run, seed), its searched parameters, final metrics,
status (ok / diverged / error / incomplete), score and classification under the study's objective,
and its complete config. Pure Python over plain dicts; no Ray.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from ntune.config import get_dotted
from ntune.identifiability import block_budget, ceiling_of
from ntune.metrics import classify as metric_classify
from ntune.metrics import score as metric_score

SEARCH_KEY = "_search"
METRIC_KEYS = (
    "connectivity_R2",
    "cluster_accuracy",
    "test_R2",
    "test_pearson",
    "connectivity_slope",
    "zero_band",
    "cross",
    "final_loss",
    "training_time_min",
    "spectral_radius",
    "n_iterations",
)


def block_label(block_key: str, value: Any) -> str:
    """``connectivity_filling_factor=0.25``: the searcher's name of a block."""
    return f"{block_key.split('.')[-1]}={value}"


def read_info(exp_dir: str | Path) -> dict[str, Any]:
    """The ``study.json`` of an experiment folder."""
    path = Path(exp_dir) / "study.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{exp_dir}: no study.json; is this an ntune experiment folder (storage_path/name)?"
        )
    return json.loads(path.read_text())


def read_trials(exp_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Completed trial records in order of first completion (the last record of a trial wins); running trial id -> block."""
    path = Path(exp_dir) / "trials.jsonl"
    done: dict[str, dict[str, Any]] = {}
    started: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "resume":
                started.clear()  # a resumed run starts again every trial it still has
            elif event.get("event") == "start":
                started[event["trial_id"]] = event.get("block") or ""
            else:
                done[event["trial_id"]] = event
    records = list(done.values())
    for k, rec in enumerate(records, 1):
        rec["iter"] = k
    return records, {t: b for t, b in started.items() if t not in done}


def _num(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def classify(metrics: dict[str, Any], thresholds: dict[str, float], status: str) -> str:
    """converged / partial-W / partial-E / partial / failed under the study's thresholds; not ok -> failed."""
    return "failed" if status != "ok" else metric_classify(metrics, thresholds)


def score(metrics: dict[str, Any], weights: dict[str, float], status: str) -> float:
    """sum of weight * metric clipped to [0, 1]; an error, divergence or NaN scores 0."""
    return 0.0 if status != "ok" else metric_score(metrics, weights)


def make_record(
    info: dict[str, Any],
    trial_id: str,
    config: dict[str, Any],
    result: dict[str, Any] | None,
    *,
    error: str = "",
) -> dict[str, Any]:
    """A ``complete`` record from a trial's config (with its search record) and its last result."""
    result = result or {}
    search = dict(config.get(SEARCH_KEY) or {})
    plain = {k: v for k, v in config.items() if k != SEARCH_KEY}
    if error:
        status = "error"
    elif not result.get("final"):
        status = "incomplete"
    else:
        status = str(result.get("status", "ok"))
    metrics = {k: _num(result.get(k)) for k in METRIC_KEYS}
    objective = info["study"]["objective"]
    return {
        "event": "complete",
        "trial_id": trial_id,
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "status": status,
        "error": error,
        "block": search.get("block") or block_label(info["block_key"], get_dotted(plain, info["block_key"])),
        "block_value": search.get("block_value", get_dotted(plain, info["block_key"])),
        "search": search,
        "params": {k: get_dotted(plain, k) for k in info["study"]["space"]},
        "metrics": metrics,
        "score": score(metrics, objective["weights"], status),
        "classification": classify(metrics, objective["thresholds"], status),
        "trial_dir": str(result.get("trial_dir", "")),
        "config": plain,
    }


def fmt(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("nan" for NaN); anything else as str."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def group_nodes(records: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """block -> node id -> {parent, mutation, params, runs (records), mean_score, converged, best}."""
    blocks: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in records:
        node_id = int(rec["search"].get("node", -1))
        node = blocks.setdefault(rec["block"], {}).setdefault(
            node_id,
            {
                "id": node_id,
                "parent": rec["search"].get("parent"),
                "mutation": rec["search"].get("mutation", ""),
                "params": rec["params"],
                "runs": [],
            },
        )
        node["runs"].append(rec)
    for nodes in blocks.values():
        for node in nodes.values():
            runs = node["runs"]
            node["mean_score"] = sum(r["score"] for r in runs) / len(runs)
            node["n_converged"] = sum(r["classification"] == "converged" for r in runs)
            node["best"] = max(runs, key=lambda r: r["score"])
    return blocks


def block_summary(
    info: dict[str, Any], records: list[dict[str, Any]], running: dict[str, str] | None = None
) -> list[dict]:
    """One row per block: the sparsity comparison table of memory.md, ``ntune status`` and summary.csv."""
    study = info["study"]
    repeats = study["robustness_repeats"]
    nodes_by_block = group_nodes(records)
    rows = []
    for value in study["blocks"][info["block_key"]]:
        label = block_label(info["block_key"], value)
        nodes = nodes_by_block.get(label, {})
        recs = [r for r in records if r["block"] == label]
        for node in nodes.values():
            node["robust"] = len(node["runs"]) >= repeats and node["n_converged"] == len(node["runs"])
        robust = [n for n in nodes.values() if n["robust"]]
        pick = max(robust or list(nodes.values()), key=lambda n: n["mean_score"], default=None)
        best = pick["best"] if pick else None
        n_run = sum(1 for b in (running or {}).values() if b == label)
        done = len(recs)
        budget = block_budget(info, label)
        state = "done" if done >= budget else ("running" if n_run else "open")
        rows.append(
            {
                "block": label,
                "value": value,
                "trials": done,
                "budget": budget,
                "ceiling": ceiling_of(info, label),
                "running": n_run,
                "converged": sum(r["classification"] == "converged" for r in recs),
                "failed": sum(r["status"] != "ok" for r in recs),
                "best_R2": max(
                    (r["metrics"]["connectivity_R2"] for r in recs if r["status"] == "ok"), default=math.nan
                ),
                "best_cluster": max(
                    (r["metrics"]["cluster_accuracy"] for r in recs if r["status"] == "ok"), default=math.nan
                ),
                "best_score": best["score"] if best else math.nan,
                "robust": bool(robust),
                "best_node": pick["id"] if pick else None,
                "best_trial": best["trial_id"] if best else None,
                "L1": get_dotted(best["config"], "training.coeff_W_L1") if best else None,
                "lr_W": get_dotted(best["config"], "training.learning_rate_W_start") if best else None,
                "state": state,
            }
        )
    return rows


def mutation_effects(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """parameter -> {n, improved, mean_delta}: child node mean score minus its parent's, over all blocks."""
    effects: dict[str, dict[str, float]] = {}
    for nodes in group_nodes(records).values():
        for node in nodes.values():
            parent = nodes.get(node["parent"]) if node["parent"] is not None else None
            if parent is None or not node["mutation"] or ":" not in node["mutation"]:
                continue
            name = node["mutation"].split(":")[0].strip()
            delta = node["mean_score"] - parent["mean_score"]
            e = effects.setdefault(name, {"n": 0, "improved": 0, "sum": 0.0})
            e["n"] += 1
            e["improved"] += delta > 0
            e["sum"] += delta
    return {
        k: {"n": e["n"], "improved": e["improved"], "mean_delta": e["sum"] / e["n"]}
        for k, e in effects.items()
    }


def study_info(study: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The content of ``study.json``: the validated study (a StudyConfig), its block key and base config."""
    return {"study": study.model_dump(mode="json"), "block_key": study.block_key, "base": base}
