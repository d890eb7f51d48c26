"""Which config to run next in a block: the strategies, first that applies, and guided mutations.

Order: root (empty tree), retry, robustness-test, scout, replicate (a second seed of a lengthening in
flight), failure-probe, explore, transfer, exploit.
Guided mutations are data (``GUIDED_RULES``): a condition on the parent's best run and the
parameters (by leaf name) to move, with a direction and a factor range; the rules of the weakest
objective fire first. Moves follow a direction memory read from the tree (``memory``) and the
direction votes in the per-parameter statistics. Pure Python, no Ray.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from searchers.objective import FAILED_STATUSES, metric_value
from searchers.space import FACTOR_RANGE, Domain, Mutation, mutate_one
from searchers.tree import Node, Tree

STRATEGIES = (
    "root",
    "scout",
    "retry",
    "robustness-test",
    "replicate",
    "failure-probe",
    "explore",
    "transfer",
    "exploit",
)
PROBE_AFTER = 3  # consecutive converged runs in the block before a failure probe
CHANCE_CLUSTER = 0.5  # cluster accuracy below this counts as "near chance"
SHRINK_SLOPE = 0.5  # |slope| below this counts as "slope << 1"
ZERO_BAND = 0.1  # fraction of true synapses learned as ~0 that triggers the L1 rule
EXPLOIT_CANDIDATES = 8  # how many top-UCB nodes exploit tries before giving up
GAIN_MARGIN = 0.03  # a move gains only when it beats the score it started from by this much (noise)
AT_CHANCE_RANGE = (3.0, 30.0)  # factor for lr_emb when the embedding learned nothing (far off)
WIDE_RANGE = (10.0, 100.0)  # a rule whose moves are all closed at a node jumps this far instead
MEMORY_DEPTH = 8  # how far up a chain of moves without gain the closed directions are inherited
# Parameters that set a trial's cost (training iterations grow with them). They are lengthened only
# from a node with no converged run, and a lengthening that did not gain GAIN_MARGIN closes that
# direction (memory), so the search never drifts to ever-longer training for a marginal gain.
DURATION_LEAVES = ("n_epochs", "data_augmentation_loop")
NEARLY = ("partial-W", "partial-E")  # one objective met: a free move trains such a node longer first
LONGER_RANGE = (2.5, 4.0)  # lengthening by 2.5-4x: a small one gains no more than seed noise
FOCUS_RANGE = (2.0, 5.0)  # lr_emb factor when W is learned but the types are not yet apart


@dataclass(frozen=True)
class GuidedRule:
    """When ``applies(metrics, thresholds)`` holds for the parent, move one of ``targets``."""

    name: str
    applies: Callable[[Mapping[str, Any], Mapping[str, float]], bool]
    targets: tuple[tuple[str, int], ...]  # (parameter leaf name, direction -1/0/+1)
    factor_range: tuple[float, float] = FACTOR_RANGE
    objective: str = "connectivity_R2"  # the metric the rule repairs (weakest objective first)
    after_longer: bool = False  # waits while training longer is still open at the node (cost rule)


def _r2(m: Mapping[str, Any]) -> float:
    return metric_value(m, "connectivity_R2")


def _cluster(m: Mapping[str, Any]) -> float:
    return metric_value(m, "cluster_accuracy")


GUIDED_RULES: tuple[GuidedRule, ...] = (
    GuidedRule(
        "zero-band",
        lambda m, t: metric_value(m, "zero_band") > ZERO_BAND,
        (("coeff_W_L1", -1),),
        (10.0, 100.0),
    ),
    GuidedRule(
        "shrinkage",
        lambda m, t: abs(metric_value(m, "connectivity_slope")) < SHRINK_SLOPE,
        (("coeff_W_L1", -1), ("learning_rate_W_start", +1)),
    ),
    GuidedRule(
        "cluster-at-chance",
        lambda m, t: _r2(m) > t.get("connectivity_R2", 0.9) and _cluster(m) < CHANCE_CLUSTER,
        (("learning_rate_embedding_start", 0),),
        AT_CHANCE_RANGE,
        objective="cluster_accuracy",
    ),
    GuidedRule(
        "focus-embedding",
        lambda m, t: _r2(m) > t.get("connectivity_R2", 0.9) and _cluster(m) <= t.get("cluster_accuracy", 0.9),
        (("learning_rate_embedding_start", 0),),
        FOCUS_RANGE,
        objective="cluster_accuracy",
        after_longer=True,
    ),
    GuidedRule(
        "R2-stuck",
        lambda m, t: _cluster(m) > t.get("cluster_accuracy", 0.9) and _r2(m) <= t.get("connectivity_R2", 0.9),
        (("learning_rate_W_start", 0), ("coeff_W_L1", 0)),
    ),
    GuidedRule(
        "cluster-low",
        lambda m, t: _cluster(m) < CHANCE_CLUSTER,
        (("learning_rate_embedding_start", 0),),
        AT_CHANCE_RANGE,
        objective="cluster_accuracy",
    ),
    GuidedRule(
        "R2-low",
        lambda m, t: _r2(m) <= t.get("connectivity_R2", 0.9),
        (("learning_rate_W_start", 0), ("coeff_W_L1", 0)),
    ),
)


@dataclass
class BlockState:
    """Streak counters of one block, updated as its runs complete."""

    consec_converged: int = 0
    consec_success: int = 0
    streak: list[int] = field(default_factory=list)  # nodes of the current success streak
    transferred: list[list[Any]] = field(default_factory=list)  # [source label, source node id]
    # scout j takes key k from stratum strata[k][j] of its range (see scout)
    strata: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Decision:
    """What to suggest: re-run ``node_id``, or create a node from ``mutation`` (or ``params``)."""

    strategy: str
    node_id: int | None = None
    parent: int | None = None
    params: dict[str, Any] | None = None
    mutation: str = ""
    key: str | None = None  # the mutated parameter, for the statistics
    rule: str = ""  # the guided rule that chose the mutation, if any


def mutated_key(tree: Tree, node: Node) -> str | None:
    """The single parameter in which ``node`` differs from its parent (None for root/transfer)."""
    if node.parent is None:
        return None
    parent = tree.nodes[node.parent].params
    diff = [k for k, v in node.params.items() if parent.get(k) != v]
    return diff[0] if len(diff) == 1 else None


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


def choose_key(space: Mapping[str, Domain], stats: Mapping[str, list[int]], rng: random.Random) -> str:
    """Thompson draw from Beta(wins + 1, losses + 1) per parameter: good parameters more often."""
    draws = {
        k: rng.betavariate(stats.get(k, [0, 0])[1] + 1, stats.get(k, [0, 0])[0] - stats.get(k, [0, 0])[1] + 1)
        for k in space
    }
    return max(draws, key=lambda k: draws[k])


def resolve(space: Mapping[str, Domain], leaf: str) -> str | None:
    """The dotted key of the space whose leaf is ``leaf``."""
    return next((k for k, d in space.items() if d.short == leaf), None)


def node_value(node: Node) -> float | None:
    """Mean score of the runs that did not fail (error/diverged); None when every run failed."""
    ok = [r.score for r in node.runs if r.status not in FAILED_STATUSES]
    return sum(ok) / len(ok) if ok else None


def move_sign(domain: Domain, old: Any, new: Any) -> int:
    """+1 when ``new`` lies above ``old`` (choices: a later value), -1 below, 0 when equal."""
    if domain.type == "choice":
        old, new = domain.values.index(old), domain.values.index(new)
    return (new > old) - (new < old)


@dataclass
class Memory:
    """What the tree says about moves from one node: directions that did not gain, and the momentum."""

    bad: dict[str, set[int]] = field(default_factory=dict)  # parameter -> directions without gain
    momentum: tuple[str, int] | None = None  # the move that made this node better than its parent
    prior: dict[str, int] = field(default_factory=dict)  # parameter -> net direction vote (statistics)
    prefer: dict[str, int] = field(default_factory=dict)  # parameter -> direction tried first (cost rule)

    def open_directions(self, key: str, direction: int) -> list[int]:
        """The directions still worth trying for ``key`` (``direction`` 0: both, the momentum or the
        direction the statistics favour first)."""
        wanted = [direction] if direction else [-1, 1]
        if self.momentum is not None and self.momentum[0] == key and direction == 0:
            first = self.momentum[1]
            wanted.sort(key=lambda d: d != first)
        elif direction == 0 and self.prefer.get(key, 0):
            wanted.sort(key=lambda d: d != self.prefer[key])
        elif direction == 0 and self.prior.get(key, 0):
            wanted.sort(key=lambda d: d * self.prior[key] < 0)
        return [d for d in wanted if d not in self.bad.get(key, set())]


def memory(tree: Tree, node: Node, space: Mapping[str, Domain], depth: int = MEMORY_DEPTH) -> Memory:
    """Sibling statistics at ``node``, as a (1+1)-ES keeps its direction and step.

    A child that moved p one way and did not beat ``node`` by ``GAIN_MARGIN`` (or failed every run,
    i.e. diverged after its retry) closes that direction. A node that did not beat its parent inherits
    the parent's closed directions (it is about the same point) and closes going on the way it came; a
    node that did beat its parent gets that move as momentum (keep going that way).
    """
    out, value = Memory(), node_value(node)
    key = mutated_key(tree, node)
    if key is not None and key in space and node.parent is not None:
        parent = tree.nodes[node.parent]
        sign = move_sign(space[key], parent.params[key], node.params[key])
        parent_value = node_value(parent)
        if value is not None and value > (parent_value or 0.0) + GAIN_MARGIN:
            out.momentum = (key, sign)
        elif depth > 0:
            out.bad = {k: set(d) for k, d in memory(tree, parent, space, depth - 1).bad.items()}
            out.bad.setdefault(key, set()).add(sign)
    for child_id in node.children:
        child = tree.nodes[child_id]
        key = mutated_key(tree, child)
        if key is None or not child.runs or key not in space:
            continue
        child_value = node_value(child)
        if child_value is None or (value is not None and child_value <= value + GAIN_MARGIN):
            sign = move_sign(space[key], node.params[key], child.params[key])
            out.bad.setdefault(key, set()).add(sign)
    for key in duration_keys(space):
        if any(r.classification == "converged" for r in node.runs):
            out.bad.setdefault(key, set()).add(+1)
        else:
            out.prefer[key] = +1  # not converged yet: more training before less
    return out


def duration_keys(space: Mapping[str, Domain]) -> list[str]:
    """The parameters of ``space`` that set a trial's cost (``DURATION_LEAVES``)."""
    return [k for k, d in space.items() if d.short in DURATION_LEAVES]


