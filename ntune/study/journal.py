"""The study journal: the study's records held in memory, appended to the files a person reads.

Files in the experiment folder:

* ``study.json``: the validated study and its resolved base config (written once by ``ntune run``,
  read before Tune starts and never again while it runs: Tune rewrites the folder's ``*.json``).
* ``trials.jsonl``: one line per event (trial ``start`` or ``complete``, study ``resume``); for a
  trial completed twice (a resumed run repeats the trials that were running when the driver died)
  the last one counts.
* ``analysis.md``: one entry per completed trial, in the seeds' log form (append-only).
* ``memory.md``: sparsity comparison table, what each parameter's mutations did, each block's state.
* ``ucb/<block>.txt`` (the searcher's tree text, written at most every ``tree_every_s`` seconds per
  block and on ``flush``) and ``trees/<block>.png`` (a plot of that text, written on ``flush``: at
  the end of a run, or an interrupt, and by ``ntune report``). Both come from the searcher's state.

:class:`Journal` reads ``trials.jsonl`` once (start or resume), then only appends: a completion
costs the same at the 5 000th trial as at the first. No Ray here: the Tune callback that feeds it
lives in :mod:`ntune.tune.driver`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Protocol

from ntune.plots import plot_tree, save_figure
from ntune.study.guards import safe_name
from ntune.study.info import read_info
from ntune.study.ledger import Ledger
from ntune.study.records import SEARCH_KEY
from ntune.study.render import format_entry, render_memory_of

TREE_EVERY_S = 5.0  # seconds between rewrites of one block's ucb/ text and tree plot while trials run
_TRIAL_LINE = re.compile(r"^Trial: (\S+)", re.M)
_NODE_LINE = re.compile(r"^Node (\d+): .*?parent=(\w+)")
_SCORE = re.compile(r"\bscore=(-?[\d.eE+-]+|nan)")
_MUTATION = re.compile(r"\bmutation=(.*)$")


class TreeSource(Protocol):
    """What the journal needs of a searcher: the tree text of a block."""

    def tree_text(self, label: str) -> str: ...


def _convergence(info: dict[str, Any]) -> bool:
    """A study with one objective (the convergence study) writes the convergence form."""
    return len(info["study"]["objective"]["thresholds"]) == 1


def tree_rows(text: str) -> list[tuple[int, int | None, float, str]]:
    """(id, parent, mean score, mutation) per ``Node k: ...`` line of a searcher's tree text."""
    rows = []
    for line in text.splitlines():
        m = _NODE_LINE.match(line)
        if not m:
            continue
        parent = int(m.group(2)) if m.group(2).isdigit() else None
        s = _SCORE.search(line)
        mutation = _MUTATION.search(line)
        score = float(s.group(1)) if s else 0.0
        rows.append((int(m.group(1)), parent, score, mutation.group(1).strip() if mutation else ""))
    return rows


def save_tree_plot(text: str, path: Path, title: str) -> None:
    """Plot one block's tree from the searcher's tree text to ``path``."""
    rows = tree_rows(text)
    save_figure(lambda ax: plot_tree(ax, rows, title), path)


