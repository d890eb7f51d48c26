"""Which config to run next in a block: the strategies as a decision table, first that applies.

Order (``RULES``): root (empty tree), retry, robustness-test, scout, replicate (a second seed of a
lengthening in flight), failure-probe, explore, transfer, exploit. Each rule is a function of the
block's :class:`Context` that returns a :class:`Decision` or None; :func:`decide` asks them in order.
The moves themselves come from :mod:`searchers.mutation` (guided rules as data, free moves), the
direction memory from :mod:`searchers.memory`, the block's start from :mod:`searchers.scouts`.
:func:`record` updates the block's streaks and the per-parameter statistics after each run.
Pure Python, no Ray.

The names of those modules stay importable from here (``from searchers.policy import decide, memory``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchers.decision import STRATEGIES, BlockState, Decision
from searchers.memory import (
    DURATION_LEAVES,
    GAIN_MARGIN,
    MEMORY_DEPTH,
    Memory,
    affordable,
    duration_keys,
    memory,
    move_sign,
    mutated_key,
    node_value,
)
from searchers.mutation import (
    AT_CHANCE_RANGE,
    CHANCE_CLUSTER,
    FOCUS_RANGE,
    GUIDED_RULES,
    LONGER_RANGE,
    NEARLY,
    SHRINK_SLOPE,
    WIDE_RANGE,
    ZERO_BAND,
    GuidedRule,
    choose_key,
    free_mutation,
    guided_mutation,
    resolve,
)
from searchers.objective import FAILED_STATUSES
from searchers.robustness import DATA_LIMITED, counted
from searchers.scouts import replicate, scout
from searchers.space import Domain, Mutation, mutate_one
from searchers.tree import Node, Tree

__all__ = [
    "AT_CHANCE_RANGE",
    "CHANCE_CLUSTER",
    "DURATION_LEAVES",
    "EXPLOIT_CANDIDATES",
    "FOCUS_RANGE",
    "GAIN_MARGIN",
    "GUIDED_RULES",
    "LONGER_RANGE",
    "MEMORY_DEPTH",
    "NEARLY",
    "PROBE_AFTER",
    "RULES",
    "SHRINK_SLOPE",
    "STRATEGIES",
    "WIDE_RANGE",
    "ZERO_BAND",
    "BlockState",
    "Context",
    "Decision",
    "GuidedRule",
    "Memory",
    "affordable",
    "choose_key",
    "decide",
    "duration_keys",
    "free_mutation",
    "guided_mutation",
    "is_success",
    "memory",
    "move_sign",
    "mutated_key",
    "node_value",
    "record",
    "replicate",
    "resolve",
    "scout",
]

PROBE_AFTER = 3  # consecutive converged runs in the block before a failure probe
EXPLOIT_CANDIDATES = 8  # how many top-UCB nodes exploit tries before giving up


def is_success(tree: Tree, node: Node, run_score: float, classification: str) -> bool:
    """A run succeeds when it is not failed and beats its parent's mean (any non-failed run at the root)."""
    if classification == "failed":
        return False
    if node.parent is None or not tree.nodes[node.parent].runs:
        return True
    return run_score > tree.nodes[node.parent].mean_score


def record(
    tree: Tree,
    block: BlockState,
    stats: dict[str, list[int]],
    node: Node,
    run_score: float,
    classification: str,
    space: Mapping[str, Domain] | None = None,
) -> None:
    """Update the block's streaks and the per-parameter statistics after a run of ``node``.

    ``stats[key] = [tries, wins, net]``: moves of the parameter, moves that beat the parent, and the
    net direction vote (+1 when a move up gained or a move down lost by more than ``GAIN_MARGIN``);
    they carry over between blocks.
    """
    space = space or {}
    if classification == DATA_LIMITED:  # the network could not decide W: nothing learned about the config
        return
    block.consec_converged = block.consec_converged + 1 if classification == "converged" else 0
    if is_success(tree, node, run_score, classification):
        block.consec_success += 1
        block.streak.append(node.id)
    else:
        block.consec_success = 0
        block.streak = []
    key = mutated_key(tree, node)
    if key is not None and node.parent is not None and tree.nodes[node.parent].runs:
        parent = tree.nodes[node.parent]
        tries, wins, net = (list(stats.get(key, [])) + [0, 0, 0])[:3]
        parent_value = node_value(parent)
        gain = run_score - parent_value if parent_value is not None else 0.0
        if node.runs[-1].status not in FAILED_STATUSES and abs(gain) > GAIN_MARGIN and key in space:
            net += move_sign(space[key], parent.params[key], node.params[key]) * (1 if gain > 0 else -1)
        stats[key] = [tries + 1, wins + int(run_score > parent.mean_score), net]


@dataclass
class Context:
    """What the strategy rules read of one block when it is asked for a suggestion (see :func:`decide`)."""

    tree: Tree
    block: BlockState
    space: Mapping[str, Domain]
    root_params: Mapping[str, Any]
    stats: Mapping[str, list[int]]
    rng: random.Random
    thresholds: Mapping[str, float]
    n_iter_block: int
    retry_failed: int
    robustness_repeats: int
    neighbours: Sequence[Tree] = ()
    n_scouts: int = 0


def _child(strategy: str, node: Node, mutation: Mutation, rule: str = "") -> Decision:
    return Decision(
        strategy, parent=node.id, params=mutation.params, mutation=mutation.text, key=mutation.key, rule=rule
    )


def _root(c: Context) -> Decision | None:
    """An empty tree starts at the root config."""
    return Decision("root", params=dict(c.root_params)) if not c.tree.nodes else None


