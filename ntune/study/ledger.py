"""The study's completed records in memory, with aggregates kept incrementally (no Ray, no files).

A :class:`Ledger` is fed one record at a time (``add``) and keeps, per block, the nodes (runs, mean
score, robust?), counters, the best node and, over all blocks, what each parameter's mutations did.
Adding a record touches only its node, that node's children and its block's row, so the cost of a
completion does not grow with the number of trials. A trial recorded again (a resumed study repeats
the trials that were running when its driver died) replaces its earlier record: the last one counts,
at the place of the first (iteration numbers never change).

The batch functions at the end (``group_nodes``, ``block_summary``,
``mutation_effects``) are this class fed a list, so every view of a study has one definition.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ntune.study.info import block_budget, block_label, ceiling_of
from searchers.dotted import get_dotted

Record = dict[str, Any]


RECENT = 10  # records per block kept for memory.md's "Iterations This Block"


@dataclass
class NodeStats:
    """One node of a block as the records show it: its runs and what they add up to."""

    id: int
    parent: int | None
    mutation: str
    params: dict[str, Any]
    index: int  # order of first appearance in its block (ties of the best node go to the earlier)
    runs: list[Record] = field(default_factory=list)
    total: float = 0.0
    n_converged: int = 0
    best: Record | None = None
    robust: bool = False
    children: list[int] = field(default_factory=list)

    @property
    def mean_score(self) -> float:
        """Mean score of the node's runs."""
        return self.total / len(self.runs) if self.runs else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The plain form of ``group_nodes``."""
        return {
            "id": self.id,
            "parent": self.parent,
            "mutation": self.mutation,
            "params": self.params,
            "runs": self.runs,
            "mean_score": self.mean_score,
            "n_converged": self.n_converged,
            "best": self.best,
            "robust": self.robust,
        }


@dataclass
class BlockStats:
    """One block's counters, nodes and best node."""

    label: str
    value: Any
    nodes: dict[int, NodeStats] = field(default_factory=dict)
    trials: int = 0
    converged: int = 0
    failed: int = 0
    best_R2: float = math.nan
    best_cluster: float = math.nan
    strategies: dict[str, int] = field(default_factory=dict)
    last_strategy: str = "none"
    robust_ids: set[int] = field(default_factory=set)
    pick: int | None = None
    orphans: dict[int, list[int]] = field(default_factory=dict)  # parent without a run yet -> children
    recent: deque[Record] = field(default_factory=lambda: deque(maxlen=RECENT))  # last records
    first_iter: int = 0


@dataclass
class BlockRow:
    """One row of the sparsity comparison table (memory.md, ``ntune status``, summary.csv)."""

    block: str
    value: Any
    trials: int
    budget: int
    running: int
    converged: int
    failed: int
    best_R2: float
    best_cluster: float
    best_score: float
    robust: bool
    best_node: int | None
    best_trial: str | None
    L1: Any
    lr_W: Any
    state: str  # done / running / open
    ceiling: float = math.nan  # the identifiability ceiling of the block's data (NaN: not computed)


def _key(node: NodeStats) -> tuple[float, int]:
    return (node.mean_score, -node.index)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


