"""One block's search tree: nodes are distinct configs holding runs; UCB over subtree visits.

A node's mean score and its robustness read its counted runs (:mod:`searchers.robustness`: a run on a
data-limited network is kept but not counted). The tree also holds the block's held-out confirmation:
the runs of its chosen robust config on networks the search never used, apart from the search's runs
(they count for no budget, no UCB and no statistic).

Pure Python (no Ray). Scores and classifications come from :mod:`searchers.objective`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from searchers.objective import default_weights, metric_value
from searchers.robustness import DATA_LIMITED, is_robust
from searchers.space import config_key

FORMULAS = ("ucb", "puct")
# Scores lie in [0, 1]: c = 0.1 keeps the bonus of a fresh leaf near real score differences; over c in
# 0.05-1.414 on the synthetic landscape it was the best or within the seed spread of the best
# (benchmarks/README.md). The textbook sqrt(2) drowns the score differences.
DEFAULT_UCB_C = 0.1


@dataclass
class Run:
    """One completed trial of a node."""

    trial_id: str
    seed: int
    score: float
    metrics: dict[str, Any]
    classification: str
    status: str
    curve: list[tuple[float, float]] = field(default_factory=list)  # (fraction of training, score) reports


@dataclass
class Node:
    """A distinct config of one block: its runs, pending trials and place in the tree."""

    id: int
    parent: int | None
    params: dict[str, Any]
    mutation: str = ""
    strategy: str = "root"
    runs: list[Run] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # trial_id -> seed
    children: list[int] = field(default_factory=list)
    subtree_visits: int = 0  # runs + pending of this node and all descendants
    robust: bool = False

    @property
    def counted(self) -> list[Run]:
        """The runs that count for the config: all but those on a data-limited network (all if none is left)."""
        valid = [r for r in self.runs if r.classification != DATA_LIMITED]
        return valid or self.runs

    @property
    def mean_score(self) -> float:
        """Mean score of this node's counted runs (0 before the first result)."""
        runs = self.counted
        return sum(r.score for r in runs) / len(runs) if runs else 0.0

    @property
    def best(self) -> Run | None:
        """The run with the highest score."""
        return max(self.runs, key=lambda r: r.score) if self.runs else None

    @property
    def converged(self) -> bool:
        return any(r.classification == "converged" for r in self.runs)


@dataclass
class HeldOut:
    """The held-out confirmation of a block: the confirmed node, its runs and pending trials."""

    node: int | None = None
    runs: list[Run] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # trial_id -> training seed

    @property
    def n(self) -> int:
        """Held-out runs done or pending (the index of the next held-out network)."""
        return len(self.runs) + len(self.pending)


