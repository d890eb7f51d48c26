"""Pure renderers of the journal files (no Ray, no I/O): memory.md and the sparsity comparison table;
the analysis.md entries live in :mod:`ntune.study.entries` and are re-exported here.

They read records (see :mod:`ntune.study.records`) and a :class:`~ntune.study.ledger.Ledger`; the
:class:`~ntune.study.journal.Journal` decides when to write what.
"""

from __future__ import annotations

import math
from typing import Any

from ntune.study.confirm import held_out_cell, held_out_label, held_out_words, robustness_words, worst_cell
from ntune.study.entries import (
    SEED_STRATEGY,
    SHORT_NAMES,
    diagnosis_words,
    entry_of,
    format_entry,
    node_ids,
    observation,
    parent_rule,
)
from ntune.study.info import held_out_of, memory_section
from ntune.study.ledger import Ledger
from ntune.study.nodes import is_held_out, network_of
from ntune.study.ranges import DONE, BlockRanges
from ntune.study.records import fmt
from searchers.space import format_value

__all__ = [
    "FILLING_FACTOR",
    "MEMORY_SECTIONS",
    "SEED_STRATEGY",
    "SHORT_NAMES",
    "diagnosis_words",
    "entry_of",
    "format_entry",
    "node_ids",
    "observation",
    "parent_rule",
    "render_memory",
    "render_memory_of",
    "render_ranges",
    "render_table",
    "table_title",
]


def _sparsity(value: Any) -> str:
    return f"{float(value) * 100:g}%" if isinstance(value, int | float) else str(value)


def _ceiling_note(row: dict[str, Any]) -> str:
    """ ", ceiling 0.998" when the block's identifiability ceiling is known (ntune.data.identifiability)."""
    ceiling = row.get("ceiling", math.nan)
    return "" if ceiling is None or math.isnan(ceiling) else f", ceiling {fmt(ceiling, 3)}"


FILLING_FACTOR = "simulation.connectivity_filling_factor"  # the seeds' block key: their table's own columns
TABLE_COLUMNS = (
    "Block",
    "Sparsity",
    "filling_factor",
    "held-out",
    "Best R²",
    "Best Cluster",
    "networks",
    "worst R² / cluster",
    "spread",
    "Optimal L1",
    "Optimal lr_W",
    "finding",
)


def table_title(block_key: str) -> str:
    """The memory's comparison table heading: the seeds' name when the blocks are sparsity levels."""
    return "Sparsity Comparison Table" if block_key == FILLING_FACTOR else "Block Comparison Table"


def render_table(rows: list[dict[str, Any]], block_key: str = FILLING_FACTOR) -> str:
    """The seeds' Sparsity Comparison Table in Markdown, with ntune's columns: held-out k/K first among the
    results; the best node's counted repeats (networks), its worst repeat and spread class; and robust,
    trials, state in finding. Blocks over another key get one column for it (its last name part) in place
    of Sparsity and filling_factor."""
    sparse = block_key == FILLING_FACTOR
    columns = TABLE_COLUMNS if sparse else ("Block", block_key.rpartition(".")[2], *TABLE_COLUMNS[3:])
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("-" * len(c) for c in columns) + " |",
    ]
    for k, r in enumerate(rows, 1):
        cells = (
            str(k),
            *((_sparsity(r["value"]), str(r["value"])) if sparse else (str(r["value"]),)),
            held_out_cell(r),
            fmt(r["best_R2"]),
            fmt(r["best_cluster"]),
            str(r["networks"] or "-"),
            worst_cell(r),
            r["spread"] or "-",
            fmt(r["L1"]),
            fmt(r["lr_W"]),
            f"{'robust' if r['robust'] else 'not robust'}, {r['trials']}/{r['budget']} trials, "
            f"{r['state']}{_ceiling_note(r)}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_memory(
    info: dict[str, Any], records: list[dict[str, Any]], running: dict[str, str] | None = None
) -> str:
    """The whole ``memory.md`` of a list of records (batch form of ``render_memory_of``)."""
    ledger = Ledger(info).extend(records)
    ledger.running = dict(running or {})
    return render_memory_of(ledger)


MEMORY_SECTIONS = (
    "# Working Memory",
    "## Knowledge Base (accumulated across all blocks)",
    "### Sparsity Comparison Table",
    "### Established Principles",
    "### Open Questions",
    "## Previous Block Summary",
    "## Current Block",
    "### Block Info",
    "### Hypothesis",
    "### Iterations This Block",
    "### Emerging Observations",
)


