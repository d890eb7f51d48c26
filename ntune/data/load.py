"""One load step: the cache -> simulate -> identify -> write, per simulation config.

``load_or_simulate`` returns the cached data of a simulation config, or simulates them
(:func:`ntune.data.simulate.simulate`, a pure integrator), runs the identifiability oracle
(:mod:`ntune.data.identifiability`) and writes the cache entry, once per machine under a file lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ntune.config import SimulationConfig
from ntune.data import cache
from ntune.data.identifiability import ORACLE_VERSION, of_data
from ntune.data.simulate import Progress, SimData, simulate, variance_ranks

log = logging.getLogger(__name__)
RANK_KEYS = ("effective_rank_90", "effective_rank_99")  # upstream's activity complexity, in the summary


def _arrays(data: SimData) -> dict[str, np.ndarray]:
    return {
        "u": data.u,
        "y": data.y,
        "W": data.W,
        "mask": data.mask,
        "types": data.types,
        "params": data.params,
    }


def _from_entry(entry: Path, config: SimulationConfig, warn: bool = True) -> SimData | None:
    """The cached data of ``entry``; None if absent; a corrupt entry is treated as absent (logged if ``warn``)."""
    try:
        found = cache.read_entry(entry)
    except cache.CacheCorruptError as err:
        if warn:
            log.warning("corrupt cache entry, regenerating: %s", err)
        return None
    if found is None:
        return None
    a, meta = found
    summary = {k: float(v) for k, v in meta["summary"].items()}
    data = SimData(a["u"], a["y"], a["W"], a["mask"], a["types"], a["params"], config, summary, entry)
    data.silent = list(meta.get("silent", []))
    current = summary.get("ident_version") == ORACLE_VERSION
    if current and RANK_KEYS[0] in summary:
        return data
    # an entry cached before these numbers (or this version of the oracle) existed: compute them once
    with cache.entry_lock(entry):
        if RANK_KEYS[0] not in summary:
            add_variance_ranks(data)
        if not current:
            add_identifiability(data)
        cache.update_meta(entry, {"summary": data.summary, "silent": data.silent})
    return data


def add_variance_ranks(data: SimData) -> None:
    """Add upstream's activity complexity (:func:`ntune.data.simulate.variance_ranks`) to ``data.summary``."""
    finite = bool(data.summary.get("finite", 1.0))
    ranks = variance_ranks(data.u) if finite else (float("nan"), float("nan"))
    data.summary.update({key: float(r) for key, r in zip(RANK_KEYS, ranks, strict=True)})


def add_identifiability(data: SimData) -> None:
    """Compute the oracle of :mod:`ntune.data.identifiability` and add its numbers to ``data.summary``."""
    nan = float("nan")
    found: dict[str, Any] = (
        of_data(data)
        if data.summary.get("finite", 1.0)
        else {"ceiling": nan, "R2_exact": nan, "ident_version": float(ORACLE_VERSION), "silent": []}
    )
    data.silent = found.pop("silent")
    data.summary.update(found)


def cache_entry(config: SimulationConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the data of ``config`` are (or will be) cached."""
    return cache.cache_root(cache_dir) / cache.entry_name(config.model_dump(mode="json"))


def load_or_simulate(
    config: SimulationConfig, *, cache_dir: str | Path | None = None, progress: Progress | None = None
) -> SimData:
    """Cached data of ``config``, simulating and caching them first if needed (once per machine, file lock)."""
    entry = cache_entry(config, cache_dir)
    data = _from_entry(entry, config)
    if data is not None:
        return data
    with cache.entry_lock(entry):
        data = _from_entry(entry, config, warn=False)  # re-check under the lock; warned above already
        if data is not None:
            return data
        data = simulate(config, progress=progress)
        add_identifiability(data)
        meta = {
            "config": config.model_dump(mode="json", exclude={"device"}),
            "summary": data.summary,
            "silent": data.silent,
        }
        cache.write_entry(entry, _arrays(data), meta)
        data.path = entry
        return data
