"""The identifiability oracle: ceiling, exact recovery, silent neurons, and its place in the data cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ntune.config import SimulationConfig
from ntune.data import identifiability as I
from ntune.data.load import cache_entry, load_or_simulate
from ntune.data.simulate import simulate

PARAMS = np.array([[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]], dtype=np.float32)  # (n_types, 3) [g, s, c]


def _hand_built(silent: bool, T: int = 3000, N: int = 6, wobble: float = 0.0, big: bool = True) -> dict:
    """Random activity u (T, N), W whose big weights all leave neuron 0 (``big``); y = the PDE_N2 right-hand
    side. ``silent``: u_0 clamped at 0.7, plus ``wobble`` times Gaussian noise (nearly constant)."""
    rng = np.random.default_rng(1)
    t = np.arange(T)[:, None] * 0.01
    u = 2.0 * np.sin(t * rng.uniform(0.5, 3.0, N) + rng.uniform(0, 6, N)) + 0.3 * rng.standard_normal((T, N))
    if silent:
        u[:, 0] = 0.7 + wobble * rng.standard_normal(T)  # phi(u_0) (nearly) constant over all frames
    W = 0.05 * rng.standard_normal((N, N))
    if big:
        W[:, 0] = rng.uniform(1.0, 3.0, N) * rng.choice([-1, 1], N)
    np.fill_diagonal(W, 0.0)
    types = np.arange(N) % 2
    g, s, c = PARAMS[types].T
    y = -c * u + s * np.tanh(u) + g * (np.tanh(u) @ W.T)
    return {"u": u.astype(np.float32), "y": y.astype(np.float32), "W": W, "params": PARAMS, "types": types}


def _without_column(W: np.ndarray, j: int) -> float:
    """connectivity_R2 of W with column j set to 0: what an oracle that recovers every other column gets."""
    W_hat = W.copy()
    W_hat[:, j] = 0.0
    return I._r2(W_hat, W)


def test_silent_neuron_caps_the_ceiling_and_an_active_one_does_not() -> None:
    built = _hand_built(silent=True)
    low = I.oracle(**built)
    high = I.oracle(**_hand_built(silent=False))
    assert low["silent"] == [0] and low["n_silent"] == 1
    closed = _without_column(built["W"], 0)  # the big weights leave the silent neuron: 0.0002
    assert closed < 0.3
    assert low["R2_exact"] == pytest.approx(closed, abs=1e-4) and low["ceiling"] == pytest.approx(
        closed, abs=0.01
    )
    assert low["phi_condition"] < 100  # of the five active columns
    assert high["silent"] == [] and high["ceiling"] > 0.99 and high["R2_exact"] > 0.999
    assert I.is_data_limited(low, 0.9) and not I.is_data_limited(high, 0.9)
    assert "data-limited" in I.verdict(low) and "identifiable" in I.verdict(high)


def test_a_nearly_constant_column_is_left_out_not_amplified() -> None:
    """u_0 wobbles by 1e-4 (std of phi 4e-5 < SILENT_STD): in the solve, its near-null direction would carry
    the target noise into every row of W. Left out, the ceiling is the closed form: W without column 0."""
    built = _hand_built(silent=True, N=20, wobble=1e-4, big=False)
    found = I.oracle(**built)
    assert found["silent"] == [0]
    closed = _without_column(built["W"], 0)
    assert closed > 0.9
    assert found["ceiling"] == pytest.approx(closed, abs=0.01)
    assert found["R2_exact"] == pytest.approx(closed, abs=1e-4)
    assert found["ident_version"] == I.ORACLE_VERSION


def test_exact_target_oracle_recovers_a_simulated_random_W() -> None:
    cfg = SimulationConfig(n_neurons=60, n_frames=4000, seed=42, device="cpu")
    data = simulate(cfg)
    found = I.of_data(data)
    assert found["R2_exact"] > 0.999
    assert found["ceiling"] > 0.99
    assert found["ident_frames"] == 3600  # every training frame: fewer than max_frames(60)


def test_subsampled_frames_bound_the_cost() -> None:
    assert I.max_frames(1000) == 20_000 and I.max_frames(10) == I.MIN_FRAMES
    d = _hand_built(silent=False, T=9000)
    found = I.oracle(**d, frames=500)
    assert found["ident_frames"] == 500 and found["ceiling"] > 0.99


def test_cache_stores_the_oracle_once_and_adds_it_to_old_entries(tmp_path) -> None:
    cfg = SimulationConfig(n_neurons=20, n_frames=600, start_frame=-100, device="cpu")
    data = load_or_simulate(cfg, cache_dir=tmp_path)
    assert {"ceiling", "R2_exact", "phi_condition", "n_silent"} <= set(data.summary)
    meta_path = cache_entry(cfg, tmp_path) / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["summary"]["ceiling"] == pytest.approx(data.summary["ceiling"])
    for key in (*I.SUMMARY_KEYS, "ident_version"):  # an entry written before identifiability existed
        meta["summary"].pop(key)
    meta.pop("silent")
    meta_path.write_text(json.dumps(meta))
    again = load_or_simulate(cfg, cache_dir=tmp_path)
    assert again.summary["ceiling"] == pytest.approx(data.summary["ceiling"])
    assert "ceiling" in json.loads(meta_path.read_text())["summary"]
    meta = json.loads(meta_path.read_text())  # numbers of the first oracle (no version): computed again
    meta["summary"].pop("ident_version")
    meta["summary"]["ceiling"] = -1.0
    meta_path.write_text(json.dumps(meta))
    assert load_or_simulate(cfg, cache_dir=tmp_path).summary["ceiling"] == pytest.approx(
        data.summary["ceiling"]
    )
    assert json.loads(meta_path.read_text())["summary"]["ident_version"] == I.ORACLE_VERSION
