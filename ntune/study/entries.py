"""The ``analysis.md`` entries of a study's records, in the seeds' log form (pure, no Ray, no I/O).

One entry per completed trial (:func:`format_entry`; from what a :class:`~ntune.study.ledger.Ledger`
holds: :func:`entry_of`): the node, its config, metrics, the W scatter in words, why the node was
chosen, what the run shows against its parent and, once the node has two counted repeats, its
robustness over them. A run's network is named when the study varies it; a held-out run and a run on a
data-limited network are said to be such (:mod:`ntune.study.confirm`).
"""

from __future__ import annotations

import math
from typing import Any

from ntune.study.confirm import data_limited_words, held_out_label, robustness_words
from ntune.study.info import held_out_of
from ntune.study.ledger import Ledger
from ntune.study.nodes import is_held_out, network_of
from ntune.study.records import fmt
from searchers.dotted import get_dotted
from searchers.robustness import Robustness


def diagnosis_words(rec: dict[str, Any]) -> str:
    """The W scatter plot described in words, from the numeric diagnosis."""
    if rec["status"] == "error":
        return f"no scatter: the trial raised ({rec['error'].strip().splitlines()[-1] if rec['error'] else 'error'})"
    if rec["status"] == "diverged":
        return "no scatter: training diverged (NaN/inf loss)"
    if rec["status"] == "stopped":
        return f"stopped at {rec['stopped_at']:.0%} of training: its score stayed below its parent's"
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


def parent_rule(rec: dict[str, Any], held_out: int = 0) -> str:
    """Why this node (and its parent) was chosen, from the search record's strategy (``held_out``: K, the
    held-out networks per block, for a held-out run's ``2 of 3``)."""
    s = rec["search"]
    node, parent = node_ids(rec)
    rule = f" ({s['rule']})" if s.get("rule") else ""
    strategy = s.get("strategy", "?")
    if is_held_out(rec):
        return f"{held_out_label(rec, held_out, node)}: the block's robust config on a network the search never used"
    if strategy == "root":
        return "root: the study's base config for this block"
    if strategy == "boundary-probe":
        return f"boundary-probe around node {parent}: where training still converges{rule}"
    if strategy == "robustness-test":
        other = f"network ({s['network']})" if s.get("network") is not None else "seed"
        return f"robustness-test of node {node}: a converged config on another {other}"
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
    if rec["status"] == "stopped":
        head = f"R2 {fmt(r2, 3)}, cluster {fmt(cluster, 3)} when stopped"
    elif rec["status"] != "ok":
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
    limited = data_limited_words(rec)
    return f"{head}; {diagnosis_words(rec)} at {rec['block']}" + (f"; {limited}" if limited else "")


def format_entry(
    rec: dict[str, Any],
    parent: dict[str, Any] | None = None,
    *,
    convergence: bool = False,
    held_out: int = 0,
    stats: Robustness | None = None,
) -> str:
    """One ``analysis.md`` entry in the seeds' exact line form (``convergence``: the convergence study's).

    ``parent`` is the best record of the parent node (for the Observation line); ``rec["next_parent"]``
    the node the block's tree would pick next. ntune's own fields follow on extra lines: the trial, its
    run (and network), and, once the node has two counted repeats, an Observation of its robustness
    (``stats``). A held-out run (K = ``held_out``) has a ``Held-out:`` line instead of ``Node:``: it is
    no run of the search tree, so a parser rebuilding the tree from the log leaves it out.
    """
    s = rec["search"]
    node, parent_id = node_ids(rec)
    mutation = s.get("mutation") or ""
    nxt = rec.get("next_parent")
    nxt = node if nxt is None else nxt
    network = network_of(rec)
    extra = (
        f"Trial: {rec['trial_id']} {rec['trial_dir']}\n"
        f"Run: {s.get('run', '?')}, seed {s.get('seed', '?')}"
        + (f", network {network}" if network is not None else "")
        + f", block node {s.get('node', '?')}, score={rec['score']:.3f}, status={rec['status']}\n"
    )
    if stats is not None and stats.n >= 2:
        extra += f"Observation: {robustness_words(node, stats)}\n"
    extra += "\n"
    held = is_held_out(rec)
    node_line = (
        f"Held-out: node={node}, parent={parent_id} (a confirmation run, not a run of the search tree)\n"
        if held
        else f"Node: id={node}, parent={parent_id}\n"
    )
    if convergence:
        return (
            f"## Iter {rec['iter']}: {rec['classification']}\n"
            f"{node_line}"
            f"Config: {_config_line(rec, ('lr_W', 'lr', 'coeff_W_L1'))}\n"
            f"Metrics: test_R2={_metric(rec, 'test_R2')}, test_pearson={_metric(rec, 'test_pearson')}, "
            f"connectivity_R2={_metric(rec, 'connectivity_R2')}, final_loss={_metric(rec, 'final_loss')}\n"
            f"Observation: {observation(rec, parent)}\n"
            f"Change: {mutation or 'none (root)'}\n"
            f"Mode/Strategy: {s.get('strategy', '?')}\n"
            f"Parent rule: {parent_rule(rec, held_out)}\n"
            f"Next: parent={nxt}\n" + extra
        )
    strategy = s.get("strategy", "?")
    mode = "confirm" if held else "failure-probe" if strategy == "failure-probe" else "success-exploit"
    value = rec.get("block_value")
    sparsity = (
        f"Sparsity: {float(value) * 100:g}% (connectivity_filling_factor={value})"
        if rec["block"].startswith("connectivity_filling_factor=") and isinstance(value, int | float)
        else f"Block: {rec['block']}"
    )
    return (
        f"## Iter {rec['iter']}: {rec['classification']}\n"
        f"{node_line}"
        f"Mode/Strategy: {mode}/{SEED_STRATEGY.get(strategy, strategy)}\n"
        f"{sparsity}\n"
        f"Config: {_config_line(rec, tuple(n for n, _ in SHORT_NAMES))}\n"
        f"Metrics: test_R2={_metric(rec, 'test_R2')}, connectivity_R2={_metric(rec, 'connectivity_R2')}, "
        f"cluster_accuracy={_metric(rec, 'cluster_accuracy')}, final_loss={_metric(rec, 'final_loss')}, "
        f"time={_metric(rec, 'training_time_min')} min\n"
        f"Scatter: {diagnosis_words(rec)}\n"
        f"Mutation: {mutation or 'none (root)'}\n"
        f"Parent rule: {parent_rule(rec, held_out)}\n"
        f"Observation: {observation(rec, parent)}\n"
        f"Next: parent={nxt}\n" + extra
    )


def entry_of(ledger: Ledger, rec: dict[str, Any], *, convergence: bool = False) -> str:
    """The ``analysis.md`` entry of a record ``ledger`` holds (:func:`format_entry`): its Observation
    against the parent node's best run, K for a held-out run, its node's robustness over the repeats so far."""
    block = ledger.blocks.get(rec["block"])
    s = rec["search"]
    parent = block.nodes.get(s["parent"]) if block is not None and s.get("parent") is not None else None
    node = block.nodes.get(s.get("node")) if block is not None else None
    return format_entry(
        rec,
        parent.best if parent else None,
        convergence=convergence,
        held_out=held_out_of(ledger.info),
        stats=node.robustness(ledger.repeats) if node is not None else None,
    )
