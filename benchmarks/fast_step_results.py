"""Do the fast step and the reference step train to the same results? Seeds x filling factors, both steps.

    OMP_NUM_THREADS=1 python benchmarks/fast_step_results.py --config configs/quickstart.yaml \\
        --set simulation.n_neurons=200 --set simulation.n_frames=40000 --set simulation.noise_model_level=0.3 \\
        --set training.data_augmentation_loop=15 --levels 1.0,0.25 --seeds 3

Both steps compute the same function, but training amplifies rounding (tests/test_piecewise.py): after
a few dozen steps the two runs of one seed are as different as two rounding-level perturbations of
one run. So the comparison is statistical: per level, the final connectivity_R2 and cluster_accuracy
of each seed under each step, their mean and spread, and the wall time of each ``fit`` with its ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ntune.config import config_from_dict, load_config, set_dotted
from ntune.data.load import load_or_simulate
from ntune.learn.model import SignalGNN
from ntune.learn.reference import ReferenceGNN
from ntune.learn.train import fit
from ntune.yamlio import parse_overrides

STEPS: dict[str, type[SignalGNN]] = {"reference": ReferenceGNN, "fast": SignalGNN}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--levels", default="1.0,0.25")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_config(args.config).model_dump()
    for key, value in parse_overrides(args.set):
        set_dotted(base, key, value)
    set_dotted(base, "training.n_log_points", 1)
    print(f"{'ff':>5} {'seed':>4} {'step':>9} {'R2':>7} {'cluster':>7} {'minutes':>7}", flush=True)
    for level in (float(x) for x in args.levels.split(",")):
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in STEPS}
        for seed in range(args.seeds):
            for name, model_class in STEPS.items():
                config = dict(base)
                set_dotted(config, "simulation.connectivity_filling_factor", level)
                set_dotted(config, "training.seed", seed)
                parsed = config_from_dict(config)
                data = load_or_simulate(parsed.simulation)
                start = time.perf_counter()
                metrics = fit(parsed, data, model_class=model_class).metrics
                minutes = (time.perf_counter() - start) / 60
                r2, cluster = float(metrics["connectivity_R2"]), float(metrics["cluster_accuracy"])
                results[name].append((r2, cluster, minutes))
                print(
                    f"{level:>5} {seed:>4} {name:>9} {r2:>7.4f} {cluster:>7.2f} {minutes:>7.2f}", flush=True
                )
        for name, rows in results.items():
            r2s, clusters, minutes = zip(*rows, strict=True)
            spread = statistics.stdev(r2s) if len(r2s) > 1 else 0.0
            print(
                f"ff {level} {name:>9}: R2 {statistics.mean(r2s):.4f} +- {spread:.4f}, cluster "
                f"{statistics.mean(clusters):.3f} (min {min(clusters):.2f}), {statistics.mean(minutes):.2f} min per fit"
            )
        ratio = statistics.mean(r[2] for r in results["reference"]) / statistics.mean(
            r[2] for r in results["fast"]
        )
        print(f"ff {level}: fit wall time reference / fast = {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
