"""Robustness over network instances and held-out confirmation in the study's views (no Ray).

A hand-made study of two blocks, 5 search trials each, robust after 3 converged repeats, 3 held-out
networks per block. Block 0.5: node 1 converged on networks 42, 1234 and 9012 and ran on a data-limited
network (5678); its child node 2 is partial; then node 1 ran on the 3 held-out networks (2 converged).
Block 1.0: 5 search trials, none converged (no robust config, so no held-out run is due).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from ntune.cli.commands import show_status
from ntune.report.export import export, report
from ntune.study.experiment import Experiment
from ntune.study.ledger import Ledger
from ntune.study.render import entry_of, render_memory_of

KEY = "simulation.connectivity_filling_factor"
HALF, FULL = "connectivity_filling_factor=0.5", "connectivity_filling_factor=1.0"
INFO: dict[str, Any] = {
    "study": {
        "name": "views",
        "blocks": {KEY: [0.5, 1.0]},
        "robustness_repeats": 3,
        "n_iter_block": 5,
        "space": {"training.learning_rate_W_start": {}},
        "objective": {
            "weights": {"connectivity_R2": 0.6, "cluster_accuracy": 0.4},
            "thresholds": {"connectivity_R2": 0.9, "cluster_accuracy": 0.9},
        },
    },
    "block_key": KEY,
    "base": {},
    "held_out": 3,
}


def record(
    k: int,
    value: float,
    node: int,
    strategy: str,
    network: int,
    r2: float,
    cluster: float,
    classification: str,
    *,
    run: int = 0,
    parent: int | None = None,
    mutation: str = "",
    ceiling: float = math.nan,
) -> dict[str, Any]:
    """One ``complete`` record of trials.jsonl, by hand (search id = block node + 10)."""
    lr_W = 1e-3 if node == 1 else 4e-3
    return {
        "event": "complete",
        "trial_id": f"t{k}",
        "time": "",
        "status": "ok",
        "error": "",
        "block": f"connectivity_filling_factor={value}",
        "block_value": value,
        "search": {
            "block": f"connectivity_filling_factor={value}",
            "block_value": value,
            "node": node,
            "parent": parent,
            "strategy": strategy,
            "mutation": mutation,
            "run": run,
            "seed": 100 + k,
            "id": node + 10,
            "parent_id": None if parent is None else parent + 10,
            "network": network,
        },
        "params": {"training.learning_rate_W_start": lr_W},
        "metrics": {
            "connectivity_R2": r2,
            "cluster_accuracy": cluster,
            "connectivity_slope": 1.0,
            "zero_band": 0.0,
            "cross": 0.0,
            "test_R2": math.nan,
            "final_loss": math.nan,
            "training_time_min": 1.0,
            "ceiling": ceiling,
        },
        "score": 0.6 * r2 + 0.4 * cluster,
        "classification": classification,
        "trial_dir": "",
        "config": {
            "simulation": {"connectivity_filling_factor": value, "seed": network},
            "training": {"learning_rate_W_start": lr_W, "coeff_W_L1": 1e-5, "seed": 100 + k},
        },
    }


FULL_SEARCH = [
    record(
        k,
        1.0,
        k + 1,
        "root" if k == 0 else "exploit",
        42,
        0.3,
        0.4,
        "failed",
        run=k,
        parent=None if k == 0 else 1,
    )
    for k in range(5)
]
HALF_SEARCH = [
    record(5, 0.5, 1, "root", 42, 0.999, 0.95, "converged"),
    record(6, 0.5, 1, "robustness-test", 1234, 0.998, 0.91, "converged", run=1),
    record(7, 0.5, 1, "robustness-test", 5678, 0.30, 0.80, "data-limited", run=2, ceiling=0.42),
    record(8, 0.5, 1, "robustness-test", 9012, 0.9995, 0.97, "converged", run=3),
    record(9, 0.5, 2, "exploit", 42, 0.5, 0.5, "partial", run=4, parent=1, mutation="lr_W: 1e-3 -> 4e-3"),
]
HELD_OUT = [
    record(10, 0.5, 1, "held-out", 1001, 0.9999, 0.93, "converged", run=0),
    record(11, 0.5, 1, "held-out", 1003, 0.97, 0.92, "converged", run=1),
    record(12, 0.5, 1, "held-out", 1005, 0.70, 0.80, "partial", run=2),
]


def ledger(records: list[dict[str, Any]]) -> Ledger:
    return Ledger(INFO).extend([dict(r) for r in records])


def test_held_out_runs_are_kept_apart_from_the_search() -> None:
    book = ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT)
    half = book.blocks[HALF]
    assert (half.trials, half.converged, half.failed) == (5, 3, 0)
    assert half.best_R2 == 0.9995  # not the held-out 0.9999
    assert half.strategies == {"root": 1, "robustness-test": 3, "exploit": 1}
    assert half.held_out_node == 1 and [r["trial_id"] for r in half.held_out] == ["t10", "t11", "t12"]
    assert len(half.nodes[1].runs) == 4
    node1 = (0.6 * 0.999 + 0.4 * 0.95 + 0.6 * 0.998 + 0.4 * 0.91 + 0.6 * 0.9995 + 0.4 * 0.97) / 3
    assert half.nodes[1].mean_score == pytest.approx(node1)  # the data-limited run is not counted
    assert book.effects()["lr_W"]["mean_delta"] == pytest.approx(0.5 - node1)


def test_row_of_a_block_confirmed_on_held_out_networks() -> None:
    row = ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT).row(HALF)
    assert (row["trials"], row["budget"], row["state"]) == (5, 5, "done")  # no held-out run counted
    assert (row["robust"], row["best_node"]) == (True, 1)
    assert (row["held_out"], row["held_out_done"], row["held_out_total"]) == (2, 3, 3)
    assert row["networks"] == 3
    assert (row["worst_R2"], row["worst_cluster"]) == (0.998, 0.91)  # network 1234, the lowest score
    assert row["spread"] == "stable-robust"  # the data-limited R2 0.30 would make it catastrophic
    assert row["R2_mean"] == pytest.approx((0.999 + 0.998 + 0.9995) / 3)
    assert row["best_trial"] == "t8"  # the best search run of the confirmed node
    full = ledger(FULL_SEARCH).row(FULL)
    assert (full["robust"], full["networks"], full["held_out"], full["held_out_done"]) == (False, 1, 0, 0)


def test_expected_trials() -> None:
    assert ledger(FULL_SEARCH + HALF_SEARCH[:4]).expected_trials() == 10  # 0.5 still searching
    assert ledger(FULL_SEARCH + HALF_SEARCH).expected_trials() == 13  # 0.5 done and robust: + K
    done = ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT)
    assert (done.expected_trials(), len(done.records), done.n_held_out) == (13, 13, 3)
    assert ledger(FULL_SEARCH).expected_trials() == 10  # no robust config: no held-out run


def test_memory_names_networks_and_held_out() -> None:
    memory = render_memory_of(ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT))
    assert (
        "| 1 | 50% | 0.5 | 2/3 | 0.9995 | 0.97 | 3 | 0.998 / 0.91 | stable-robust | 1e-05 | 0.001 | "
        "robust, 5/5 trials, done |" in memory
    )
    assert "| 2 | 100% | 1.0 | - | 0.3 | 0.4 | 1 | 0.300 / 0.40 | - |" in memory
    assert "Iterations: 6 to 13 (5/5 trials)\nHeld-out networks converged 2 of 3 (node 1)\n" in memory
    assert (
        "- Iter 13: held-out network 3 of 3 for node 11, partial, R2=0.7, cluster=0.8, network 1005\n"
        in memory
    )
    assert (
        "- Iter 8: node 11 (parent root), data-limited, R2=0.3, cluster=0.8, robustness-test: root, network 5678\n"
        in memory
    )
    assert (
        "- Observation: node 11 over 3 networks: R2 0.999 ± 0.001 (CV 0.1 %), cluster 0.94 ± 0.02, "
        "worst network 1234 (R2 0.998, cluster 0.91): robust, stable-robust; 1 data-limited run not counted\n"
    ) in memory


def test_analysis_entries_name_the_network() -> None:
    book = ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT)
    recs = book.records
    held = entry_of(book, recs["t11"])
    assert "\nHeld-out: node=11, parent=root (a confirmation run, not a run of the search tree)\n" in held
    assert "\nNode: id=" not in held  # a parser rebuilding the search tree skips it
    assert "Parent rule: held-out network 2 of 3 for node 11: " in held
    assert "Run: 1, seed 111, network 1003, block node 1," in held
    limited = entry_of(book, recs["t7"])
    assert "## Iter 8: data-limited\nNode: id=11, parent=root\n" in limited
    assert "data-limited: this network's ceiling 0.420 is below the R2 threshold" in limited
    assert "Run: 2, seed 107, network 5678," in limited
    assert "Observation: node 11 over 3 networks: R2 0.999 ± 0.001 (CV 0.1 %)" in limited
    assert "\nObservation: node 12 " not in entry_of(book, recs["t9"])  # one repeat: no robustness yet


def test_status_shows_held_out_first_in_120_columns(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    show_status(
        Experiment(tmp_path, ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT)), console=console, stopped=True
    )
    text = console.export_text()
    assert "views: 10/10 trials done, 0 running, 3/3 held-out runs" in text
    header = next(line for line in text.splitlines() if "held-out" in line and "block" in line)
    assert header.split()[:3] == ["block", "held-out", "done"]
    half = next(line for line in text.splitlines() if line.split()[:1] == ["0.5"])
    assert (
        half.split()[:3] == ["0.5", "2/3", "5/5"]
        and "0.998 / 0.91" in half
        and half.rstrip().endswith("done")
    )
    assert "…" not in text  # no cell cut to fit 120 columns
    running = Console(record=True, width=120)
    show_status(Experiment(tmp_path, ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT[:2])), console=running)
    text = running.export_text()
    assert "2/3 (2 done)" in text and "2/3 held-out runs" in text and "…" not in text


def test_export_lists_repeats_and_held_out_networks(tmp_path: Path) -> None:
    exp = Experiment(tmp_path, ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT))
    export(exp, out=None, fmt="yaml")
    text = (tmp_path / "best" / f"{HALF}.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0].startswith(f"# ntune export: best config of block {HALF} (node 1, trial t8, robust)")
    assert header[2:-1] == [
        "# repeats of node 1:",
        "#   repeat 1: network 42: R2 0.999, cluster 0.95, converged",
        "#   repeat 2: network 1234: R2 0.998, cluster 0.91, converged",
        "#   repeat 3: network 5678: R2 0.300, cluster 0.80, data-limited (ceiling 0.420: not counted)",
        "#   repeat 4: network 9012: R2 1.000, cluster 0.97, converged",
        "# node 1 over 3 networks: R2 0.999 ± 0.001 (CV 0.1 %), cluster 0.94 ± 0.02, worst network 1234 "
        "(R2 0.998, cluster 0.91): robust, stable-robust; 1 data-limited run not counted",
        "# held-out networks converged 2 of 3",
        "#   held-out network 1 of 3 for node 1: network 1001: R2 1.000, cluster 0.93, converged",
        "#   held-out network 2 of 3 for node 1: network 1003: R2 0.970, cluster 0.92, converged",
        "#   held-out network 3 of 3 for node 1: network 1005: R2 0.700, cluster 0.80, partial",
    ]
    assert yaml.safe_load(text)["simulation"]["seed"] == 9012  # the best run's network
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[0].endswith(
        "networks,R2_mean,R2_cv,worst_R2,worst_cluster,spread,held_out,held_out_done,held_out_total"
    )
    assert summary[1].startswith(f"{HALF},0.5,5,5,0,3,0,") and summary[1].endswith(
        ",0.998,0.91,stable-robust,2,3,3"
    )


def test_report_has_held_out_and_a_robustness_section(tmp_path: Path) -> None:
    exp = Experiment(tmp_path, ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT))
    text = report(exp).read_text()
    assert "| Block | Sparsity | filling_factor | held-out | Best R² |" in text
    section = text[text.index(f"## {HALF}") : text.index(f"## {FULL}")]
    assert "### Robustness\n\n- repeats of node 1:\n  - repeat 1: network 42: R2 0.999" in section
    assert (
        "- held-out networks converged 2 of 3\n  - held-out network 1 of 3 for node 1: network 1001"
        in section
    )


def test_finish_counts_the_trials_the_study_runs(tmp_path: Path) -> None:
    """A study whose blocks found no robust config finished with its budget; one owing held-out runs did not."""
    from ntune.cli.run import _finish
    from ntune.tune.driver import StudyRun

    console = Console(record=True, width=120)
    no_robust = Experiment(
        tmp_path / "a", ledger(FULL_SEARCH + [dict(r, classification="partial") for r in HALF_SEARCH])
    )
    assert _finish(StudyRun(tmp_path / "a", 16, no_robust), console) == 0  # 16: the upper bound with K
    owing = Experiment(tmp_path / "b", ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT[:1]))
    assert _finish(StudyRun(tmp_path / "b", 16, owing), console) == 130
    assert "stopped after 11/13 trials" in console.export_text()
    done = Experiment(tmp_path / "c", ledger(FULL_SEARCH + HALF_SEARCH + HELD_OUT))
    assert _finish(StudyRun(tmp_path / "c", 16, done), console) == 0
