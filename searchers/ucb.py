"""UCBTreeSearcher: a Ray Tune Searcher holding one UCB tree per block, with exact save/restore.

Each suggestion is a full nested config (a deep copy of ``base_config`` with the block value, the
node's parameters and the run seed set at their dotted keys) plus the search record under
``config[SEARCH_KEY]``. Blocks proceed in parallel: a suggestion goes to the block with the fewest
runs plus pending trials that still has budget.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import random
from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from searchers.dotted import get_dotted, set_dotted
from searchers.objective import classify, default_weights, metric_value, score
from searchers.policy import BlockState, Decision, decide, record
from searchers.record import SEARCH_KEY, SearchRecord
from searchers.space import Domain, parse_space
from searchers.tree import DEFAULT_UCB_C, FORMULAS, Tree

logger = logging.getLogger(__name__)

DIAGNOSIS_KEYS = ("status", "zero_band", "connectivity_slope", "cross", "test_R2", "test_pearson")


def _check(condition: bool, name: str, allowed: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


class UCBTreeSearcher(Searcher):
    """Dual-objective UCB tree search, one tree per block value, one parameter changed per child."""

    def __init__(
        self,
        *,
        space: Mapping[str, Any],
        base_config: Mapping[str, Any] | None = None,
        blocks: Mapping[str, list[Any]] | None = None,
        weights: Mapping[str, float] | None = None,
        thresholds: Mapping[str, float] | None = None,
        ucb_c: float = DEFAULT_UCB_C,
        n_iter_block: int = 12,
        robustness_repeats: int = 3,
        retry_failed: int = 1,
        formula: str = "ucb",
        seed: int = 0,
        seed_key: str | None = "training.seed",
        metric: str = "score",
        mode: str = "max",
        block_budgets: Mapping[Any, int] | None = None,
        block_overrides: Mapping[Any, Mapping[str, Any]] | None = None,
        n_scouts: int = 0,
    ) -> None:
        """``block_budgets`` (block value -> trials) overrides ``n_iter_block`` for the blocks it names;
        ``block_overrides`` (block value -> {dotted key: value}) changes the base config of the blocks it
        names, their root included (e.g. a longer training at the dense level); ``n_scouts`` children
        of each root fill the slots before it reports (the root trained longer, then a Latin hypercube
        over the numeric parameters, ``searchers.policy.scout``), before the one-parameter moves."""
        self.space: dict[str, Domain] = parse_space(space)
        _check(
            base_config is None or isinstance(base_config, Mapping),
            "base_config",
            "a nested dict",
            base_config,
        )
        self.base_config = copy.deepcopy(dict(base_config or {}))
        blocks = dict(blocks) if blocks else {"block": [0]}
        _check(len(blocks) == 1, "blocks", "a dict with exactly one dotted key -> list of values", blocks)
        self.block_key, values = next(iter(blocks.items()))
        _check(
            isinstance(values, (list, tuple)) and len(values) > 0, "blocks values", "a non-empty list", values
        )
        _check(len(set(map(repr, values))) == len(values), "blocks values", "distinct", values)
        _check(self.block_key not in self.space, "blocks key", "a key outside the space", self.block_key)
        self.weights = dict(weights if weights is not None else default_weights())
        _check(
            bool(self.weights) and all(isinstance(w, (int, float)) and w >= 0 for w in self.weights.values()),
            "weights",
            "a non-empty dict metric -> weight >= 0",
            weights,
        )
        self.thresholds = dict(thresholds if thresholds is not None else {k: 0.9 for k in self.weights})
        _check(
            bool(self.thresholds)
            and all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in self.thresholds.values()),
            "thresholds",
            "a non-empty dict metric -> value in [0, 1]",
            thresholds,
        )
        _check(
            isinstance(ucb_c, (int, float)) and math.isfinite(ucb_c) and ucb_c >= 0,
            "ucb_c",
            "a number >= 0",
            ucb_c,
        )
        _check(
            isinstance(n_iter_block, int) and n_iter_block >= 1, "n_iter_block", "an int >= 1", n_iter_block
        )
        _check(
            isinstance(robustness_repeats, int) and robustness_repeats >= 1,
            "robustness_repeats",
            "an int >= 1",
            robustness_repeats,
        )
        _check(
            isinstance(retry_failed, int) and retry_failed >= 0, "retry_failed", "an int >= 0", retry_failed
        )
        _check(formula in FORMULAS, "formula", f"one of {FORMULAS}", formula)
        _check(isinstance(seed, int) and not isinstance(seed, bool), "seed", "an int", seed)
        _check(
            seed_key is None or (isinstance(seed_key, str) and bool(seed_key)),
            "seed_key",
            "a dotted key or None",
            seed_key,
        )
        _check(
            isinstance(n_scouts, int) and not isinstance(n_scouts, bool) and n_scouts >= 0,
            "n_scouts",
            "an int >= 0",
            n_scouts,
        )
        _check(mode in ("max", "min"), "mode", "one of ('max', 'min')", mode)
        _check(isinstance(metric, str) and bool(metric), "metric", "a non-empty str", metric)
        super().__init__(metric=metric, mode=mode)
        self.ucb_c, self.n_iter_block, self.formula = float(ucb_c), n_iter_block, formula
        self.robustness_repeats, self.retry_failed, self.seed, self.seed_key = (
            robustness_repeats,
            retry_failed,
            seed,
            seed_key,
        )
        self.n_scouts = n_scouts
        self.block_values = list(values)
        self.block_budgets = self._check_budgets(block_budgets or {})
        self.block_changes = self._check_overrides(block_overrides or {})
        self.root_params = {k: self._root_value(k, d) for k, d in self.space.items()}
        self.trees: dict[str, Tree] = {}
        self.blocks: dict[str, BlockState] = {}
        for value in self.block_values:
            label = self.block_label(value)
            self.trees[label] = Tree(
                label,
                value,
                ucb_c=self.ucb_c,
                formula=formula,
                robustness_repeats=robustness_repeats,
                weights=self.weights,
            )
            self.blocks[label] = BlockState()
        self.stats: dict[str, list[int]] = {}
        self.rng = random.Random(seed)
        self.max_concurrent: int = 0
        self.live: dict[str, str] = {}  # trial_id -> block label
        self.outcomes: list[dict[str, Any]] = []  # unknown / duplicate trial ids, logged and kept
        self.n_suggested = 0
        self.uids: dict[str, dict[int, int]] = {label: {} for label in self.trees}  # study-wide node ids

    def _check_budgets(self, budgets: Mapping[Any, int]) -> dict[str, int]:
        """block label -> trials, for the blocks whose budget is not ``n_iter_block``."""
        by_repr = {repr(v): v for v in self.block_values}
        out = {}
        for value, n in budgets.items():
            _check(repr(value) in by_repr, "block_budgets keys", f"block values {self.block_values}", value)
            _check(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0,
                "block_budgets values",
                "ints >= 0",
                n,
            )
            out[self.block_label(by_repr[repr(value)])] = n
        return out

    def _check_overrides(self, overrides: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """block label -> {dotted key: value}, for the blocks whose base differs from ``base_config``."""
        by_repr = {repr(v): v for v in self.block_values}
        out = {}
        for value, changes in overrides.items():
            where = f"block_overrides[{value!r}]"
            _check(repr(value) in by_repr, "block_overrides keys", f"block values {self.block_values}", value)
            _check(isinstance(changes, Mapping), where, "a dict dotted key -> value", changes)
            for key, new in changes.items():
                _check(key != self.block_key, f"{where} keys", "keys other than the block key", key)
                domain = self.space.get(key)
                _check(domain is None or domain.contains(new), f"{where}.{key}", "a value in its domain", new)
            out[self.block_label(by_repr[repr(value)])] = dict(changes)
        return out

    def base_of(self, label: str) -> dict[str, Any]:
        """The base config of block ``label``: ``base_config`` with the block's ``block_overrides``."""
        base = copy.deepcopy(self.base_config)
        for key, value in self.block_changes.get(label, {}).items():
            set_dotted(base, key, value)
        return base

    def roots(self, label: str) -> dict[str, Any]:
        """The root params of block ``label``: ``root_params`` with the block's overrides of searched keys."""
        changes = self.block_changes.get(label, {})
        return {k: changes.get(k, v) for k, v in self.root_params.items()}

    def budget(self, label: str) -> int:
        """Trials the block ``label`` gets: its ``block_budgets`` entry, else ``n_iter_block``."""
        return self.block_budgets.get(label, self.n_iter_block)

    def _root_value(self, key: str, domain: Domain) -> Any:
        value = get_dotted(self.base_config, key)
        if domain.default is not None:
            return domain.default
        return value if value is not None and domain.contains(value) else domain.center()

    def block_label(self, value: Any) -> str:
        """``"<leaf of the block key>=<value>"``, e.g. ``"connectivity_filling_factor=0.25"``."""
        return f"{self.block_key.rsplit('.', 1)[-1]}={value}"

    def tree_text(self, label: str) -> str:
        """The block's tree, one ``Node k: UCB=...`` line per node."""
        return self.trees[label].text()

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

    # ---- Ray Tune Searcher API
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Accept Tune's metric/mode; the space comes from the constructor, so ``config`` must not add one."""
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Handle concurrency here (so the limit survives restore with unfinished trials)."""
        self.max_concurrent = int(max_concurrent)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        """A full config with ``config[SEARCH_KEY]``; FINISHED when all budgets are allocated; None at the limit."""
        open_blocks = [
            label for label, t in self.trees.items() if t.n_runs + t.n_pending < self.budget(label)
        ]
        if not open_blocks:
            return Searcher.FINISHED
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        if trial_id in self.live or any(trial_id in t.trials for t in self.trees.values()):
            self._outcome(trial_id, "duplicate-suggest", None)
            return None
        for label in sorted(
            open_blocks,
            key=lambda b: (
                self.trees[b].n_runs + self.trees[b].n_pending,
                self.block_values.index(self.trees[b].block_value),
            ),
        ):
            decision = self._decide(label)
            if decision is not None:
                return self._apply(label, decision, trial_id)
        if self.live:
            return None
        logger.warning("UCBTreeSearcher: every block's space is exhausted; finishing early")
        return Searcher.FINISHED

    def _decide(self, label: str) -> Decision | None:
        tree = self.trees[label]
        index = self.block_values.index(tree.block_value)
        others = [self.trees[self.block_label(v)] for i, v in enumerate(self.block_values) if i != index]
        others.sort(
            key=lambda t: (
                abs(self.block_values.index(t.block_value) - index),
                self.block_values.index(t.block_value),
            )
        )
        return decide(
            tree,
            self.blocks[label],
            space=self.space,
            root_params=self.roots(label),
            stats=self.stats,
            rng=self.rng,
            thresholds=self.thresholds,
            n_iter_block=self.n_iter_block,
            retry_failed=self.retry_failed,
            robustness_repeats=self.robustness_repeats,
            neighbours=others,
            n_scouts=self.n_scouts,
        )

    def _apply(self, label: str, decision: Decision, trial_id: str) -> dict[str, Any]:
        tree = self.trees[label]
        if decision.node_id is None:
            node = tree.add_node(decision.params or {}, decision.parent, decision.mutation, decision.strategy)
            self.uids[label][node.id] = max(self._taken_uids(), default=0) + 1
        else:
            node = tree.nodes[decision.node_id]
        run_seed = self.rng.randrange(2**31)
        tree.add_pending(node.id, trial_id, run_seed)
        self.live[trial_id] = label
        self.n_suggested += 1
        config = self.base_of(label)
        set_dotted(config, self.block_key, tree.block_value)
        for key, value in node.params.items():
            set_dotted(config, key, value)
        if self.seed_key:
            set_dotted(config, self.seed_key, run_seed)
        config[SEARCH_KEY] = SearchRecord(
            block=label,
            block_value=tree.block_value,
            node=node.id,
            parent=node.parent,
            strategy=decision.strategy,
            mutation=node.mutation if decision.node_id is None else "",
            run=tree.n_runs + tree.n_pending,
            seed=run_seed,
            id=self.uid(label, node.id),
            parent_id=self.uid(label, node.parent),
            rule=decision.rule or "",
        ).to_dict()
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record the run; never raises (errors, NaN, unknown or duplicate ids become logged outcomes)."""
        try:
            self._complete(trial_id, result, error)
        except Exception as exc:  # the searcher must never take the experiment down
            logger.exception("UCBTreeSearcher: could not record trial %s", trial_id)
            self._outcome(trial_id, f"internal-error: {exc!r}", result)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        label = self.live.pop(trial_id, None)
        if label is None:
            known = any(trial_id in t.trials for t in self.trees.values())
            self._outcome(trial_id, "duplicate" if known else "unknown", result)
            return
        metrics: dict[str, Any] = {}
        for name in (*self.weights, *self.thresholds, *DIAGNOSIS_KEYS):
            value = (result or {}).get(name)
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                metrics[name] = float(value) if isinstance(value, int) else value
        if error:
            metrics["status"] = "error"
        elif result is None:
            metrics["status"] = "missing"
        elif any(math.isnan(metric_value(metrics, name)) for name in self.weights):
            logger.warning("UCBTreeSearcher: trial %s reported no valid %s", trial_id, list(self.weights))
        metrics.setdefault("status", "ok")
        run_score = score(metrics, self.weights)
        classification = classify(metrics, self.thresholds)
        tree = self.trees[label]
        node = tree.complete(trial_id, run_score, metrics, classification)
        record(tree, self.blocks[label], self.stats, node, run_score, classification, self.space)

    def adopt(
        self, trial_id: str, config: Mapping[str, Any], result: dict | None, error: bool = False
    ) -> bool:
        """Record a finished trial this searcher does not know: its restored state predates the suggestion
        (a driver killed between Tune's two snapshot writes), while the trial ran and its result is known.

        The trial's node is found by its config in the block of its search record, or created under the
        recorded parent; then the run is recorded as ``on_trial_complete`` would. Returns False (and
        changes nothing) when the trial is already known or its config has no usable search record.
        """
        search = config.get(SEARCH_KEY) or {}
        label = search.get("block")
        known = trial_id in self.live or any(trial_id in t.trials for t in self.trees.values())
        if known or label not in self.trees:
            return False
        tree = self.trees[label]
        params = {key: get_dotted(config, key) for key in self.space}
        node = tree.find(params)
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
        self._complete(trial_id, result, error)
        return True

    def _outcome(self, trial_id: str, kind: str, result: dict | None) -> None:
        logger.warning("UCBTreeSearcher: %s trial id %s", kind, trial_id)
        self.outcomes.append({"trial_id": trial_id, "kind": kind, "result_keys": sorted(result or {})})

    # ---- state
    def get_state(self) -> dict[str, Any]:
        """Everything a fresh instance needs to continue exactly: trees, pending runs, stats, RNG."""
        return {
            "trees": {label: t.to_dict() for label, t in self.trees.items()},
            "blocks": {label: vars(b).copy() for label, b in self.blocks.items()},
            "stats": copy.deepcopy(self.stats),
            "rng": self.rng.getstate(),
            "live": dict(self.live),
            "outcomes": copy.deepcopy(self.outcomes),
            "n_suggested": self.n_suggested,
            "uids": {label: dict(u) for label, u in self.uids.items()},
            "max_concurrent": self.max_concurrent,
            "metric": self._metric,
            "mode": self._mode,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``get_state``; the block values must match this instance's."""
        if sorted(state["trees"]) != sorted(self.trees):
            raise ValueError(f"state blocks {sorted(state['trees'])} do not match {sorted(self.trees)}")
        self.trees = {label: Tree.from_dict(state["trees"][label]) for label in self.trees}
        self.blocks = {label: BlockState(**copy.deepcopy(state["blocks"][label])) for label in self.trees}
        self.stats = copy.deepcopy(state["stats"])
        self.rng = random.Random()
        self.rng.setstate(state["rng"])
        self.live = dict(state["live"])
        self.outcomes = copy.deepcopy(state["outcomes"])
        self.n_suggested = state["n_suggested"]
        saved = state.get("uids") or {}
        self.uids = {label: {int(k): int(v) for k, v in saved.get(label, {}).items()} for label in self.trees}
        self.max_concurrent = self.max_concurrent or state["max_concurrent"]
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        """Pickle ``get_state()`` to ``checkpoint_path`` (Tune calls this on every experiment checkpoint)."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by ``save``."""
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))
