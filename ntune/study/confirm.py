"""A config's repeats and held-out confirmation in words (no Ray, no files).

What memory.md, analysis.md, ``ntune status``, the exported configs and the report say about the
networks a config trained on: each repeat (``network 42: R2 0.999, cluster 0.95, converged``), what
the repeats add up to (:class:`searchers.robustness.Robustness`) and how many held-out networks the
block's best config converged on (``held-out k/K``). A run on a data-limited network is said to be
one: it counts neither for nor against the config.
"""

from __future__ import annotations

import math
from typing import Any

from ntune.study.info import held_out_of
from ntune.study.ledger import Ledger
from ntune.study.nodes import Record, network_of
from searchers.robustness import DATA_LIMITED, Robustness


def _fixed(x: float, digits: int) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def held_out_cell(row: dict[str, Any]) -> str:
    """``2/3``: held-out runs of a block's best node that converged, of K (``1/3 (2 done)`` while some are
    still to run); ``-`` when none is recorded."""
    k, done, total = row["held_out"], row["held_out_done"], row["held_out_total"]
    if not done:
        return "-"
    head = f"{k}/{max(total, done)}"
    return head if done >= total else f"{head} ({done} done)"


def worst_cell(row: dict[str, Any]) -> str:
    """``0.998 / 0.91``: R2 and cluster accuracy of the best node's worst counted repeat; ``-`` without one."""
    if not row["networks"]:
        return "-"
    return f"{_fixed(row['worst_R2'], 3)} / {_fixed(row['worst_cluster'], 2)}"


def where(rec: Record) -> str:
    """``network 42`` (the run's network seed), else ``run 1, seed 123`` when the study did not vary it."""
    network = network_of(rec)
    if network is not None:
        return f"network {network}"
    s = rec["search"]
    return f"run {s.get('run', '?')}, seed {s.get('seed', '?')}"


def data_limited_words(rec: Record) -> str:
    """Why a data-limited run does not count (empty for any other run)."""
    if rec["classification"] != DATA_LIMITED:
        return ""
    ceiling = rec["metrics"].get("ceiling", math.nan)
    return (
        f"data-limited: this network's ceiling {_fixed(ceiling, 3)} is below the R2 threshold, "
        "so the run counts neither for nor against the config"
    )


def repeat_words(rec: Record) -> str:
    """``network 42: R2 0.999, cluster 0.95, converged``: one run of a config on its network."""
    m = rec["metrics"]
    text = (
        f"{where(rec)}: R2 {_fixed(m.get('connectivity_R2', math.nan), 3)}, "
        f"cluster {_fixed(m.get('cluster_accuracy', math.nan), 2)}, {rec['classification']}"
    )
    if rec["classification"] == DATA_LIMITED:
        text += f" (ceiling {_fixed(rec['metrics'].get('ceiling', math.nan), 3)}: not counted)"
    elif rec["status"] != "ok":
        text += f" ({rec['status']})"
    return text


def robustness_words(node: Any, stats: Robustness) -> str:
    """``node 7 over 3 networks: R2 0.999 ± 0.000 (CV 0.0 %), cluster 0.95 ± 0.03, worst network 1234
    (R2 0.998, cluster 0.91): robust, stable-robust``, and the data-limited runs left out."""
    known = stats.worst_network is not None
    worst = f"worst network {stats.worst_network}" if known else "worst run"
    noun = ("network" if known else "run") + ("s" if stats.n != 1 else "")
    text = (
        f"node {node} over {stats.n} {noun}: "
        f"R2 {_fixed(stats.R2_mean, 3)} ± {_fixed(stats.R2_std, 3)} (CV {_fixed(stats.R2_cv * 100, 1)} %), "
        f"cluster {_fixed(stats.cluster_mean, 2)} ± {_fixed(stats.cluster_std, 2)}, "
        f"{worst} (R2 {_fixed(stats.worst_R2, 3)}, cluster {_fixed(stats.worst_cluster, 2)}): "
        f"{'robust' if stats.robust else 'not robust'}, {stats.spread or 'no spread'}"
    )
    if stats.n_data_limited:
        text += (
            f"; {stats.n_data_limited} data-limited run{'s' if stats.n_data_limited != 1 else ''} not counted"
        )
    return text


def held_out_words(held: list[Record], total: int) -> str:
    """``held-out networks converged 2 of 3`` (and how many ran, while some are still to run); empty when
    the study has no held-out networks."""
    done = len(held)
    if not done:
        return f"held-out networks: none run yet (K = {total})" if total else ""
    k = sum(r["classification"] == "converged" for r in held)
    text = f"held-out networks converged {k} of {max(total, done)}"
    return text if done >= total else f"{text} ({done} run so far)"


def held_out_label(rec: Record, total: int, node: Any) -> str:
    """``held-out network 2 of 3 for node 7`` (without ``of K`` when K is not known)."""
    index = rec["search"].get("run")
    number = "?" if index is None else int(index) + 1
    of = f" of {total}" if total else ""
    return f"held-out network {number}{of} for node {node}"


def confirmation_lines(ledger: Ledger, label: str) -> list[str]:
    """The block's best node in plain lines: each repeat, their robustness, the held-out networks (what the
    exported config's header and the report's robustness section show); empty before a search run."""
    pick = ledger.pick(label)
    if pick is None:
        return []
    total = held_out_of(ledger.info)
    held = ledger.held_out(label)
    lines = [f"repeats of node {pick.id}:"]
    lines += [f"  repeat {k}: {repeat_words(rec)}" for k, rec in enumerate(pick.runs, 1)]
    lines.append(robustness_words(pick.id, pick.robustness(ledger.repeats)))
    words = held_out_words(held, total)
    if words:
        lines.append(words)
    lines += [f"  {held_out_label(rec, total, pick.id)}: {repeat_words(rec)}" for rec in held]
    return lines
