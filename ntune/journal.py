"""The study journal: what a person reads while a study runs, written from files the driver owns.

Files in the experiment folder:

* ``study.json``: the validated study and its resolved base config (written once by ``ntune run``).
* ``trials.jsonl``: one line per event (trial ``start`` or ``complete``, study ``resume``); for a trial completed twice
  (a resumed run repeats the trials that were running when the driver died) the last one counts.
* ``analysis.md``: one entry per completed trial, in the seeds' log form (append-only).
* ``memory.md``: sparsity comparison table, what each parameter's mutations did, each block's state.
* ``ucb/<block>.txt`` (the searcher's tree text) and ``trees/<block>.png`` (tree plot).

:class:`JournalCallback` is the Tune callback that keeps them current on the driver; everything
else here is plain functions over records, so ``ntune status/export/report`` work from the files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ray.tune import Callback

from ntune.identifiability import memory_section
from ntune.records import (
    SEARCH_KEY,
    block_summary,
    fmt,
    group_nodes,
    make_record,
    mutation_effects,
    read_info,
    read_trials,
)


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
        "| block | filling factor | best R2 | best cluster | robust | optimal L1 | optimal lr_W | trials | state | ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['block']} | {r['value']} | {fmt(r['best_R2'])} | {fmt(r['best_cluster'])} | "
            f"{'yes' if r['robust'] else 'no'} | {fmt(r['L1'])} | {fmt(r['lr_W'])} | "
            f"{r['trials']}/{r['budget']} | {r['state']} | {fmt(r.get('ceiling', float('nan')), 3)} |"
        )
    return "\n".join(lines) + "\n"


def render_memory(
    info: dict[str, Any], records: list[dict[str, Any]], running: dict[str, str] | None = None
) -> str:
    """The whole ``memory.md``."""
    rows = block_summary(info, records, running)
    out = [f"# Memory: {info['study']['name']}\n\n", "## Sparsity comparison\n\n", render_table(rows)]
    out.append(memory_section(info))
    out.append("\n## Parameter mutations\n\n")
    effects = mutation_effects(records)
    if not effects:
        out.append("No mutation evaluated yet.\n")
    for name, e in sorted(effects.items()):
        verdict = "helped" if e["mean_delta"] > 0.01 else ("hurt" if e["mean_delta"] < -0.01 else "neutral")
        out.append(
            f"- {name}: {e['n']} mutations, {e['improved']} improved on the parent, "
            f"mean score change {e['mean_delta']:+.3f} ({verdict})\n"
        )
    out.append("\n## Block state\n\n")
    nodes_by_block = group_nodes(records)
    for r in rows:
        recs = [x for x in records if x["block"] == r["block"]]
        strategies: dict[str, int] = {}
        for x in recs:
            strategies[x["search"].get("strategy", "?")] = (
                strategies.get(x["search"].get("strategy", "?"), 0) + 1
            )
        last = recs[-1]["search"].get("strategy", "?") if recs else "none"
        out.append(
            f"- {r['block']}: {r['state']}, {r['trials']}/{r['budget']} trials, "
            f"{len(nodes_by_block.get(r['block'], {}))} nodes, {r['converged']} converged runs, "
            f"{r['failed']} failed, best node {r['best_node']} (score {fmt(r['best_score'])}, "
            f"{'robust' if r['robust'] else 'not robust'}), last strategy {last}, strategies "
            f"{', '.join(f'{k} {v}' for k, v in sorted(strategies.items())) or 'none'}\n"
        )
    return "".join(out)


def plot_tree(ax: Any, nodes: dict[int, dict[str, Any]], title: str = "") -> None:
    """Draw one block's tree: node depth down, colour = mean score, label = id and mutated parameter."""
    depth: dict[int, int] = {}

    def _depth(n: int) -> int:
        if n not in depth:
            p = nodes[n]["parent"]
            depth[n] = 0 if p is None or p not in nodes else _depth(p) + 1
        return depth[n]

    order = sorted(nodes, key=lambda n: (_depth(n), n))
    x_at: dict[int, float] = {}
    for d in sorted(set(depth.values())):
        level = [n for n in order if depth[n] == d]
        for k, n in enumerate(level):
            x_at[n] = (k + 1) / (len(level) + 1)
    for n in order:
        p = nodes[n]["parent"]
        if p in x_at:
            ax.plot([x_at[p], x_at[n]], [-depth[p], -depth[n]], color="0.6", lw=1, zorder=1)
    xs = [x_at[n] for n in order]
    ys = [-depth[n] for n in order]
    colors = [nodes[n]["mean_score"] for n in order]
    sc = ax.scatter(xs, ys, c=colors, cmap="viridis", vmin=0, vmax=1, s=160, zorder=2, edgecolors="k")
    for n in order:
        mut = nodes[n]["mutation"].split(":")[0] if nodes[n]["mutation"] else "root"
        ax.annotate(
            f"{n}\n{mut}",
            (x_at[n], -depth[n]),
            textcoords="offset points",
            xytext=(0, 10),
            ha="center",
            fontsize=7,
        )
    ax.figure.colorbar(sc, ax=ax, label="mean score")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_ylabel("depth")
    ax.set_xlim(0, 1)
    ax.set_ylim(min(ys, default=0) - 0.7, 0.9)


