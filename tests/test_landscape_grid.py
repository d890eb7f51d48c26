"""benchmarks/landscape_grid.py: grid parsing, the 3-of-3 robustness rule, and a tiny real run with its report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import landscape_grid  # noqa: E402

from ntune.config import config_from_dict  # noqa: E402
from ntune.data.simulate import simulate  # noqa: E402
from ntune.learn.train import fit  # noqa: E402


def _row(point: dict, seed: int, r2: float, cluster: float) -> dict:
    cls = "converged" if r2 > 0.9 and cluster > 0.9 else "partial"
    return {
        "level": 0.5,
        "point": point,
        "seed": seed,
        "connectivity_R2": r2,
        "cluster_accuracy": cluster,
        "class": cls,
        "score": 0.6 * r2 + 0.4 * cluster,
        "ceiling": 1.0,
        "train_s": 1.0,
        "sim_s": 0.0,
        "K": 6,
        "n_iterations": 10,
    }


def test_grid_points_are_the_product_with_typed_values() -> None:
    points = landscape_grid.grid_points(["training.coeff_W_L1=1e-5,1e-4", "training.batch_size=4,8"])
    assert points == [
        {"training.coeff_W_L1": 1e-5, "training.batch_size": 4},
        {"training.coeff_W_L1": 1e-5, "training.batch_size": 8},
        {"training.coeff_W_L1": 1e-4, "training.batch_size": 4},
        {"training.coeff_W_L1": 1e-4, "training.batch_size": 8},
    ]
    assert landscape_grid.grid_points([]) == [{}]
    with pytest.raises(SystemExit, match="KEY=v1"):
        landscape_grid.grid_points(["training.coeff_W_L1"])


def test_robust_needs_every_seed_converged() -> None:
    a, b = {"training.learning_rate_embedding_start": 2e-3}, {"training.learning_rate_embedding_start": 2e-2}
    rows = [_row(a, 0, 0.99, 1.0), _row(a, 1, 0.99, 0.77), _row(a, 2, 0.99, 1.0)]
    rows += [_row(b, s, 0.99, 0.95) for s in range(3)]
    summary = landscape_grid.level_summary(rows)
    assert summary["robust"] == [json.dumps(b, sort_keys=True)]
    assert summary["best_R2"] == 0.99 and summary["best_cluster"] == 1.0
    assert summary["points"][json.dumps(a, sort_keys=True)]["seeds"][1] == (0.99, 0.77)


def test_tiny_run_matches_fit_and_reports(tmp_path: Path) -> None:
    """Every member's row is what ``fit`` gives that config alone; the report draws the figures."""
    base = config_from_dict(
        {
            "simulation": {"n_neurons": 20, "n_frames": 600},
            "training": {"data_augmentation_loop": 2, "n_log_points": 1, "device": "cpu"},
        }
    ).model_dump(mode="json")
    points = landscape_grid.grid_points(["training.learning_rate_W_start=1e-3,1e-2"])
    rows = landscape_grid.run_level(base, 0.5, points, 2, tmp_path, str(tmp_path / "cache"), ("x=1",))
    assert [(r["point"]["training.learning_rate_W_start"], r["seed"]) for r in rows] == [
        (1e-3, 0),
        (1e-3, 1),
        (1e-2, 0),
        (1e-2, 1),
    ]
    assert all(r["set"] == ["x=1"] and r["K"] == 4 for r in rows)
    alone = landscape_grid.member_config(base, 0.5, points[1], 1)
    expected = fit(alone, simulate(alone.simulation)).metrics
    assert rows[3]["connectivity_R2"] == pytest.approx(expected["connectivity_R2"], abs=1e-4)
    assert len((tmp_path / "landscape.jsonl").read_text().splitlines()) == 4
    assert float(np.load(tmp_path / "scatter_0.5.npz")["score"]) == max(r["score"] for r in rows)
    later = landscape_grid.run_level(
        base, 0.5, points[1:], 1, tmp_path, str(tmp_path / "cache"), ("x=1",), first_seed=1
    )
    assert [r["seed"] for r in later] == [1]
    assert later[0]["connectivity_R2"] == pytest.approx(rows[3]["connectivity_R2"], abs=1e-4)
    assert float(np.load(tmp_path / "scatter_0.5.npz")["score"]) == max(r["score"] for r in rows + later)
    summaries = landscape_grid.report(tmp_path)
    assert [s["level"] for s in summaries] == [0.5]
    assert sorted(len(v["seeds"]) for v in summaries[0]["points"].values()) == [
        2,
        3,
    ]  # the later seed joins its point
    assert (tmp_path / "landscape.png").stat().st_size > 0
    assert (tmp_path / "W_scatter_0.5.png").stat().st_size > 0
