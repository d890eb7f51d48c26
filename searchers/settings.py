"""The validated settings of a UCB tree search: space, base config, blocks, objective, tree constants.

:class:`SearchSettings` takes the search keywords of :class:`searchers.ucb.UCBTreeSearcher` (all but
Tune's ``metric`` / ``mode``), checks each one (a bad value raises ``ValueError`` naming the argument)
and derives what the search reads per block: its label, budget, base config and root parameters.
Pure Python, no Ray.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from searchers.dotted import get_dotted, set_dotted
from searchers.objective import default_weights
from searchers.ranges import RangeSettings, range_settings
from searchers.space import Domain, parse_space
from searchers.tree import DEFAULT_UCB_C, FORMULAS


def check(condition: bool, name: str, allowed: str, value: Any) -> None:
    """Raise ``ValueError("<name> must be <allowed>, got <value>")`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SearchSettings:
    """What a search is asked to do, checked once; read-only by convention after construction.

    ``block_budgets`` (block value -> trials) overrides ``n_iter_block`` for the blocks it names;
    ``block_overrides`` (block value -> {dotted key: value}) changes the base config of the blocks it
    names, their root included; ``n_scouts`` children of each root fill the slots before it reports
    (``searchers.scouts.scout``). Both maps are kept by block label (:meth:`block_label`).

    ``instance_key`` (a dotted key such as ``"simulation.seed"``, or None) makes run ``r`` of a config
    train on network ``r`` of its block (:func:`searchers.robustness.instance_seed`): the robustness
    repeats then vary the network instance, not only the training seed. ``held_out`` networks (0: none;
    they need ``instance_key``) then confirm each block's robust config once its budget is spent.
    ``ranges`` (a :class:`searchers.ranges.RangeSettings` or its dict; None: none) then probes, per block
    with a robust config, where training still converges around it (:mod:`searchers.ranges`).
    """

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
        block_budgets: Mapping[Any, int] | None = None,
        block_overrides: Mapping[Any, Mapping[str, Any]] | None = None,
        n_scouts: int = 0,
        instance_key: str | None = None,
        held_out: int = 0,
        ranges: RangeSettings | Mapping[str, Any] | None = None,
    ) -> None:
        self.space: dict[str, Domain] = parse_space(space)
        check(
            base_config is None or isinstance(base_config, Mapping),
            "base_config",
            "a nested dict",
            base_config,
        )
        self.base_config: dict[str, Any] = copy.deepcopy(dict(base_config or {}))
        blocks = dict(blocks) if blocks else {"block": [0]}
        check(len(blocks) == 1, "blocks", "a dict with exactly one dotted key -> list of values", blocks)
        self.block_key, values = next(iter(blocks.items()))
        check(
            isinstance(values, (list, tuple)) and len(values) > 0, "blocks values", "a non-empty list", values
        )
        check(len(set(map(repr, values))) == len(values), "blocks values", "distinct", values)
        check(self.block_key not in self.space, "blocks key", "a key outside the space", self.block_key)
        self.weights: dict[str, float] = dict(weights if weights is not None else default_weights())
        check(
            bool(self.weights) and all(isinstance(w, (int, float)) and w >= 0 for w in self.weights.values()),
            "weights",
            "a non-empty dict metric -> weight >= 0",
            weights,
        )
        self.thresholds: dict[str, float] = dict(
            thresholds if thresholds is not None else {k: 0.9 for k in self.weights}
        )
        check(
            bool(self.thresholds)
            and all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in self.thresholds.values()),
            "thresholds",
            "a non-empty dict metric -> value in [0, 1]",
            thresholds,
        )
        check(
            isinstance(ucb_c, (int, float)) and math.isfinite(ucb_c) and ucb_c >= 0,
            "ucb_c",
            "a number >= 0",
            ucb_c,
        )
        check(
            isinstance(n_iter_block, int) and n_iter_block >= 1, "n_iter_block", "an int >= 1", n_iter_block
        )
        check(
            isinstance(robustness_repeats, int) and robustness_repeats >= 1,
            "robustness_repeats",
            "an int >= 1",
            robustness_repeats,
        )
        check(
            isinstance(retry_failed, int) and retry_failed >= 0, "retry_failed", "an int >= 0", retry_failed
        )
        check(formula in FORMULAS, "formula", f"one of {FORMULAS}", formula)
        check(_is_int(seed), "seed", "an int", seed)
        check(
            seed_key is None or (isinstance(seed_key, str) and bool(seed_key)),
            "seed_key",
            "a dotted key or None",
            seed_key,
        )
        check(_is_int(n_scouts) and n_scouts >= 0, "n_scouts", "an int >= 0", n_scouts)
        check(
            instance_key is None or (isinstance(instance_key, str) and bool(instance_key)),
            "instance_key",
            "a dotted key or None",
            instance_key,
        )
        check(
            instance_key is None or instance_key != seed_key,
            "instance_key",
            "a key other than seed_key",
            instance_key,
        )
        check(_is_int(held_out) and held_out >= 0, "held_out", "an int >= 0", held_out)
        check(held_out == 0 or instance_key is not None, "held_out", "0 without an instance_key", held_out)
        self.ucb_c, self.n_iter_block, self.formula = float(ucb_c), n_iter_block, formula
        self.robustness_repeats, self.retry_failed = robustness_repeats, retry_failed
        self.seed, self.seed_key, self.n_scouts = seed, seed_key, n_scouts
        self.instance_key, self.held_out = instance_key, held_out
        self.ranges: RangeSettings | None = range_settings(ranges)
        self.block_values: list[Any] = list(values)
        self.block_budgets = self._check_budgets(block_budgets or {})
        self.block_changes = self._check_overrides(block_overrides or {})
        self.root_params: dict[str, Any] = {k: self._root_value(k, d) for k, d in self.space.items()}

    def _check_budgets(self, budgets: Mapping[Any, int]) -> dict[str, int]:
        """block label -> trials, for the blocks whose budget is not ``n_iter_block``."""
        by_repr = {repr(v): v for v in self.block_values}
        out = {}
        for value, n in budgets.items():
            check(repr(value) in by_repr, "block_budgets keys", f"block values {self.block_values}", value)
            check(_is_int(n) and n >= 0, "block_budgets values", "ints >= 0", n)
            out[self.block_label(by_repr[repr(value)])] = n
        return out

    def _check_overrides(self, overrides: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """block label -> {dotted key: value}, for the blocks whose base differs from ``base_config``."""
        by_repr = {repr(v): v for v in self.block_values}
        out = {}
        for value, changes in overrides.items():
            where = f"block_overrides[{value!r}]"
            check(repr(value) in by_repr, "block_overrides keys", f"block values {self.block_values}", value)
            check(isinstance(changes, Mapping), where, "a dict dotted key -> value", changes)
            for key, new in changes.items():
                check(key != self.block_key, f"{where} keys", "keys other than the block key", key)
                domain = self.space.get(key)
                check(domain is None or domain.contains(new), f"{where}.{key}", "a value in its domain", new)
            out[self.block_label(by_repr[repr(value)])] = dict(changes)
        return out

    def _root_value(self, key: str, domain: Domain) -> Any:
        """The root's value of ``key``: the domain's default, else the base config's value when in the
        domain, else the domain's center."""
        value = get_dotted(self.base_config, key)
        if domain.default is not None:
            return domain.default
        return value if value is not None and domain.contains(value) else domain.center()

    def block_label(self, value: Any) -> str:
        """``"<leaf of the block key>=<value>"``, e.g. ``"connectivity_filling_factor=0.25"``."""
        return f"{self.block_key.rsplit('.', 1)[-1]}={value}"

    def budget(self, label: str) -> int:
        """Trials the block ``label`` gets: its ``block_budgets`` entry, else ``n_iter_block``."""
        return self.block_budgets.get(label, self.n_iter_block)

    def base_of(self, label: str) -> dict[str, Any]:
        """The base config of block ``label``: ``base_config`` with the block's ``block_overrides``."""
        base = copy.deepcopy(self.base_config)
        for key, value in self.block_changes.get(label, {}).items():
            set_dotted(base, key, value)
        return base

    def base_instance(self, label: str) -> int | None:
        """The block's own network seed (its base config's ``instance_key`` value), None without one."""
        if self.instance_key is None:
            return None
        value = get_dotted(self.base_of(label), self.instance_key)
        return value if _is_int(value) else None

    def roots(self, label: str) -> dict[str, Any]:
        """The root params of block ``label``: ``root_params`` with the block's overrides of searched keys."""
        changes = self.block_changes.get(label, {})
        return {k: changes.get(k, v) for k, v in self.root_params.items()}