class Ledger:
    """Completed records and running trials of one study, with incremental aggregates."""

    def __init__(self, info: dict[str, Any]) -> None:
        study = info["study"]
        self.info = info
        self.block_key: str = info["block_key"]
        self.repeats: int = int(study["robustness_repeats"])
        self.budget: int = int(study["n_iter_block"])
        self.records: dict[str, Record] = {}
        self.running: dict[str, str] = {}
        self.last_block: str | None = None
        self._reset()

    def _reset(self) -> None:
        values = self.info["study"]["blocks"][self.block_key]
        self.blocks: dict[str, BlockStats] = {
            block_label(self.block_key, v): BlockStats(block_label(self.block_key, v), v) for v in values
        }
        self._effects: dict[str, list[float]] = {}  # parameter -> [n, improved, sum of deltas]
        self._contrib: dict[tuple[str, int], tuple[str, float]] = {}

    # ---- feeding
    def start(self, trial_id: str, block: str) -> None:
        """A trial started (it counts as running until it completes)."""
        if trial_id not in self.records:
            self.running[trial_id] = block

    def resume(self) -> None:
        """A resumed run starts again every trial it still has: earlier starts are forgotten."""
        self.running.clear()

    def add(self, rec: Record) -> bool:
        """Add a completed record (sets ``rec["iter"]``); True when the trial was recorded before."""
        trial_id = rec["trial_id"]
        self.running.pop(trial_id, None)
        again = trial_id in self.records
        rec["iter"] = self.records[trial_id]["iter"] if again else len(self.records) + 1
        self.records[trial_id] = rec
        if again:  # rare (resumed duplicates): rebuild every aggregate from the records
            self._reset()
            for r in self.records.values():
                self._apply(r)
        else:
            self._apply(rec)
        return again

    def extend(self, records: Iterable[Record]) -> Ledger:
        """``add`` each record; returns self."""
        for rec in records:
            self.add(rec)
        return self

    # ---- incremental aggregates
    def _block(self, label: str, rec: Record) -> BlockStats:
        if label not in self.blocks:  # a record of a block the study no longer lists
            self.blocks[label] = BlockStats(label, rec.get("block_value"))
        return self.blocks[label]

    def _apply(self, rec: Record) -> None:
        block = self._block(rec["block"], rec)
        ok = rec["status"] == "ok"
        block.trials += 1
        block.first_iter = block.first_iter or int(rec.get("iter", 0))
        block.recent.append(rec)
        self.last_block = block.label
        block.converged += rec["classification"] == "converged"
        block.failed += not ok
        if ok:
            block.best_R2 = _nanmax(block.best_R2, rec["metrics"]["connectivity_R2"])
            block.best_cluster = _nanmax(block.best_cluster, rec["metrics"]["cluster_accuracy"])
        strategy = str(rec["search"].get("strategy", "?"))
        block.strategies[strategy] = block.strategies.get(strategy, 0) + 1
        block.last_strategy = strategy
        search = rec["search"]
        node_id = int(search.get("node", -1))
        node = block.nodes.get(node_id)
        if node is None:
            node = NodeStats(
                node_id, search.get("parent"), search.get("mutation", ""), rec["params"], len(block.nodes)
            )
            block.nodes[node_id] = node
            node.children = block.orphans.pop(node_id, [])
            if node.parent is not None:
                parent = block.nodes.get(node.parent)
                (parent.children if parent else block.orphans.setdefault(node.parent, [])).append(node_id)
        old_mean = node.mean_score if node.runs else -math.inf
        node.runs.append(rec)
        node.total += rec["score"]
        node.n_converged += rec["classification"] == "converged"
        if node.best is None or rec["score"] > node.best["score"]:
            node.best = rec
        node.robust = len(node.runs) >= self.repeats and node.n_converged == len(node.runs)
        self._repick(block, node, old_mean)
        for child in (node.id, *node.children):
            self._effect(block, block.nodes[child])

    def _repick(self, block: BlockStats, node: NodeStats, old_mean: float) -> None:
        had_robust = bool(block.robust_ids)
        if node.robust:
            block.robust_ids.add(node.id)
        else:
            block.robust_ids.discard(node.id)
        pool = block.robust_ids if block.robust_ids else None
        current = block.nodes.get(block.pick) if block.pick is not None else None
        in_pool = pool is None or node.id in pool
        if current is None or had_robust != bool(pool) or (pool is not None and current.id not in pool):
            self._full_pick(block)
        elif current is node:
            if node.mean_score < old_mean:
                self._full_pick(block)
        elif in_pool and _key(node) > _key(current):
            block.pick = node.id

    def _full_pick(self, block: BlockStats) -> None:
        pool = [block.nodes[i] for i in block.robust_ids] or list(block.nodes.values())
        block.pick = max(pool, key=_key).id if pool else None

    def _effect(self, block: BlockStats, node: NodeStats) -> None:
        """Replace this node's contribution to the mutation effects (child mean minus parent mean)."""
        key = (block.label, node.id)
        old = self._contrib.pop(key, None)
        if old is not None:
            e = self._effects[old[0]]
            e[0] -= 1
            e[1] -= old[1] > 0
            e[2] -= old[1]
        parent = block.nodes.get(node.parent) if node.parent is not None else None
        if parent is None or not node.runs or not node.mutation or ":" not in node.mutation:
            return
        name = node.mutation.split(":")[0].strip()
        delta = node.mean_score - parent.mean_score
        e = self._effects.setdefault(name, [0, 0, 0.0])
        e[0] += 1
        e[1] += delta > 0
        e[2] += delta
        self._contrib[key] = (name, delta)

    # ---- views
    def nodes(self, label: str) -> dict[int, dict[str, Any]]:
        """Node id -> plain node dict of one block (empty when it has no record)."""
        block = self.blocks.get(label)
        return {i: n.as_dict() for i, n in block.nodes.items()} if block else {}

    def row(self, label: str, *, stopped: bool = False) -> dict[str, Any]:
        """The block's row of the sparsity comparison table (memory.md, ``ntune status``, summary.csv).

        ``stopped``: the study's driver has ended, so no trial counts as running.
        """
        block = self.blocks[label]
        pick = block.nodes.get(block.pick) if block.pick is not None else None
        best = pick.best if pick else None
        n_run = 0 if stopped else sum(1 for b in self.running.values() if b == label)
        budget = block_budget(self.info, label)  # n_iter_block, or the probe budget of a data-limited block
        state = "done" if block.trials >= budget else ("running" if n_run else "open")
        return asdict(
            BlockRow(
                block=label,
                value=block.value,
                trials=block.trials,
                budget=budget,
                running=n_run,
                converged=block.converged,
                failed=block.failed,
                best_R2=block.best_R2,
                best_cluster=block.best_cluster,
                best_score=best["score"] if best else math.nan,
                robust=bool(block.robust_ids),
                best_node=pick.id if pick else None,
                best_trial=best["trial_id"] if best else None,
                L1=get_dotted(best["config"], "training.coeff_W_L1") if best else None,
                lr_W=get_dotted(best["config"], "training.learning_rate_W_start") if best else None,
                state=state,
                ceiling=ceiling_of(self.info, label),
            )
        )

    def rows(self, *, stopped: bool = False) -> list[dict[str, Any]]:
        """One row per block of the study, in the study's order (``stopped``: see :meth:`row`)."""
        values = self.info["study"]["blocks"][self.block_key]
        return [self.row(block_label(self.block_key, v), stopped=stopped) for v in values]

    def effects(self) -> dict[str, dict[str, float]]:
        """parameter -> {n, improved, mean_delta} over all blocks' child-parent node pairs."""
        return {
            k: {"n": int(e[0]), "improved": int(e[1]), "mean_delta": e[2] / e[0]}
            for k, e in self._effects.items()
            if e[0] > 0
        }


def group_nodes(records: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """block -> node id -> {id, parent, mutation, params, runs (records), mean_score, n_converged, best, robust}."""
    blocks: dict[str, None] = {}
    for rec in records:
        blocks.setdefault(rec["block"])
    info = {"study": {"blocks": {"b": []}, "robustness_repeats": 10**9, "n_iter_block": 1}, "block_key": "b"}
    ledger = Ledger(info).extend(records)
    return {label: ledger.nodes(label) for label in blocks}


def block_summary(
    info: dict[str, Any], records: list[dict[str, Any]], running: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per block: the sparsity comparison table of memory.md, ``ntune status`` and summary.csv."""
    ledger = Ledger(info).extend(records)
    ledger.running = dict(running or {})
    return ledger.rows()


def mutation_effects(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """parameter -> {n, improved, mean_delta}: child node mean score minus its parent's, over all blocks."""
    info = {"study": {"blocks": {"b": []}, "robustness_repeats": 1, "n_iter_block": 1}, "block_key": "b"}
    return Ledger(info).extend(records).effects()
