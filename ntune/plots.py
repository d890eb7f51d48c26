"""Figures (matplotlib, Agg-safe): every function draws on a given ``ax`` and returns nothing.

The caller owns the figure (``fig, ax = plt.subplots(); plot_x(ax, ...); fig.savefig(...)``), so
the same functions serve the CLI, the study journal, the report and the notebooks; ``save_figure``
does the figure bookkeeping for file output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntune.labels import node_change, tree_nodes

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_activity(ax: Axes, u: np.ndarray, dt: float, n_traces: int = 100) -> None:
    """Up to ``n_traces`` evenly chosen neuron traces of u (T, N), vertically offset, time in units of dt."""
    n_frames, n = u.shape
    idx = np.unique(np.linspace(0, n - 1, min(n, n_traces)).astype(np.int64))
    step = max(1, n_frames // 5000)
    t = np.arange(0, n_frames, step) * dt  # (frames shown,)
    traces = np.asarray(u[::step][:, idx], dtype=np.float64)  # (frames shown, traces)
    spread = np.nanstd(traces) if np.isfinite(traces).any() else 1.0
    offset = 3.0 * (spread if spread > 0 else 1.0)
    ax.plot(t, traces + offset * np.arange(len(idx)), lw=0.4, color="k")
    ax.set_xlabel("time")
    ax.set_ylabel(f"{len(idx)} neurons (offset)")
    ax.set_yticks([])
    ax.set_xlim(t[0], t[-1] if len(t) > 1 else t[0] + dt)


def plot_connectivity(ax: Axes, W: np.ndarray) -> None:
    """Heat map of W (N, N), rows = postsynaptic; colour range +-99th percentile of the non-zero |W|."""
    nonzero = np.abs(W[W != 0])
    vmax = float(np.percentile(nonzero, 99)) if nonzero.size else 1.0
    image = ax.imshow(W, cmap="bwr", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("presynaptic j")
    ax.set_ylabel("postsynaptic i")
    ax.set_title(f"W ({int((W != 0).sum())} non-zero)")


def _type_colors(n_types: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(k % 10) for k in range(n_types)]


def plot_W_scatter(ax: Axes, W_learned: np.ndarray, W_true: np.ndarray, metrics: dict[str, Any]) -> None:
    """Off-diagonal learned (scale-corrected) vs true W, R^2, slope and the diagnosis in the title."""
    off = ~np.eye(W_true.shape[0], dtype=bool)
    plot_W_pairs(ax, W_true[off], W_learned[off], metrics)


def plot_W_pairs(ax: Axes, x: np.ndarray, y: np.ndarray, metrics: dict[str, Any]) -> None:
    """Learned (scale-corrected) against true synapses given as pairs (n,), (n,); at most 200 000 drawn."""
    if len(x) > 200_000:
        pick = np.random.default_rng(0).choice(len(x), 200_000, replace=False)
        x, y = x[pick], y[pick]
    ax.scatter(x, y, s=1, alpha=0.3, color="k", rasterized=True)
    lim = float(np.nanmax(np.abs(x))) if x.size else 1.0
    ax.plot([-lim, lim], [-lim, lim], color="r", lw=0.8, ls="--")
    ax.set_xlabel("true W")
    ax.set_ylabel("learned W (scale-corrected)")
    flags = [name for name in ("zero_band", "cross") if _flag(metrics, name)]
    ax.set_title(
        f"R$^2$={metrics.get('connectivity_R2', float('nan')):.3f}  "
        f"slope={metrics.get('connectivity_slope', float('nan')):.2f}  "
        f"zero band={metrics.get('zero_band', float('nan')):.2f}"
        + (f"  [{', '.join(flags)}]" if flags else ""),
        fontsize=9,
    )


def _flag(metrics: dict[str, Any], name: str) -> bool:
    value = metrics.get(name, float("nan"))
    return bool(np.isfinite(value) and value > (0.5 if name == "cross" else 0.2))


def plot_embedding(ax: Axes, a: np.ndarray, types: np.ndarray, accuracy: float = float("nan")) -> None:
    """Embeddings a (N, >=2) in their first two dimensions, coloured by true neuron type."""
    colors = _type_colors(int(types.max()) + 1)
    for t in np.unique(types):
        sel = types == t
        second = a[sel, 1] if a.shape[1] > 1 else np.zeros(int(sel.sum()))
        ax.scatter(a[sel, 0], second, s=8, color=colors[int(t)], label=f"type {t}")
    ax.set_xlabel("$a_0$")
    ax.set_ylabel("$a_1$")
    ax.legend(fontsize=7, markerscale=1.5)
    ax.set_title(f"embedding, cluster accuracy={accuracy:.3f}", fontsize=9)


def plot_lin_phi(ax: Axes, u: np.ndarray, lin_phi: np.ndarray, types: np.ndarray, params: np.ndarray) -> None:
    """Learned lin_phi(u, a_i) (P, N) per neuron, coloured by type, against the true self-dynamics:
    -c u + s tanh(u) for PDE_N2 rows [g, s, c], -a u + b + s tanh(u) for PDE_N4 rows [a, b, g, s, w, h]."""
    colors = _type_colors(len(params))
    for i in range(lin_phi.shape[1]):
        ax.plot(u, lin_phi[:, i], color=colors[int(types[i])], lw=0.5, alpha=0.4)
    for t, row in enumerate(np.asarray(params, dtype=np.float64)):
        if len(row) == 6:
            a, b, _, s, _, _ = row
            true = -a * u + b + s * np.tanh(u)
        else:
            _, s, c = row
            true = -c * u + s * np.tanh(u)
        ax.plot(u, true, color=colors[t], lw=2, ls="--", label=f"true type {t}")
    ax.set_xlabel("u")
    ax.set_ylabel("lin_phi(u, a)")
    ax.legend(fontsize=7)
    ax.set_title("self dynamics: learned (thin) vs true (dashed)", fontsize=9)


def plot_lin_edge(ax: Axes, u: np.ndarray, lin_edge: np.ndarray, phi: str = "tanh") -> None:
    """Learned lin_edge(u) against phi(u) rescaled by the least-squares gain (the identifiable shape)."""
    target = np.tanh(u) if phi == "tanh" else u
    k, b = np.polyfit(target, lin_edge, 1) if np.isfinite(lin_edge).all() else (float("nan"), 0.0)
    ax.plot(u, lin_edge, color="k", lw=2, label="learned lin_edge")
    ax.plot(u, k * target + b, color="r", ls="--", label=f"{k:.3g} {phi}(u) + {b:.2g}")
    ax.set_xlabel("u")
    ax.set_ylabel("lin_edge(u)")
    ax.legend(fontsize=7)
    ax.set_title("message function vs phi", fontsize=9)


def plot_lin_edge_per_source(
    ax: Axes, u: np.ndarray, lin_edge: np.ndarray, target: np.ndarray, types: np.ndarray
) -> None:
    """PDE_N4: learned lin_edge([u, a_j]) (P, N) per source neuron j, coloured by type, against the true
    phi((u - h_j) / w_j) (P, N) of each type rescaled by the least-squares gain of the type's curves."""
    colors = _type_colors(int(types.max()) + 1)
    for j in range(lin_edge.shape[1]):
        ax.plot(u, lin_edge[:, j], color=colors[int(types[j])], lw=0.5, alpha=0.4)
    for t in np.unique(types):
        sel = types == t
        x, y = np.tile(target[:, sel].mean(axis=1), int(sel.sum())), lin_edge[:, sel].T.reshape(-1)
        ok = np.isfinite(y).all() and np.ptp(x) > 0
        k, b = np.polyfit(x, y, 1) if ok else (float("nan"), 0.0)
        ax.plot(
            u, k * target[:, sel].mean(axis=1) + b, color=colors[int(t)], lw=2, ls="--", label=f"type {t}"
        )
    ax.set_xlabel("u")
    ax.set_ylabel("lin_edge(u, a_j)")
    ax.legend(fontsize=7)
    ax.set_title("message function per source (thin) vs phi((u - h)/w) (dashed)", fontsize=9)


