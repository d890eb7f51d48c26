"""Metrics on constructed inputs: each assertion fails if the metric is computed wrongly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntune.learn import metrics as M


def _cauchy_W(n: int = 60, seed: int = 0, ff: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.standard_cauchy((n, n))
    W[np.abs(W) > 25] = 0
    W[rng.random((n, n)) >= ff] = 0
    np.fill_diagonal(W, 0)
    return W / n**0.7


def test_R2_is_scale_and_sign_free() -> None:
    W = _cauchy_W()
    assert M.connectivity_R2(W, W) == pytest.approx(1.0)
    assert M.connectivity_R2(-3.7 * W, W) == pytest.approx(1.0)
    assert M.connectivity_R2(0.01 * W + 0.5, W) == pytest.approx(1.0)


def test_R2_of_noise_is_about_zero() -> None:
    W = _cauchy_W()
    noise = np.random.default_rng(5).standard_normal(W.shape)
    assert M.connectivity_R2(noise, W) < 0.01


def test_R2_ignores_the_diagonal() -> None:
    W = _cauchy_W()
    learned = W.copy()
    np.fill_diagonal(learned, 1e6)
    assert M.connectivity_R2(learned, W) == pytest.approx(1.0)


def test_R2_partial_noise_matches_squared_pearson() -> None:
    W = _cauchy_W()
    learned = W + 0.05 * np.random.default_rng(1).standard_normal(W.shape)
    off = ~np.eye(len(W), dtype=bool)
    r = np.corrcoef(W[off], learned[off])[0, 1]
    assert M.connectivity_R2(learned, W) == pytest.approx(r**2, rel=1e-9)
    assert 0.05 < M.connectivity_R2(learned, W) < 0.99


def test_slope_after_scale_correction() -> None:
    W = _cauchy_W()
    g = np.full(len(W), 10.0)
    learned = 10.0 * W / 4.0  # model W absorbed g and a lin_edge gain of 4
    assert M.connectivity_slope(learned, W, gain=4.0, g=g) == pytest.approx(1.0)
    assert M.connectivity_slope(0.3 * learned, W, gain=4.0, g=g) == pytest.approx(0.3)
    assert M.connectivity_slope(learned, W) == pytest.approx(2.5)
    u = np.linspace(-3, 3, 50)
    assert M.edge_gain(4.0 * np.tanh(u) + 1.0, np.tanh(u)) == pytest.approx(4.0)


def test_zero_band_flags_zeroed_true_synapses() -> None:
    W = _cauchy_W()
    rng = np.random.default_rng(2)
    good = 2.0 * W + 1e-4 * rng.standard_normal(W.shape)
    assert M.w_diagnosis(good, W)["zero_band"] < 0.02
    killed = good.copy()
    kill = (rng.random(W.shape) < 0.5) & (W != 0)
    killed[kill] = 0.0
    band = M.w_diagnosis(killed, W)["zero_band"]
    assert 0.4 < band < 0.6
    assert M.w_diagnosis(killed, W)["cross"] == 0.0  # no vertical band: true zeros stay zero


def test_cross_needs_both_bands() -> None:
    W = _cauchy_W(ff=0.5)
    rng = np.random.default_rng(3)
    learned = W.copy()
    learned[(W != 0) & (rng.random(W.shape) < 0.5)] = 0.0  # zero band
    fake = (W == 0) & (rng.random(W.shape) < 0.5)
    learned[fake] = np.median(np.abs(W[W != 0])) * rng.choice([-1.0, 1.0], int(fake.sum()))  # vertical band
    diag = M.w_diagnosis(learned, W)
    assert diag["zero_band"] > 0.2 and diag["vertical_band"] > 0.2
    assert diag["cross"] == 1.0


def test_cluster_accuracy_relabelled_perfect_and_random() -> None:
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(4), 25)
    centres = np.array([[0, 0], [5, 0], [0, 5], [5, 5]], dtype=float)
    permuted = np.array([2, 0, 3, 1])[types]  # cluster ids unrelated to type ids
    embedding = centres[permuted] + 0.1 * rng.standard_normal((100, 2))
    assert M.cluster_accuracy(embedding, types) == 1.0
    assert M.cluster_accuracy(embedding, types, method="single_linkage") == 1.0
    random = [M.cluster_accuracy(np.random.default_rng(s).standard_normal((100, 2)), types) for s in range(5)]
    assert 0.2 < np.mean(random) < 0.45  # chance is 0.25 (k-means on noise does a little better)
    assert M.cluster_accuracy(np.ones((100, 2)), types) == 0.25
    assert math.isnan(M.cluster_accuracy(np.full((100, 2), np.nan), types))


def test_matched_accuracy_uses_one_to_one_matching() -> None:
    types = np.array([0, 0, 1, 1, 2, 2])
    assert M.matched_accuracy(np.array([7, 7, 7, 7, 7, 7]), types) == pytest.approx(2 / 6)
    assert M.matched_accuracy(np.array([1, 1, 2, 2, 0, 0]), types) == 1.0


def test_rollout_scores() -> None:
    t = np.linspace(0, 10, 101)[:, None]
    true = np.sin(t + np.linspace(0, 3, 8)[None, :]) * np.arange(1, 9)  # (T, N)
    assert M.rollout_scores(true, true) == pytest.approx((1.0, 1.0))
    r2, pearson = M.rollout_scores(true + 0.5, true)
    assert pearson == pytest.approx(1.0) and r2 < 1.0
    r2, pearson = M.rollout_scores(-true, true)
    assert pearson == pytest.approx(-1.0) and r2 < -1.0
    assert M.rollout_scores(np.full_like(true, np.inf), true) == (0.0, 0.0)


def test_classification_single_objective_and_diverged() -> None:
    one = {"connectivity_R2": 0.9}
    assert M.classify({"connectivity_R2": 0.95}, one) == "converged"
    assert M.classify({"connectivity_R2": 0.5}, one) == "partial"
    assert M.classify({"connectivity_R2": 0.05}, one) == "failed"
    assert M.classify({"connectivity_R2": 0.99, "cluster_accuracy": 1.0, "status": "diverged"}) == "failed"


def test_score() -> None:
    assert M.score({"connectivity_R2": 1.0, "cluster_accuracy": 0.5}) == pytest.approx(0.8)
    assert M.score({"connectivity_R2": 1.7, "cluster_accuracy": -2.0}) == pytest.approx(0.6)
    assert M.score({"connectivity_R2": float("nan"), "cluster_accuracy": 1.0}) == pytest.approx(0.4)
    assert M.score({"connectivity_R2": 1.0, "cluster_accuracy": 1.0, "status": "diverged"}) == 0.0
    assert M.score({"connectivity_R2": 0.5}, {"connectivity_R2": 1.0}) == pytest.approx(0.5)


def _parallel_lines(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two tight blobs and two parallel lines (length 0.4, 0.06 apart): the embedding of the two c = 2
    types on the networks where k-means failed (docs/results.md)."""
    rng = np.random.default_rng(seed)
    along = np.linspace(-0.2, 0.2, 25)
    embedding = np.concatenate(
        [
            np.array([1.3, 1.7]) + 0.01 * rng.standard_normal((25, 2)),
            np.array([2.1, 1.95]) + 0.01 * rng.standard_normal((25, 2)),
            np.stack([along, np.full(25, 0.03)], 1) + 0.002 * rng.standard_normal((25, 2)),
            np.stack([along, np.full(25, -0.03)], 1) + 0.002 * rng.standard_normal((25, 2)),
        ]
    )
    return embedding, np.repeat(np.arange(4), 25)


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_cuts_parallel_lines_across_and_the_mixture_follows_them(seed: int) -> None:
    embedding, types = _parallel_lines(seed)
    # k-means' optimum cuts both lines in half when the gap is under half their length: 25 + 25 + 2 x 12.5
    assert M.cluster_accuracy(embedding, types) == pytest.approx(0.75, abs=0.011)
    assert M.cluster_accuracy(embedding, types, method="gmm") == 1.0


def test_the_mixture_finds_no_types_in_noise() -> None:
    types = np.repeat(np.arange(4), 25)
    scores = [
        M.cluster_accuracy(np.random.default_rng(s).standard_normal((100, 2)), types, "gmm") for s in range(5)
    ]
    assert 0.2 < np.mean(scores) < 0.45
    assert M.cluster_accuracy(np.ones((100, 2)), types, method="gmm") == 0.25
    with pytest.raises(ValueError, match="'kmeans', 'gmm', 'single_linkage'"):
        M.cluster_accuracy(np.ones((100, 2)), types, method="dbscan")
