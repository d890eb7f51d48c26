"""The conformance suite run against both UCB formulas."""

from __future__ import annotations

from typing import Any

from searchers.testing import SearcherConformance, conformance_kwargs
from searchers.ucb import UCBTreeSearcher


class TestUCBFormula(SearcherConformance):
    """Default formula: mean + c sqrt(ln N / n_k)."""


class TestPuctFormula(SearcherConformance):
    """Upstream formula: mean + c sqrt(N) / (1 + n_k)."""

    def make_searcher(self, **overrides: Any) -> UCBTreeSearcher:
        return UCBTreeSearcher(**{**conformance_kwargs(), "formula": "puct", **overrides})
