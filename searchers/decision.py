"""What a strategy decides, and the per-block streak state the strategies read. Pure Python, no Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class BlockState:
    """Streak counters of one block, updated as its runs complete."""

    consec_converged: int = 0
    consec_success: int = 0
    streak: list[int] = field(default_factory=list)  # nodes of the current success streak
    transferred: list[list[Any]] = field(default_factory=list)  # [source label, source node id]
    # scout j takes key k from stratum strata[k][j] of its range (see searchers.scouts.scout)
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
