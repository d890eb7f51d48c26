"""On-disk data cache: one folder per simulation, written atomically, verified on load, locked while built.

An entry is ``<root>/<model>-<hash>-v<FORMAT_VERSION>/`` where ``<model>`` is ``signal_model_name`` in
lower case (``pde_n2``, ``pde_n4``), ``<hash>`` is the hash of the simulation section without ``device``
(equal to ``NtuneConfig.simulation_hash()``; the fields of ``ntune.config.OMITTED_AT_DEFAULT`` are not in
the dump while at their defaults, so adding them changed no existing key) and ``<root>`` is
``cache_dir``, else ``$NTUNE_CACHE``, else ``~/.cache/ntune``. It holds one ``.npy`` file per array
and ``meta.json`` (format version, config, summary, per-array shape, dtype and CRC-32 of the data
bytes). The folder is built under a temporary name and moved into place with ``os.replace``, so a
reader sees a complete entry or none. ``<root>/<entry>.lock`` (a ``filelock.FileLock``) serialises
builders, so concurrent trials on one machine simulate once.

Entries are never deleted by ntune on its own: ``ntune cache list`` shows them (an N = 1000, 100 000-frame
simulation is 0.8 GB) and ``ntune cache prune`` deletes the oldest (:func:`list_entries`,
:func:`select_prunable`, :func:`remove_entry`); a pruned entry is simulated again when next needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from ntune.config import ConfigError, config_hash

FORMAT_VERSION = 1
META_FILE = "meta.json"
_CRC_CHUNK = 1 << 26  # bytes per zlib.crc32 call


class CacheCorruptError(RuntimeError):
    """An entry exists but is incomplete, altered or unreadable; the message says what is wrong."""


class NonFiniteDataError(ConfigError):
    """Data to be cached hold NaN or infinity (a diverging simulation); nothing was written."""


def check_finite(arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`NonFiniteDataError` naming the first float array with NaN/inf and where it starts."""
    for name, a in arrays.items():
        if not np.issubdtype(a.dtype, np.floating):
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), a.shape)
            where = (
                f"first at frame {first[0]}" if a.ndim == 2 and name in ("u", "y") else f"first at {first}"
            )
            raise NonFiniteDataError(
                f"the simulated data are not finite: {name} has {int(bad.sum())} NaN/inf values of {a.size} "
                f"({where}); the dynamics diverge, so nothing was cached. Lower simulation.delta_t, the gains "
                "in simulation.params or the connectivity scale"
            )


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$NTUNE_CACHE``, else ``~/.cache/ntune``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("NTUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ntune"


def entry_name(simulation: dict[str, Any]) -> str:
    """Folder name of the entry for a dumped simulation section (``device`` is ignored)."""
    section = {k: v for k, v in simulation.items() if k != "device"}
    model = str(section.get("signal_model_name", "PDE_N2")).lower()
    return f"{model}-{config_hash(section)}-v{FORMAT_VERSION}"


def checksum(a: np.ndarray) -> str:
    """CRC-32 (hex) of the array's data bytes, in 64 MiB chunks (about 4 GB/s)."""
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # (n_bytes,)
    crc = 0
    for start in range(0, flat.size, _CRC_CHUNK):
        crc = zlib.crc32(flat[start : start + _CRC_CHUNK], crc)
    return f"{crc:08x}"


def entry_lock(entry: Path) -> FileLock:
    """The lock that guards building ``entry``."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(entry.parent / f"{entry.name}.lock"))


def write_entry(entry: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` (plus checksums) as ``entry``, atomically; replaces a stale entry.

    Call while holding :func:`entry_lock`. Float arrays with NaN or infinity raise
    :class:`NonFiniteDataError` before anything is written.
    """
    check_finite(arrays)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        record = dict(meta, format_version=FORMAT_VERSION, arrays={})
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a, allow_pickle=False)
            record["arrays"][name] = {"shape": list(a.shape), "dtype": str(a.dtype), "crc32": checksum(a)}
        (tmp / META_FILE).write_text(json.dumps(record, indent=1, default=str))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def update_meta(entry: Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into the entry's meta.json (atomic replace; arrays and checksums untouched).

    Call while holding :func:`entry_lock`.
    """
    meta = json.loads((entry / META_FILE).read_text())
    meta.update(updates)
    tmp = entry / f".{META_FILE}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, entry / META_FILE)


def read_entry(entry: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and meta of ``entry``; None if there is no entry; :class:`CacheCorruptError` if it is bad.

    Arrays are memory-mapped copy-on-write (writable; changes never reach the file), so a hit reads the
    files once, for the checksums, and copies nothing: 0.3 s instead of 0.5-1.5 s for 0.8 GB.
    """
    if not entry.exists():
        return None
    try:
        meta = json.loads((entry / META_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CacheCorruptError(f"{entry / META_FILE}: unreadable ({err})") from None
    if meta.get("format_version") != FORMAT_VERSION or not isinstance(meta.get("arrays"), dict):
        raise CacheCorruptError(f"{entry / META_FILE}: not a format-v{FORMAT_VERSION} entry")
    arrays = {}
    for name, spec in meta["arrays"].items():
        path = entry / f"{name}.npy"
        try:
            a = np.load(path, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise CacheCorruptError(f"{path}: unreadable or truncated ({err})") from None
        if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
            raise CacheCorruptError(
                f"{path}: shape {a.shape} {a.dtype}, expected {spec['shape']} {spec['dtype']}"
            )
        if checksum(a) != spec["crc32"]:
            raise CacheCorruptError(f"{path}: checksum mismatch (file altered)")
        arrays[name] = a.view(np.ndarray)  # plain ndarray over a copy-on-write map: lazy, writable
    return arrays, meta


ENTRY_PATTERN = re.compile(r"^[a-z0-9_]+-[0-9a-f]+-v\d+$")  # <model>-<hash>-v<format>


@dataclass(frozen=True)
class EntryInfo:
    """One cache entry as ``ntune cache list`` shows it: where, how big, when last written, what it holds."""

    path: Path
    size_bytes: int
    modified: float  # seconds since the epoch: the newest of the folder and its files
    simulation: dict[str, Any]  # the entry's simulation section ({} when its meta.json is unreadable)


def _size_and_time(folder: Path) -> tuple[int, float]:
    files = [f for f in folder.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    return size, max([folder.stat().st_mtime, *(f.stat().st_mtime for f in files)])


def list_entries(root: Path) -> list[EntryInfo]:
    """Every entry under ``root`` (folders named like :func:`entry_name`), oldest first; other folders
    (``experiments/`` mirrors, temporary builds) are left out."""
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or not ENTRY_PATTERN.match(folder.name):
            continue
        size, modified = _size_and_time(folder)
        try:
            simulation = dict(json.loads((folder / META_FILE).read_text()).get("config") or {})
        except (OSError, ValueError):
            simulation = {}
        found.append(EntryInfo(folder, size, modified, simulation))
    return sorted(found, key=lambda e: (e.modified, e.path.name))


def select_prunable(
    entries: list[EntryInfo],
    *,
    now: float,
    older_than_days: float | None = None,
    keep_bytes: int | None = None,
) -> list[EntryInfo]:
    """The entries to delete, oldest first: those last written more than ``older_than_days`` ago, then, of
    the rest, the oldest until what stays fits in ``keep_bytes``. ``entries`` oldest first."""
    chosen = [
        e for e in entries if older_than_days is not None and now - e.modified > older_than_days * 86400
    ]
    if keep_bytes is not None:
        kept = [e for e in entries if e not in chosen]
        total = sum(e.size_bytes for e in kept)
        for e in kept:
            if total <= keep_bytes:
                break
            chosen.append(e)
            total -= e.size_bytes
    return sorted(chosen, key=lambda e: (e.modified, e.path.name))


def remove_entry(entry: Path) -> bool:
    """Delete ``entry`` and its lock file unless a builder holds its lock now; True when it was deleted.
    A process that already read the entry keeps its memory-mapped arrays (the files go when it closes them)."""
    lock = entry_lock(entry)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    try:
        shutil.rmtree(entry, ignore_errors=True)
    finally:
        lock.release()
    Path(lock.lock_file).unlink(missing_ok=True)
    return True
