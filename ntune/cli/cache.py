"""``ntune cache list`` and ``ntune cache prune``: the simulation cache's entries, and deleting the oldest.

The domain functions are :func:`ntune.data.cache.list_entries`, :func:`~ntune.data.cache.select_prunable`
and :func:`~ntune.data.cache.remove_entry`; this module prints what they return.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ntune.config import ConfigError
from ntune.data.cache import EntryInfo, cache_root, list_entries, remove_entry, select_prunable

GB = 1e9


def _size(n_bytes: int) -> str:
    return f"{n_bytes / GB:.2f} GB" if n_bytes >= 0.1 * GB else f"{n_bytes / 1e6:.1f} MB"


def _what(sim: dict[str, Any]) -> str:
    """``PDE_N2 N=1000 T=100000 ff=0.05 noise=0 seed=42`` from an entry's simulation section."""
    if not sim:
        return "(unreadable meta.json)"
    return (
        f"{sim.get('signal_model_name', '?')} N={sim.get('n_neurons', '?')} T={sim.get('n_frames', '?')} "
        f"ff={sim.get('connectivity_filling_factor', '?')} noise={sim.get('noise_model_level', '?')} "
        f"seed={sim.get('seed', '?')}"
    )


def _table(title: str, entries: list[EntryInfo]) -> Table:
    table = Table(title=title)
    for name in ("entry", "simulation", "size", "written"):
        table.add_column(name, justify="right" if name == "size" else "left")
    for e in entries:
        when = dt.datetime.fromtimestamp(e.modified).strftime("%Y-%m-%d %H:%M")
        table.add_row(e.path.name, _what(e.simulation), _size(e.size_bytes), when)
    return table


def cache_list_command(cache_dir: Path | None, *, console: Console) -> None:
    """Print every entry, oldest first, and the total."""
    root = cache_root(cache_dir)
    entries = list_entries(root)
    console.print(_table(f"{root}: {len(entries)} entries", entries))
    console.print(f"total {_size(sum(e.size_bytes for e in entries))}", highlight=False)


def cache_prune_command(
    cache_dir: Path | None,
    *,
    older_than_days: float | None,
    keep_gb: float | None,
    dry_run: bool,
    console: Console,
) -> None:
    """Delete (or with ``dry_run`` only list) the entries :func:`select_prunable` picks; ConfigError without
    a criterion or with a negative one."""
    if older_than_days is None and keep_gb is None:
        raise ConfigError("cache prune: give --older-than DAYS, --keep-gb GB or both; nothing was deleted")
    for option, value in (("--older-than", older_than_days), ("--keep-gb", keep_gb)):
        if value is not None and value < 0:
            raise ConfigError(f"cache prune: {option} {value} -- must be >= 0; nothing was deleted")
    root = cache_root(cache_dir)
    entries = list_entries(root)
    keep = None if keep_gb is None else int(keep_gb * GB)
    chosen = select_prunable(entries, now=time.time(), older_than_days=older_than_days, keep_bytes=keep)
    freed = sum(e.size_bytes for e in chosen)
    if dry_run:
        console.print(_table(f"would delete {len(chosen)} of {len(entries)} entries", chosen))
        console.print(f"would free {_size(freed)}; nothing was deleted (--dry-run)", highlight=False)
        return
    busy = [e for e in chosen if not remove_entry(e.path)]
    done = len(chosen) - len(busy)
    freed -= sum(e.size_bytes for e in busy)
    console.print(
        f"deleted {done} of {len(entries)} entries in {root}, freed {_size(freed)}", highlight=False
    )
    for e in busy:
        console.print(
            f"kept {e.path.name}: being built by another process (its lock is held)", highlight=False
        )
