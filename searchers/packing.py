"""Pack K suggestions of any Ray Tune Searcher into one Tune trial (a population); unpack the results.

A Tune trial's config is ``{MEMBERS_KEY: [config_0, ..., config_{K-1}]}``, member k suggested by the
wrapped searcher under the id ``member_id(trial_id, k)``. The trainable reports
``{metric: best so far, MEMBERS_KEY: [result_0, ...]}`` (``{}`` for a member with nothing yet); a member
result with ``final: True`` completes that member at once, the Tune trial's completion completes the rest.
So the wrapped searcher, and Tune callbacks wrapped in :class:`MemberCallbacks`, see ordinary trials.
No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune import Callback
from ray.tune.search import Searcher

from searchers.checkpoint import read_pickle, restore_bytes, saved_bytes, write_pickle

MEMBERS_KEY = "_members"


def member_id(trial_id: str, k: int) -> str:
    """The trial id the wrapped searcher and the callbacks know member k of Tune trial ``trial_id`` by."""
    return f"{trial_id}_m{k}"


def member_results(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The member results of a packed Tune result (``{}`` where a member reported nothing yet)."""
    return list((result or {}).get(MEMBERS_KEY) or [])


class PackingSearcher(Searcher):
    """Wraps any Searcher: K of its suggestions per Tune trial, each member's result as its own trial."""

    def __init__(self, searcher: Searcher, population: int) -> None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.population = int(population)
        self.members: dict[str, list[str]] = {}  # Tune trial id -> member ids
        self.completed: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Forwarded to the wrapped searcher, whose metric/mode this searcher then takes."""
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Forwarded as members: ``max_concurrent`` Tune trials hold up to K times as many members."""
        return self.searcher.set_max_concurrency(max_concurrent * self.population)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        """Up to K member configs; fewer when the wrapped searcher runs out, FINISHED/None when it has none."""
        configs: list[dict[str, Any]] = []
        for k in range(self.population):
            config = self.searcher.suggest(member_id(trial_id, k))
            if config is None or config == Searcher.FINISHED:
                if not configs:
                    return config
                break
            configs.append(config)
        self.members[trial_id] = [member_id(trial_id, k) for k in range(len(configs))]
        return {MEMBERS_KEY: configs}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Each member's result goes to the wrapped searcher; a ``final`` one completes that member."""
        for mid, res in zip(self.members.get(trial_id, []), member_results(result), strict=False):
            if not res or mid in self.completed:
                continue
            if res.get("final"):
                self.completed.add(mid)
                self.searcher.on_trial_complete(mid, res)
            else:
                self.searcher.on_trial_result(mid, res)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Complete every member not yet completed (one without a result as an error)."""
        results = member_results(result)
        for k, mid in enumerate(self.members.pop(trial_id, [])):
            if mid in self.completed:
                continue
            self.completed.add(mid)
            res = results[k] if k < len(results) and results[k] else None
            self.searcher.on_trial_complete(mid, res, error=error or res is None)

    def get_state(self) -> dict[str, Any]:
        """The packing (members per Tune trial, completed members) and the wrapped searcher's checkpoint."""
        return {
            "population": self.population,
            "members": self.members,
            "completed": sorted(self.completed),
            "inner": saved_bytes(self.searcher.save),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``get_state``: the wrapped searcher is restored from its checkpoint."""
        self.population = state["population"]
        self.members = dict(state["members"])
        self.completed = set(state["completed"])
        restore_bytes(self.searcher.restore, state["inner"])

    def save(self, checkpoint_path: str) -> None:
        """Pickle ``get_state()`` to ``checkpoint_path``."""
        write_pickle(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by ``save``."""
        self.set_state(read_pickle(checkpoint_path))


@dataclass
class MemberTrial:
    """What a Tune callback reads of a trial, for one member of a packed trial."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    path: str
    status: str
    error_file: str | None = None


class MemberCallbacks(Callback):
    """Wraps Tune callbacks so that each member of a packed trial is started and completed as its own trial.

    A member completes when its final result arrives (``on_trial_complete``), or with the Tune trial
    (``on_trial_complete`` / ``on_trial_error`` for members without a final result); each member once.
    ``path`` is the member result's ``trial_dir`` when given, else the Tune trial's folder.
    """

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self.done: set[str] = set()
        self.last: dict[str, dict[str, Any]] = {}

    def _views(self, trial: Any, status: str) -> list[MemberTrial]:
        configs = (trial.config or {}).get(MEMBERS_KEY) or []
        results = member_results(trial.last_result)
        views = []
        for k, config in enumerate(configs):
            mid = member_id(trial.trial_id, k)
            res = results[k] if k < len(results) and results[k] else self.last.get(mid, {})
            self.last[mid] = res
            path = str(res.get("trial_dir") or trial.path or "")
            views.append(MemberTrial(mid, config, res, path, status, getattr(trial, "error_file", None)))
        return views

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # forwards Tune's keywords as they come
        for cb in self.callbacks:
            cb.setup(**info)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        for cb in self.callbacks:
            cb.on_step_begin(iteration, trials, **info)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for cb in self.callbacks:
            cb.on_step_end(iteration, trials, **info)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for view in self._views(trial, "RUNNING"):
            for cb in self.callbacks:
                cb.on_trial_start(iteration, trials, view, **info)  # type: ignore[arg-type]  # a Trial-shaped view

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        for view in self._views(trial, "RUNNING"):
            if view.last_result.get("final") and view.trial_id not in self.done:
                self.done.add(view.trial_id)
                view.status = "TERMINATED"
                for cb in self.callbacks:
                    cb.on_trial_complete(iteration, trials, view, **info)  # type: ignore[arg-type]

    def _finish(self, iteration: int, trials: list, trial: Any, error: bool, **info: Any) -> None:
        for view in self._views(trial, "ERROR" if error else "TERMINATED"):
            if view.trial_id in self.done:
                continue
            self.done.add(view.trial_id)
            for cb in self.callbacks:
                hook = cb.on_trial_error if error else cb.on_trial_complete
                hook(iteration, trials, view, **info)  # type: ignore[arg-type]

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(iteration, trials, trial, False, **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(iteration, trials, trial, True, **info)

    def get_state(self) -> dict[str, Any]:
        """Which members completed (saved with the experiment, so a resumed run completes none twice)."""
        return {
            "done": sorted(self.done),
            "last": self.last,
            "callbacks": [cb.get_state() for cb in self.callbacks],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.done, self.last = set(state.get("done", [])), dict(state.get("last", {}))
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", []), strict=False):
            if cb_state is not None:
                cb.set_state(cb_state)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for cb in self.callbacks:
            cb.on_experiment_end(trials, **info)
