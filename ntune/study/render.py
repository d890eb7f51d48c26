"""Pure renderers of the journal files (no Ray, no I/O): analysis.md entries, memory.md, the table.

They read records (see :mod:`ntune.study.records`) and a :class:`~ntune.study.ledger.Ledger`; the
:class:`~ntune.study.journal.Journal` decides when to write what.
"""

from __future__ import annotations

import math
from typing import Any

from ntune.study.info import memory_section
from ntune.study.ledger import Ledger
from ntune.study.records import fmt
from searchers.dotted import get_dotted


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


SHORT_NAMES = (
    ("lr_W", "training.learning_rate_W_start"),
    ("lr", "training.learning_rate_start"),
    ("lr_emb", "training.learning_rate_embedding_start"),
    ("coeff_W_L1", "training.coeff_W_L1"),
    ("batch_size", "training.batch_size"),
    ("data_aug", "training.data_augmentation_loop"),
)
SEED_STRATEGY = {"exploit": "exploit", "explore": "explore", "failure-probe": "boundary"}


def node_ids(rec: dict[str, Any]) -> tuple[Any, str]:
    """(node id, parent id or ``root``): study-wide ids when the searcher gave them, else the block's."""
    s = rec["search"]
    node = s.get("id", s.get("node", "?"))
    parent = s.get("parent_id", s.get("parent")) if "id" in s else s.get("parent")
    return node, "root" if parent is None else str(parent)


def _config_line(rec: dict[str, Any], names: tuple[str, ...]) -> str:
    cfg = rec.get("config") or {}
    values = [(short, get_dotted(cfg, key)) for short, key in SHORT_NAMES if short in names]
    return ", ".join(f"{short}={fmt(v)}" for short, v in values if v is not None)


def _metric(rec: dict[str, Any], name: str) -> str:
    return fmt(rec["metrics"].get(name, math.nan))


def parent_rule(rec: dict[str, Any]) -> str:
    """Why this node (and its parent) was chosen, from the search record's strategy."""
    s = rec["search"]
    node, parent = node_ids(rec)
    rule = f" ({s['rule']})" if s.get("rule") else ""
    strategy = s.get("strategy", "?")
    if strategy == "root":
        return "root: the study's base config for this block"
    if strategy == "robustness-test":
        return f"robustness-test of node {node}: another seed of a converged config"
    if strategy == "replicate":
        return f"replicate of node {node}: another seed of a lengthening still running"
    if strategy == "scout":
        return f"scout from node {parent}: the root trained longer, or a Latin-hypercube start"
    if strategy == "retry":
        return f"retry of node {node}: its only run failed"
    if strategy == "failure-probe":
        return f"failure-probe from node {parent}: push one parameter to an extreme{rule}"
    if strategy == "explore":
        return f"explore: highest UCB outside the recent chain, node {parent}{rule}"
    if strategy == "transfer":
        return f"transfer: a validated config from a neighbouring block{rule}"
    return f"highest UCB: node {parent}{rule}"


def observation(rec: dict[str, Any], parent: dict[str, Any] | None) -> str:
    """What the trial shows against its parent's best run (R^2, cluster accuracy) and its scatter."""
    m = rec["metrics"]
    r2, cluster = m["connectivity_R2"], m["cluster_accuracy"]
    if rec["status"] != "ok":
        head = f"{rec['status']}"
    elif parent is None:
        head = f"R2 {fmt(r2, 3)}, cluster {fmt(cluster, 3)}"
    else:
        pm = parent["metrics"]
        head = (
            f"vs parent: R2 {fmt(pm['connectivity_R2'], 3)} -> {fmt(r2, 3)} "
            f"({r2 - pm['connectivity_R2']:+.3f}), cluster {fmt(pm['cluster_accuracy'], 3)} -> "
            f"{fmt(cluster, 3)} ({cluster - pm['cluster_accuracy']:+.3f})"
        )
    return f"{head}; {diagnosis_words(rec)} at {rec['block']}"