def _block_line(k: int, r: dict[str, Any]) -> str:
    repeats = f"; {r['networks']} repeats, worst {worst_cell(r)}, {r['spread']}" if r["networks"] else ""
    held = f"; held-out {held_out_cell(r)}" if r["held_out_total"] or r["held_out_done"] else ""
    return (
        f"- Block {k} ({_sparsity(r['value'])}, {r['block']}): best R2={fmt(r['best_R2'], 3)}, "
        f"cluster={fmt(r['best_cluster'], 3)} at L1={fmt(r['L1'])}, lr_W={fmt(r['lr_W'])}; "
        f"{'robust' if r['robust'] else 'not robust'}, {r['trials']}/{r['budget']} trials, {r['state']}"
        f"{repeats}{held}\n"
    )


def _iteration_line(rec: dict[str, Any], held_out: int) -> str:
    """One line of memory.md's "Iterations This Block" (a held-out run read as such)."""
    node, parent = node_ids(rec)
    m = rec["metrics"]
    network = network_of(rec)
    results = (
        f"{rec['classification']}, R2={fmt(m['connectivity_R2'], 3)}, cluster={fmt(m['cluster_accuracy'], 3)}"
    )
    if is_held_out(rec):
        return f"- Iter {rec['iter']}: {held_out_label(rec, held_out, node)}, {results}, network {network}\n"
    s = rec["search"]
    return (
        f"- Iter {rec['iter']}: node {node} (parent {parent}), {results}, "
        f"{s.get('strategy', '?')}: {s.get('mutation') or 'root'}"
        + (f", network {network}" if network is not None else "")
        + "\n"
    )


def _node_observations(ledger: Ledger, label: str) -> list[str]:
    """An Observation per node of the block's recent runs (and its best node) with two counted repeats."""
    block = ledger.blocks[label]
    pick = ledger.pick(label)
    ids = dict.fromkeys(int(r["search"].get("node", -1)) for r in block.recent if not is_held_out(r))
    if pick is not None:
        ids[pick.id] = None
    lines = []
    for node_id in ids:
        node = block.nodes.get(node_id)
        stats = node.robustness(ledger.repeats) if node is not None else None
        if node is not None and stats is not None and stats.n >= 2:
            lines.append(f"- Observation: {robustness_words(node.uid, stats)}\n")
    return lines


def _established(e: dict[str, float]) -> bool:
    """A mutation effect that is consistent (all or none improved) and not negligible."""
    return abs(e["mean_delta"]) > 0.01 and e["improved"] in (0, e["n"])


def render_memory_of(ledger: Ledger) -> str:
    """``memory.md`` in the seeds' working-memory structure, bounded in size (see ``MEMORY_SECTIONS``)."""
    rows = ledger.rows()
    effects = ledger.effects()
    principles = [
        f"- {name}: {e['n']} mutations, {e['improved']} improved on the parent, mean score change "
        f"{e['mean_delta']:+.3f} ({'helped' if e['mean_delta'] > 0 else 'hurt'})\n"
        for name, e in sorted(effects.items())
        if _established(e)
    ]
    questions = [
        f"- {name}: {e['n']} mutations, {e['improved']} improved on the parent, mean score change "
        f"{e['mean_delta']:+.3f}: mixed or neutral, needs more runs\n"
        for name, e in sorted(effects.items())
        if not _established(e)
    ]
    current = ledger.last_block or (rows[0]["block"] if rows else None)
    index = {r["block"]: k for k, r in enumerate(rows, 1)}
    block_key = ledger.info["block_key"]
    out = [
        f"# Working Memory: {ledger.info['study']['name']}\n\n",
        "## Knowledge Base (accumulated across all blocks)\n\n",
        f"### {table_title(block_key)}\n\n",
        render_table(rows, block_key),
        "\n### Established Principles\n\n",
        ("".join(principles) or "None yet.\n") if effects else "No mutation evaluated yet.\n",
        "\n### Open Questions\n\n",
        "".join(questions) or "None yet.\n",
        memory_section(ledger.info, level=3),
        render_ranges(ledger, level=3),
        "\n---\n\n## Previous Block Summary\n\n",
        "".join(_block_line(index[r["block"]], r) for r in rows if r["block"] != current and r["trials"])
        or "No other block has results yet.\n",
    ]
    row = next((r for r in rows if r["block"] == current), None)
    block = ledger.blocks.get(current) if current else None
    out.append(f"\n---\n\n## Current Block (Block {index.get(current or '', 0)})\n\n### Block Info\n\n")
    if row is None or block is None:
        out.append("No block has results yet.\n")
        return "".join(out)
    last = block.recent[-1]["iter"] if block.recent else block.first_iter
    total = held_out_of(ledger.info)
    held = held_out_words(ledger.held_out(block.label), total)
    out.append(
        (
            f"Sparsity: {_sparsity(row['value'])} ({current})"
            if block_key == FILLING_FACTOR
            else f"Block: {current}"
        )
        + f"\nIterations: {block.first_iter} to {last} "
        f"({row['trials']}/{row['budget']} trials)\n"
        + (f"{held[0].upper()}{held[1:]} (node {row['best_node']})\n" if held else "")
        + "\n### Hypothesis\n\n"
    )
    done = [r for r in rows if r["block"] != current and r["robust"]]
    optima = ", ".join(f"({fmt(r['L1'])}, {fmt(r['lr_W'])}) at {r['block']}" for r in done)
    out.append(
        f"Start from the neighbouring robust optima (L1, lr_W): {optima}\n"
        if done
        else "No robust optimum in another block yet: explore around the base config.\n"
    )
    out.append("\n### Iterations This Block\n\n")
    out += [_iteration_line(rec, total) for rec in block.recent]
    out.append(
        "\n### Emerging Observations\n\n"
        f"- {current}: {row['state']}, {len(block.nodes)} nodes, {row['converged']} converged runs, "
        f"{row['failed']} failed, best node {row['best_node']} (score {fmt(row['best_score'])}, "
        f"{'robust' if row['robust'] else 'not robust'}), last strategy {block.last_strategy}, strategies "
        f"{', '.join(f'{k} {v}' for k, v in sorted(block.strategies.items())) or 'none'}\n"
    )
    out += _node_observations(ledger, block.label)
    return "".join(out)