class Tree:
    """The search tree of one block; node ids start at 1 (the root, parent None)."""

    def __init__(
        self,
        label: str,
        block_value: Any = None,
        *,
        ucb_c: float = DEFAULT_UCB_C,
        formula: str = "ucb",
        robustness_repeats: int = 3,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if formula not in FORMULAS:
            raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
        self.label = label
        self.block_value = block_value
        self.ucb_c = float(ucb_c)
        self.formula = formula
        self.robustness_repeats = int(robustness_repeats)
        self.weights = dict(weights or default_weights())
        self.nodes: dict[int, Node] = {}
        self.keys: dict[tuple[tuple[str, str], ...], int] = {}
        self.trials: dict[str, int] = {}  # trial_id -> node id, pending and completed
        self.order: list[str] = []  # completed trial ids, in completion order
        self.held_out = HeldOut()

    # ---- building
    def add_node(
        self, params: Mapping[str, Any], parent: int | None, mutation: str = "", strategy: str = "root"
    ) -> Node:
        """A new node; ``ValueError`` if the config already exists or the parent is unknown."""
        key = config_key(params)
        if key in self.keys:
            raise ValueError(f"config already in tree {self.label!r} as node {self.keys[key]}")
        if parent is not None and parent not in self.nodes:
            raise ValueError(f"unknown parent node {parent} in tree {self.label!r}")
        node = Node(
            id=len(self.nodes) + 1, parent=parent, params=dict(params), mutation=mutation, strategy=strategy
        )
        self.nodes[node.id] = node
        self.keys[key] = node.id
        if parent is not None:
            self.nodes[parent].children.append(node.id)
        return node

    def find(self, params: Mapping[str, Any]) -> Node | None:
        """The node holding exactly this config, if any."""
        node_id = self.keys.get(config_key(params))
        return None if node_id is None else self.nodes[node_id]

    def add_pending(self, node_id: int, trial_id: str, seed: int) -> None:
        """Register a suggested, not yet finished trial (a virtual visit of the node's ancestors)."""
        self.nodes[node_id].pending[trial_id] = seed
        self.trials[trial_id] = node_id
        self._propagate(node_id, +1)

    def add_held_out(self, node_id: int, trial_id: str, seed: int) -> None:
        """Register a pending held-out run of ``node_id`` (the block's chosen config; fixed by the first)."""
        if self.held_out.node not in (None, node_id):
            raise ValueError(f"tree {self.label!r} confirms node {self.held_out.node}, not {node_id}")
        self.held_out.node = node_id
        self.held_out.pending[trial_id] = seed
        self.trials[trial_id] = node_id

    def complete(
        self,
        trial_id: str,
        run_score: float,
        metrics: dict[str, Any],
        classification: str,
        curve: list[tuple[float, float]] | None = None,
    ) -> Node:
        """Turn a pending trial (a search run or a held-out run) into a run with its learning ``curve``;
        ``KeyError`` if the trial is not pending here."""
        node = self.nodes[self.trials[trial_id]]
        status = str(metrics.get("status", "ok"))
        run_curve = [(float(f), float(v)) for f, v in curve or []]
        if trial_id in self.held_out.pending:
            seed = self.held_out.pending.pop(trial_id)
            self.held_out.runs.append(
                Run(trial_id, seed, float(run_score), metrics, classification, status, run_curve)
            )
            return node
        seed = node.pending.pop(trial_id)
        node.runs.append(Run(trial_id, seed, float(run_score), metrics, classification, status, run_curve))
        node.robust = is_robust([r.classification for r in node.runs], self.robustness_repeats)
        self.order.append(trial_id)
        return node

    def _propagate(self, node_id: int | None, delta: int) -> None:
        while node_id is not None:
            node = self.nodes[node_id]
            node.subtree_visits += delta
            node_id = node.parent

    # ---- counts and UCB
    @property
    def n_runs(self) -> int:
        return len(self.order)

    @property
    def n_pending(self) -> int:
        return sum(len(n.pending) for n in self.nodes.values())

    @property
    def visits(self) -> int:
        """N: all runs and pending runs of the block."""
        return self.nodes[1].subtree_visits if self.nodes else 0

    def ucb(self, node_id: int) -> float:
        """``mean + c sqrt(ln N / n_k)`` (formula "ucb") or ``mean + c sqrt(N) / (1 + n_k)`` ("puct")."""
        node = self.nodes[node_id]
        n_k, total = node.subtree_visits, self.visits
        if self.formula == "puct":
            return node.mean_score + self.ucb_c * math.sqrt(total) / (1 + n_k)
        if n_k == 0:
            return math.inf
        return (
            node.mean_score + self.ucb_c * math.sqrt(math.log(total) / n_k) if total > 1 else node.mean_score
        )

    def ranked(self, *, with_results: bool = True) -> list[Node]:
        """Nodes by decreasing UCB (ties: lower id first); only nodes with runs unless told."""
        nodes = [n for n in self.nodes.values() if n.runs or not with_results]
        return sorted(nodes, key=lambda n: (-self.ucb(n.id), n.id))

    def chain(self, node_id: int) -> list[int]:
        """The node and its ancestors up to the root."""
        out: list[int] = []
        current: int | None = node_id
        while current is not None:
            out.append(current)
            current = self.nodes[current].parent
        return out

    # ---- export
    def text(self) -> str:
        """One line per node in the upstream form ``Node 2: UCB=2.175, parent=1, visits=1, ...``."""
        lines = []
        for node in self.nodes.values():
            best = node.best.metrics if node.best else {}
            r2 = metric_value(best, "connectivity_R2")
            cluster = metric_value(best, "cluster_accuracy")
            parent = "root" if node.parent is None else str(node.parent)
            line = (
                f"Node {node.id}: UCB={self.ucb(node.id):.3f}, parent={parent}, visits={node.subtree_visits}, "
                f"R2={r2:.3f}, cluster={cluster:.3f}, score={node.mean_score:.3f}, runs={len(node.runs)}, "
                f"strategy={node.strategy}, mutation={node.mutation}"
            )
            lines.append(line)
        return "\n".join(lines) + ("\n" if lines else "")

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-safe dict (when the metrics are) from which ``from_dict`` rebuilds the tree."""
        return {
            "label": self.label,
            "block_value": self.block_value,
            "ucb_c": self.ucb_c,
            "formula": self.formula,
            "robustness_repeats": self.robustness_repeats,
            "weights": dict(self.weights),
            "order": list(self.order),
            "nodes": [
                {
                    "id": n.id,
                    "parent": n.parent,
                    "params": dict(n.params),
                    "mutation": n.mutation,
                    "strategy": n.strategy,
                    "runs": [asdict(r) for r in n.runs],
                    "pending": dict(n.pending),
                    "robust": n.robust,
                }
                for n in self.nodes.values()
            ],
            "held_out": {
                "node": self.held_out.node,
                "runs": [asdict(r) for r in self.held_out.runs],
                "pending": dict(self.held_out.pending),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tree:
        """Inverse of ``to_dict``."""
        tree = cls(
            data["label"],
            data.get("block_value"),
            ucb_c=data["ucb_c"],
            formula=data["formula"],
            robustness_repeats=data["robustness_repeats"],
            weights=data.get("weights"),
        )
        for item in data["nodes"]:
            node = tree.add_node(item["params"], item["parent"], item["mutation"], item["strategy"])
            node.runs = [Run(**r) for r in item["runs"]]
            node.robust = bool(item["robust"])
            for run in node.runs:
                tree.trials[run.trial_id] = node.id
                tree._propagate(node.id, +1)
            for trial_id, seed in item["pending"].items():
                tree.add_pending(node.id, trial_id, int(seed))
        tree.order = list(data["order"])
        held = data.get("held_out") or {}  # absent in a tree saved before held-out confirmation
        tree.held_out.runs = [Run(**r) for r in held.get("runs", [])]
        for run in tree.held_out.runs:
            tree.trials[run.trial_id] = held["node"]
        for trial_id, seed in (held.get("pending") or {}).items():
            tree.add_held_out(held["node"], trial_id, int(seed))
        tree.held_out.node = held.get("node")
        return tree

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; a tree pickled before held-out confirmation gets an empty one."""
        state.setdefault("held_out", HeldOut())
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Tree({self.label!r}, nodes={len(self.nodes)}, runs={self.n_runs}, pending={self.n_pending})"