def format_entry(
    rec: dict[str, Any], parent: dict[str, Any] | None = None, *, convergence: bool = False
) -> str:
    """One ``analysis.md`` entry in the seeds' exact line form (``convergence``: the convergence study's).

    ``parent`` is the best record of the parent node (for the Observation line); ``rec["next_parent"]``
    the node the block's tree would pick next. ntune's own fields follow on extra lines.
    """
    s = rec["search"]
    node, parent_id = node_ids(rec)
    mutation = s.get("mutation") or ""
    nxt = rec.get("next_parent")
    nxt = node if nxt is None else nxt
    extra = (
        f"Trial: {rec['trial_id']} {rec['trial_dir']}\n"
        f"Run: {s.get('run', '?')}, seed {s.get('seed', '?')}, block node {s.get('node', '?')}, "
        f"score={rec['score']:.3f}, status={rec['status']}\n\n"
    )
    if convergence:
        return (
            f"## Iter {rec['iter']}: {rec['classification']}\n"
            f"Node: id={node}, parent={parent_id}\n"
            f"Config: {_config_line(rec, ('lr_W', 'lr', 'coeff_W_L1'))}\n"
            f"Metrics: test_R2={_metric(rec, 'test_R2')}, test_pearson={_metric(rec, 'test_pearson')}, "
            f"connectivity_R2={_metric(rec, 'connectivity_R2')}, final_loss={_metric(rec, 'final_loss')}\n"
            f"Observation: {observation(rec, parent)}\n"
            f"Change: {mutation or 'none (root)'}\n"
            f"Mode/Strategy: {s.get('strategy', '?')}\n"
            f"Parent rule: {parent_rule(rec)}\n"
            f"Next: parent={nxt}\n" + extra
        )
    strategy = s.get("strategy", "?")
    mode = "failure-probe" if strategy == "failure-probe" else "success-exploit"
    value = rec.get("block_value")
    sparsity = (
        f"Sparsity: {float(value) * 100:g}% (connectivity_filling_factor={value})"
        if rec["block"].startswith("connectivity_filling_factor=") and isinstance(value, int | float)
        else f"Block: {rec['block']}"
    )
    return (
        f"## Iter {rec['iter']}: {rec['classification']}\n"
        f"Node: id={node}, parent={parent_id}\n"
        f"Mode/Strategy: {mode}/{SEED_STRATEGY.get(strategy, strategy)}\n"
        f"{sparsity}\n"
        f"Config: {_config_line(rec, tuple(n for n, _ in SHORT_NAMES))}\n"
        f"Metrics: test_R2={_metric(rec, 'test_R2')}, connectivity_R2={_metric(rec, 'connectivity_R2')}, "
        f"cluster_accuracy={_metric(rec, 'cluster_accuracy')}, final_loss={_metric(rec, 'final_loss')}, "
        f"time={_metric(rec, 'training_time_min')} min\n"
        f"Scatter: {diagnosis_words(rec)}\n"
        f"Mutation: {mutation or 'none (root)'}\n"
        f"Parent rule: {parent_rule(rec)}\n"
        f"Observation: {observation(rec, parent)}\n"
        f"Next: parent={nxt}\n" + extra
    )


def _sparsity(value: Any) -> str:
    return f"{float(value) * 100:g}%" if isinstance(value, int | float) else str(value)


def _ceiling_note(row: dict[str, Any]) -> str:
    """ ", ceiling 0.998" when the block's identifiability ceiling is known (ntune.data.identifiability)."""
    ceiling = row.get("ceiling", math.nan)
    return "" if ceiling is None or math.isnan(ceiling) else f", ceiling {fmt(ceiling, 3)}"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The seeds' Sparsity Comparison Table in Markdown, ntune's columns (robust, trials, state) in finding."""
    lines = [
        "| Block | Sparsity | filling_factor | Best R² | Best Cluster | Optimal L1 | Optimal lr_W | finding |",
        "| ----- | -------- | -------------- | ------- | ------------ | ---------- | ------------ | ------- |",
    ]
    for k, r in enumerate(rows, 1):
        lines.append(
            f"| {k} | {_sparsity(r['value'])} | {r['value']} | {fmt(r['best_R2'])} | {fmt(r['best_cluster'])} | "
            f"{fmt(r['L1'])} | {fmt(r['lr_W'])} | {'robust' if r['robust'] else 'not robust'}, "
            f"{r['trials']}/{r['budget']} trials, {r['state']}{_ceiling_note(r)} |"
        )
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
    return (
        f"- Block {k} ({_sparsity(r['value'])}, {r['block']}): best R2={fmt(r['best_R2'], 3)}, "
        f"cluster={fmt(r['best_cluster'], 3)} at L1={fmt(r['L1'])}, lr_W={fmt(r['lr_W'])}; "
        f"{'robust' if r['robust'] else 'not robust'}, {r['trials']}/{r['budget']} trials, {r['state']}\n"
    )


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
    out = [
        f"# Working Memory: {ledger.info['study']['name']}\n\n",
        "## Knowledge Base (accumulated across all blocks)\n\n",
        "### Sparsity Comparison Table\n\n",
        render_table(rows),
        "\n### Established Principles\n\n",
        ("".join(principles) or "None yet.\n") if effects else "No mutation evaluated yet.\n",
        "\n### Open Questions\n\n",
        "".join(questions) or "None yet.\n",
        memory_section(ledger.info, level=3),
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
    out.append(
        f"Sparsity: {_sparsity(row['value'])} ({current})\nIterations: {block.first_iter} to {last} "
        f"({row['trials']}/{row['budget']} trials)\n\n### Hypothesis\n\n"
    )
    done = [r for r in rows if r["block"] != current and r["robust"]]
    optima = ", ".join(f"({fmt(r['L1'])}, {fmt(r['lr_W'])}) at {r['block']}" for r in done)
    out.append(
        f"Start from the neighbouring robust optima (L1, lr_W): {optima}\n"
        if done
        else "No robust optimum in another block yet: explore around the base config.\n"
    )
    out.append("\n### Iterations This Block\n\n")
    for rec in block.recent:
        node, parent = node_ids(rec)
        out.append(
            f"- Iter {rec['iter']}: node {node} (parent {parent}), {rec['classification']}, "
            f"R2={fmt(rec['metrics']['connectivity_R2'], 3)}, cluster={fmt(rec['metrics']['cluster_accuracy'], 3)}, "
            f"{rec['search'].get('strategy', '?')}: {rec['search'].get('mutation') or 'root'}\n"
        )
    out.append(
        "\n### Emerging Observations\n\n"
        f"- {current}: {row['state']}, {len(block.nodes)} nodes, {row['converged']} converged runs, "
        f"{row['failed']} failed, best node {row['best_node']} (score {fmt(row['best_score'])}, "
        f"{'robust' if row['robust'] else 'not robust'}), last strategy {block.last_strategy}, strategies "
        f"{', '.join(f'{k} {v}' for k, v in sorted(block.strategies.items())) or 'none'}\n"
    )
    return "".join(out)
