"""UCB tree vs random search vs Optuna TPE on a synthetic sparsity landscape; suggest() latency.

The landscape mimics the seeds' findings: connectivity R^2 is high in a band of lr_W and in an L1
window that moves with the filling factor; cluster accuracy is driven by lr_emb; one run in three
fails at random. Every searcher gets the same budget per block, sequential trials, >= 20 seeds.
TPE runs in an Optuna ask/tell loop (Ray's OptunaSearch wraps the same sampler; Ray's per-trial
overhead would make 20 seeds x 3 searchers impractical on 2 cores). Run:

    .venv/bin/python benchmarks/searcher_landscape.py --seeds 20 --budget 40 --scouts 2 --sweep
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from typing import Any

import optuna

from ntune.study.config import StudyConfig
from searchers.objective import classify, score
from searchers.space import parse_space
from searchers.tree import DEFAULT_UCB_C
from searchers.ucb import SEARCH_KEY, UCBTreeSearcher, get_dotted

SWEEP_C = (0.05, 0.1, 0.3, 0.7, 1.414)

SPACE = {
    "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
    "training.learning_rate_embedding_start": {"type": "loguniform", "low": 1e-6, "high": 1e-1},
    "training.coeff_W_L1": {"type": "loguniform", "low": 1e-8, "high": 1e-2, "allow_zero": True},
    "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]},
}
BASE = {
    "training": {"learning_rate_W_start": 1e-4, "learning_rate_embedding_start": 1e-5, "coeff_W_L1": 1e-3}
}
FILLING = [1.0, 0.25]
WEIGHTS = {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
THRESHOLDS = {"connectivity_R2": 0.9, "cluster_accuracy": 0.9}
OPTIMIZER_GAIN = {"adam": 1.0, "adamw": 1.0, "rmsprop": 0.97, "sgd": 0.6}


def _plateau(x: float, center: float, half_width: float) -> float:
    """1 within ``half_width`` of ``center`` (log10 units), Gaussian decay (scale 0.5) outside."""
    return math.exp(-((max(abs(x - center) - half_width, 0.0) / 0.5) ** 2))


def landscape(params: dict[str, Any], ff: float, rng: random.Random) -> dict[str, Any]:
    """Noisy metrics and W diagnosis of one synthetic training run."""
    if rng.random() < 1 / 3:
        return {"connectivity_R2": 0.0, "cluster_accuracy": 0.0, "status": "diverged"}
    lr_w = math.log10(params["training.learning_rate_W_start"])
    lr_emb = math.log10(params["training.learning_rate_embedding_start"])
    l1 = params["training.coeff_W_L1"]
    l1_log = math.log10(l1) if l1 > 0 else -10.0
    l1_center = -6.0 + 1.5 * math.log10(1 / ff)  # sparser W wants more L1
    band = _plateau(lr_w, -2.7, 0.6)
    window = 0.35 + 0.65 * _plateau(l1_log, l1_center, 0.8)
    r2 = band * window * OPTIMIZER_GAIN[params["training.optimizer"]] + rng.gauss(0, 0.02)
    cluster = 0.25 + 0.75 * _plateau(lr_emb, -3.3, 0.6) + rng.gauss(0, 0.02)
    excess = l1_log - l1_center
    return {
        "connectivity_R2": r2,
        "cluster_accuracy": cluster,
        "status": "ok",
        "zero_band": min(max(excess / 2, 0.0), 1.0),
        "connectivity_slope": 1 / (1 + 10 ** max(excess, -5)),
    }


def outcome(history: list[dict[str, Any]]) -> tuple[int, float]:
    """Trials to the first converged result (budget + 1 when none) and the best score."""
    first = next(
        (i + 1 for i, m in enumerate(history) if classify(m, THRESHOLDS) == "converged"), len(history) + 1
    )
    return first, max(score(m, WEIGHTS) for m in history)


def run_ucb(
    seed: int, budget: int, ucb_c: float = DEFAULT_UCB_C, n_scouts: int = 0
) -> list[tuple[int, float]]:
    searcher = UCBTreeSearcher(
        space=SPACE,
        base_config=BASE,
        blocks={"simulation.connectivity_filling_factor": FILLING},
        weights=WEIGHTS,
        thresholds=THRESHOLDS,
        n_iter_block=budget,
        seed=seed,
        ucb_c=ucb_c,
        n_scouts=n_scouts,
    )
    rng = random.Random(seed + 1000)
    history: dict[float, list[dict[str, Any]]] = {ff: [] for ff in FILLING}
    for i in range(budget * len(FILLING)):
        config = searcher.suggest(str(i))
        params = {k: get_dotted(config, k) for k in SPACE}
        ff = config[SEARCH_KEY]["block_value"]
        metrics = landscape(params, ff, rng)
        history[ff].append(metrics)
        searcher.on_trial_complete(str(i), metrics)
    return [outcome(history[ff]) for ff in FILLING]


def run_random(seed: int, budget: int) -> list[tuple[int, float]]:
    space, rng, out = parse_space(SPACE), random.Random(seed), []
    noise = random.Random(seed + 1000)
    for ff in FILLING:
        history = [landscape({k: d.sample(rng) for k, d in space.items()}, ff, noise) for _ in range(budget)]
        out.append(outcome(history))
    return out


def run_tpe(seed: int, budget: int) -> list[tuple[int, float]]:
    noise, out = random.Random(seed + 1000), []
    for ff in FILLING:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        history = []
        for _ in range(budget):
            trial = study.ask()
            params = {}
            for key, spec in SPACE.items():
                if spec["type"] == "choice":
                    params[key] = trial.suggest_categorical(key, spec["values"])
                else:
                    params[key] = trial.suggest_float(key, spec["low"], spec["high"], log=True)
            metrics = landscape(params, ff, noise)
            history.append(metrics)
            study.tell(trial, score(metrics, WEIGHTS))
        out.append(outcome(history))
    return out


def latency(n_nodes: int = 1000, n_calls: int = 200) -> float:
    """Median suggest() time in ms once the block holds ``n_nodes`` nodes (each call then completed)."""
    searcher = UCBTreeSearcher(space=SPACE, base_config=BASE, n_iter_block=10 * n_nodes, seed=0)
    tree = searcher.trees[searcher.block_label(0)]
    rng, times, i = random.Random(0), [], 0
    while len(times) < n_calls:
        timed = len(tree.nodes) >= n_nodes
        start = time.perf_counter()
        config = searcher.suggest(str(i))
        if timed:
            times.append(time.perf_counter() - start)
        searcher.on_trial_complete(str(i), landscape({k: get_dotted(config, k) for k in SPACE}, 1.0, rng))
        i += 1
    print(f"nodes in the block during the timed calls: {n_nodes}..{len(tree.nodes)}")
    return statistics.median(times) * 1e3


def summarize(rows: list[tuple[int, float]], budget: int) -> dict[str, float]:
    """Mean trials to first converged, share converged within budget, mean best score."""
    return {
        "first": statistics.mean(r[0] for r in rows),
        "found": sum(r[0] <= budget for r in rows) / len(rows),
        "best": statistics.mean(r[1] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=40, help="trials per block")
    parser.add_argument(
        "--ucb-c",
        type=float,
        default=DEFAULT_UCB_C,
        help="exploration constant of the UCB tree (study default)",
    )
    parser.add_argument(
        "--scouts",
        type=int,
        default=StudyConfig.model_fields["scouts"].default,
        help="space-filling children of each root (study field scouts; default: the study default)",
    )
    parser.add_argument("--sweep", action="store_true", help=f"also print the UCB tree for c in {SWEEP_C}")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = range(args.seeds)
    results = {}
    runners = (
        (
            f"ucb-tree c={args.ucb_c:g} scouts={args.scouts}",
            lambda s, b: run_ucb(s, b, args.ucb_c, args.scouts),
        ),
        ("random", run_random),
        ("optuna-tpe", run_tpe),
    )
    for name, fn in runners:
        results[name] = summarize([r for seed in seeds for r in fn(seed, args.budget)], args.budget)
    print(
        f"{args.seeds} seeds x {len(FILLING)} blocks, budget {args.budget} trials per block, 1/3 of runs fail"
    )
    header = (
        f"{'searcher':<17} {'trials to 1st converged':>24} {'converged within budget':>24} {'best score':>11}"
    )
    print(header)
    for name, row in results.items():
        print(f"{name:<17} {row['first']:>24.1f} {row['found']:>24.0%} {row['best']:>11.3f}")
    ucb = results[runners[0][0]]
    for name in ("random", "optuna-tpe"):
        print(
            f"{name} / ucb-tree: trials to first converged {results[name]['first'] / ucb['first']:.2f}x, "
            f"best score {results[name]['best'] / ucb['best']:.3f}x"
        )
    if args.sweep:
        print(f"\nUCB tree, exploration constant sweep (same seeds, scouts={args.scouts})\n{header}")
        for c in SWEEP_C:
            row = summarize(
                [r for seed in seeds for r in run_ucb(seed, args.budget, c, args.scouts)], args.budget
            )
            print(
                f"{'ucb-tree c=' + format(c, 'g'):<17} {row['first']:>24.1f} {row['found']:>24.0%} {row['best']:>11.3f}"
            )
    print(f"suggest() median latency with 1000 nodes in a block: {latency():.2f} ms")


if __name__ == "__main__":
    main()