def plot_loss(ax: Axes, losses: np.ndarray, names: tuple[str, ...]) -> None:
    """Per-iteration loss terms (iterations, n_terms), smoothed, log scale."""
    n = len(losses)
    window = max(1, n // 200)
    for k, name in enumerate(names):
        values = losses[: n // window * window, k].reshape(-1, window).mean(axis=1)
        if np.any(values > 0):
            ax.plot(np.arange(len(values)) * window, values, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)


Curve = tuple[str, Any, Any, Any]  # (label, iterations, connectivity R2, cluster accuracy), each (points,)


def plot_learning_curves(ax: Axes, curves: list[Curve], threshold: float = 0.9) -> None:
    """Connectivity R^2 (solid) and cluster accuracy (dashed) against iteration, one colour per run."""
    for k, (label, iteration, r2, cluster) in enumerate(curves):
        color = f"C{k % 10}"
        ax.plot(iteration, r2, "o-", color=color, ms=3, label=label)
        ax.plot(iteration, cluster, "s--", color=color, ms=3)
    ax.axhline(threshold, color="0.6", ls=":", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("R$^2$ (solid), cluster accuracy (dashed)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6, loc="lower right")


def _preorder(by_id: Mapping[int, Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(node id, depth) of every node, depth first (children by id): each node one row, under its parent."""
    children: dict[Any, list[int]] = {}
    for n, node in sorted(by_id.items()):
        parent = node.get("parent")
        children.setdefault(parent if parent in by_id else None, []).append(n)
    order: list[tuple[int, int]] = []
    stack = [(n, 0) for n in reversed(children.get(None, []))]
    while stack:
        n, depth = stack.pop()
        order.append((n, depth))
        stack += [(c, depth + 1) for c in reversed(children.get(n, []))]
    return order


ROW_INCHES = 0.24  # a tree node's row: room for one line of 8-point label text and its marker
LABEL_OFFSET = 8  # points between a tree node and its label


def plot_tree(ax: Axes, tree: Mapping[str, Any], title: str = "") -> None:
    """Draw one block's search tree (``Tree.to_dict`` form) as an indented tree: one row per node (depth
    first), one column per one-parameter change from the root; colour = the node's mean score (grey: no
    completed run yet). Each node is labelled with its id, its change from its parent with the values
    (``lr_emb 2e-3 -> 1.2e-3``; the root: its values) and its mean score and runs.

    No two labels share a row, and the figure grows (never shrinks) so that every row has the height of a
    line and every label fits inside the axes.
    """
    by_id = {int(node["id"]): node for node in tree.get("nodes") or []}
    means = {n: mean for n, _, mean, _ in tree_nodes(tree)}
    rows = _preorder(by_id)
    fig = ax.figure
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, max(height, 1.6 + ROW_INCHES * len(rows)))
    y_of = {n: -k for k, (n, _) in enumerate(rows)}
    x_of = {n: float(depth) for n, depth in rows}
    for n, _ in rows:
        p = by_id[n].get("parent")
        if p in x_of:
            ax.plot([x_of[p], x_of[p], x_of[n]], [y_of[p], y_of[n], y_of[n]], color="0.6", lw=1, zorder=1)
    runs = {n: len(by_id[n].get("runs") or []) for n in by_id}
    ids = [n for n, _ in rows]
    waiting = [n for n in ids if not runs[n]]
    done = [n for n in ids if runs[n]]
    style: dict[str, Any] = {"s": 60, "zorder": 2, "edgecolors": "k"}
    ax.scatter([x_of[n] for n in waiting], [y_of[n] for n in waiting], color="0.85", **style)
    sc = ax.scatter(
        [x_of[n] for n in done],
        [y_of[n] for n in done],
        c=[means[n] for n in done],
        cmap="viridis",
        vmin=0,
        vmax=1,
        **style,
    )
    texts = []
    for n in ids:
        parent = by_id.get(by_id[n].get("parent"))
        score = f"[{means[n]:.3f}, {runs[n]} run{'s' if runs[n] != 1 else ''}]" if runs[n] else "[no run yet]"
        texts.append(
            ax.annotate(
                f"{n}  {node_change(by_id[n], parent)}  {score}",
                (x_of[n], y_of[n]),
                textcoords="offset points",
                xytext=(LABEL_OFFSET, 0),
                va="center",
                fontsize=8,
            )
        )
    fig.colorbar(
        sc, ax=ax, label="mean score", fraction=0.03, pad=0.02, shrink=min(1.0, 4 / max(len(rows), 1)) ** 0.5
    )
    depth = max((d for _, d in rows), default=0)
    ax.set_title(title)
    ax.set_xticks(range(depth + 1), ["root", *(f"+{d}" for d in range(1, depth + 1))])
    ax.set_xlabel("one-parameter changes from the root")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    _fit_labels(ax, texts, [x_of[n] for n in ids], depth)


def _fit_labels(ax: Axes, texts: list[Any], xs: list[float], depth: int) -> None:
    """Widen the figure until the widest label takes at most 70 % of the axes, then set the x range so
    that every label (anchored at ``xs``) ends inside the axes."""
    fig = ax.figure
    pad = (LABEL_OFFSET + 6) * fig.dpi / 72
    widths = [t.get_window_extent().width + pad for t in texts]
    room = ax.get_window_extent().width
    widest = max(widths, default=0.0)
    if widest > 0.7 * room:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width * widest / (0.7 * room), height)
        room = ax.get_window_extent().width
    left = -0.3
    right = max(
        [depth + 0.5, *(left + (x - left) * room / (room - w) for x, w in zip(xs, widths, strict=True))]
    )
    ax.set_xlim(left, right)


def plot_pareto(
    ax: Axes,
    points: list[tuple[float, float]],
    front: list[tuple[float, float]],
) -> None:
    """Connectivity R^2 against cluster accuracy of each completed trial (grey), the Pareto-optimal ones
    (``front``: both maximised) in red, joined as the front's staircase."""
    if points:
        ax.scatter(*zip(*points, strict=True), s=18, color="0.6", label="completed trials")
    if front:
        steps = sorted(front, key=lambda p: -p[0])
        ax.plot(*zip(*steps, strict=True), color="r", lw=1, drawstyle="steps-post")
        ax.scatter(*zip(*steps, strict=True), s=30, color="r", zorder=3, label="Pareto front")
    ax.set_xlabel("connectivity R$^2$")
    ax.set_ylabel("cluster accuracy")
    ax.legend(loc="lower left", fontsize=8)


def plot_landscape(ax: Axes, rows: list[dict[str, Any]], block_key: str) -> None:
    """Best connectivity R^2 and cluster accuracy per block value (log x axis), 0.9 line, ceiling if given."""
    xs = [float(r["value"]) for r in rows]
    ax.plot(xs, [r["best_R2"] for r in rows], "o-", label="best connectivity R$^2$")
    ax.plot(xs, [r["best_cluster"] for r in rows], "s-", label="best cluster accuracy")
    if all("ceiling" in r for r in rows):
        ax.plot(xs, [r["ceiling"] for r in rows], "k:", label="identifiability ceiling")
    ax.axhline(0.9, color="0.6", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(block_key.split(".")[-1])
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")


CLASS_COLORS = {"converged": "tab:green", "failed": "tab:red", "data-limited": "0.6", "stopped": "0.6"}


def plot_range_slice(
    ax: Axes,
    points: list[tuple[Any, float, str]],
    *,
    name: str,
    robust: Any,
    interval: tuple[Any, Any] | None,
    log: bool = False,
    choices: tuple[Any, ...] = (),
) -> None:
    """Score against one parameter's value on the slice through a block's robust config: every run as a
    point coloured by its classification (partial ones orange), the converged ``interval`` shaded, the
    robust value a dashed line. ``choices``: a choice parameter, drawn at one position per value."""
    position = {v: k for k, v in enumerate(choices)}

    def x(value: Any) -> float:
        return float(position[value]) if choices else float(value)

    seen: set[str] = set()
    for value, score, cls in sorted(points, key=lambda p: p[2]):
        color = CLASS_COLORS.get(cls, "tab:orange")
        label = cls if cls not in seen else None
        seen.add(cls)
        ax.scatter([x(value)], [score], s=30, color=color, edgecolor="k", lw=0.5, zorder=3, label=label)
    if interval is not None and not choices:
        ax.axvspan(float(interval[0]), float(interval[1]), color="tab:green", alpha=0.12, label="converges")
    if robust is not None and (not choices or robust in position):
        ax.axvline(x(robust), color="k", ls="--", lw=1, label="robust config")
    if log and not choices:  # symlog when a value is an allowed zero
        nonzero = [abs(float(v)) for v, _, _ in points if float(v) != 0]
        zero = len(nonzero) < len(points) or robust == 0
        if zero and nonzero:
            ax.set_xscale("symlog", linthresh=min(nonzero))
        else:
            ax.set_xscale("log")
    if choices:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
    ax.set_xlabel(name)
    ax.set_ylabel("score")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="best", fontsize=7)


def save_figure(draw: Callable[[Axes], None], path: Path, figsize: tuple[float, float] = (7, 4)) -> None:
    """Make a figure, ``draw(ax)`` on it, write it to ``path`` (folders created), close it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    draw(ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_data_plots(data: Any, folder: Path) -> None:
    """activity.png (100 traces) and connectivity.png in ``folder``, unless both exist already."""
    targets = (folder / "activity.png", folder / "connectivity.png")
    if all(p.exists() for p in targets):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    plot_activity(ax, data.u, data.config.delta_t)
    fig.savefig(targets[0], dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 5))
    plot_connectivity(ax, data.W)
    fig.savefig(targets[1], dpi=100, bbox_inches="tight")
    plt.close(fig)
