"""An experiment's data as ``status``, ``export`` and ``report`` use it: study info, ledger, search trees.

One form, two sources. At the end of ``ntune run`` the driver hands over what its journal holds in
memory (:meth:`ntune.study.journal.Journal.experiment`); ``ntune status``, ``export`` and ``report`` from
another shell read the same back from the experiment folder (:func:`read_experiment`):

* ``study.json`` -> the study info; ``trials.jsonl`` -> the :class:`~ntune.study.ledger.Ledger`
  (completed records and running trials, replayed with :func:`replay`, as the journal loads it);
* ``trees/<block>.json`` -> each block's search tree as data (``searchers.tree.Tree.to_dict`` form),
  ``ucb/<block>.txt`` -> its text in the seeds' form. Both are written by the journal; ``<block>`` is the
  block label made safe for a file name (:func:`tree_files`). No Ray.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ntune.study.guards import safe_name
from ntune.study.info import read_info
from ntune.study.ledger import Ledger, Record
from ntune.study.records import events

TEXT_DIR = "ucb"  # ucb/<block>.txt: the searcher's tree text
TREE_DIR = "trees"  # trees/<block>.json (the tree as data) and trees/<block>.png (its plot)


@dataclass(frozen=True)
class TreeFiles:
    """Where one block's tree lives in the experiment folder."""

    text: Path  # ucb/<block>.txt
    data: Path  # trees/<block>.json
    plot: Path  # trees/<block>.png


def tree_files(exp_dir: Path, label: str) -> TreeFiles:
    """The files of block ``label``'s tree inside ``exp_dir`` (the label made safe for a file name)."""
    name = safe_name(label)
    return TreeFiles(
        exp_dir / TEXT_DIR / f"{name}.txt",
        exp_dir / TREE_DIR / f"{name}.json",
        exp_dir / TREE_DIR / f"{name}.png",
    )


@dataclass(frozen=True)
class Experiment:
    """One experiment's data: its folder, its ledger (which holds the study info) and its search trees.

    ``trees`` maps a block label to its tree in ``Tree.to_dict`` form, ``texts`` to its tree text; a
    block without a tree (no completed trial, or not asked for) is absent from both.
    """

    exp_dir: Path
    ledger: Ledger
    trees: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        """The study info (the content of ``study.json``)."""
        return self.ledger.info

    @property
    def records(self) -> list[Record]:
        """Completed records in order of first completion."""
        return list(self.ledger.records.values())

    @property
    def running(self) -> dict[str, str]:
        """Trials started and not completed: trial id -> block label."""
        return dict(self.ledger.running)


def replay(ledger: Ledger, text: str) -> Ledger:
    """Feed the events of a ``trials.jsonl`` text to ``ledger`` (``resume``, ``start``, ``complete``); returns it."""
    for event in events(text):
        kind = event.get("event")
        if kind == "resume":
            ledger.resume(event.get("time"))
        elif kind == "start":
            ledger.start(event["trial_id"], event.get("block") or "", event.get("time"))
        elif kind == "complete":
            ledger.add(event)
    return ledger


def read_experiment(exp_dir: str | Path, *, trees: bool = False) -> Experiment:
    """The experiment in folder ``exp_dir`` from its files; with ``trees``, each block's tree data and text.

    Raises FileNotFoundError when the folder or its ``study.json`` is missing.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"{exp_dir}: no such experiment folder")
    ledger = Ledger(read_info(exp_dir))
    path = exp_dir / "trials.jsonl"
    replay(ledger, path.read_text() if path.is_file() else "")
    if not trees:
        return Experiment(exp_dir, ledger)
    data: dict[str, Mapping[str, Any]] = {}
    texts: dict[str, str] = {}
    for label in ledger.blocks:
        files = tree_files(exp_dir, label)
        if files.text.is_file():
            texts[label] = files.text.read_text()
        tree = _read_json(files.data)
        if isinstance(tree, dict):
            data[label] = tree
    return Experiment(exp_dir, ledger, data, texts)


def _read_json(path: Path) -> Any:
    """The JSON content of ``path``; None when it is missing or unreadable (a file cut by a killed driver)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
