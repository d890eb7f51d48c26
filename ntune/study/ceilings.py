"""Each block's identifiability ceiling and trial budget, computed before a study's first trial.

The block's data are loaded or simulated through the cache (so trials reuse them) and the oracle's
ceiling read (:mod:`ntune.data.identifiability`); the result goes into the study's info
(:mod:`ntune.study.info`), the one place budgets and ceilings are read from.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ntune.config import config_from_dict, set_dotted
from ntune.data.identifiability import SUMMARY_KEYS, is_data_limited
from ntune.data.load import load_or_simulate
from ntune.study.info import block_label
from ntune.study.numbers import json_number


def study_ceilings(study: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """What a study's info needs before it starts: ``{"ceilings": {label: ...}, "block_budgets": {label: n}}``
    (``study.block_trials``, then the probe budgets of the data-limited blocks).

    ``study`` is a :class:`ntune.study.config.StudyConfig`, ``base`` its resolved base config. Each block's
    data are loaded or simulated (through the cache, so trials reuse them) and their ceiling read; a block
    whose ceiling is below the connectivity_R2 threshold gets ``study.data_limited.probe_trials`` trials.
    Empty when ``study.data_limited.check`` is off.
    """
    budgets: dict[str, int] = {block_label(study.block_key, v): n for v, n in study.block_budgets().items()}
    if not study.data_limited.check:
        return {"block_budgets": budgets} if budgets else {}
    threshold = study.objective.thresholds.get("connectivity_R2")
    ceilings: dict[str, dict[str, Any]] = {}
    for value in study.block_values:
        config = dict(copy.deepcopy(base))
        set_dotted(config, study.block_key, value)
        for key, new in study.block_overrides().get(value, {}).items():  # the block's simulation overrides
            set_dotted(config, key, new)
        data = load_or_simulate(config_from_dict(config).simulation)
        label = block_label(study.block_key, value)
        # no compute time here: study.json must compare equal on resume, even after the cache was rebuilt
        entry: dict[str, Any] = {
            k: json_number(data.summary.get(k)) for k in SUMMARY_KEYS if k != "ident_time_s"
        }
        entry["silent"] = list(data.silent or [])
        entry["data_limited"] = threshold is not None and is_data_limited(data.summary, threshold)
        ceilings[label] = entry
        if entry["data_limited"]:
            budgets[label] = min(study.data_limited.probe_trials, budgets.get(label, study.n_iter_block))
    return {"ceilings": ceilings, "block_budgets": budgets}
