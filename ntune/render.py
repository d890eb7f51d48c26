"""Pure renderers of the journal files (no Ray, no I/O): analysis.md entries, memory.md, the table.

They read records (see :mod:`ntune.records`) and a :class:`~ntune.ledger.Ledger`; the
:class:`~ntune.journal.Journal` decides when to write what.
"""

from __future__ import annotations

import math
from typing import Any

from ntune.ledger import Ledger
from ntune.records import fmt


def diagnosis_words(rec: dict[str, Any]) -> str:
    """The W scatter plot described in words, from the numeric diagnosis."""
    if rec["status"] == "error":
        return f"no scatter: the trial raised ({rec['error'].strip().splitlines()[-1] if rec['error'] else 'error'})"
    if rec["status"] == "diverged":
        return "no scatter: training diverged (NaN/inf loss)"
    if rec["status"] == "incomplete":
        return "no scatter: the trial stopped before its final report"
    m = rec["metrics"]
    r2, slope, band, cross = m["connectivity_R2"], m["connectivity_slope"], m["zero_band"], m["cross"]
    words = []
    if r2 > 0.9:
        words.append(f"tight diagonal (R2 {r2:.3f})")
    elif r2 > 0.5:
        words.append(f"diagonal with spread (R2 {r2:.3f})")
    elif r2 >= 0.1:
        words.append(f"weak diagonal (R2 {r2:.3f})")
    else:
        words.append(f"no structure (R2 {fmt(r2)})")
    if cross >= 0.5:
        words.append("cross: learned values form both a diagonal and a zero band")
    elif band > 0.1:
        words.append(f"zero band: {band:.0%} of true synapses learned as ~0 (L1 too strong)")
    if slope < 0.5:
        words.append(f"shrunk, slope {slope:.2f} (lower L1 or raise lr_W)")
    elif not math.isnan(slope):
        words.append(f"slope {slope:.2f}")
    return "; ".join(words)


def format_entry(rec: dict[str, Any]) -> str:
    """One ``analysis.md`` entry in the seeds' log form."""
    s = rec["search"]
    params = ", ".join(f"{k.split('.')[-1]}={fmt(v)}" for k, v in rec["params"].items())
    metrics = ", ".join(f"{k}={fmt(v)}" for k, v in rec["metrics"].items() if not math.isnan(v))
    return (
        f"## Iter {rec['iter']}: {rec['classification']}\n"
        f"Node: {s.get('node', '?')}, parent={s.get('parent')}\n"
        f"Strategy: {s.get('strategy', '?')}\n"
        f"Block: {rec['block']} (run {s.get('run', '?')}, seed {s.get('seed', '?')})\n"
        f"Config: {params}\n"
        f"Metrics: {metrics or 'none'}, score={rec['score']:.3f}, status={rec['status']}\n"
        f"Scatter: {diagnosis_words(rec)}\n"
        f"Mutation: {s.get('mutation') or 'root'}\n"
        f"Trial: {rec['trial_id']} {rec['trial_dir']}\n\n"
    )


def render_table(rows: list[dict[str, Any]]) -> str:
    """The sparsity comparison table in Markdown."""
    lines = [
        "| block | filling factor | best R2 | best cluster | robust | optimal L1 | optimal lr_W | trials | state |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['block']} | {r['value']} | {fmt(r['best_R2'])} | {fmt(r['best_cluster'])} | "
            f"{'yes' if r['robust'] else 'no'} | {fmt(r['L1'])} | {fmt(r['lr_W'])} | "
            f"{r['trials']}/{r['budget']} | {r['state']} |"
        )
    return "\n".join(lines) + "\n"


def render_memory(
    info: dict[str, Any], records: list[dict[str, Any]], running: dict[str, str] | None = None
) -> str:
    """The whole ``memory.md`` of a list of records (batch form of ``render_memory_of``)."""
    ledger = Ledger(info).extend(records)
    ledger.running = dict(running or {})
    return render_memory_of(ledger)


def render_memory_of(ledger: Ledger) -> str:
    """The whole ``memory.md``: comparison table, mutation effects, each block's state."""
    rows = ledger.rows()
    out = [f"# Memory: {ledger.info['study']['name']}\n\n", "## Sparsity comparison\n\n", render_table(rows)]
    out.append("\n## Parameter mutations\n\n")
    effects = ledger.effects()
    if not effects:
        out.append("No mutation evaluated yet.\n")
    for name, e in sorted(effects.items()):
        verdict = "helped" if e["mean_delta"] > 0.01 else ("hurt" if e["mean_delta"] < -0.01 else "neutral")
        out.append(
            f"- {name}: {e['n']} mutations, {e['improved']} improved on the parent, "
            f"mean score change {e['mean_delta']:+.3f} ({verdict})\n"
        )
    out.append("\n## Block state\n\n")
    for r in rows:
        block = ledger.blocks[r["block"]]
        out.append(
            f"- {r['block']}: {r['state']}, {r['trials']}/{r['budget']} trials, "
            f"{len(block.nodes)} nodes, {r['converged']} converged runs, "
            f"{r['failed']} failed, best node {r['best_node']} (score {fmt(r['best_score'])}, "
            f"{'robust' if r['robust'] else 'not robust'}), last strategy {block.last_strategy}, strategies "
            f"{', '.join(f'{k} {v}' for k, v in sorted(block.strategies.items())) or 'none'}\n"
        )
    return "".join(out)
