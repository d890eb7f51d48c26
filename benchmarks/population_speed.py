"""Training throughput of populations against single trials, end to end, on any device (CUDA included).

    python benchmarks/population_speed.py --device cuda [--sizes 100 1000] [--ks 1 4 16 64]

Unlike ``trial_speed.py`` (CPU, the bare eager step), this times the real trainers on real simulated
data: ``ntune.learn.train.fit`` for one config and ``ntune.learn.population.train_population`` for K configs (on
CUDA the population step is one captured CUDA graph). Each variant trains for ``n``, ``3n`` and ``n``
iterations; the difference removes the fixed costs (model set-up, graph capture, final metrics and
rollout), so the figure read is member-iterations per second of the loop itself. One run, ratios
against ``fit`` printed beside the absolute rates.
"""

from __future__ import annotations

import argparse
import time

import torch

from ntune.config import NtuneConfig, config_from_dict, load_config
from ntune.data.simulate import SimData, simulate
from ntune.learn.population import train_population
from ntune.learn.train import fit

BATCH = 8


def configs_for(base: NtuneConfig, n_neurons: int, n_frames: int, device: str) -> NtuneConfig:
    """The quickstart config resized: N neurons, T frames, logging reduced to one point."""
    data = base.model_dump()
    data["simulation"].update(n_neurons=n_neurons, n_frames=n_frames, device=device)
    data["training"].update(device=device, n_log_points=1, n_rollout_frames=20, batch_size=BATCH)
    return config_from_dict(data)


def with_iterations(config: NtuneConfig, iterations: int, seed: int) -> NtuneConfig:
    """``config`` trained for about ``iterations`` (data_augmentation_loop solved for it), seed ``seed``."""
    T = config.simulation.n_frames
    dal = max(1, round(iterations * BATCH / (0.2 * T)))
    return config.model_copy(
        update={"training": config.training.model_copy(update={"data_augmentation_loop": dal, "seed": seed})}
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def elapsed(run: object, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    run()  # type: ignore[operator]
    _sync(device)
    return time.perf_counter() - start


def loop_rate(config: NtuneConfig, data: SimData, K: int | None, iterations: int, device: str) -> float:
    """Member-iterations per second of the training loop (``K`` None: ``fit``, else a population of K)."""
    times = []
    for n in (iterations, 3 * iterations, iterations):  # n twice: the first run also pays one-time costs
        members = [with_iterations(config, n, seed) for seed in range(K or 1)]
        if K is None:
            times.append(elapsed(lambda m=members: fit(m[0], data), device))
        else:
            times.append(elapsed(lambda m=members: train_population(m, data), device))
    done = 2 * iterations * (K or 1)
    return done / max(times[1] - min(times[0], times[2]), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--frames", type=int, default=5000, help="simulated frames per size")
    parser.add_argument("--iterations", type=int, default=1000, help="n (each variant trains n and 3n)")
    parser.add_argument("--config", default="configs/quickstart.yaml")
    args = parser.parse_args()
    torch.manual_seed(0)
    name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()}"
    )
    print(f"torch {torch.__version__}, device {args.device} ({name}), batch {BATCH}")
    base = load_config(args.config)
    for n_neurons in args.sizes:
        config = configs_for(base, n_neurons, args.frames, args.device)
        start = time.perf_counter()
        data = simulate(config.simulation)
        print(f"\n## N = {n_neurons}: simulated {args.frames} frames in {time.perf_counter() - start:.1f} s")
        single = loop_rate(config, data, None, args.iterations, args.device)
        print(f"fit      {single:10.1f} member-it/s  ({1e3 / single:.3f} ms per iteration)  x1.00")
        for K in args.ks:
            rate = loop_rate(config, data, K, args.iterations, args.device)
            print(
                f"K={K:<5d} {rate:10.1f} member-it/s  ({1e3 * K / rate:.3f} ms per step)  x{rate / single:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
