"""What a study's records show per node and per block: the dataclasses the :class:`~ntune.study.ledger.Ledger`
keeps up to date, and a record read as a repeat of its config (no Ray, no files).

A node's mean score and robustness read its counted runs (:mod:`searchers.robustness`: a run on a
data-limited network is kept but counts neither for nor against the config). A block keeps its
held-out runs (strategy ``held-out``) apart from its nodes' runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from searchers.record import HELD_OUT
from searchers.robustness import Repeat, Robustness, robustness

Record = dict[str, Any]


RECENT = 10  # records per block kept for memory.md's "Iterations This Block"


def network_of(rec: Record) -> int | None:
    """The simulation seed of the network a record's run trained on (None when the study did not vary it)."""
    network = rec["search"].get("network")
    return None if network is None else int(network)


def is_held_out(rec: Record) -> bool:
    """Whether a record is a held-out confirmation run (not a search run)."""
    return rec["search"].get("strategy") == HELD_OUT


def repeat_of(rec: Record) -> Repeat:
    """A record as one repeat of its config (:class:`searchers.robustness.Repeat`)."""
    return Repeat(rec["classification"], rec["metrics"], float(rec["score"]), network_of(rec))


@dataclass
class NodeStats:
    """One node of a block as the records show it: its runs and what they add up to."""

    id: int
    parent: int | None
    mutation: str
    params: dict[str, Any]
    index: int  # order of first appearance in its block (ties of the best node go to the earlier)
    runs: list[Record] = field(default_factory=list)
    total: float = 0.0  # score sum of the counted runs (not on a data-limited network)
    n_counted: int = 0
    total_limited: float = 0.0  # score sum of the runs on a data-limited network
    n_converged: int = 0
    best: Record | None = None
    robust: bool = False
    children: list[int] = field(default_factory=list)
    uid: Any = None  # the study-wide node id, when the searcher gave one

    @property
    def mean_score(self) -> float:
        """Mean score of the node's counted runs (0 before the first)."""
        if self.n_counted:
            return self.total / self.n_counted
        return self.total_limited / len(self.runs) if self.runs else 0.0

    def robustness(self, needed: int) -> Robustness:
        """What the node's runs add up to over their networks; ``needed``: repeats a robust config must have."""
        return robustness([repeat_of(r) for r in self.runs], needed)

    def as_dict(self) -> dict[str, Any]:
        """The plain form of ``group_nodes``."""
        return {
            "id": self.id,
            "parent": self.parent,
            "mutation": self.mutation,
            "params": self.params,
            "runs": self.runs,
            "mean_score": self.mean_score,
            "n_converged": self.n_converged,
            "best": self.best,
            "robust": self.robust,
        }


@dataclass
class BlockStats:
    """One block's counters, nodes and best node."""

    label: str
    value: Any
    nodes: dict[int, NodeStats] = field(default_factory=dict)
    trials: int = 0
    converged: int = 0
    failed: int = 0
    best_R2: float = math.nan
    best_cluster: float = math.nan
    strategies: dict[str, int] = field(default_factory=dict)
    last_strategy: str = "none"
    robust_ids: set[int] = field(default_factory=set)
    pick: int | None = None
    orphans: dict[int, list[int]] = field(default_factory=dict)  # parent without a run yet -> children
    recent: deque[Record] = field(default_factory=lambda: deque(maxlen=RECENT))  # last records
    first_iter: int = 0
    held_out_node: int | None = None  # the node the held-out runs confirm
    held_out: list[Record] = field(default_factory=list)  # held-out runs, in order


@dataclass
class BlockRow:
    """One row of the sparsity comparison table (memory.md, ``ntune status``, summary.csv)."""

    block: str
    value: Any
    trials: int
    budget: int
    running: int
    converged: int
    failed: int
    best_R2: float
    best_cluster: float
    best_score: float
    robust: bool
    best_node: int | None
    best_trial: str | None
    L1: Any
    lr_W: Any
    state: str  # done / running / open (the search; the held-out runs follow a done search)
    ceiling: float = math.nan  # the identifiability ceiling of the block's data (NaN: not computed)
    networks: int = 0  # counted repeats of the best node (its runs not on a data-limited network)
    R2_mean: float = math.nan  # over those repeats (see searchers.robustness)
    R2_cv: float = math.nan
    worst_R2: float = math.nan  # of the lowest-scoring counted repeat
    worst_cluster: float = math.nan
    spread: str = ""  # stable-robust / stable / unstable / catastrophic ("" without a repeat)
    held_out: int = 0  # held-out runs of the best node that converged
    held_out_done: int = 0  # held-out runs of the best node recorded
    held_out_total: int = 0  # K: held-out networks per block (0: the study has none)
