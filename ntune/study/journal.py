"""The study journal: the study's records held in memory, appended to the files a person reads.

Files in the experiment folder:

* ``study.json``: the validated study and its resolved base config (written once by ``ntune run``,
  read before Tune starts and never again while it runs: Tune rewrites the folder's ``*.json``).
* ``trials.jsonl``: one line per event (trial ``start`` or ``complete``, study ``resume``); for a
  trial completed twice (a resumed run repeats the trials that were running when the driver died)
  the last one counts.
* ``analysis.md``: one entry per completed trial, in the seeds' log form (append-only).
* ``memory.md``: sparsity comparison table, what each parameter's mutations did, each block's state.
* ``ucb/<block>.txt`` (the searcher's tree text) and ``trees/<block>.json`` (the same tree as data,
  ``searchers.tree.Tree.to_dict`` form), written at most every ``tree_every_s`` seconds per block and on
  ``flush``; ``trees/<block>.png`` (its plot, :func:`ntune.plots.plot_tree`), written on ``flush``: at
  the end of a run, or an interrupt. All come from the searcher's state (:mod:`ntune.study.experiment`
  names the files).

:class:`Journal` reads ``trials.jsonl`` once (start or resume), then only appends: a completion
costs the same at the 5 000th trial as at the first. At the end of a run it hands what it holds to
status and export (:meth:`Journal.experiment`). No Ray here: the Tune callbacks that feed it live in
:mod:`ntune.tune.callbacks`; a journal pickled with Tune's experiment state resumes through
:func:`reopening`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ntune.plots import plot_tree, save_figure
from ntune.study.clock import stamp
from ntune.study.entries import entry_of
from ntune.study.experiment import Experiment, TreeFiles, replay, tree_files
from ntune.study.guards import safe_name
from ntune.study.info import read_info
from ntune.study.ledger import Ledger
from ntune.study.records import SEARCH_KEY
from ntune.study.render import render_memory_of

TREE_EVERY_S = 5.0  # seconds between rewrites of one block's tree files while trials run
_TRIAL_LINE = re.compile(r"^Trial: (\S+)", re.M)  # the trial id of an analysis.md entry


class TreeData(Protocol):
    """A block's search tree as the journal reads it (``searchers.tree.Tree``)."""

    def to_dict(self) -> dict[str, Any]: ...


class TreeSource(Protocol):
    """What the journal needs of a searcher: each block's tree (as data) and its text."""

    @property
    def trees(self) -> Mapping[str, TreeData]: ...

    def tree_text(self, label: str) -> str: ...


def _convergence(info: dict[str, Any]) -> bool:
    """A study with one objective (the convergence study) writes the convergence form."""
    return len(info["study"]["objective"]["thresholds"]) == 1


@dataclass
class Reopening:
    """Where a journal unpickled inside :func:`reopening` lives now, and that journal once unpickled."""

    exp_dir: Path
    remote: Any = None
    journal: Journal | None = None


_REOPENING: ContextVar[Reopening | None] = ContextVar("ntune_journal_reopening", default=None)


@contextmanager
def reopening(exp_dir: str | Path, remote: Any = None) -> Iterator[Reopening]:
    """Resume the journal pickled with an experiment's state (``Tuner.restore`` unpickles Tune's callbacks).

    A journal unpickled inside the block moves to ``exp_dir`` and syncs to ``remote`` (the experiment may
    be resumed from another machine or another mirror folder), loads its records from there, marks the
    resume in ``trials.jsonl`` and is handed back as the yielded object's ``journal``. A journal unpickled
    outside stays where it was, without a remote, and marks nothing.
    """
    handover = Reopening(Path(exp_dir), remote)
    token = _REOPENING.set(handover)
    try:
        yield handover
    finally:
        _REOPENING.reset(token)


