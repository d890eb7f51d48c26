"""UCBTreeSearcher: the Ray Tune ``Searcher`` of the UCB tree search, with exact save/restore.

A thin adapter, in the manner of Ray Tune's ``OptunaSearch``: the search itself (one tree per block,
scheduling, node ids, suggest / complete / adopt, its state) is :class:`searchers.search.TreeSearch`,
pure Python; this class checks Tune's ``metric`` / ``mode``, translates Tune's calls to the search,
never raises on a bad trial (errors, NaN, unknown or duplicate ids become logged outcomes) and
saves / restores the search's state (``searchers.checkpoint``).

Each suggestion is a full nested config plus the search record under ``config[SEARCH_KEY]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from searchers.checkpoint import read_pickle, write_pickle
from searchers.dotted import get_dotted
from searchers.early_stop import LineageRule
from searchers.ranges import BoundaryProbes, RangeSettings
from searchers.record import SEARCH_KEY
from searchers.search import TreeSearch
from searchers.settings import SearchSettings, check
from searchers.space import Domain
from searchers.tree import DEFAULT_UCB_C, Tree

__all__ = ["SEARCH_KEY", "UCBTreeSearcher", "get_dotted"]

logger = logging.getLogger(__name__)

# the attributes of a searcher pickled before the search moved to searchers.search (see __setstate__)
_FLAT_SETTINGS = (
    *("space", "base_config", "block_key", "block_values", "weights", "thresholds", "ucb_c"),
    *("n_iter_block", "formula", "robustness_repeats", "retry_failed", "seed", "seed_key", "n_scouts"),
    *("block_budgets", "block_changes", "root_params"),
)
_LATER_SETTINGS: dict[str, Any] = {"instance_key": None, "held_out": 0, "ranges": None}
_FLAT_SEARCH = (
    "trees",
    "blocks",
    "stats",
    "rng",
    "max_concurrent",
    "live",
    "outcomes",
    "n_suggested",
    "uids",
)


class UCBTreeSearcher(Searcher):
    """Dual-objective UCB tree search, one tree per block value, one parameter changed per child."""

    def __init__(
        self,
        *,
        space: Mapping[str, Any],
        base_config: Mapping[str, Any] | None = None,
        blocks: Mapping[str, list[Any]] | None = None,
        weights: Mapping[str, float] | None = None,
        thresholds: Mapping[str, float] | None = None,
        ucb_c: float = DEFAULT_UCB_C,
        n_iter_block: int = 12,
        robustness_repeats: int = 3,
        retry_failed: int = 1,
        formula: str = "ucb",
        seed: int = 0,
        seed_key: str | None = "training.seed",
        metric: str = "score",
        mode: str = "max",
        block_budgets: Mapping[Any, int] | None = None,
        block_overrides: Mapping[Any, Mapping[str, Any]] | None = None,
        n_scouts: int = 0,
        instance_key: str | None = None,
        held_out: int = 0,
        ranges: RangeSettings | Mapping[str, Any] | None = None,
    ) -> None:
        """The search keywords are :class:`searchers.settings.SearchSettings`'s (``block_budgets``,
        ``block_overrides``, ``n_scouts``, ``instance_key``, ``held_out`` and ``ranges`` are described there); a bad value raises ``ValueError``
        naming the argument. ``metric`` / ``mode`` are Tune's (the search always maximises the score)."""
        settings = SearchSettings(
            space=space,
            base_config=base_config,
            blocks=blocks,
            weights=weights,
            thresholds=thresholds,
            ucb_c=ucb_c,
            n_iter_block=n_iter_block,
            robustness_repeats=robustness_repeats,
            retry_failed=retry_failed,
            formula=formula,
            seed=seed,
            seed_key=seed_key,
            block_budgets=block_budgets,
            block_overrides=block_overrides,
            n_scouts=n_scouts,
            instance_key=instance_key,
            held_out=held_out,
            ranges=ranges,
        )
        check(mode in ("max", "min"), "mode", "one of ('max', 'min')", mode)
        check(isinstance(metric, str) and bool(metric), "metric", "a non-empty str", metric)
        super().__init__(metric=metric, mode=mode)
        self.search = TreeSearch(settings)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle (Tune keeps the searcher in its experiment state); a searcher pickled before the
        search moved to :mod:`searchers.search` (its attributes flat) is converted, so that such an
        experiment resumes."""
        if "search" not in state:
            settings = SearchSettings.__new__(SearchSettings)
            settings.__dict__.update({k: state.pop(k) for k in _FLAT_SETTINGS if k in state})
            search = TreeSearch.__new__(TreeSearch)
            search.__dict__.update({k: state.pop(k) for k in _FLAT_SEARCH if k in state}, settings=settings)
            state["search"] = search
        self.__dict__.update(state)
        for name, default in _LATER_SETTINGS.items():  # settings added since the searcher was pickled
            self.search.settings.__dict__.setdefault(name, default)
        self.search.__dict__.setdefault("probes", BoundaryProbes(None, self.search.settings.space))

    # ---- what callers read of the search (the journal, the driver, tests)
    @property
    def settings(self) -> SearchSettings:
        """The checked constructor arguments."""
        return self.search.settings

    @property
    def trees(self) -> dict[str, Tree]:
        """Block label -> the block's tree."""
        return self.search.trees

    @property
    def live(self) -> dict[str, str]:
        """Trial id -> block label, for the trials suggested and not yet completed."""
        return self.search.live

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        """The trial ids the search could not use (unknown, duplicate, ...), in order."""
        return self.search.outcomes

    @property
    def space(self) -> dict[str, Domain]:
        """The parsed search space (dotted key -> domain)."""
        return self.search.settings.space

    @property
    def base_config(self) -> dict[str, Any]:
        """The base config every suggestion starts from (a copy of the constructor's)."""
        return self.search.settings.base_config

    @property
    def root_params(self) -> dict[str, Any]:
        """The searched parameters of the root (before any block's overrides)."""
        return self.search.settings.root_params

    @property
    def block_key(self) -> str:
        """The dotted key the blocks set."""
        return self.search.settings.block_key

    @property
    def block_values(self) -> list[Any]:
        """The block values, in order."""
        return self.search.settings.block_values

    def block_label(self, value: Any) -> str:
        """``"<leaf of the block key>=<value>"``, e.g. ``"connectivity_filling_factor=0.25"``."""
        return self.search.settings.block_label(value)

    def budget(self, label: str) -> int:
        """Trials the block ``label`` gets: its ``block_budgets`` entry, else ``n_iter_block``."""
        return self.search.settings.budget(label)

    def base_of(self, label: str) -> dict[str, Any]:
        """The base config of block ``label``: ``base_config`` with the block's ``block_overrides``."""
        return self.search.settings.base_of(label)

    def roots(self, label: str) -> dict[str, Any]:
        """The root params of block ``label``: ``root_params`` with the block's overrides of searched keys."""
        return self.search.settings.roots(label)

    def tree_text(self, label: str) -> str:
        """The block's tree, one ``Node k: UCB=...`` line per node."""
        return self.search.tree_text(label)

    def ucb_scores(self, label: str) -> str:
        """The block's tree in the seeds' ``ucb_scores.txt`` form (study-wide ids), ntune's columns after."""
        return self.search.ucb_scores(label)

    def uid(self, label: str, node_id: int | None) -> int | None:
        """The study-wide id of a block's node (numbered in order of creation over all blocks)."""
        return self.search.uid(label, node_id)

    def next_parent(self, label: str) -> int | None:
        """Study-wide id of the node with the highest UCB among the block's nodes with results."""
        return self.search.next_parent(label)

    # ---- Ray Tune Searcher API
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Accept Tune's metric/mode; the space comes from the constructor, so ``config`` must not add one."""
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Handle concurrency here (so the limit survives restore with unfinished trials)."""
        self.search.max_concurrent = int(max_concurrent)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        """A full config with ``config[SEARCH_KEY]``; FINISHED when all budgets are allocated; None at the limit."""
        config = self.search.suggest(trial_id)
        return Searcher.FINISHED if isinstance(config, str) else config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Add an intermediate result to the trial's learning curve; never raises."""
        try:
            self.search.observe(trial_id, result)
        except Exception:  # the searcher must never take the experiment down
            logger.exception("UCBTreeSearcher: could not observe a result of trial %s", trial_id)

    def stop_at(self, trial_id: str, result: dict, rule: LineageRule) -> float | None:
        """The fraction of training at which ``rule`` stops the trial after ``result``; None: it goes on
        (:meth:`searchers.search.TreeSearch.stop_at`). Never raises (None on any error)."""
        try:
            return self.search.stop_at(trial_id, result, rule)
        except Exception:
            logger.exception("UCBTreeSearcher: could not judge trial %s for early stopping", trial_id)
            return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record the run; never raises (errors, NaN, unknown or duplicate ids become logged outcomes)."""
        try:
            self.search.complete(trial_id, result, error)
        except Exception as exc:  # the searcher must never take the experiment down
            logger.exception("UCBTreeSearcher: could not record trial %s", trial_id)
            self.search.note(trial_id, f"internal-error: {exc!r}", result)

    def adopt(
        self, trial_id: str, config: Mapping[str, Any], result: dict | None, error: bool = False
    ) -> bool:
        """Record a finished trial the restored state does not know (:meth:`TreeSearch.adopt`); False
        (nothing changed) when it is known or its config has no usable search record."""
        return self.search.adopt(trial_id, config, result, error)

    # ---- state
    def get_state(self) -> dict[str, Any]:
        """Everything a fresh instance needs to continue exactly: the search's state, Tune's metric/mode."""
        return {**self.search.get_state(), "metric": self._metric, "mode": self._mode}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``get_state``; the block values must match this instance's."""
        self.search.set_state(state)
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        """Pickle ``get_state()`` to ``checkpoint_path`` (Tune calls this on every experiment checkpoint)."""
        write_pickle(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by ``save``."""
        self.set_state(read_pickle(checkpoint_path))
