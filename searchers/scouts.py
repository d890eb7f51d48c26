"""A block's start, before anything has converged: the scouts (a space-filling start) and replicate.

Both run only while the block's own results say little: the scouts until a reported run met an
objective, replicate until a run converged. Pure Python, no Ray.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from searchers.decision import BlockState, Decision
from searchers.memory import Memory, duration_keys, move_sign, mutated_key
from searchers.mutation import LONGER_RANGE, NEARLY, directed
from searchers.space import Domain
from searchers.tree import Tree


def scout(
    tree: Tree, block: BlockState, space: Mapping[str, Domain], rng: random.Random, n_scouts: int
) -> Decision | None:
    """The next of ``n_scouts`` children of the root that fill the slots before it reports; None when all exist.

    Scout 1 is the root trained longer, when the space has a cost parameter (``duration_keys``) below its
    upper bound: the tree's own first move from a root that meets one objective
    (:func:`searchers.mutation.free_mutation`, by ``LONGER_RANGE``), started before the root reports.
    Under-training is the commonest way a config falls short here (docs/science.md), and with the
    lengthening in flight the root's result says at once whether its config is right but short.

    The other scouts are a Latin hypercube: scout j takes every numeric parameter from stratum
    ``strata[key][j]`` of equal slices of its range (each key's permutation drawn once per block), at
    a uniform point of the slice; choices keep the root's value. The cost parameters are sliced from
    the root's value up to their upper bound, never below: a scout runs only while nothing has met an
    objective, where the tree's rule is more training before less (:func:`searchers.memory.memory`), so
    no scout costs less than the root. One-parameter moves from a poor root are slow on an easy
    landscape; a few scattered starts give the tree other branches.

    Scouts are for a poor start: once a reported run of the block has met an objective (converged, or
    ``NEARLY``), the remaining scouts are dropped and the tree's informed moves (lengthening, the guided
    rules) take over from that run.
    """
    root = tree.nodes[min(tree.nodes)]
    done = sum(1 for n in tree.nodes.values() if n.strategy == "scout")
    numeric = [k for k, d in space.items() if d.is_numeric]
    longer = [(k, +1) for k in duration_keys(space) if k in numeric and root.params[k] < space[k].high]
    if done >= n_scouts or not numeric or met_objective(tree):
        return None
    if longer and done == 0:
        mutation = directed(tree, root, space, rng, longer, Memory(), LONGER_RANGE, log=True)
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


def met_objective(tree: Tree) -> bool:
    """Whether a reported run of the block has met an objective (converged, or ``NEARLY``)."""
    return any(
        r.classification == "converged" or r.classification in NEARLY
        for n in tree.nodes.values()
        for r in n.runs
    )


def replicate(tree: Tree, space: Mapping[str, Domain], robustness_repeats: int) -> Decision | None:
    """A second seed of a lengthening still in flight, while no run of the block has converged.

    A node that met one objective (``NEARLY``) is trained longer first
    (:func:`searchers.mutation.free_mutation`). While that longer child runs, another lengthening of the
    node would be a near-duplicate of it (both ``LONGER_RANGE`` times the node's length); a second seed
    of the child costs the same, and it is the child's robustness test should the child converge. Once
    a run has converged the robustness tests follow results (:func:`searchers.policy.decide`), and this
    stops.
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
