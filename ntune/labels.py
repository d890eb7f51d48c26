"""How a search's values and changes are written in figures and tables: short field names, compact
numbers, a node's change from its parent, a tree's nodes as rows (no matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def tree_nodes(tree: Mapping[str, Any]) -> list[tuple[int, int | None, float, str]]:
    """(id, parent, mean score of its runs, mutation) per node of a tree in ``searchers.tree.Tree.to_dict`` form."""
    rows = []
    for node in tree.get("nodes") or []:
        scores = [float(run["score"]) for run in node.get("runs") or []]
        mean = sum(scores) / len(scores) if scores else 0.0
        rows.append((int(node["id"]), node.get("parent"), mean, str(node.get("mutation") or "")))
    return rows


def short_name(key: str) -> str:
    """A searched field's short name in figures: the dotted key's leaf with ``learning_rate`` -> ``lr``,
    ``embedding`` -> ``emb``, ``data_augmentation_loop`` -> ``data_aug`` and no ``_start``
    (``training.learning_rate_embedding_start`` -> ``lr_emb``)."""
    leaf = key.rsplit(".", 1)[-1].replace("learning_rate", "lr").replace("embedding", "emb")
    return leaf.replace("data_augmentation_loop", "data_aug").removesuffix("_start")


def compact(value: Any) -> str:
    """A value as a person writes it in a label: ``2e-3``, ``1.2e-3``, ``0.1``, ``15``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value == 0 or not np.isfinite(value):
        return str(value)
    if abs(value) < 1e-2 or abs(value) >= 1e4:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.3g}"


def node_change(node: Mapping[str, Any], parent: Mapping[str, Any] | None) -> str:
    """What a tree node (``Tree.to_dict`` form) changed from its parent: ``lr_emb 2e-3 -> 1.2e-3``; of a
    root, its values (``root: lr_W 5e-3, L1 1e-5``); from the mutation text when the params are missing."""
    params = node.get("params") or {}
    if parent is None:
        values = ", ".join(f"{short_name(k)} {compact(v)}" for k, v in params.items())
        return f"root: {values}" if values else "root"
    before = parent.get("params") or {}
    changed = [k for k in params if k not in before or before[k] != params[k]]
    if changed:
        return ", ".join(f"{short_name(k)} {compact(before.get(k))} -> {compact(params[k])}" for k in changed)
    name, _, move = str(node.get("mutation") or "").partition(":")
    return f"{short_name(name)} {move.strip()}".strip() if move else name
