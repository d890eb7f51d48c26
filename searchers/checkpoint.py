"""Searcher checkpoints: a state pickled to a path atomically and read back. Pure Python, no Ray.

Ray Tune's ``Searcher.save(path)`` / ``restore(path)`` pair is implemented once here for every searcher
of this package (:class:`searchers.ucb.UCBTreeSearcher`, :class:`searchers.packing.PackingSearcher`);
``saved_bytes`` / ``restore_bytes`` carry a wrapped searcher's checkpoint inside another state.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import uuid
from collections.abc import Callable
from typing import Any


def write_pickle(path: str | os.PathLike[str], state: Any) -> None:
    """Pickle ``state`` to ``path`` atomically: written to a temporary file in the same folder, then
    renamed over ``path``, so a reader never sees a half-written file (an interrupted write leaves
    the previous file, if any, as it was)."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pickle.dump(state, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_pickle(path: str | os.PathLike[str]) -> Any:
    """The object pickled to ``path`` (by :func:`write_pickle`)."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


def saved_bytes(save: Callable[[str], None]) -> bytes:
    """The bytes ``save(path)`` writes (e.g. a wrapped searcher's ``save``), through a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inner.pkl")
        save(path)
        with open(path, "rb") as handle:
            return handle.read()


def restore_bytes(restore: Callable[[str], None], data: bytes) -> None:
    """Hand ``data`` (from :func:`saved_bytes`) to ``restore(path)`` through a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inner.pkl")
        with open(path, "wb") as handle:
            handle.write(data)
        restore(path)
