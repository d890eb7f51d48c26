"""What the tree says about moves from a node: closed directions, momentum, the cost parameters.

A move is one parameter changed in one direction. ``memory`` reads, from the results around a node,
which directions did not gain (closed), which move made it better than its parent (momentum), and,
for the parameters that set a trial's cost (``DURATION_LEAVES``), whether to lengthen first. Pure
Python, no Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from searchers.objective import FAILED_STATUSES
from searchers.space import Domain
from searchers.tree import Node, Tree

GAIN_MARGIN = 0.03  # a move gains only when it beats the score it started from by this much (noise)
MEMORY_DEPTH = 8  # how far up a chain of moves without gain the closed directions are inherited
# Parameters that set a trial's cost (training iterations grow with them). They are lengthened only
# from a node with no converged run, and a lengthening that did not gain GAIN_MARGIN closes that
# direction (memory), so the search never drifts to ever-longer training for a marginal gain.
DURATION_LEAVES = ("n_epochs", "data_augmentation_loop")


def mutated_key(tree: Tree, node: Node) -> str | None:
    """The single parameter in which ``node`` differs from its parent (None for root/transfer)."""
    if node.parent is None:
        return None
    parent = tree.nodes[node.parent].params
    diff = [k for k, v in node.params.items() if parent.get(k) != v]
    return diff[0] if len(diff) == 1 else None


def node_value(node: Node) -> float | None:
    """Mean score of the runs that did not fail (error/diverged); None when every run failed."""
    ok = [r.score for r in node.runs if r.status not in FAILED_STATUSES]
    return sum(ok) / len(ok) if ok else None


def move_sign(domain: Domain, old: Any, new: Any) -> int:
    """+1 when ``new`` lies above ``old`` (choices: a later value), -1 below, 0 when equal."""
    if domain.type == "choice":
        old, new = domain.values.index(old), domain.values.index(new)
    return (new > old) - (new < old)


def duration_keys(space: Mapping[str, Domain]) -> list[str]:
    """The parameters of ``space`` that set a trial's cost (``DURATION_LEAVES``)."""
    return [k for k, d in space.items() if d.short in DURATION_LEAVES]


def affordable(node: Node, space: Mapping[str, Domain]) -> list[str]:
    """Parameters an undirected move of ``node`` may change: not the cost ones once it has converged."""
    if any(r.classification == "converged" for r in node.runs):
        cheap = [k for k in space if k not in duration_keys(space)]
        return cheap or list(space)
    return list(space)


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
