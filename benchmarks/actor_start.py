"""What one actor per trial costs: starting a fresh trial actor vs calling a reused one.

ntune runs each trial on an actor of its own (Ray names an actor once, when it is created; see
docs/studies.md, "Watching a study in the Ray dashboard"). A fresh actor is a new worker process that
imports what a trial imports before it trains; a reused one is a method call. This starts ``--n``
fresh actors one after another (create, first call, kill), then makes ``--n`` calls on one actor, and
prints both medians and the same for an actor that imports nothing (the bare worker start).

    python benchmarks/actor_start.py [--n 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import ray


class Bare:
    """An actor that imports nothing."""

    def ready(self) -> float:
        return time.time()


class Trial(Bare):
    """An actor that imports what ``ntune_trial`` imports before it trains."""

    def __init__(self) -> None:
        import torch  # noqa: F401

        import ntune.data.simulate  # noqa: F401
        import ntune.learn.population  # noqa: F401
        import ntune.learn.train  # noqa: F401


def fresh(cls: Any, n: int) -> list[float]:
    """Seconds from creating an actor to its first answer, ``n`` actors one after another."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        actor = cls.remote()
        ray.get(actor.ready.remote())
        times.append(time.perf_counter() - t0)
        ray.kill(actor)
        time.sleep(0.5)  # let the killed worker exit
    return times


def reused(cls: Any, n: int) -> list[float]:
    """Seconds per call on one actor that is already running."""
    actor = cls.remote()
    ray.get(actor.ready.remote())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(actor.ready.remote())
        times.append(time.perf_counter() - t0)
    ray.kill(actor)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6)
    args = parser.parse_args()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        for cls in (Bare, Trial):
            actor_cls = ray.remote(num_cpus=1)(cls)
            start, call = fresh(actor_cls, args.n), reused(actor_cls, args.n)
            print(
                f"{cls.__name__:5s} fresh actor: median {statistics.median(start):.2f} s "
                f"({', '.join(f'{t:.2f}' for t in start)}); reused actor call: median "
                f"{statistics.median(call) * 1e3:.1f} ms"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