def _retry(c: Context) -> Decision | None:
    """A node whose runs (at most ``retry_failed``, none pending) all failed runs again."""
    for node in c.tree.nodes.values():
        if node.runs and not node.pending and len(node.runs) <= c.retry_failed:
            if all(r.classification == "failed" for r in node.runs):
                return Decision("retry", node_id=node.id)
    return None


def _robustness_test(c: Context) -> Decision | None:
    """The best node whose counted runs all converged runs again until it has ``robustness_repeats``
    counted runs (a run on a data-limited network is not counted: :mod:`searchers.robustness`)."""
    testing = [
        n
        for n in c.tree.nodes.values()
        if n.runs
        and all(cls == "converged" for cls in counted([r.classification for r in n.runs]))
        and len(counted([r.classification for r in n.runs])) + len(n.pending) < c.robustness_repeats
    ]
    if testing:
        return Decision("robustness-test", node_id=max(testing, key=lambda n: (n.mean_score, -n.id)).id)
    return None


def _scout(c: Context) -> Decision | None:
    return scout(c.tree, c.block, c.space, c.rng, c.n_scouts)


def _replicate(c: Context) -> Decision | None:
    return replicate(c.tree, c.space, c.robustness_repeats)


def _failure_probe(c: Context) -> Decision | None:
    """After ``PROBE_AFTER`` converged runs in a row: push one numeric parameter of the best converged
    node to an extreme (the streak restarts either way)."""
    if c.block.consec_converged < PROBE_AFTER:
        return None
    c.block.consec_converged = 0
    converged = [n for n in c.tree.nodes.values() if n.converged]
    if converged:
        best = max(converged, key=lambda n: (n.robust, n.mean_score, -n.id))
        numeric = [k for k in affordable(best, c.space) if c.space[k].is_numeric] or list(c.space)
        mutation = mutate_one(
            best.params, c.space, c.rng, extreme=True, candidates=numeric, exclude=c.tree.keys
        )
        if mutation is not None:
            return _child("failure-probe", best, mutation)
    return None


def _explore(c: Context) -> Decision | None:
    """After ``n_iter_block // 4`` successes in a row: a free move from the best node outside the
    streak's chains (the streak restarts either way)."""
    if c.block.consec_success < max(1, c.n_iter_block // 4):
        return None
    chain = {i for n in c.block.streak for i in c.tree.chain(n)}
    c.block.consec_success, c.block.streak = 0, []
    for node in c.tree.ranked():
        if node.id not in chain:
            mutation = free_mutation(c.tree, node, c.space, c.stats, c.rng)
            if mutation is not None:
                return _child("explore", node, mutation)
    return None


def _transfer(c: Context) -> Decision | None:
    """Nothing converged after a third of the budget: adopt the best robust config of the nearest block
    that has one (once per source node)."""
    if any(n.converged for n in c.tree.nodes.values()) or c.tree.n_runs < math.ceil(c.n_iter_block / 3):
        return None
    for other in c.neighbours:
        robust = [n for n in other.nodes.values() if n.robust]
        if not robust:
            continue
        source = max(robust, key=lambda n: (n.mean_score, -n.id))
        if [other.label, source.id] in c.block.transferred or c.tree.find(source.params) is not None:
            return None
        c.block.transferred.append([other.label, source.id])
        return Decision(
            "transfer",
            parent=1,
            params=dict(source.params),
            mutation=f"transfer from {other.label} node {source.id}",
        )
    return None


def _exploit(c: Context) -> Decision | None:
    """From the top-UCB nodes in order: a guided move, else a free move."""
    prior = {k: v[2] for k, v in c.stats.items() if len(v) > 2}
    for node in c.tree.ranked()[:EXPLOIT_CANDIDATES] or [c.tree.nodes[1]]:
        mem = memory(c.tree, node, c.space)
        mem.prior = prior
        guided = guided_mutation(c.tree, node, c.space, c.thresholds, c.rng, mem)
        if guided is not None:
            return _child("exploit", node, guided[0], guided[1])
        mutation = free_mutation(c.tree, node, c.space, c.stats, c.rng, mem)
        if mutation is not None:
            return _child("exploit", node, mutation)
    return None


# The decision table: (strategy, rule), asked in this order; the first decision wins.
RULES: tuple[tuple[str, Callable[[Context], Decision | None]], ...] = (
    ("root", _root),
    ("retry", _retry),
    ("robustness-test", _robustness_test),
    ("scout", _scout),
    ("replicate", _replicate),
    ("failure-probe", _failure_probe),
    ("explore", _explore),
    ("transfer", _transfer),
    ("exploit", _exploit),
)


def decide(
    tree: Tree,
    block: BlockState,
    *,
    space: Mapping[str, Domain],
    root_params: Mapping[str, Any],
    stats: Mapping[str, list[int]],
    rng: random.Random,
    thresholds: Mapping[str, float],
    n_iter_block: int,
    retry_failed: int,
    robustness_repeats: int,
    neighbours: Sequence[Tree] = (),
    n_scouts: int = 0,
) -> Decision | None:
    """The next suggestion for this block, first rule of ``RULES`` that applies; None if nothing new exists.

    ``n_scouts`` children of the root are a space-filling start (:func:`searchers.scouts.scout`): they
    come right after the root, behind only retries and robustness tests, so that with concurrent trials
    they fill the slots that would otherwise hold blind moves of a root that has not reported yet.
    """
    context = Context(
        tree,
        block,
        space,
        root_params,
        stats,
        rng,
        thresholds,
        n_iter_block,
        retry_failed,
        robustness_repeats,
        neighbours,
        n_scouts,
    )
    for _strategy, rule in RULES:
        decision = rule(context)
        if decision is not None:
            return decision
    return None