def affordable(node: Node, space: Mapping[str, Domain]) -> list[str]:
    """Parameters an undirected move of ``node`` may change: not the cost ones once it has converged."""
    if any(r.classification == "converged" for r in node.runs):
        cheap = [k for k in space if k not in duration_keys(space)]
        return cheap or list(space)
    return list(space)


def _longer(mem: Memory, node: Node, space: Mapping[str, Domain]) -> list[tuple[str, int]]:
    """The lengthening moves still open at ``node``: duration parameters it prefers to raise, below
    their upper bound and not closed by a longer child that did not gain."""
    return [
        (k, +1)
        for k, d in mem.prefer.items()
        if d > 0 and +1 not in mem.bad.get(k, set()) and node.params[k] < space[k].high
    ]


def _deficit(metrics: Mapping[str, Any], thresholds: Mapping[str, float], objective: str) -> float:
    value = metric_value(metrics, objective)
    return thresholds.get(objective, 0.9) - (0.0 if math.isnan(value) else value)


def _directed(
    tree: Tree,
    node: Node,
    space: Mapping[str, Domain],
    rng: random.Random,
    moves: list[tuple[str, int]],
    mem: Memory,
    factor_range: tuple[float, float] = FACTOR_RANGE,
    log: bool | None = None,
) -> Mutation | None:
    """The first of ``moves`` (parameter, direction) that memory leaves open and yields a new config."""
    for key, direction in moves:
        for d in mem.open_directions(key, direction):
            mutation = mutate_one(
                node.params,
                space,
                rng,
                key=key,
                direction=d,
                factor_range=factor_range,
                exclude=tree.keys,
                log=log,
            )
            if mutation is not None and move_sign(space[key], mutation.old, mutation.new) == d:
                return mutation
    return None


