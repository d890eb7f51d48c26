"""Ray Tune searchers: a dual-objective UCB tree that mutates one parameter per trial.

``from searchers import UCBTreeSearcher`` works; Ray is imported only when the searcher class is
first used, so the pure modules (objective, space, tree, the policy and its parts, settings, search,
checkpoint) stay importable without it. ``searchers.search.TreeSearch`` is the search itself;
``searchers.ucb`` and ``searchers.packing`` are the thin Ray Tune adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from searchers.objective import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, classify, score
from searchers.space import Domain, parse_space
from searchers.tree import Node, Tree

if TYPE_CHECKING:
    from searchers.ucb import SEARCH_KEY, UCBTreeSearcher

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WEIGHTS",
    "SEARCH_KEY",
    "Domain",
    "Node",
    "Tree",
    "UCBTreeSearcher",
    "classify",
    "parse_space",
    "score",
]


def __getattr__(name: str) -> Any:
    """Load the Ray adapter on first use of ``UCBTreeSearcher`` / ``SEARCH_KEY``."""
    if name in ("UCBTreeSearcher", "SEARCH_KEY"):
        from searchers import ucb

        return getattr(ucb, name)
    raise AttributeError(f"module 'searchers' has no attribute {name!r}")