class Journal:
    """The journal of one experiment folder: records in memory (a :class:`Ledger`), files appended.

    With a ``remote`` (a :class:`ntune.study.storage.Remote`: the experiment lives on object storage and
    ``exp_dir`` is its local mirror), :meth:`sync` copies the changed files up.
    """

    # set by mark_resumed: where a journal unpickled by Tuner.restore lives now, and its remote
    resume_dir: Path | None = None
    resume_remote: Any = None

    def __init__(
        self,
        exp_dir: str | Path,
        searcher: TreeSource | None = None,
        *,
        info: dict[str, Any] | None = None,
        tree_every_s: float = TREE_EVERY_S,
        remote: Any = None,
    ) -> None:
        self.exp_dir = Path(exp_dir)
        self.remote = remote
        self._synced = -float("inf")
        self.searcher = searcher
        self.info = info if info is not None else read_info(self.exp_dir)
        self.ledger = Ledger(self.info)
        self.tree_every_s = tree_every_s
        self._tree_written: dict[str, float] = {}
        self._tree_due: set[str] = set()
        self._plot_due: set[str] = set()
        self._load()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Tune keeps the callbacks in tuner.pkl) without the records: they are reloaded."""
        return {k: self.__dict__[k] for k in ("exp_dir", "searcher", "info", "tree_every_s")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A restored journal (``Tuner.restore``) loads the records once from ``trials.jsonl``.

        It moves to the folder (and remote) given to :meth:`mark_resumed`, when one was: the experiment
        may be resumed from another machine or another mirror folder.
        """
        self.__dict__.update(state)
        if Journal.resume_dir is not None:
            self.exp_dir, self.remote = Journal.resume_dir, Journal.resume_remote
        else:
            self.remote = None
        self._synced = -float("inf")
        self.ledger = Ledger(self.info)
        self._tree_written, self._tree_due, self._plot_due = {}, set(), set()
        self._load()

    @classmethod
    def mark_resumed(cls, exp_dir: str | Path, remote: Any = None) -> None:
        """Append the ``resume`` event before a restored journal loads the file (see ``resumed``).

        A journal unpickled after this call writes to ``exp_dir`` and syncs to ``remote``.
        """
        with open(Path(exp_dir) / "trials.jsonl", "a") as f:
            f.write(json.dumps({"event": "resume"}) + "\n")
        cls.resume_dir, cls.resume_remote = Path(exp_dir), remote

    def sync(self, every_s: float = 0.0, now: float | None = None) -> None:
        """Copy the changed files up to the remote (if any), unless the last copy is under ``every_s`` old."""
        now = time.monotonic() if now is None else now
        if self.remote is None or now - self._synced < every_s:
            return
        self.remote.push(self.exp_dir)
        self._synced = now

    # ---- start or resume: the only reads
    def _load(self) -> None:
        path = self.exp_dir / "trials.jsonl"
        if not path.is_file():
            return
        text = path.read_text()
        if text and not text.endswith("\n"):  # a line cut by a killed driver: end it
            self._append("trials.jsonl", "\n")
        for line in text.splitlines():
            try:
                event = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "resume":
                self.ledger.resume()
            elif kind == "start":
                self.ledger.start(event["trial_id"], event.get("block") or "")
            elif kind == "complete":
                self.ledger.add(event)
        analysis = self.exp_dir / "analysis.md"
        written = set(_TRIAL_LINE.findall(analysis.read_text())) if analysis.is_file() else set()
        for rec in self.ledger.records.values():  # completed in trials.jsonl, entry lost with the driver
            if rec["trial_id"] not in written:
                self._append("analysis.md", self._entry(rec))

    def _entry(self, rec: dict[str, Any]) -> str:
        """The analysis.md entry of a record, its Observation against the parent node's best run."""
        parent_id = rec["search"].get("parent")
        block = self.ledger.blocks.get(rec["block"])
        parent = block.nodes.get(parent_id) if block is not None and parent_id is not None else None
        return format_entry(rec, parent.best if parent else None, convergence=_convergence(self.info))

    def _append(self, name: str, text: str) -> None:
        with open(self.exp_dir / name, "a") as f:
            f.write(text)

    # ---- events
    def start(self, trial_id: str, config: dict[str, Any]) -> None:
        """Record that a trial started (so status can count running trials)."""
        block = (config.get(SEARCH_KEY) or {}).get("block")
        self._append(
            "trials.jsonl", json.dumps({"event": "start", "trial_id": trial_id, "block": block}) + "\n"
        )
        self.ledger.start(trial_id, block or "")

    def resumed(self) -> None:
        """Mark a resume: trials started before it and not started again were lost with the driver."""
        self._append("trials.jsonl", json.dumps({"event": "resume"}) + "\n")
        self.ledger.resume()

    def complete(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Add one completed trial: trials.jsonl, analysis.md (first completion only), memory.md, trees.

        A trial completed again (a resumed run repeats what the snapshot had as running) keeps its first
        record, as the searcher keeps its first run: the repeat is ignored and not written again, so a
        trial has one line in trials.jsonl however often the driver is killed. Only a failed first
        record is replaced by a good repeat (a good result is never turned into a failure).
        """
        old = self.ledger.records.get(rec["trial_id"])
        if old is not None and (old["status"] == "ok" or rec["status"] != "ok"):
            self._tree_due.add(rec["block"])  # the searcher may still have changed (a reconciled run)
            return old
        next_parent = getattr(self.searcher, "next_parent", None)
        if next_parent is not None:
            rec["next_parent"] = next_parent(rec["block"])
        self._append("trials.jsonl", json.dumps(rec, default=str) + "\n")
        again = self.ledger.add(rec)
        if not again:
            self._append("analysis.md", self._entry(rec))
        (self.exp_dir / "memory.md").write_text(render_memory_of(self.ledger))
        self._tree_due.add(rec["block"])
        self.tick()
        return rec

    # ---- trees (the searcher's state)
    def tick(self, now: float | None = None) -> None:
        """Write the tree texts that changed and were not written in the last ``tree_every_s`` seconds."""
        now = time.monotonic() if now is None else now
        for label in sorted(self._tree_due):
            if now - self._tree_written.get(label, -float("inf")) >= self.tree_every_s:
                self.write_tree(label)
                self._tree_written[label] = now

    def flush(self) -> None:
        """Write every tree text that changed, and the plot of every tree written since the last flush."""
        for label in sorted(self._tree_due):
            self.write_tree(label)
        for label in sorted(self._plot_due):
            text = self.exp_dir / "ucb" / f"{safe_name(label)}.txt"
            if text.is_file():
                save_tree_plot(text.read_text(), self.exp_dir / "trees" / f"{safe_name(label)}.png", label)
        self._plot_due.clear()

    def write_tree(self, label: str) -> None:
        """ucb/<block>.txt from the searcher's tree (nothing without a searcher); its plot waits for flush."""
        self._tree_due.discard(label)
        if self.searcher is None:
            return
        (self.exp_dir / "ucb").mkdir(exist_ok=True)
        (self.exp_dir / "ucb" / f"{safe_name(label)}.txt").write_text(self.searcher.tree_text(label))
        ucb_scores = getattr(self.searcher, "ucb_scores", None)
        if ucb_scores is not None:  # the seeds' form, study-wide node ids
            folder = self.exp_dir / "blocks" / safe_name(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ucb_scores.txt").write_text(ucb_scores(label))
        self._plot_due.add(label)
