"""The driver-side Tune callbacks of a study: the journal, the console progress, the live board.

Each is a thin view over :class:`ntune.study.journal.Journal` (records in memory, files appended); Ray Tune
calls them on the driver. ``ntune.tune.driver`` wires them into the Tuner.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.markup import escape

from ntune.console import make_console
from ntune.study.journal import Journal
from ntune.study.records import SEARCH_KEY, fmt, make_record
from ntune.study.running import LiveBoard
from searchers.packing import MEMBERS_KEY, member_id, member_results

PROGRESS_EVERY_S = 30.0  # seconds between per-block progress lines while trials run
SYNC_EVERY_S = 10.0  # seconds between uploads of the journal (object storage) besides those on completions


class JournalCallback(Callback):
    """Tune callback on the driver: feeds the journal (records in memory; files appended, never re-read)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # Tune's keywords are not needed
        """Before the first trial, and after ``Tuner.restore``: reconcile the searcher with the journal.

        A driver killed between Tune's two snapshot writes leaves a trial finished in Tune's trial table
        but pending in the searcher's (older) state; Tune never runs it again, so the searcher would wait
        for it for ever and its tree would miss a run the journal holds. Each such completion is handed
        to the searcher from the journal's record (a trial that Tune does run again is then a duplicate,
        which the searcher ignores). A trial the searcher's state does not know at all (saved before its
        suggestion) is adopted: its node is rebuilt from the search record in its config.
        """
        searcher: Any = self.journal.searcher  # a UCBTreeSearcher (the journal needs only its trees)
        live = getattr(searcher, "live", None)
        if live is None:
            return
        records = list(self.journal.ledger.records.values())
        for rec in records:
            result = {**rec["metrics"], "status": rec["status"], "stopped_at": rec.get("stopped_at")}
            error = rec["status"] in ("error", "incomplete")
            if rec["trial_id"] in live:
                searcher.on_trial_complete(rec["trial_id"], result, error=error)
            else:  # adopted when unknown to a state saved before its suggestion; else a no-op
                searcher.adopt(rec["trial_id"], {**rec["config"], SEARCH_KEY: rec["search"]}, result, error)
        # rewrite every tree text: a killed driver may have left one unwritten (writes are throttled)
        for label in sorted({rec["block"] for rec in records}):
            self.journal.write_tree(label)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.journal.start(trial.trial_id, trial.config)
        self.journal.sync(SYNC_EVERY_S)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = dict(trial.last_result or {}, trial_dir=trial.path or "")
        self.journal.complete(make_record(self.journal.info, trial.trial_id, trial.config, result))
        self.journal.sync()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        text = "error"
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text()[-2000:]
        result = dict(trial.last_result or {}, trial_dir=trial.path or "")
        rec = make_record(self.journal.info, trial.trial_id, trial.config, result, error=text)
        self.journal.complete(rec)
        self.journal.sync()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.journal.tick()
        self.journal.sync(SYNC_EVERY_S)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.journal.flush()
        self.journal.sync()


class ConsoleProgress(Callback):
    """Tune callback printing one line per finished trial and the per-block progress whenever it changes.

    A view of the journal's records in memory (it reads no file).
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._last = 0.0
        self._shown: list[str] = []

    def _print(self, text: str) -> None:
        make_console(highlight=False, soft_wrap=True).print(text)

    def _blocks(self) -> None:
        """One line per block and the study's time line (run, budget, projected finish), printed only
        when some block's progress changed since the last print."""
        lines = [
            f"  {escape(r['block'])}: {r['trials']}/{r['budget']} done, {r['running']} running, "
            f"best R2 {fmt(r['best_R2'])}, best cluster {fmt(r['best_cluster'])}"
            + (", robust" if r["robust"] else "")
            for r in self.journal.ledger.rows()
        ]
        self._last = time.monotonic()
        if lines != self._shown:
            self._shown = lines
            clock = self.journal.ledger.projection().text(dt.datetime.now())
            self._print("\n".join([*lines, f"  {escape(clock)}"]))

    def _trial_done(self, trial_id: str) -> None:
        records = self.journal.ledger.records
        rec = records.get(trial_id)
        if rec is None:
            return
        s, m = rec["search"], rec["metrics"]
        mutation = f": {s['mutation']}" if s.get("mutation") else ""
        status = "" if rec["status"] == "ok" else f" ({rec['status']})"
        self._print(
            f"[{time.strftime('%H:%M:%S')}] {len(records)} done | {escape(rec['block'])} node {s.get('node')} "
            f"({escape(str(s.get('strategy')) + mutation)}) -> R2 {fmt(m['connectivity_R2'])}, "
            f"cluster {fmt(m['cluster_accuracy'])}, {rec['classification']}{status}"
        )
        self._blocks()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_done(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_done(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._last:
            self._last = time.monotonic()
        elif time.monotonic() - self._last > PROGRESS_EVERY_S:
            self._blocks()


class LiveProgress(Callback):
    """Tune callback keeping ``running.json`` current: each running trial's latest evaluation (:mod:`ntune.report.live`).

    Sits outside :class:`MemberCallbacks`: a packed trial's result is split into its members here.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal  # its folder (which a resumed journal moves) and its uploads
        self._board: LiveBoard | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"journal": self.journal}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.journal, self._board = state["journal"], None

    @property
    def board(self) -> LiveBoard:
        if self._board is None or self._board.exp_dir != self.journal.exp_dir:
            self._board = LiveBoard(self.journal.exp_dir)
        return self._board

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # Tune's keywords are not needed
        self.board.clear()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if MEMBERS_KEY not in result:
            self.board.update(trial.trial_id, result)
            return
        for k, member in enumerate(member_results(result)):
            if member.get("final"):
                self.board.remove(member_id(trial.trial_id, k))
            elif member:
                self.board.update(member_id(trial.trial_id, k), member)

    def _end(self, trial: Any) -> None:
        for tid in [
            t for t in self.board.entries if t == trial.trial_id or t.startswith(f"{trial.trial_id}_m")
        ]:
            self.board.remove(tid)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)
