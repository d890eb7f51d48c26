"""Which scale makes every network of a study identifiable: the ceiling of each level on each instance.

    python benchmarks/ceiling_scan.py configs/quickstart_study.yaml --set simulation.noise_model_level=0 \\
        --scales 100:20000,200:40000,300:60000 --out DIR

For each scale (``n_neurons:n_frames``) and each block of the study, every network the study would
train on: its repeat networks (``robustness_repeats``, seeds derived as ``ntune run`` derives them,
:mod:`searchers.robustness`) and its held-out ones. Each is simulated or read from the cache (so a later
``ntune run`` at that scale reuses them) and the identifiability oracle's ceiling read
(:mod:`ntune.data.identifiability`). Prints one row per scale and level (the lowest ceiling over the
instances, its network, the silent neurons) and, per scale, whether every ceiling reaches ``--floor``.
``DIR/ceilings.jsonl`` gets one row per network.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

from ntune.config import config_from_dict, get_dotted, set_dotted
from ntune.data.load import load_or_simulate
from ntune.study.info import block_label
from ntune.study.load import load_study
from searchers.robustness import held_out_seed, instance_seed


def networks(study: Any, base: dict[str, Any], value: Any) -> list[tuple[str, int]]:
    """(kind, simulation seed) of every network a block trains on: repeats, then held-out."""
    label = block_label(study.block_key, value)
    config = copy.deepcopy(base)
    set_dotted(config, study.block_key, value)
    own = int(get_dotted(config, "simulation.seed"))
    repeats = [("repeat", instance_seed(study.seed, label, r, own)) for r in range(study.robustness_repeats)]
    held = [("held-out", held_out_seed(study.seed, label, i, own)) for i in range(study.held_out_networks)]
    return [(kind, int(seed)) for kind, seed in repeats + held if seed is not None]


def scan(study: Any, base: dict[str, Any], n_neurons: int, n_frames: int) -> list[dict[str, Any]]:
    """One row per (level, network) at this scale: ceiling, silent neurons, simulation time."""
    rows = []
    for value in study.block_values:
        for kind, seed in networks(study, base, value):
            config = copy.deepcopy(base)
            set_dotted(config, study.block_key, value)
            set_dotted(config, "simulation.n_neurons", n_neurons)
            set_dotted(config, "simulation.n_frames", n_frames)
            set_dotted(config, "simulation.seed", seed)
            start = time.perf_counter()
            data = load_or_simulate(config_from_dict(config).simulation)
            rows.append(
                {
                    "n_neurons": n_neurons,
                    "n_frames": n_frames,
                    "level": value,
                    "kind": kind,
                    "seed": seed,
                    "ceiling": float(data.summary["ceiling"]),
                    "n_silent": len(data.silent or []),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
    return rows


def report(rows: list[dict[str, Any]], floor: float) -> None:
    """Per scale and level the lowest ceiling over its networks; per scale whether all reach ``floor``."""
    scales = sorted({(r["n_neurons"], r["n_frames"]) for r in rows})
    print(
        f"{'N':>5} {'frames':>7} {'ff':>5} {'networks':>8} {'min ceiling':>11} {'at seed':>11} {'silent':>6}"
    )
    for n, t in scales:
        at = [r for r in rows if (r["n_neurons"], r["n_frames"]) == (n, t)]
        for level in dict.fromkeys(r["level"] for r in at):
            own = [r for r in at if r["level"] == level]
            worst = min(own, key=lambda r: r["ceiling"])
            print(
                f"{n:>5} {t:>7} {level:>5} {len(own):>8} {worst['ceiling']:>11.4f} {worst['seed']:>11} "
                f"{max(r['n_silent'] for r in own):>6}"
            )
        ok = all(r["ceiling"] >= floor for r in at)
        print(f"N = {n}, {t} frames: every ceiling >= {floor}: {'yes' if ok else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study YAML")
    parser.add_argument("--set", action="append", default=[], help="study or config override, as ntune run")
    parser.add_argument("--scales", required=True, help="n_neurons:n_frames,... e.g. 100:20000,200:40000")
    parser.add_argument("--floor", type=float, default=0.95, help="the ceiling every network must reach")
    parser.add_argument("--out", type=Path, default=None, help="folder for ceilings.jsonl")
    args = parser.parse_args()
    study, base = load_study(args.study, args.set)
    rows: list[dict[str, Any]] = []
    for item in args.scales.split(","):
        n, t = (int(x) for x in item.split(":"))
        rows += scan(study, base, n, t)
        print(
            f"N = {n}, {t} frames: {sum(r['seconds'] for r in rows if r['n_neurons'] == n):.0f} s", flush=True
        )
    report(rows, args.floor)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ceilings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
