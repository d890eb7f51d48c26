"""Replay recorded learning curves through lineage early stopping: how much it saves, how often it errs.

    python benchmarks/early_stop_replay.py EXPERIMENT_DIR [EXPERIMENT_DIR ...]

Every finished trial of the experiments is replayed in journal order. A search child (a move from a
parent node; :data:`searchers.early_stop.NEVER_STOPPED` strategies are never stopped) is judged against
the curve of its parent's best run among those completed before it started, at equal fractions of
training (:class:`searchers.early_stop.LineageRule`). For a grid of rules, prints the children stopped,
the **false stops** (stopped, yet the full run converged), and the training saved: of the children's
iterations and of all the experiments' iterations.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from searchers.early_stop import NEVER_STOPPED, Curve, LineageRule


@dataclass
class Replayed:
    """One finished trial: its block, node, parent, strategy, curve, iterations and final class."""

    key: tuple[str, str]  # (experiment, block)
    node: int
    parent: int | None
    strategy: str
    curve: Curve
    iterations: float
    converged: bool
    final_score: float
    started_after: int  # how many trials of the experiment had completed when it started
    order: int  # its place in the experiment's completion order (0 first)


def _curve(trial_dir: Path) -> tuple[Curve, float]:
    """(progress, score) of each reported result, and the trial's iteration count."""
    with (trial_dir / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    curve = [(float(r["progress"]), float(r["score"])) for r in rows if r.get("progress") and r.get("score")]
    iterations = max((float(r["n_iterations"]) for r in rows if r.get("n_iterations")), default=0.0)
    return curve, iterations


def load(experiment: Path) -> list[Replayed]:
    """The finished trials of an experiment with a recorded curve, in completion order."""
    events = [json.loads(line) for line in (experiment / "trials.jsonl").read_text().splitlines()]
    completed, started_after, out = 0, {}, []
    for event in events:
        if event["event"] == "start":
            started_after[event["trial_id"]] = completed
            continue
        if event["event"] != "complete":
            continue
        completed += 1
        dirs = sorted(experiment.glob(f"{event['trial_id']}_*/progress.csv"))
        if not dirs:
            continue
        curve, iterations = _curve(dirs[0].parent)
        search = event["search"]
        out.append(
            Replayed(
                (experiment.name, event["block"]),
                search["node"],
                search.get("parent"),
                search["strategy"],
                curve,
                iterations,
                event.get("classification") == "converged",
                float(event.get("score") or 0.0),
                started_after.get(event["trial_id"], completed - 1),
                completed - 1,
            )
        )
    return out


def replay(trials: list[Replayed], rule: LineageRule) -> dict[str, float]:
    """Children stopped, false stops, and the iterations saved under ``rule``."""
    stopped = false = children = 0
    saved = child_iterations = 0.0
    for i, trial in enumerate(trials):
        if trial.strategy in NEVER_STOPPED or trial.parent is None:
            continue
        before = [
            t
            for t in trials[:i]
            if t.key == trial.key and t.node == trial.parent and t.order < trial.started_after
        ]
        if not before:
            continue
        children += 1
        child_iterations += trial.iterations
        parent = max(before, key=lambda t: t.final_score)
        at = rule.stop_at(trial.curve, parent.curve)
        if at is not None:
            stopped += 1
            false += trial.converged
            saved += (1 - at) * trial.iterations
    total = sum(t.iterations for t in trials)
    return {
        "children": children,
        "stopped": stopped,
        "false": false,
        "saved_children": saved / child_iterations if child_iterations else 0.0,
        "saved_all": saved / total if total else 0.0,
        "children_share": child_iterations / total if total else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", type=Path, nargs="+")
    args = parser.parse_args()
    trials = [t for e in args.experiments for t in load(e)]
    print(f"{len(trials)} trials from {len(args.experiments)} experiment(s)")
    share = replay(trials, LineageRule())["children_share"]
    print(
        f"search children with a finished parent: {share:.1%} of all iterations; no lineage rule can save more "
        f"(at most {1 / (1 - share):.2f}x fewer training iterations)"
    )
    print(
        f"{'min_fraction':>12} {'margin':>6} {'patience':>8} {'children':>8} {'stopped':>7} {'false':>5} "
        f"{'saved (children)':>16} {'saved (all)':>11}"
    )
    for min_fraction, margin, patience in itertools.product((0.2, 0.3, 0.5), (0.02, 0.05, 0.1), (1, 2, 3)):
        r = replay(trials, LineageRule(min_fraction, margin, patience))
        print(
            f"{min_fraction:>12} {margin:>6} {patience:>8} {r['children']:>8} {r['stopped']:>7} {r['false']:>5} "
            f"{r['saved_children']:>15.1%} {r['saved_all']:>10.1%}"
        )


if __name__ == "__main__":
    main()
