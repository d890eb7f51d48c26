"""Working regions: a block's converged nodes grouped by tree edges (seed 003's "multiple distinct working
regions"). Two converged nodes share a region when one-parameter moves through converged nodes join them;
a node that did not converge between them separates them. Pure Python, no Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Tree(Protocol):
    """What :func:`tree_facts` reads of a block's tree (a :class:`searchers.tree.Tree`): its nodes by id."""

    @property
    def nodes(self) -> Mapping[int, Any]: ...


@dataclass(frozen=True)
class NodeFacts:
    """What :func:`regions` reads of a node: its place in the tree, its config, converged?, mean score."""

    id: int
    parent: int | None
    params: Mapping[str, Any]
    converged: bool
    score: float


@dataclass(frozen=True)
class Region:
    """A working region: converged nodes joined by tree edges, what each parameter spans over them
    ((low, high) for numbers, the values in order of node id for anything else), its best node."""

    nodes: tuple[int, ...]
    spans: dict[str, tuple[Any, ...]]
    best: int
    best_score: float


def regions(nodes: Iterable[NodeFacts]) -> list[Region]:
    """A block's working regions: two converged nodes share a region when tree edges (parent and child:
    one-parameter moves) join them through converged nodes only, so a node that did not converge between
    them separates them. A node is converged when one of its runs converged. Ordered by lowest node id."""
    converged = {n.id: n for n in nodes if n.converged}

    def top(node: NodeFacts) -> int:  # in a tree, two nodes are joined iff they share this ancestor
        while node.parent in converged:
            node = converged[node.parent]
        return node.id

    groups: dict[int, list[int]] = {}
    for i in sorted(converged):
        groups.setdefault(top(converged[i]), []).append(i)
    out = []
    for ids in sorted(groups.values()):
        members = [converged[i] for i in ids]
        spans: dict[str, tuple[Any, ...]] = {}
        for key in members[0].params:
            values: list[Any] = [m.params.get(key) for m in members]
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            spans[key] = (min(values), max(values)) if numeric else tuple(dict.fromkeys(values))
        best = max(members, key=lambda m: (m.score, -m.id))
        out.append(Region(tuple(ids), spans, best.id, best.score))
    return out


def tree_facts(tree: Tree) -> list[NodeFacts]:
    """The nodes of a tree that have runs, as :func:`regions` reads them."""
    return [
        NodeFacts(n.id, n.parent, n.params, n.converged, n.mean_score) for n in tree.nodes.values() if n.runs
    ]
