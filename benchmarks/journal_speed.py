"""Per-completion cost of the study journal: 5 000 synthetic completions, first vs last 1 000.

Each completion goes through ``Journal.start`` and ``Journal.complete`` as the Tune callback calls
them (trials.jsonl and analysis.md appended, memory.md rewritten, the block's tree text and plot
from a real :class:`searchers.tree.Tree` at most every ``TREE_EVERY_S`` seconds). Bookkeeping that
re-read the files would grow with the number of trials; this prints the ratio last / first.

    python benchmarks/journal_speed.py [--trials 5000] [--blocks 6]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from ntune.study.journal import Journal
from ntune.study.records import SEARCH_KEY, make_record
from searchers.objective import classify, score
from searchers.tree import Tree

LR_KEY = "training.learning_rate_W_start"


class TreeSearcher:
    """The journal's view of a searcher: one real Tree per block, fed the synthetic trials."""

    def __init__(self, labels: list[str]) -> None:
        self.trees = {label: Tree(label) for label in labels}

    def tree_text(self, label: str) -> str:
        return self.trees[label].text()


def synthetic(
    k: int, rng: random.Random, searcher: TreeSearcher, values: list[float]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Trial ``k``: a new child of a random node of its block (or a repeat), its config and result."""
    value = values[k % len(values)]
    label = f"connectivity_filling_factor={value}"
    tree = searcher.trees[label]
    trial_id = f"t{k:05d}"
    if not tree.nodes:
        node = tree.add_node({LR_KEY: 1e-3}, None)
    elif rng.random() < 0.3:
        node = tree.nodes[rng.randrange(1, len(tree.nodes) + 1)]
    else:
        parent = tree.nodes[rng.randrange(1, len(tree.nodes) + 1)]
        lr = 1e-3 * (1 + len(tree.nodes))
        node = tree.add_node(
            {LR_KEY: lr}, parent.id, f"lr_W: {parent.params[LR_KEY]:.3g} -> {lr:.3g}", "exploit"
        )
    tree.add_pending(node.id, trial_id, k)
    metrics = {"connectivity_R2": rng.random(), "cluster_accuracy": rng.random(), "status": "ok"}
    tree.complete(trial_id, score(metrics), metrics, classify(metrics))
    config = {
        "simulation": {"connectivity_filling_factor": value},
        "training": {"learning_rate_W_start": node.params[LR_KEY], "coeff_W_L1": 1e-5, "seed": k},
        SEARCH_KEY: {
            "block": label,
            "block_value": value,
            "node": node.id,
            "parent": node.parent,
            "strategy": node.strategy,
            "mutation": node.mutation,
            "run": len(node.runs),
            "seed": k,
        },
    }
    result = {**metrics, "connectivity_slope": 0.9, "zero_band": 0.0, "cross": 0.0, "final": True}
    return trial_id, config, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args()
    values = [round(1.0 / (k + 1), 4) for k in range(args.blocks)]
    n_iter = -(-args.trials // args.blocks)
    info = {
        "study": {
            "name": "journal-speed",
            "blocks": {"simulation.connectivity_filling_factor": values},
            "space": {LR_KEY: {}},
            "objective": {"weights": {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}, "thresholds": {}},
            "robustness_repeats": 3,
            "n_iter_block": n_iter,
        },
        "block_key": "simulation.connectivity_filling_factor",
        "base": {},
    }
    info["study"]["objective"]["thresholds"] = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}
    rng = random.Random(0)
    labels = [f"connectivity_filling_factor={v}" for v in values]
    searcher = TreeSearcher(labels)
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp)
        (exp / "study.json").write_text(json.dumps(info))
        journal = Journal(exp, searcher, info=info)
        times = []
        for k in range(args.trials):
            trial_id, config, result = synthetic(k, rng, searcher, values)
            t0 = time.perf_counter()
            journal.start(trial_id, config)
            journal.complete(make_record(info, trial_id, config, result))
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        journal.flush()
        flush = time.perf_counter() - t0
        lines = (exp / "analysis.md").read_text().count("## Iter")
    first = sum(times[: args.window]) / args.window
    last = sum(times[-args.window :]) / args.window
    print(f"{args.trials} completions over {args.blocks} blocks ({lines} analysis entries)")
    print(f"first {args.window}: {first * 1e3:.3f} ms per completion")
    print(f"last  {args.window}: {last * 1e3:.3f} ms per completion")
    print(f"ratio last / first: {last / first:.2f}")
    print(f"final flush of {args.blocks} trees (text + plot): {flush:.2f} s")


if __name__ == "__main__":
    main()
