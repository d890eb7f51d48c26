"""The search record a searcher attaches to every suggestion (``config["_search"]``), typed.

Shared by the searcher (which writes it), the journal and export (which read it). Plain data: the
dict form (``to_dict``) is what travels through Ray Tune and lands in ``trials.jsonl``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SEARCH_KEY = "_search"
HELD_OUT = "held-out"  # the strategy of a held-out confirmation run (searchers.search)


@dataclass(frozen=True)
class SearchRecord:
    """Where a trial sits in the search: block, node (block-local and study-wide ids), why, which run."""

    block: str
    block_value: Any
    node: int
    parent: int | None
    strategy: str
    mutation: str
    run: int
    seed: int
    id: int | None = None  # study-wide node id (upstream numbers nodes across the whole study)
    parent_id: int | None = None
    rule: str = ""  # the guided rule behind a mutation, when one applied
    network: int | None = None  # the network instance's simulation seed, when repeats vary the network

    def to_dict(self) -> dict[str, Any]:
        """The plain dict stored in the config (``rule`` and ``network`` only when set)."""
        out = asdict(self)
        if not self.rule:
            del out["rule"]
        if self.network is None:
            del out["network"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRecord:
        """From a stored dict; unknown keys are ignored, missing optional ones take their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
