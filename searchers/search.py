"""The UCB tree search over blocks, without Ray: one tree per block value, asked in turn.

:class:`TreeSearch` is the whole search that :class:`searchers.ucb.UCBTreeSearcher` adapts to Ray Tune:

* construction from keywords, validated by :class:`searchers.settings.SearchSettings`;
* scheduling: a suggestion goes to the open block (runs plus pending below its budget) with the
  fewest runs plus pending trials, ties in block order; :data:`FINISHED` once every budget is
  allocated (or every block's space is exhausted with nothing live), None at ``max_concurrent``;
* the trial id -> block map of the live trials, block-local node ids -> study-wide node ids;
* suggest / complete / adopt, each suggestion a full nested config (a deep copy of the block's base
  config with the block value, the node's parameters and the run seed at their dotted keys) plus the
  search record under ``config[SEARCH_KEY]``;
* network instances (``SearchSettings.instance_key``): run ``r`` of a config trains on network ``r``
  of its block, and once a block's budget is spent its best robust config runs on ``held_out``
  networks the search never used (strategy ``held-out``; :mod:`searchers.robustness` derives the
  seeds); the search record carries each run's ``network``;
* boundary probes (``SearchSettings.ranges``): after its budget and held-out runs, where a block's robust
  config still converges, per parameter (:mod:`searchers.ranges`; strategy ``boundary-probe``);
* the state as a plain dict (:meth:`TreeSearch.get_state` / :meth:`TreeSearch.set_state`), so that a
  restored search continues exactly.

Unknown or duplicate trial ids never raise: they are logged and kept in ``outcomes``.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Mapping
from typing import Any

from searchers.dotted import get_dotted, set_dotted
from searchers.early_stop import LineageRule, curve_point, parent_curve
from searchers.objective import STOPPED, classify, metric_value, score
from searchers.policy import BlockState, Decision, decide, record
from searchers.ranges import PROBE, BoundaryProbes
from searchers.record import HELD_OUT, SEARCH_KEY, SearchRecord
from searchers.robustness import held_out_seed, instance_seed
from searchers.settings import SearchSettings
from searchers.space import Domain
from searchers.tree import Node, Tree

logger = logging.getLogger(__name__)

FINISHED = "FINISHED"  # what suggest returns once nothing is left to suggest (Tune's Searcher.FINISHED)
DIAGNOSIS_KEYS = ("status", "zero_band", "connectivity_slope", "cross", "test_R2", "test_pearson", "ceiling")


class TreeSearch:
    """Dual-objective UCB tree search, one tree per block value, one parameter changed per child.

    Built from checked settings: ``TreeSearch(SearchSettings(space=..., blocks=..., ...))``
    (:class:`searchers.settings.SearchSettings` raises ``ValueError`` naming a bad argument).
    """

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.trees: dict[str, Tree] = {}
        self.blocks: dict[str, BlockState] = {}
        for value in self.settings.block_values:
            label = self.settings.block_label(value)
            self.trees[label] = Tree(
                label,
                value,
                ucb_c=self.settings.ucb_c,
                formula=self.settings.formula,
                robustness_repeats=self.settings.robustness_repeats,
                weights=self.settings.weights,
            )
            self.blocks[label] = BlockState()
        self.stats: dict[str, list[int]] = {}  # per-parameter statistics, shared by the blocks
        self.rng = random.Random(self.settings.seed)
        self.max_concurrent: int = 0  # 0: no limit
        self.live: dict[str, str] = {}  # trial_id -> block label
        self.curves: dict[str, list[tuple[float, float]]] = {}  # live trial_id -> (progress, score) so far
        self.outcomes: list[dict[str, Any]] = []  # unknown / duplicate trial ids, logged and kept
        self.n_suggested = 0
        self.uids: dict[str, dict[int, int]] = {label: {} for label in self.trees}  # study-wide node ids
        self.probes = BoundaryProbes(self.settings.ranges, self.settings.space)

    @property
    def space(self) -> dict[str, Domain]:
        """The parsed search space (dotted key -> domain)."""
        return self.settings.space

    # ---- node ids and the tree's text
    def _taken_uids(self) -> set[int]:
        """Study-wide node ids handed out so far (a new node takes the next one; none is reused)."""
        return {u for ids in self.uids.values() for u in ids.values()}

    def uid(self, label: str, node_id: int | None) -> int | None:
        """The study-wide id of a block's node (numbered in order of creation over all blocks)."""
        return None if node_id is None else self.uids[label].get(node_id)

    def next_parent(self, label: str) -> int | None:
        """Study-wide id of the node with the highest UCB among the block's nodes with results."""
        ranked = self.trees[label].ranked()
        return self.uid(label, ranked[0].id) if ranked else None

    def tree_text(self, label: str) -> str:
        """The block's tree, one ``Node k: UCB=...`` line per node."""
        return self.trees[label].text()

    def ucb_scores(self, label: str) -> str:
        """The block's tree in the seeds' ``ucb_scores.txt`` form (study-wide ids), ntune's columns after."""
        tree, lines = self.trees[label], []
        for node in tree.nodes.values():
            best = node.best.metrics if node.best else {}
            parent = "root" if node.parent is None else str(self.uid(label, node.parent))
            lines.append(
                f"Node {self.uid(label, node.id)}: UCB={tree.ucb(node.id):.3f}, parent={parent}, "
                f"visits={node.subtree_visits}, R2={metric_value(best, 'connectivity_R2'):.3f}, "
                f"cluster={metric_value(best, 'cluster_accuracy'):.3f}, score={node.mean_score:.3f}, "
                f"runs={len(node.runs)}, block_node={node.id}, strategy={node.strategy}, mutation={node.mutation}"
            )
        return "\n".join(lines) + ("\n" if lines else "")

    def known(self, trial_id: str) -> bool:
        """Whether ``trial_id`` was suggested (live) or recorded (a run of some tree)."""
        return trial_id in self.live or any(trial_id in t.trials for t in self.trees.values())

    # ---- suggest
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """A full config with ``config[SEARCH_KEY]``; :data:`FINISHED` when all budgets are allocated;
        None at the concurrency limit, for a trial id already suggested, or while every open block
        waits for live trials."""
        s, budget = self.settings, self.settings.budget
        open_blocks = [label for label, t in self.trees.items() if t.n_runs + t.n_pending < budget(label)]
        confirming = [label for label in self.trees if self._confirming(label)]
        probing = [t for t in self.trees if s.ranges and self.probes.active(t, **self._probe_args(t))]
        if not open_blocks and not confirming and not probing:
            return FINISHED
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        if self.known(trial_id):
            self.note(trial_id, "duplicate-suggest", None)
            return None
        for label in confirming:
            node_id = self.held_out_node(label)
            if node_id is not None and not self.trees[label].n_pending:
                return self._held_out(label, node_id, trial_id)
        for label in probing:
            decision = self.probes.step(label, trial_id=trial_id, **self._probe_args(label))
            if decision is not None:
                return self._apply(label, decision, trial_id)
        values = self.settings.block_values
        for label in sorted(
            open_blocks,
            key=lambda b: (
                self.trees[b].n_runs + self.trees[b].n_pending,
                values.index(self.trees[b].block_value),
            ),
        ):
            decision = self._decide(label)
            if decision is not None:
                return self._apply(label, decision, trial_id)
        if self.live:
            return None
        logger.warning("UCBTreeSearcher: every block's space is exhausted; finishing early")
        return FINISHED

    # ---- held-out confirmation
    def held_out_node(self, label: str) -> int | None:
        """The node the block confirms on held-out networks: the one already confirmed, else its best
        robust node (highest mean score, then lowest id); None when it has none."""
        tree = self.trees[label]
        if tree.held_out.node is not None:
            return tree.held_out.node
        robust = [n for n in tree.nodes.values() if n.robust]
        return max(robust, key=lambda n: (n.mean_score, -n.id)).id if robust else None

    def _confirming(self, label: str) -> bool:
        """Whether the block may still need a held-out run: its search budget is allocated, held-out
        networks remain, and it has (or, with runs pending, may still get) a robust node."""
        s, tree = self.settings, self.trees[label]
        if not s.held_out or tree.held_out.n >= s.held_out or tree.n_runs + tree.n_pending < s.budget(label):
            return False
        return bool(tree.n_pending) or self.held_out_node(label) is not None

    def _probe_args(self, label: str) -> dict[str, Any]:
        """The block's tree, whether its search and held-out runs are all done (its probes may start), and
        its robust node (their centre)."""
        s, tree = self.settings, self.trees[label]
        done = tree.n_runs >= s.budget(label) and not tree.n_pending and not tree.held_out.pending
        settled = done and not self._confirming(label)
        return {"tree": tree, "settled": settled, "robust": self.held_out_node(label) if settled else None}

    def _held_out(self, label: str, node_id: int, trial_id: str) -> dict[str, Any]:
        """The next held-out run of the block's confirmed node."""
        tree = self.trees[label]
        index, run_seed = tree.held_out.n, self.rng.randrange(2**31)
        network = held_out_seed(self.settings.seed, label, index, self.settings.base_instance(label))
        tree.add_held_out(node_id, trial_id, run_seed)
        return self._suggestion(
            label, tree.nodes[node_id], trial_id, run_seed, network, strategy=HELD_OUT, mutation="", run=index
        )

    def _suggestion(
        self,
        label: str,
        node: Node,
        trial_id: str,
        run_seed: int,
        network: int | None,
        *,
        strategy: str,
        mutation: str,
        run: int,
        rule: str = "",
    ) -> dict[str, Any]:
        """Mark ``trial_id`` live and build its full config: the block's base, its value, the node's
        parameters, the seeds (training and network) and the search record."""
        s, tree = self.settings, self.trees[label]
        self.live[trial_id] = label
        self.n_suggested += 1
        config = s.base_of(label)
        set_dotted(config, s.block_key, tree.block_value)
        for key, value in node.params.items():
            set_dotted(config, key, value)
        if s.seed_key:
            set_dotted(config, s.seed_key, run_seed)
        if s.instance_key and network is not None:
            set_dotted(config, s.instance_key, network)
        config[SEARCH_KEY] = SearchRecord(
            block=label,
            block_value=tree.block_value,
            node=node.id,
            parent=node.parent,
            strategy=strategy,
            mutation=mutation,
            run=run,
            seed=run_seed,
            id=self.uid(label, node.id),
            parent_id=self.uid(label, node.parent),
            rule=rule,
            network=network,
        ).to_dict()
        return config

    def _decide(self, label: str) -> Decision | None:
        """The policy's decision for block ``label``; the other blocks, nearest first, are its neighbours."""
        s, tree = self.settings, self.trees[label]
        index = s.block_values.index(tree.block_value)
        others = [self.trees[s.block_label(v)] for i, v in enumerate(s.block_values) if i != index]
        others.sort(
            key=lambda t: (
                abs(s.block_values.index(t.block_value) - index),
                s.block_values.index(t.block_value),
            )
        )
        return decide(
            tree,
            self.blocks[label],
            space=s.space,
            root_params=s.roots(label),
            stats=self.stats,
            rng=self.rng,
            thresholds=s.thresholds,
            n_iter_block=s.n_iter_block,
            retry_failed=s.retry_failed,
            robustness_repeats=s.robustness_repeats,
            neighbours=others,
            n_scouts=s.n_scouts,
        )

    def _apply(self, label: str, decision: Decision, trial_id: str) -> dict[str, Any]:
        """Create the decided node (or take the one to re-run), mark the run pending, build the config."""
        s, tree = self.settings, self.trees[label]
        if decision.node_id is None:
            node = tree.add_node(decision.params or {}, decision.parent, decision.mutation, decision.strategy)
            self.uids[label][node.id] = max(self._taken_uids(), default=0) + 1
        else:
            node = tree.nodes[decision.node_id]
        run_seed = self.rng.randrange(2**31)
        network = None
        if s.instance_key:  # run r of a config trains on network r of its block
            network = instance_seed(s.seed, label, len(node.runs) + len(node.pending), s.base_instance(label))
        tree.add_pending(node.id, trial_id, run_seed)
        return self._suggestion(
            label,
            node,
            trial_id,
            run_seed,
            network,
            strategy=decision.strategy,
            mutation=node.mutation if decision.node_id is None else "",
            run=tree.n_runs + tree.n_pending,
            rule=decision.rule or "",
        )

    # ---- observe, complete and adopt
    def observe(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Add an intermediate result's (``progress``, ``score``) to the learning curve of a live trial."""
        point = curve_point(result)
        if trial_id in self.live and point is not None:
            self.curves.setdefault(trial_id, []).append(point)

    def stop_at(self, trial_id: str, result: Mapping[str, Any], rule: LineageRule) -> float | None:
        """The fraction of training at which ``rule`` stops the live trial, given its latest ``result``
        (not yet observed); None while it goes on (:func:`searchers.early_stop.parent_curve`)."""
        label, point = self.live.get(trial_id), curve_point(result)
        reference = None if label is None or point is None else parent_curve(self.trees[label], trial_id)
        if reference is None or point is None:
            return None
        at = rule.stop_at([*self.curves.get(trial_id, []), point], reference)
        return None if at is None else point[0]

    def complete(self, trial_id: str, result: Mapping[str, Any] | None, error: bool = False) -> None:
        """Record the run of ``trial_id``: its score and class from ``result`` (None: missing; ``error``:
        failed). An unknown or already completed trial id is noted in ``outcomes`` and changes nothing."""
        label = self.live.pop(trial_id, None)
        curve = self.curves.pop(trial_id, [])
        if label is None:
            known = any(trial_id in t.trials for t in self.trees.values())
            self.note(trial_id, "duplicate" if known else "unknown", result)
            return
        s = self.settings
        metrics: dict[str, Any] = {}
        for name in (*s.weights, *s.thresholds, *DIAGNOSIS_KEYS):
            value = (result or {}).get(name)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                metrics[name] = float(value) if isinstance(value, int) else value
        if (result or {}).get("data_limited") is True:  # the run's network cannot decide W
            metrics["data_limited"] = True
        if error:
            metrics["status"] = "error"
        elif result is not None and (result.get("stopped_at") is not None or result.get("status") == STOPPED):
            metrics["status"] = STOPPED  # stopped early: scored on its metrics at the stop
            metrics["stopped_at"] = metric_value(result, "stopped_at")
        elif result is None:
            metrics["status"] = "missing"
        elif any(math.isnan(metric_value(metrics, name)) for name in s.weights):
            logger.warning("UCBTreeSearcher: trial %s reported no valid %s", trial_id, list(s.weights))
        metrics.setdefault("status", "ok")
        run_score = score(metrics, s.weights)
        classification = classify(metrics, s.thresholds)
        tree = self.trees[label]
        held_out = trial_id in tree.held_out.pending
        last = curve_point(result or {})
        if last is not None and (not curve or curve[-1] != last):
            curve.append(last)
        node = tree.complete(trial_id, run_score, metrics, classification, curve)
        if not held_out and not self.probes.owns(label, trial_id):  # they map the block; they do not steer it
            record(tree, self.blocks[label], self.stats, node, run_score, classification, s.space)

    def adopt(
        self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any] | None, error: bool = False
    ) -> bool:
        """Record a finished trial this search does not know: its restored state predates the suggestion
        (a driver killed between Tune's two snapshot writes), while the trial ran and its result is known.

        The trial's node is found by its config in the block of its search record, or created under the
        recorded parent; then the run is recorded as :meth:`complete` would. Returns False (and
        changes nothing) when the trial is already known or its config has no usable search record.
        """
        search = config.get(SEARCH_KEY) or {}
        label = search.get("block")
        if self.known(trial_id) or label not in self.trees:
            return False
        tree = self.trees[label]
        params = {key: get_dotted(config, key) for key in self.settings.space}
        node = tree.find(params)
        if search.get("strategy") == HELD_OUT:
            if node is None or tree.held_out.node not in (None, node.id):
                return False
            tree.add_held_out(node.id, trial_id, int(search.get("seed") or 0))
            self.live[trial_id] = label
            self.complete(trial_id, result, error)
            return True
        if search.get("strategy") == PROBE:
            self.probes.adopt(label, trial_id, self.held_out_node(label))
        if node is None:
            parent = search.get("parent")
            parent = parent if parent in tree.nodes else None
            node = tree.add_node(
                params, parent, str(search.get("mutation") or ""), str(search.get("strategy"))
            )
            taken, uid = self._taken_uids(), search.get("id")
            fresh = uid if isinstance(uid, int) and uid not in taken else max(taken, default=0) + 1
            self.uids[label][node.id] = fresh
        tree.add_pending(node.id, trial_id, int(search.get("seed") or 0))
        self.live[trial_id] = label
        self.complete(trial_id, result, error)
        return True

    def note(self, trial_id: str, kind: str, result: Mapping[str, Any] | None) -> None:
        """Log a trial id the search could not use (``kind``: unknown, duplicate, ...) and keep it."""
        logger.warning("UCBTreeSearcher: %s trial id %s", kind, trial_id)
        self.outcomes.append({"trial_id": trial_id, "kind": kind, "result_keys": sorted(result or {})})

    # ---- state
    def get_state(self) -> dict[str, Any]:
        """Everything a fresh instance with the same settings needs to continue exactly: trees, pending
        runs, streaks, statistics, RNG, live trials, node ids, the concurrency limit."""
        return {
            "trees": {label: t.to_dict() for label, t in self.trees.items()},
            "blocks": {label: vars(b).copy() for label, b in self.blocks.items()},
            "stats": copy.deepcopy(self.stats),
            "rng": self.rng.getstate(),
            "live": dict(self.live),
            "curves": {trial_id: list(c) for trial_id, c in self.curves.items()},
            "outcomes": copy.deepcopy(self.outcomes),
            "n_suggested": self.n_suggested,
            "uids": {label: dict(u) for label, u in self.uids.items()},
            "max_concurrent": self.max_concurrent,
            "probes": self.probes.get_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`get_state` (other keys are ignored); the block labels must match this
        instance's, and a concurrency limit set on this instance is kept."""
        if sorted(state["trees"]) != sorted(self.trees):
            raise ValueError(f"state blocks {sorted(state['trees'])} do not match {sorted(self.trees)}")
        self.trees = {label: Tree.from_dict(state["trees"][label]) for label in self.trees}
        self.blocks = {label: BlockState(**copy.deepcopy(state["blocks"][label])) for label in self.trees}
        self.stats = copy.deepcopy(state["stats"])
        self.rng = random.Random()
        self.rng.setstate(state["rng"])
        self.live = dict(state["live"])
        self.curves = {trial_id: list(c) for trial_id, c in (state.get("curves") or {}).items()}
        self.outcomes = copy.deepcopy(state["outcomes"])
        self.n_suggested = state["n_suggested"]
        saved = state.get("uids") or {}
        self.uids = {label: {int(k): int(v) for k, v in saved.get(label, {}).items()} for label in self.trees}
        self.max_concurrent = self.max_concurrent or state["max_concurrent"]
        self.probes.set_state(state.get("probes"))
