"""Dotted keys into nested config dicts: ``"training.coeff_W_L1"`` -> ``config["training"]["coeff_W_L1"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_dotted(tree: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for ``key="a.b"``, ``default`` when a level is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key="a.b"``, creating (or replacing non-dict) levels."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