def guided_mutation(
    tree: Tree,
    node: Node,
    space: Mapping[str, Domain],
    thresholds: Mapping[str, float],
    rng: random.Random,
    mem: Memory | None = None,
) -> tuple[Mutation, str] | None:
    """The first applicable rule of ``GUIDED_RULES`` (the weakest objective's rules first) whose move
    is still open at ``node`` and yields a new config."""
    best = node.best
    if best is None or best.classification == "converged":
        return None
    mem = mem or memory(tree, node, space)
    waiting = best.classification in NEARLY and bool(_longer(mem, node, space))  # a longer run is tried first
    rules = [
        r for r in GUIDED_RULES if r.applies(best.metrics, thresholds) and not (r.after_longer and waiting)
    ]
    rules.sort(key=lambda r: -_deficit(best.metrics, thresholds, r.objective))
    for rule in rules:
        targets = [(resolve(space, leaf), d) for leaf, d in rule.targets]
        moves = [(k, d) for k, d in targets if k is not None]
        rng.shuffle(moves)
        mutation = _directed(tree, node, space, rng, moves, mem, rule.factor_range)
        mutation = mutation or _directed(tree, node, space, rng, moves, Memory(), WIDE_RANGE)
        if mutation is not None:
            return mutation, rule.name
    return None


