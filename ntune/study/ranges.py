"""A study's ``ranges`` section, and where training works as the study's records show it (no Ray, no files).

``ranges: {trials, bisections, step, linear_step}`` (:class:`Ranges`; ``{}`` for the defaults, absent:
no probes) makes the searcher probe, after each block's search budget and held-out runs, where its robust
config still converges (:mod:`searchers.ranges`, strategy ``boundary-probe``).

The views read a block's records (a :class:`~ntune.study.nodes.BlockStats`, duck-typed here so that this
module stays below the ledger in the import layers): its **centre** (the node its
held-out runs confirm, else its best robust node on which no probe ran: the node the searcher's probes
start from), its intervals replayed by :func:`searchers.ranges.plan` over the recorded runs (so
memory.md, the report and the export show what the searcher decided), the probe runs per parameter,
the slice through the centre per parameter, and its working regions (:func:`searchers.regions.regions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ntune.config import FiniteFloat, Int
from searchers.ranges import (
    OPEN,
    PROBE,
    WAITING,
    Interval,
    RangeSettings,
    plan,
)
from searchers.regions import NodeFacts, Region, regions
from searchers.space import Domain, config_key, parse_space

SEARCHING, NO_ROBUST, WAITING_TO_START, PROBING, DONE = (
    "searching",
    "no robust config",
    "waiting",
    "probing",
    "done",
)


class Ranges(BaseModel):
    """Boundary probes around each block's robust config, after its search and held-out runs."""

    model_config = ConfigDict(extra="forbid")

    trials: Int = Field(
        24, ge=1, description="Probe trials per block with a robust config, besides its search budget (>= 1)."
    )
    bisections: Int = Field(
        2,
        ge=0,
        description="Probes halving each boundary's bracket after its first confirmed failure (>= 0).",
    )
    step: FiniteFloat = Field(
        0.25,
        gt=0,
        le=3,
        description="First step out from the robust value in decades, for log-scale parameters (loguniform, "
        "int with log); each next step is 3x longer ((0, 3]).",
    )
    linear_step: FiniteFloat = Field(
        0.1,
        gt=0,
        le=1,
        description="First step out for linear parameters (uniform, int), as a fraction of the range ((0, 1]).",
    )

    def settings(self) -> RangeSettings:
        """What the searcher takes."""
        return RangeSettings(
            trials=self.trials, bisections=self.bisections, step=self.step, linear_step=self.linear_step
        )


def settings_of(info: Mapping[str, Any]) -> RangeSettings | None:
    """The study's probe settings from its info (study.json); None when it has no ``ranges``."""
    data = info["study"].get("ranges")
    return None if data is None else Ranges.model_validate(data).settings()


def is_probe(rec: Mapping[str, Any]) -> bool:
    """Whether a record is a boundary probe's run."""
    return rec["search"].get("strategy") == PROBE


def centre_of(block: Any) -> Any:
    """The node (a ``NodeStats``) of ``block`` (a ``BlockStats``) its probes start from: the one its held-out runs confirm, else its best robust node
    (highest mean score, then lowest id) on which no probe ran; None without one."""
    if block.held_out and block.held_out_node in block.nodes:
        return block.nodes[block.held_out_node]
    robust = [n for n in block.nodes.values() if n.robust and not any(map(is_probe, n.runs))]
    return max(robust, key=lambda n: (n.mean_score, -n.id)) if robust else None


def _changed(node: Any, centre: Any) -> list[str]:
    return [k for k, v in centre.params.items() if config_key({k: node.params.get(k)}) != config_key({k: v})]


