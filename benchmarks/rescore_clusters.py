"""Rescore the embeddings of a finished study with every cluster method: is it k-means or the embedding?

    python benchmarks/rescore_clusters.py EXPERIMENT_DIR [--all]

For each completed trial with a checkpoint: the cluster accuracy recorded by the study and, on the
same trained embedding, k-means, a Gaussian mixture with full covariances (``gmm``) and single linkage
(:func:`ntune.learn.metrics.cluster_accuracy`). Training is not repeated, so a method that scores the
same embedding higher shows the types were separated and the criterion cut them. Prints the runs where
some method scores below 0.9 (``--all``: every run), per block the held-out runs converged under each
method (with the R2 threshold 0.9), and the totals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ntune.data.simulate import neuron_types
from ntune.learn.metrics import CLUSTER_METHODS, cluster_accuracy

THRESHOLD = 0.9


def completed(experiment: Path) -> list[dict[str, Any]]:
    """The ``complete`` events of the study's journal with a checkpoint, in completion order."""
    rows = []
    for line in (experiment / "trials.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") != "complete":
            continue
        found = sorted(experiment.glob(f"{event['trial_id']}_*/checkpoint_*/model.pt"))
        if found:
            rows.append({**event, "checkpoint": found[-1]})
    return rows


def rescore(row: dict[str, Any]) -> dict[str, float]:
    """Cluster accuracy of the trial's final embedding under each method."""
    payload = torch.load(row["checkpoint"], map_location="cpu", weights_only=False)
    a = payload["model"]["a"].numpy().astype(np.float64)  # (N, emb)
    sim = payload["config"]["simulation"]
    types = neuron_types(sim["n_neurons"], sim["n_neuron_types"])  # (N,)
    return {m: cluster_accuracy(a, types, method=m) for m in CLUSTER_METHODS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--all", action="store_true", help="print every run, not only those below 0.9")
    args = parser.parse_args()
    rows = completed(args.experiment)
    print(f"{'block':>8} {'strategy':<16} {'node':>4} {'network':>11} {'R2':>7} {'recorded':>8}", end="")
    print("".join(f" {m:>14}" for m in CLUSTER_METHODS))
    held: dict[str, dict[str, list[bool]]] = {}
    totals = dict.fromkeys(CLUSTER_METHODS, 0)
    for row in rows:
        scores = rescore(row)
        search, metrics = row["search"], row["metrics"]
        r2 = float(metrics.get("connectivity_R2", float("nan")))
        block = str(row.get("block_value", row["block"]))
        for m in CLUSTER_METHODS:
            totals[m] += scores[m] > THRESHOLD
        if search["strategy"] == "held-out":
            per = held.setdefault(block, {m: [] for m in CLUSTER_METHODS})
            for m in CLUSTER_METHODS:
                per[m].append(r2 > THRESHOLD and scores[m] > THRESHOLD)
        if args.all or min(scores.values()) <= THRESHOLD:
            print(
                f"{block:>8} {search['strategy']:<16} {search['node']:>4} {search.get('network')!s:>11} "
                f"{r2:>7.4f} {float(metrics.get('cluster_accuracy', float('nan'))):>8.2f}",
                end="",
            )
            print("".join(f" {scores[m]:>14.2f}" for m in CLUSTER_METHODS))
    print("\nheld-out networks converged, per cluster method:")
    for block, per in held.items():
        print(f"{block:>8} " + "  ".join(f"{m} {sum(v)}/{len(v)}" for m, v in per.items()))
    print(
        f"\n{len(rows)} runs; cluster accuracy > {THRESHOLD}: "
        + ", ".join(f"{m} {n}" for m, n in totals.items())
    )


if __name__ == "__main__":
    main()
