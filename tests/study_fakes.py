"""Fake experiments for journal/export tests: trial records without Ray or training."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml

from ntune.config import set_dotted
from ntune.study.info import study_info
from ntune.study.journal import Journal
from ntune.study.load import study_from_dict
from ntune.study.records import SEARCH_KEY, make_record
from searchers.tree import Tree

BASE = {
    "simulation": {"n_neurons": 16, "n_neuron_types": 2, "params": [[10, 1, 1], [10, 2, 2]], "n_frames": 500}
}
# a 16-neuron network that trains in seconds: the base config of the tests that run real studies
TINY_RUN: dict[str, Any] = {
    "simulation": {
        "n_neurons": 16,
        "n_neuron_types": 2,
        "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]],
        "n_frames": 500,
        "start_frame": -100,
        "seed": 42,
        "device": "cpu",
    },
    "training": {
        "n_epochs": 1,
        "batch_size": 8,
        "data_augmentation_loop": 10,
        "n_log_points": 4,
        "n_rollout_frames": 20,
        "device": "cpu",
    },
}
LR_W = {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
SPACE = {**LR_W, "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True}}


def study_dict(name: str, **changes: Any) -> dict[str, Any]:
    """The tests' study: two blocks (filling factor 1.0 and 0.5) of the tiny network, lr_W and L1 searched,
    3 trials per block, robust after 2 converged runs on two networks, no held-out networks (the tests
    that confirm on them say so); ``changes`` replace or add top-level fields."""
    data: dict[str, Any] = {
        "name": name,
        "base": TINY_RUN,
        "blocks": {"simulation.connectivity_filling_factor": [1.0, 0.5]},
        "space": SPACE,
        "n_iter_block": 3,
        "robustness_repeats": 2,
        "held_out": 0,
    }
    return copy.deepcopy({**data, **changes})


def write_study(path: Path, name: str, **changes: Any) -> Path:
    """:func:`study_dict` written as YAML to ``path``; returns ``path``."""
    path.write_text(yaml.safe_dump(study_dict(name, **changes)))
    return path


STUDY = study_dict("fake", base=BASE)
LABELS = tuple(
    f"connectivity_filling_factor={v}" for v in STUDY["blocks"]["simulation.connectivity_filling_factor"]
)

# (block value, node, parent, strategy, mutation, lr_W, R2, cluster, status)
TRIALS = [
    (1.0, 0, None, "root", "", 1e-3, 0.95, 0.95, "ok"),
    (0.5, 0, None, "root", "", 1e-3, 0.40, 0.50, "ok"),
    (1.0, 0, None, "robustness-test", "", 1e-3, 0.93, 0.92, "ok"),
    (0.5, 1, 0, "exploit", "lr_W: 1e-3 -> 4e-3", 4e-3, 0.92, 0.60, "ok"),
    (1.0, 1, 0, "exploit", "lr_W: 1e-3 -> 1e-2", 1e-2, math.nan, math.nan, "diverged"),
    (0.5, 2, 1, "exploit", "L1: 1e-5 -> 1e-6", 4e-3, math.nan, math.nan, "error"),
]


def fake_tree(label: str) -> Tree:
    """A block's tree of two nodes (a root and one mutation of it), one completed run each."""
    tree = Tree(label)
    root = tree.add_node({"training.learning_rate_W_start": 1e-3}, None)
    child = tree.add_node({"training.learning_rate_W_start": 4e-3}, root.id, "lr_W: 1e-3 -> 4e-3", "exploit")
    for k, (node, run_score) in enumerate(((root, 0.95), (child, 0.6))):
        tree.add_pending(node.id, f"r{k}", k)
        tree.complete(f"r{k}", run_score, {"status": "ok"}, "converged")
    return tree


class FakeSearcher:
    """What the journal reads of a searcher: a tree per block (:func:`fake_tree`) and its text."""

    def __init__(self, labels: tuple[str, ...] = LABELS) -> None:
        self.trees = {label: fake_tree(label) for label in labels}

    def tree_text(self, label: str) -> str:
        return f"Node 0: UCB=1.000, parent=None, visits=1, R2=0.950, cluster=0.950, mutation=\n# {label}\n"


def trial(k: int, spec: tuple, info: dict[str, Any]) -> tuple[str, dict, dict | None, str]:
    """trial id, config (with search record), last result, error text of one fake trial."""
    value, node, parent, strategy, mutation, lr_W, r2, cluster, status = spec
    config = copy.deepcopy(info["base"])
    set_dotted(config, "simulation.connectivity_filling_factor", value)
    set_dotted(config, "training.learning_rate_W_start", lr_W)
    set_dotted(config, "training.seed", 100 + k)
    config[SEARCH_KEY] = {
        "block": f"connectivity_filling_factor={value}",
        "block_value": value,
        "node": node,
        "parent": parent,
        "strategy": strategy,
        "mutation": mutation,
        "run": k,
        "seed": 100 + k,
    }
    if status == "error":
        return f"t{k}", config, None, "Traceback...\nRuntimeError: boom"
    result = {
        "connectivity_R2": r2,
        "cluster_accuracy": cluster,
        "connectivity_slope": 0.9,
        "zero_band": 0.0,
        "cross": 0.0,
        "status": status,
        "final": True,
        "trial_dir": "",
    }
    return f"t{k}", config, result, ""


def make_experiment(exp_dir: Path, n: int = len(TRIALS)) -> dict[str, Any]:
    """Write study.json and journal the first ``n`` fake trials; returns the study info."""
    study, base = study_from_dict(STUDY, exp_dir)
    info = study_info(study, base)
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "study.json").write_text(json.dumps(info))
    journal = Journal(exp_dir, FakeSearcher(), tree_every_s=0.0)
    for k, spec in enumerate(TRIALS[:n]):
        trial_id, config, result, error = trial(k, spec, info)
        journal.start(trial_id, config)
        journal.complete(make_record(info, trial_id, config, result, error=error))
    journal.flush()
    return info
