"""The study's completed records in memory, with aggregates kept incrementally (no Ray, no files).

A :class:`Ledger` is fed one record at a time (``add``) and keeps, per block, the nodes (runs, mean
score, robust?), counters, the best node and, over all blocks, what each parameter's mutations did.
The nodes and blocks are :mod:`ntune.study.nodes`' dataclasses. Held-out runs (strategy
``held-out``: the block's robust config confirmed on networks the search never used) are kept apart,
per block: they are no node's run and count for no search budget, counter or mutation effect. Boundary
probes (strategy ``boundary-probe``, after a block's search) are runs of their nodes but count for no
search budget and no mutation effect; :meth:`Ledger.ranges` shows where training works in a block.
Adding a record touches only its node, that node's children and its block's row, so the cost of a
completion does not grow with the number of trials. A trial recorded again (a resumed study repeats
the trials that were running when its driver died) replaces its earlier record: the last one counts,
at the place of the first (iteration numbers never change).

The batch functions at the end (``group_nodes``, ``block_summary``,
``mutation_effects``) are this class fed a list, so every view of a study has one definition.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from ntune.study.clock import Projection, project
from ntune.study.info import block_budget, block_label, ceiling_of, held_out_of, probes_of
from ntune.study.nodes import BlockRow, BlockStats, NodeStats, Record, is_held_out
from ntune.study.ranges import BlockRanges, block_ranges, expected_probes, is_probe
from searchers.dotted import get_dotted
from searchers.robustness import DATA_LIMITED, is_robust

__all__ = [
    "BlockRow",
    "BlockStats",
    "Ledger",
    "NodeStats",
    "Record",
    "block_summary",
    "group_nodes",
    "mutation_effects",
]


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
        self.timeline: list[dict[str, Any]] = []  # {"event", "time"} of each event (ntune.study.clock)
        self._reset()

    def _reset(self) -> None:
        values = self.info["study"]["blocks"][self.block_key]
        self.blocks: dict[str, BlockStats] = {
            block_label(self.block_key, v): BlockStats(block_label(self.block_key, v), v) for v in values
        }
        self._effects: dict[str, list[float]] = {}  # parameter -> [n, improved, sum of deltas]
        self._contrib: dict[tuple[str, int], tuple[str, float]] = {}
        self._probes: dict[str, int] = {}  # block label -> boundary-probe runs

    # ---- feeding
    def start(self, trial_id: str, block: str, time: str | None = None) -> None:
        """A trial started (it counts as running until it completes) at ``time`` (the journal's stamp)."""
        self.timeline.append({"event": "start", "time": time})
        if trial_id not in self.records:
            self.running[trial_id] = block

    def resume(self, time: str | None = None) -> None:
        """A resumed run starts again every trial it still has: earlier starts are forgotten."""
        self.timeline.append({"event": "resume", "time": time})
        self.running.clear()

    def projection(self, now: dt.datetime | None = None) -> Projection:
        """Wall time run, time budget and projected finish (:mod:`ntune.study.clock`)."""
        study, left = self.info["study"], self.expected_trials() - len(self.records)
        searching = sum(1 for label in self.labels() if not self.search_done(label))
        return project(
            self.timeline,
            remaining_trials=left,
            concurrency=int(study.get("max_concurrent_trials") or 1),
            budget_h=study.get("time_budget_h"),
            now=now,
            remaining_most=left + (held_out_of(self.info) + probes_of(self.info)) * searching,
        )

    def add(self, rec: Record) -> bool:
        """Add a completed record (sets ``rec["iter"]``); True when the trial was recorded before."""
        trial_id = rec["trial_id"]
        self.timeline.append({"event": "complete", "time": rec.get("time")})
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
        block.first_iter = block.first_iter or int(rec.get("iter", 0))
        block.recent.append(rec)
        self.last_block = block.label
        if is_held_out(rec):  # kept apart: no node's run, no counter, no mutation effect
            block.held_out_node = int(rec["search"].get("node", -1))
            block.held_out.append(rec)
            return
        ok = rec["status"] == "ok"
        if is_probe(rec):  # a run of its node, outside the search's budget
            self._probes[block.label] = self._probes.get(block.label, 0) + 1
        else:
            block.trials += 1
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
            node.uid = search.get("id", node_id)
            block.nodes[node_id] = node
            node.children = block.orphans.pop(node_id, [])
            if node.parent is not None:
                parent = block.nodes.get(node.parent)
                (parent.children if parent else block.orphans.setdefault(node.parent, [])).append(node_id)
        old_mean = node.mean_score if node.runs else -math.inf
        node.runs.append(rec)
        if rec["classification"] == DATA_LIMITED:
            node.total_limited += rec["score"]
        else:
            node.total += rec["score"]
            node.n_counted += 1
        node.n_converged += rec["classification"] == "converged"
        if node.best is None or rec["score"] > node.best["score"]:
            node.best = rec
        node.robust = is_robust([r["classification"] for r in node.runs], self.repeats)
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
        if is_probe(node.runs[0]):  # made by a boundary probe: it maps the block, it tests no move
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

    def labels(self) -> list[str]:
        """The study's block labels, in its order."""
        return [block_label(self.block_key, v) for v in self.info["study"]["blocks"][self.block_key]]

    def pick(self, label: str) -> NodeStats | None:
        """The block's best node: the one its held-out runs confirm, else its best robust node (highest
        mean score, then first seen), else its best node; None before its first search run."""
        block = self.blocks.get(label)
        if block is None:
            return None
        if block.held_out and block.held_out_node in block.nodes:
            return block.nodes[block.held_out_node]
        return block.nodes.get(block.pick) if block.pick is not None else None

    def held_out(self, label: str) -> list[Record]:
        """The held-out runs of the block's best node (:meth:`pick`), in order."""
        block, pick = self.blocks.get(label), self.pick(label)
        if block is None or pick is None:
            return []
        return [r for r in block.held_out if int(r["search"].get("node", -1)) == pick.id]

    def search_done(self, label: str) -> bool:
        """Whether the block's search has recorded its whole budget."""
        block = self.blocks.get(label)
        return block is not None and block.trials >= block_budget(self.info, label)

    def expected_held_out(self) -> int:
        """Held-out runs the study runs as it stands: K for every block whose search is done and that has
        a robust node (or already a held-out run)."""
        k = held_out_of(self.info)
        due = [
            label
            for label in self.labels()
            if self.search_done(label) and (self.blocks[label].robust_ids or self.blocks[label].held_out)
        ]
        return k * len(due)

    def expected_trials(self) -> int:
        """Trials the study runs as it stands: every block's budget plus :meth:`expected_held_out` and the
        boundary probes due (:func:`ntune.study.ranges.expected_probes`; a study has finished when it has
        recorded this many)."""
        probes = sum(
            expected_probes(self.info, self.blocks[label], search_done=self.search_done(label))
            for label in self.labels()
        )
        return (
            sum(block_budget(self.info, label) for label in self.labels()) + self.expected_held_out() + probes
        )

    @property
    def n_held_out(self) -> int:
        """Held-out runs recorded, over all blocks."""
        return sum(len(b.held_out) for b in self.blocks.values())

    @property
    def n_probes(self) -> int:
        """Boundary-probe runs recorded, over all blocks."""
        return sum(self._probes.values())

    def ranges(self, label: str) -> BlockRanges | None:
        """Where training works in block ``label`` (:func:`ntune.study.ranges.block_ranges`); None when the
        study has no ``ranges`` or the block no record."""
        block = self.blocks.get(label)
        return None if block is None else block_ranges(self.info, block, search_done=self.search_done(label))

    def row(self, label: str, *, stopped: bool = False) -> dict[str, Any]:
        """The block's row of the sparsity comparison table (memory.md, ``ntune status``, summary.csv).

        ``stopped``: the study's driver has ended, so no trial counts as running. The best node is
        :meth:`pick`; its robustness and held-out runs fill the robustness fields.
        """
        block = self.blocks[label]
        pick = self.pick(label)
        best = pick.best if pick else None
        stats = pick.robustness(self.repeats) if pick else None
        held = self.held_out(label)
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
                networks=stats.n if stats else 0,
                R2_mean=stats.R2_mean if stats else math.nan,
                R2_cv=stats.R2_cv if stats else math.nan,
                worst_R2=stats.worst_R2 if stats else math.nan,
                worst_cluster=stats.worst_cluster if stats else math.nan,
                spread=stats.spread if stats else "",
                held_out=sum(r["classification"] == "converged" for r in held),
                held_out_done=len(held),
                held_out_total=held_out_of(self.info),
            )
        )

    def rows(self, *, stopped: bool = False) -> list[dict[str, Any]]:
        """One row per block of the study, in the study's order (``stopped``: see :meth:`row`)."""
        return [self.row(label, stopped=stopped) for label in self.labels()]

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