def save_tree_plot(nodes: dict[int, dict[str, Any]], path: Path, title: str) -> None:
    """Write one block's tree plot to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    plot_tree(ax, nodes, title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


class Journal:
    """Writes the journal files of one experiment folder; ``searcher`` supplies ``tree_text(label)``."""

    def __init__(self, exp_dir: str | Path, searcher: Any = None) -> None:
        self.exp_dir = Path(exp_dir)
        self.searcher = searcher

    def _append(self, name: str, text: str) -> None:
        with open(self.exp_dir / name, "a") as f:
            f.write(text)

    def start(self, trial_id: str, config: dict[str, Any]) -> None:
        """Record that a trial started (so status can count running trials)."""
        search = config.get(SEARCH_KEY) or {}
        event = {"event": "start", "trial_id": trial_id, "block": search.get("block")}
        self._append("trials.jsonl", json.dumps(event) + "\n")

    def resumed(self) -> None:
        """Mark a resume: trials started before it and not started again were lost with the driver."""
        self._append("trials.jsonl", json.dumps({"event": "resume"}) + "\n")

    def complete(self, rec: dict[str, Any]) -> None:
        """Add one completed trial: trials.jsonl, analysis.md, memory.md, ucb/ and trees/ of its block."""
        records, _ = read_trials(self.exp_dir)
        again = any(r["trial_id"] == rec["trial_id"] for r in records)
        self._append("trials.jsonl", json.dumps(rec, default=str) + "\n")
        records, running = read_trials(self.exp_dir)
        info = read_info(self.exp_dir)
        rec = next(r for r in records if r["trial_id"] == rec["trial_id"])
        if not again:
            self._append("analysis.md", format_entry(rec))
        (self.exp_dir / "memory.md").write_text(render_memory(info, records, running))
        self.write_trees(records, only=rec["block"])

    def write_trees(self, records: list[dict[str, Any]], only: str | None = None) -> None:
        """ucb/<block>.txt from the searcher (when there is one) and trees/<block>.png from the records."""
        for label, nodes in group_nodes(records).items():
            if only is not None and label != only:
                continue
            if self.searcher is not None:
                (self.exp_dir / "ucb").mkdir(exist_ok=True)
                (self.exp_dir / "ucb" / f"{label}.txt").write_text(self.searcher.tree_text(label))
            save_tree_plot(nodes, self.exp_dir / "trees" / f"{label}.png", label)


class JournalCallback(Callback):
    """Tune callback on the driver: keeps the journal files of the experiment current."""

    def __init__(self, exp_dir: str | Path, searcher: Any = None) -> None:
        self.journal = Journal(exp_dir, searcher)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.journal.start(trial.trial_id, trial.config)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = dict(trial.last_result or {}, trial_dir=trial.path or "")
        rec = make_record(read_info(self.journal.exp_dir), trial.trial_id, trial.config, result)
        self.journal.complete(rec)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        text = "error"
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text()[-2000:]
        result = dict(trial.last_result or {}, trial_dir=trial.path or "")
        rec = make_record(read_info(self.journal.exp_dir), trial.trial_id, trial.config, result, error=text)
        self.journal.complete(rec)