class Journal:
    """The journal of one experiment folder: records in memory (a :class:`Ledger`), files appended.

    With a ``remote`` (a :class:`ntune.study.storage.Remote`: the experiment lives on object storage and
    ``exp_dir`` is its local mirror), :meth:`sync` copies the changed files up.
    """

    def __init__(
        self,
        exp_dir: str | Path,
        searcher: TreeSource | None = None,
        *,
        info: dict[str, Any] | None = None,
        tree_every_s: float = TREE_EVERY_S,
        remote: Any = None,
    ) -> None:
        self.searcher = searcher
        self.info = info if info is not None else read_info(Path(exp_dir))
        self.tree_every_s = tree_every_s
        self._open(Path(exp_dir), remote)

    def _open(self, exp_dir: Path, remote: Any) -> None:
        """Work in ``exp_dir`` (syncing to ``remote``): records loaded from its ``trials.jsonl``."""
        self.exp_dir, self.remote = exp_dir, remote
        self._synced = -float("inf")
        self.ledger = Ledger(self.info)
        self._tree_written: dict[str, float] = {}
        self._tree_due: set[str] = set()
        self._plot_due: set[str] = set()
        self._load()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Tune keeps the callbacks in tuner.pkl) without the records: they are reloaded."""
        return {k: self.__dict__[k] for k in ("exp_dir", "searcher", "info", "tree_every_s")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A restored journal loads the records once from ``trials.jsonl``; see :func:`reopening`."""
        self.__dict__.update(state)
        handover = _REOPENING.get()
        if handover is None:
            self._open(self.exp_dir, None)
            return
        if handover.journal is not None:
            raise RuntimeError(f"two journals were unpickled to resume {handover.exp_dir}")
        self._open(handover.exp_dir, handover.remote)
        self.resumed()
        handover.journal = self

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
        replay(self.ledger, text)
        analysis = self.exp_dir / "analysis.md"
        written = set(_TRIAL_LINE.findall(analysis.read_text())) if analysis.is_file() else set()
        for rec in self.ledger.records.values():  # completed in trials.jsonl, entry lost with the driver
            if rec["trial_id"] not in written:
                self._append("analysis.md", self._entry(rec))

    def _entry(self, rec: dict[str, Any]) -> str:
        """The analysis.md entry of a record: its Observation against the parent node's best run, its
        node's robustness over the repeats so far (:func:`ntune.study.entries.entry_of`)."""
        return entry_of(self.ledger, rec, convergence=_convergence(self.info))

    def _append(self, name: str, text: str) -> None:
        with open(self.exp_dir / name, "a") as f:
            f.write(text)

    # ---- events
    def start(self, trial_id: str, config: dict[str, Any]) -> None:
        """Record that a trial started (so status can count running trials)."""
        block, now = (config.get(SEARCH_KEY) or {}).get("block"), stamp()
        self._append(
            "trials.jsonl",
            json.dumps({"event": "start", "trial_id": trial_id, "block": block, "time": now}) + "\n",
        )
        self.ledger.start(trial_id, block or "", now)

    def resumed(self) -> None:
        """Mark a resume: trials started before it and not started again were lost with the driver."""
        now = stamp()
        self._append("trials.jsonl", json.dumps({"event": "resume", "time": now}) + "\n")
        self.ledger.resume(now)

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
        """Write every tree that changed, and the plot of every tree written since the last flush."""
        for label in sorted(self._tree_due):
            self.write_tree(label)
        for label in sorted(self._plot_due):
            tree = self._tree(label)
            if tree is not None:
                save_figure(partial(plot_tree, tree=tree.to_dict(), title=label), self._files(label).plot)
        self._plot_due.clear()

    def write_tree(self, label: str) -> None:
        """ucb/<block>.txt and trees/<block>.json from the searcher's tree (nothing without one); its plot
        waits for :meth:`flush`."""
        self._tree_due.discard(label)
        tree = self._tree(label)
        if tree is None or self.searcher is None:
            return
        files = self._files(label)
        files.text.parent.mkdir(exist_ok=True)
        files.text.write_text(self.searcher.tree_text(label))
        files.data.parent.mkdir(exist_ok=True)
        _replace(files.data, json.dumps(tree.to_dict(), default=str))
        ucb_scores = getattr(self.searcher, "ucb_scores", None)
        if ucb_scores is not None:  # the seeds' form, study-wide node ids
            folder = self.exp_dir / "blocks" / safe_name(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ucb_scores.txt").write_text(ucb_scores(label))
        self._plot_due.add(label)

    def _tree(self, label: str) -> TreeData | None:
        """The searcher's tree of block ``label`` (None without a searcher, or for a block it does not hold)."""
        return None if self.searcher is None else self.searcher.trees.get(label)

    def _files(self, label: str) -> TreeFiles:
        return tree_files(self.exp_dir, label)

    # ---- the end of a run
    def experiment(self) -> Experiment:
        """What the journal holds, for the status table and the export at the end of a run: the ledger
        (records, running trials, study info) and the tree of every block with a completed trial."""
        trees: dict[str, Mapping[str, Any]] = {}
        texts: dict[str, str] = {}
        for label, block in self.ledger.blocks.items():
            tree = self._tree(label)
            if tree is None or self.searcher is None or not block.trials:
                continue
            trees[label], texts[label] = tree.to_dict(), self.searcher.tree_text(label)
        return Experiment(self.exp_dir, self.ledger, trees, texts)


def _replace(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
