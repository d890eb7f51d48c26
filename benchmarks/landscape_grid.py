"""The sparsity landscape without Ray: per filling factor, a grid of configs x seeds as one population.

    python benchmarks/landscape_grid.py --config configs/pde_n2.yaml --levels 1.0,0.5,0.05 \\
        --grid training.coeff_W_L1=1e-5,1e-4 --seeds 3 --set training.data_augmentation_loop=20 --out DIR

For each level: simulate (or read the cache), the identifiability ceiling, then every grid point x
every training seed trained at once by ``ntune.learn.population.train_population`` (on CUDA one captured
graph per step). A grid point is **robust** when all its seeds converge (DESIGN: 3 of 3). Writes, as it
goes (a run cut short keeps the finished levels):

* ``DIR/landscape.jsonl``: one row per member (level, grid point, seed, metrics, class, score, ceiling);
* ``DIR/scatter_<ff>.npz``: the best member's off-diagonal (true W, scale-corrected learned W) pairs;

and prints per level the ceiling, the best member and each grid point's per-seed results.
``--report DIR`` reads those files back, prints the per-level table and draws the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ntune.config import NtuneConfig, config_from_dict, load_config, set_dotted
from ntune.data.load import load_or_simulate
from ntune.learn.evaluate import scale_corrected_W
from ntune.learn.population import train_population
from ntune.yamlio import parse_overrides
from searchers.objective import classify, score

LEVEL_KEY = "simulation.connectivity_filling_factor"
KEPT = (
    "connectivity_R2",
    "cluster_accuracy",
    "connectivity_slope",
    "zero_band",
    "cross",
    "test_R2",
    "final_loss",
    "status",
)
SCATTER_PAIRS = 100_000


def grid_points(grid: list[str]) -> list[dict[str, Any]]:
    """Cartesian product of ``KEY=v1,v2,...`` specs, as dicts of dotted overrides ([{}] for no grid)."""
    axes = []
    for spec in grid:
        key, _, values = spec.partition("=")
        if not values:
            raise SystemExit(f"--grid {spec!r}: expected KEY=v1,v2,...")
        axes.append([(key, v) for _, v in parse_overrides([f"{key}={x}" for x in values.split(",")])])
    return [dict(point) for point in itertools.product(*axes)]


def member_config(base: dict[str, Any], level: float, point: dict[str, Any], seed: int) -> NtuneConfig:
    data = json.loads(json.dumps(base))
    set_dotted(data, LEVEL_KEY, level)
    for key, value in point.items():
        set_dotted(data, key, value)
    set_dotted(data, "training.seed", seed)
    return config_from_dict(data)


def run_level(
    base: dict[str, Any],
    level: float,
    points: list[dict[str, Any]],
    seeds: int,
    out: Path,
    cache: str | None,
    overrides: tuple[str, ...] = (),
    first_seed: int = 0,
) -> list[dict[str, Any]]:
    """Simulate, train every (grid point, seed), append the rows to landscape.jsonl, save the best scatter.

    Seeds are ``first_seed .. first_seed + seeds - 1``: runs of other seeds of the same point and base
    (separate processes, one per core) append to the same file and are summarised together, and the
    level's scatter is replaced only by a better member's. ``overrides`` (the base's ``--set`` list) is
    stored in every row, so rows of runs with different bases stay apart."""
    seed_range = range(first_seed, first_seed + seeds)
    configs = [member_config(base, level, p, s) for p in points for s in seed_range]
    start = time.perf_counter()
    data = load_or_simulate(configs[0].simulation, cache_dir=cache)
    sim_s = time.perf_counter() - start
    ceiling = float(data.summary.get("ceiling", math.nan))
    print(
        f"ff {level:g}: data in {sim_s:.0f} s, ceiling {ceiling:.4f}; training K={len(configs)}", flush=True
    )
    start = time.perf_counter()

    def progress(k: int, m: dict[str, Any]) -> None:
        print(
            f"ff {level:g} member {k}: iteration {m['iteration']}, R2 {m['connectivity_R2']:.3f}, "
            f"cluster {m['cluster_accuracy']:.2f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    results = train_population(configs, data, on_progress=progress)
    train_s = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    for k, (config, result) in enumerate(zip(configs, results, strict=True)):
        metrics = result.metrics
        rows.append(
            {
                "level": level,
                "point": points[k // seeds],
                "set": list(overrides),
                "seed": config.training.seed,
                **{key: metrics.get(key) for key in KEPT},
                "class": classify(metrics),
                "score": score(metrics),
                "ceiling": ceiling,
                "n_iterations": metrics.get("n_iterations"),
                "K": len(configs),
                "sim_s": sim_s,
                "train_s": train_s,
            }
        )
    with open(out / "landscape.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    scores = [float(r["score"]) for r in rows]
    best = scores.index(max(scores))
    path = out / f"scatter_{level:g}.npz"
    if path.exists():
        with np.load(path) as kept:
            if float(kept.get("score", -math.inf)) >= scores[best]:
                return rows
    W_eff = scale_corrected_W(results[best].model, data)  # (N, N)
    off = ~np.eye(len(W_eff), dtype=bool)
    x, y = data.W[off], W_eff[off]
    pick = np.random.default_rng(0).choice(len(x), min(len(x), SCATTER_PAIRS), replace=False)
    np.savez_compressed(
        path,
        W_true=x[pick].astype(np.float32),
        W_learned=y[pick].astype(np.float32),
        score=np.float64(scores[best]),
    )
    return rows


def level_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best R2 / cluster, the ceiling and each grid point's per-seed classes; robust = every seed converged."""
    points: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        key = json.dumps(r["point"], sort_keys=True)
        points.setdefault(key + (f" set {' '.join(r['set'])}" if r.get("set") else ""), []).append(r)
    per_point = {
        p: {
            "robust": all(r["class"] == "converged" for r in rs),
            "seeds": [(r["connectivity_R2"], r["cluster_accuracy"]) for r in rs],
        }
        for p, rs in points.items()
    }
    best = max(rows, key=lambda r: r["score"])
    return {
        "level": rows[0]["level"],
        "ceiling": rows[0]["ceiling"],
        "best_R2": max(r["connectivity_R2"] for r in rows),
        "best_cluster": max(r["cluster_accuracy"] for r in rows),
        "best": best,
        "robust": [p for p, v in per_point.items() if v["robust"]],
        "points": per_point,
        "train_s": rows[0]["train_s"],
        "sim_s": rows[0]["sim_s"],
        "K": rows[0]["K"],
        "n_iterations": rows[0]["n_iterations"],
    }


def print_summary(s: dict[str, Any]) -> None:
    print(
        f"\n## ff {s['level']:g}: ceiling {s['ceiling']:.4f}, best R2 {s['best_R2']:.4f}, best cluster "
        f"{s['best_cluster']:.3f}, robust points {len(s['robust'])}/{len(s['points'])} "
        f"(K={s['K']}, {s['n_iterations']} iterations, simulate {s['sim_s']:.0f} s, train {s['train_s']:.0f} s)"
    )
    for p, v in s["points"].items():
        seeds = ", ".join(f"{r2:.3f}/{ca:.2f}" for r2, ca in v["seeds"])
        print(f"  {'ROBUST ' if v['robust'] else '       '}{p}: {seeds}")


def report(out: Path) -> list[dict[str, Any]]:
    """Per-level summaries of ``out/landscape.jsonl`` (printed), and the figures drawn into ``out``."""
    from ntune import plots

    rows = [json.loads(line) for line in (out / "landscape.jsonl").read_text().splitlines() if line]
    levels = sorted({r["level"] for r in rows}, reverse=True)
    summaries = [level_summary([r for r in rows if r["level"] == lv]) for lv in levels]
    for s in summaries:
        print_summary(s)
    table = [
        {"value": s["level"], **{k: s[k] for k in ("best_R2", "best_cluster", "ceiling")}} for s in summaries
    ]
    plots.save_figure(lambda ax: plots.plot_landscape(ax, table, LEVEL_KEY), out / "landscape.png")
    for s in summaries:
        path = out / f"scatter_{s['level']:g}.npz"
        if path.exists():
            pairs, best = np.load(path), s["best"]

            def draw(ax: Any, pairs: Any = pairs, best: dict[str, Any] = best) -> None:
                plots.plot_W_pairs(ax, pairs["W_true"], pairs["W_learned"], best)

            plots.save_figure(draw, out / f"W_scatter_{s['level']:g}.png", figsize=(4.5, 4))
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/pde_n2.yaml")
    parser.add_argument("--set", action="append", default=[], help="base override KEY=VALUE (repeatable)")
    parser.add_argument("--levels", default="1.0,0.75,0.5,0.25,0.1,0.05")
    parser.add_argument("--grid", action="append", default=[], help="KEY=v1,v2,... (repeatable: product)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per grid point")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first training seed (seeds first .. first+n-1): split a level's seeds over processes",
    )
    parser.add_argument("--out", type=Path, default=Path("landscape_grid"))
    parser.add_argument("--cache", default=None, help="simulation cache folder (default: ntune's)")
    parser.add_argument("--report", action="store_true", help="only summarise --out and draw its figures")
    args = parser.parse_args()
    if args.seeds < 1 or args.first_seed < 0:
        parser.error(f"--seeds must be >= 1 and --first-seed >= 0, got {args.seeds} and {args.first_seed}")
    if args.report:
        report(args.out)
        return
    base = load_config(args.config, args.set).model_dump(mode="json")
    points = grid_points(args.grid)
    args.out.mkdir(parents=True, exist_ok=True)
    dev = base["training"]["device"]
    print(
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, device {dev}, {len(points)} points x {args.seeds} seeds from {args.first_seed}"
    )
    for level in (float(x) for x in args.levels.split(",")):
        print_summary(
            level_summary(
                run_level(
                    base, level, points, args.seeds, args.out, args.cache, tuple(args.set), args.first_seed
                )
            )
        )


if __name__ == "__main__":
    main()