def free_mutation(
    tree: Tree,
    node: Node,
    space: Mapping[str, Domain],
    stats: Mapping[str, list[int]],
    rng: random.Random,
    mem: Memory | None = None,
) -> Mutation | None:
    """The momentum move if open; else, for a node that met one objective, longer training (if a
    duration parameter is searched and lengthening is still open); else a parameter drawn by the
    statistics among those with an open direction; any parameter if none of these yields a new config."""
    mem = mem or memory(tree, node, space)
    if mem.momentum is not None:
        mutation = _directed(tree, node, space, rng, [mem.momentum], mem)
        if mutation is not None:
            return mutation
    if node.best is not None and node.best.classification in NEARLY:
        mutation = _directed(tree, node, space, rng, _longer(mem, node, space), mem, LONGER_RANGE, log=True)
        if mutation is not None:
            return mutation
    keys = {k: d for k, d in space.items() if mem.open_directions(k, 0)}
    if keys:
        mutation = _directed(tree, node, space, rng, [(choose_key(keys, stats, rng), 0)], mem)
        if mutation is not None:
            return mutation
    return mutate_one(
        node.params, space, rng, exclude=tree.keys, candidates=affordable(node, space), attempts=24
    )


def _child(strategy: str, node: Node, mutation: Mutation, rule: str = "") -> Decision:
    return Decision(
        strategy, parent=node.id, params=mutation.params, mutation=mutation.text, key=mutation.key, rule=rule
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
    """The next suggestion for this block, first strategy that applies; None if nothing new exists.

    ``n_scouts`` children of the root are a space-filling start (:func:`scout`): they come right after
    the root, behind only retries and robustness tests, so that with concurrent trials they fill the
    slots that would otherwise hold blind moves of a root that has not reported yet.
    """
    if not tree.nodes:
        return Decision("root", params=dict(root_params))
    nodes = list(tree.nodes.values())
    for node in nodes:
        if node.runs and not node.pending and len(node.runs) <= retry_failed:
            if all(r.classification == "failed" for r in node.runs):
                return Decision("retry", node_id=node.id)
    testing = [
        n
        for n in nodes
        if n.runs
        and all(r.classification == "converged" for r in n.runs)
        and len(n.runs) + len(n.pending) < robustness_repeats
    ]
    if testing:
        return Decision("robustness-test", node_id=max(testing, key=lambda n: (n.mean_score, -n.id)).id)
    decision = scout(tree, block, space, rng, n_scouts) or replicate(tree, space, robustness_repeats)
    if decision is not None:
        return decision
    if block.consec_converged >= PROBE_AFTER:
        block.consec_converged = 0
        converged = [n for n in nodes if n.converged]
        if converged:
            best = max(converged, key=lambda n: (n.robust, n.mean_score, -n.id))
            numeric = [k for k in affordable(best, space) if space[k].is_numeric] or list(space)
            mutation = mutate_one(
                best.params, space, rng, extreme=True, candidates=numeric, exclude=tree.keys
            )
            if mutation is not None:
                return _child("failure-probe", best, mutation)
    if block.consec_success >= max(1, n_iter_block // 4):
        chain = {i for n in block.streak for i in tree.chain(n)}
        block.consec_success, block.streak = 0, []
        for node in tree.ranked():
            if node.id not in chain:
                mutation = free_mutation(tree, node, space, stats, rng)
                if mutation is not None:
                    return _child("explore", node, mutation)
    if not any(n.converged for n in nodes) and tree.n_runs >= math.ceil(n_iter_block / 3):
        decision = _transfer(tree, block, neighbours)
        if decision is not None:
            return decision
    prior = {k: v[2] for k, v in stats.items() if len(v) > 2}
    for node in tree.ranked()[:EXPLOIT_CANDIDATES] or [tree.nodes[1]]:
        mem = memory(tree, node, space)
        mem.prior = prior
        guided = guided_mutation(tree, node, space, thresholds, rng, mem)
        if guided is not None:
            return _child("exploit", node, guided[0], guided[1])
        mutation = free_mutation(tree, node, space, stats, rng, mem)
        if mutation is not None:
            return _child("exploit", node, mutation)
    return None


def scout(
    tree: Tree, block: BlockState, space: Mapping[str, Domain], rng: random.Random, n_scouts: int
) -> Decision | None:
    """The next of ``n_scouts`` children of the root that fill the slots before it reports; None when all exist.

    Scout 1 is the root trained longer, when the space has a cost parameter (``duration_keys``) below its
    upper bound: the tree's own first move from a root that meets one objective (:func:`free_mutation`,
    by ``LONGER_RANGE``), started before the root reports. Under-training is the commonest way a
    config falls short here (docs/science.md), and with the lengthening in flight the root's result
    says at once whether its config is right but short.

    The other scouts are a Latin hypercube: scout j takes every numeric parameter from stratum
    ``strata[key][j]`` of equal slices of its range (each key's permutation drawn once per block), at
    a uniform point of the slice; choices keep the root's value. The cost parameters are sliced from
    the root's value up to their upper bound, never below: a scout runs only while nothing has met an
    objective, where the tree's rule is more training before less (:func:`memory`), so no scout costs
    less than the root. One-parameter moves from a poor root are slow on an easy landscape; a few
    scattered starts give the tree other branches.

    Scouts are for a poor start: once a reported run of the block has met an objective (converged, or
    ``NEARLY``), the remaining scouts are dropped and the tree's informed moves (lengthening, the guided
    rules) take over from that run.
    """
    root = tree.nodes[min(tree.nodes)]
    done = sum(1 for n in tree.nodes.values() if n.strategy == "scout")
    numeric = [k for k, d in space.items() if d.is_numeric]
    longer = [(k, +1) for k in duration_keys(space) if k in numeric and root.params[k] < space[k].high]
    if done >= n_scouts or not numeric or _met(tree):
        return None
    if longer and done == 0:
        mutation = _directed(tree, root, space, rng, longer, Memory(), LONGER_RANGE, log=True)
        if mutation is not None:
            text = f"scout 1/{n_scouts}: {mutation.text}"
            return Decision("scout", parent=root.id, params=mutation.params, mutation=text, key=mutation.key)
    j, n = (done - 1, n_scouts - 1) if longer else (done, n_scouts)  # the Latin hypercube's scouts
    if n <= 0:
        return None
    floor = {k: space[k].quantile(root.params[k]) for k in duration_keys(space) if k in numeric}
    if {k: len(v) for k, v in block.strata.items()} != dict.fromkeys(numeric, n):
        block.strata = {k: rng.sample(range(n), n) for k in numeric}
    params = dict(root.params)
    for key in numeric:
        stratum = block.strata[key][max(j, 0)]  # j = -1 only if scout 1 found no lengthening
        q = (stratum + rng.random()) / n  # uniform in stratum j of [0, 1]
        low = floor.get(key, 0.0)  # cost keys: the slices divide [root, high]
        params[key] = space[key].at_quantile(low + q * (1.0 - low))
    return Decision("scout", parent=root.id, params=params, mutation=f"scout {done + 1}/{n_scouts}")


def _met(tree: Tree) -> bool:
    """Whether a reported run of the block has met an objective (converged, or ``NEARLY``)."""
    return any(
        r.classification == "converged" or r.classification in NEARLY
        for n in tree.nodes.values()
        for r in n.runs
    )


def replicate(tree: Tree, space: Mapping[str, Domain], robustness_repeats: int) -> Decision | None:
    """A second seed of a lengthening still in flight, while no run of the block has converged.

    A node that met one objective (``NEARLY``) is trained longer first (:func:`free_mutation`). While
    that longer child runs, another lengthening of the node would be a near-duplicate of it (both
    ``LONGER_RANGE`` times the node's length); a second seed of the child costs the same, and it is
    the child's robustness test should the child converge. Once a run has converged
    the robustness tests follow results (``decide``), and this stops.
    """
    keys = duration_keys(space)
    if any(n.converged for n in tree.nodes.values()):
        return None
    for node in tree.nodes.values():
        if node.best is None or node.best.classification not in NEARLY:
            continue
        for child in (tree.nodes[c] for c in node.children):
            key = mutated_key(tree, child)
            in_flight = not child.runs and 0 < len(child.pending) < robustness_repeats
            if in_flight and key in keys and move_sign(space[key], node.params[key], child.params[key]) > 0:
                return Decision("replicate", node_id=child.id)
    return None


def _transfer(tree: Tree, block: BlockState, neighbours: Sequence[Tree]) -> Decision | None:
    """Adopt the best robust config of the nearest block that has one (once per source node)."""
    for other in neighbours:
        robust = [n for n in other.nodes.values() if n.robust]
        if not robust:
            continue
        source = max(robust, key=lambda n: (n.mean_score, -n.id))
        if [other.label, source.id] in block.transferred or tree.find(source.params) is not None:
            return None
        block.transferred.append([other.label, source.id])
        return Decision(
            "transfer",
            parent=1,
            params=dict(source.params),
            mutation=f"transfer from {other.label} node {source.id}",
        )
    return None
