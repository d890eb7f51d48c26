"""The tree plot: every node labelled with its change and values, no numeric depth axis, no two labels overlapping."""

from __future__ import annotations

import itertools
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from ntune.labels import compact, short_name
from ntune.plots import plot_tree
from ntune.study.entries import SHORT_NAMES
from searchers.tree import Tree

LR_W, LR_EMB, L1 = (
    "training.learning_rate_W_start",
    "training.learning_rate_embedding_start",
    "training.coeff_W_L1",
)
ROOT = {LR_W: 5e-3, LR_EMB: 2e-3, L1: 1e-5}
DEMO = [(L1, 1e-3), (LR_EMB, 1.2e-3), (LR_EMB, 0.1)]  # the demo's block 1.0, whose two lr_emb labels collided
MANY = [(LR_EMB if k % 2 else L1, round(3e-4 * (k + 1), 6)) for k in range(25)]


def _tree(children: list[tuple[str, Any]], chain: int = 0) -> Tree:
    """A root with one child per (key, value) and, under the last child, a chain of ``chain`` lr_W moves;
    one completed run per node (score 0.9), except the chain's last node, still pending."""
    tree = Tree("connectivity_filling_factor=1.0")
    root = tree.add_node(dict(ROOT), None)
    nodes = [root]
    for key, value in children:
        params = {**ROOT, key: value}
        nodes.append(
            tree.add_node(params, root.id, f"{key.rsplit('.', 1)[-1]}: {ROOT[key]} -> {value}", "exploit")
        )
    parent = nodes[-1]
    for _ in range(chain):
        params = {**parent.params, LR_W: parent.params[LR_W] * 2}
        parent = tree.add_node(params, parent.id, "lr_W move", "exploit")
        nodes.append(parent)
    for k, node in enumerate(nodes[: len(nodes) - (chain > 0)]):
        tree.add_pending(node.id, f"r{k}", k)
        tree.complete(f"r{k}", 0.9, {"status": "ok"}, "converged")
    return tree


def _draw(tree: Tree) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_tree(ax, tree.to_dict(), title="connectivity_filling_factor=1.0")
    fig.tight_layout()
    fig.canvas.draw()
    return fig, ax


def test_short_names_are_the_journals() -> None:
    assert [short_name(key) for _, key in SHORT_NAMES] == [short for short, _ in SHORT_NAMES]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2e-3, "2e-3"),
        (1.2e-3, "1.2e-3"),
        (1e-5, "1e-5"),
        (0.1, "0.1"),
        (0.0125, "0.0125"),
        (15, "15"),
        (0.0, "0.0"),
    ],
)
def test_compact_values(value: Any, text: str) -> None:
    assert compact(value) == text


def test_each_node_is_labelled_with_its_change_and_values_and_the_axes_mean_something() -> None:
    tree = _tree(DEMO)
    fig, ax = _draw(tree)
    assert [t.get_text() for t in ax.texts] == [
        "1  root: lr_W 5e-3, lr_emb 2e-3, coeff_W_L1 1e-5  [0.900, 1 run]",
        "2  coeff_W_L1 1e-5 -> 1e-3  [0.900, 1 run]",
        "3  lr_emb 2e-3 -> 1.2e-3  [0.900, 1 run]",
        "4  lr_emb 2e-3 -> 0.1  [0.900, 1 run]",
    ]
    assert list(ax.get_yticks()) == [] and ax.get_ylabel() == ""
    assert [t.get_text() for t in ax.get_xticklabels()] == ["root", "+1"]
    assert ax.get_xlabel() == "one-parameter changes from the root"
    plt.close(fig)


@pytest.mark.parametrize(("children", "chain"), [(DEMO, 0), (MANY, 4)])
def test_no_two_labels_overlap_and_all_stay_inside_the_axes(
    children: list[tuple[str, Any]], chain: int
) -> None:
    fig, ax = _draw(_tree(children, chain=chain))
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) == len(children) + 1 + chain
    assert ax.texts[-1].get_text().endswith("[no run yet]" if chain else "[0.900, 1 run]")
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    frame = ax.get_window_extent()
    assert all(frame.x0 <= box.x0 and box.x1 <= frame.x1 + 0.5 for box in boxes)
    assert all(frame.y0 <= box.y0 and box.y1 <= frame.y1 + 0.5 for box in boxes)
    plt.close(fig)