RANGE_COLUMNS = ("parameter", "robust", "interval", "failed below", "failed above", "probes", "confirmed")


def _value(value: object) -> str:
    return "-" if value is None else format_value(value)


def _interval_cell(low: object, high: object, working: tuple[object, ...]) -> str:
    if working:
        return ", ".join(map(_value, working))
    return f"[{_value(low)}, {_value(high)}]"


def ranges_table(found: BlockRanges) -> str:
    """A block's operating ranges in Markdown: per parameter its robust value, the interval that converges
    (a choice: the choices that do), the failures bracketing it, probe runs, and whether each boundary is
    confirmed (``open`` / ``undecided`` while a side is)."""
    lines = ["| " + " | ".join(RANGE_COLUMNS) + " |", "| " + " | ".join("---" for _ in RANGE_COLUMNS) + " |"]
    for i in found.intervals:
        below = _value(i.failed_below) if not i.failing else ", ".join(map(_value, i.failing))
        state = "yes" if i.confirmed else ("no" if i.state == DONE else i.state)
        cells = (
            found.space[i.key].short,
            _value(i.robust),
            _interval_cell(i.low, i.high, i.working),
            below,
            _value(i.failed_above),
            str(found.probes.get(i.key, 0)),
            state,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _span(found: BlockRanges, key: str, values: tuple[object, ...]) -> str:
    """``lr_W 1e-3..4e-3`` for a number (one value when the region holds one), ``optimizer adam/sgd`` else."""
    domain = found.space.get(key)
    name = domain.short if domain is not None else key
    if domain is not None and domain.is_numeric and values[0] != values[-1]:
        return f"{name} {_value(values[0])}..{_value(values[-1])}"
    return f"{name} {'/'.join(_value(v) for v in dict.fromkeys(values))}"


def region_lines(found: BlockRanges) -> list[str]:
    """One Markdown item per working region of a block: its nodes, what each parameter spans, its best node."""
    return [
        f"- region {k}: nodes {', '.join(map(str, r.nodes))}; "
        + "; ".join(_span(found, key, values) for key, values in r.spans.items())
        + f"; best node {r.best} (score {fmt(r.best_score, 3)})\n"
        for k, r in enumerate(found.regions, 1)
    ]


def block_ranges_text(found: BlockRanges, level: int = 4) -> str:
    """A block's operating ranges and working regions (a ``level`` heading), or the one line saying why it
    has none yet."""
    head = f"{'#' * level} {found.label}"
    if found.centre is None:
        searching = found.status == "searching"
        why = (
            "search running: its probes start once its budget is spent"
            if searching
            else "no robust config: no boundary probes"
        )
        return f"{head}\n\n{why}.\n\n" + _regions_text(found)
    text = (
        f"{head}: around node {found.centre.id}, {found.used}/{found.budget} probe trials, {found.status}\n\n"
        + ranges_table(found)
        + "\n"
    )
    return text + _regions_text(found)


def _regions_text(found: BlockRanges) -> str:
    regions = region_lines(found)
    if not regions:
        return "Working regions: none (no converged node).\n\n"
    return (
        f"Working regions ({len(regions)}; converged nodes joined by one-parameter moves through converged "
        "nodes):\n\n" + "".join(regions) + "\n"
    )


def render_ranges(ledger: Ledger, level: int = 3) -> str:
    """memory.md's Operating Ranges section: per block with records, where training works around its robust
    config and its working regions; empty when the study has no ``ranges``."""
    blocks = [found for label in ledger.labels() if (found := ledger.ranges(label)) is not None]
    if not blocks:
        return ""
    return f"\n{'#' * level} Operating Ranges\n\n" + "".join(block_ranges_text(b, level + 1) for b in blocks)