@dataclass(frozen=True)
class BlockRanges:
    """Where training works in one block: its status (searching, no robust config, waiting, probing, done),
    centre, intervals, probe runs per parameter and in all (of ``budget``), working regions, its domains
    and nodes."""

    label: str
    status: str
    centre: Any  # a NodeStats, None before the probes can start
    intervals: list[Interval]
    probes: dict[str, int]
    used: int
    budget: int
    regions: list[Region]
    space: dict[str, Domain] = field(repr=False)
    nodes: tuple[Any, ...] = field(default=(), repr=False)  # the block's NodeStats

    def slice(self, key: str) -> list[tuple[Any, float, str]]:
        """(value, score, classification) of every run on the line through the centre along ``key``: the
        centre's runs and those of each node that differs from it in ``key`` only."""
        out: list[tuple[Any, float, str]] = []
        centre = self.centre
        if centre is None:
            return out
        for node in self.nodes:
            if _changed(node, centre) in ([], [key]):
                out += [(node.params[key], float(r["score"]), str(r["classification"])) for r in node.runs]
        return out


def block_ranges(info: Mapping[str, Any], block: Any, *, search_done: bool) -> BlockRanges | None:
    """Where training works in ``block`` as its records show it; None when the study has no ``ranges``."""
    settings = settings_of(info)
    if settings is None:
        return None
    space = parse_space(info["study"]["space"])
    probe_runs = [r for n in block.nodes.values() for r in n.runs if is_probe(r)]
    found = regions(
        NodeFacts(n.id, n.parent, n.params, n.n_converged > 0, n.mean_score) for n in block.nodes.values()
    )
    centre = centre_of(block) if search_done else None
    if centre is None:
        status = SEARCHING if not search_done else NO_ROBUST
        return BlockRanges(block.label, status, None, [], {}, 0, settings.trials, found, space)
    by_key = {config_key(n.params): n for n in block.nodes.values()}

    def lookup(params: Mapping[str, Any]) -> tuple[list[str], int]:
        node = by_key.get(config_key(params))
        return ([], 0) if node is None else ([r["classification"] for r in node.runs], 0)

    intervals = plan(centre.params, space, settings, lookup)
    probes = {key: 0 for key in space}
    for node in block.nodes.values():
        changed = _changed(node, centre)
        if len(changed) == 1 and changed[0] in probes:
            probes[changed[0]] += sum(map(is_probe, node.runs))
    unfinished = any(line.state in (OPEN, WAITING) for i in intervals for line in i.lines)
    used = len(probe_runs)
    status = DONE if used >= settings.trials or not unfinished else PROBING if used else WAITING_TO_START
    nodes = tuple(block.nodes.values())
    return BlockRanges(
        block.label, status, centre, intervals, probes, used, settings.trials, found, space, nodes
    )


def expected_probes(info: Mapping[str, Any], block: Any, *, search_done: bool) -> int:
    """Probe runs the block runs as it stands: none before its search is done or without a robust config;
    those recorded once its probes are done; else its probe budget."""
    found = block_ranges(info, block, search_done=search_done)
    if found is None or found.status in (SEARCHING, NO_ROBUST):
        return 0
    return found.used if found.status == DONE else max(found.used, found.budget)


RANGE_FIELDS = (
    "block",
    "parameter",
    "robust",
    "low",
    "high",
    "failed_below",
    "failed_above",
    "probes",
    "confirmed",
    "state",
    "working",
    "failing",
)


def range_rows(found: BlockRanges) -> list[dict[str, Any]]:
    """One row per parameter of a block (``RANGE_FIELDS``): the robust value, the interval (a number's low
    and high; a choice's working and failing values), the bracketing failures, probe runs, confirmed?
    and its state (done, open, waiting, undecided)."""
    return [
        {
            "block": found.label,
            "parameter": i.key,
            "robust": i.robust,
            "low": i.low,
            "high": i.high,
            "failed_below": i.failed_below,
            "failed_above": i.failed_above,
            "probes": found.probes.get(i.key, 0),
            "confirmed": i.confirmed,
            "state": i.state,
            "working": list(i.working),
            "failing": list(i.failing),
        }
        for i in found.intervals
    ]


def region_dicts(found: BlockRanges) -> list[dict[str, Any]]:
    """The block's working regions as plain data: nodes (block ids), spans per parameter, best node and score."""
    return [
        {
            "nodes": list(r.nodes),
            "spans": {k: list(v) for k, v in r.spans.items()},
            "best": r.best,
            "best_score": r.best_score,
        }
        for r in found.regions
    ]
