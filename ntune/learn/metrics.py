"""Metrics of a trained SignalGNN: pure functions on numpy arrays (DESIGN.md, "Metrics").

* ``connectivity_R2``: R^2 of the least-squares line of learned vs true W over all off-diagonal
  entries; equal to the squared Pearson correlation, so free of the scale and sign that lin_edge
  can absorb.
* ``connectivity_slope``: the slope of that line after **scale correction**. The model's synaptic
  term is ``W_ij lin_edge(u_j)``, the true one ``g_i W_ij phi(u_j)``. With ``k`` the least-squares
  gain of lin_edge against phi over the data range (``lin_edge(u) ~ k phi(u) + b``), the learned
  connectivity in the units of the true one is ``W_eff_ij = k W_ij / g_i``; the slope is the
  least-squares slope of ``W_eff`` on ``W_true``. 1 is exact recovery, << 1 is shrinkage (L1 too
  strong), negative means lin_edge is decreasing. PDE_N4's lin_edge([u, a_j]) has one curve per source
  j, fitted to its own phi((u - h_j) / w_j): one gain k_j per column, ``W_eff_ij = k_j W_ij / g_i``.
* W diagnosis (what one reads off the scatter plot): ``zero_band`` = fraction of the clearly non-zero
  true entries (|W_true| >= median of the non-zero |W_true|) whose learned value, mapped onto the true
  scale by the least-squares line, is below 10 % of the true magnitude; ``vertical_band`` = fraction of
  true zeros whose mapped learned value exceeds 10 % of that median; ``cross`` = 1.0 when both bands
  exceed ``BAND_THRESHOLD``.
* ``cluster_accuracy``: k-means (k = n_types, fixed seed) or single-linkage clustering of the
  embeddings, clusters matched one-to-one to true types (Hungarian), accuracy. Undefined (NaN) for a
  network of one type: any clustering of one type is trivially "right".
* ``rollout_scores``: test_R2 (mean over snapshots every ``every`` steps of the cross-neuron coefficient
  of determination 1 - SS_res / SS_tot of the learned trajectory against the true one; can be
  negative) and test_pearson (mean over neurons of the Pearson r of the traces).
* ``classify`` and ``score``: re-exported from :mod:`searchers.objective` (the one definition).
* ``REPORTED_METRICS`` (every key a trial reports) and ``RECORD_METRICS`` (the subset a study's trial
  record keeps): the one definition of both.

No torch here, and scipy's solver is imported on first use, so :mod:`ntune.study` can read the key
lists cheaply.
"""

from __future__ import annotations

import math

import numpy as np

from searchers.objective import classify, score

__all__ = ["classify", "score"]  # re-exported: the trainer reads them from here

BAND_FRACTION = 0.1
BAND_THRESHOLD = 0.2

REPORTED_METRICS = (
    "connectivity_R2", "connectivity_slope", "zero_band", "cross", "cluster_accuracy", "test_R2",
    "test_pearson", "loss", "final_loss", "training_time_min", "spectral_radius",
    "connectivity_filling_factor", "iteration", "n_iterations", "epoch", "progress", "status",
    "classification", "final", "ceiling", "data_limited", "effective_rank_90", "effective_rank_99",
)  # fmt: skip
"""Every key of every report of a run (``fit``'s ``on_progress``, its final metrics, a Tune report); NaN until known."""

RECORD_METRICS = (
    "connectivity_R2", "cluster_accuracy", "test_R2", "test_pearson", "connectivity_slope", "zero_band",
    "cross", "final_loss", "training_time_min", "spectral_radius", "n_iterations", "ceiling",
    "effective_rank_90", "effective_rank_99",
)  # fmt: skip
"""The final numbers a study's trial record keeps (:mod:`ntune.study.records`), a subset of REPORTED_METRICS."""

assert set(RECORD_METRICS) <= set(REPORTED_METRICS), "a record keeps only what a trial reports"


def offdiag(M: np.ndarray) -> np.ndarray:
    """The N*(N-1) off-diagonal entries of a square matrix, as float64."""
    M = np.asarray(M, dtype=np.float64)
    return M[~np.eye(M.shape[0], dtype=bool)]


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line y ~ slope * x + intercept: (slope, intercept, R^2); NaN when undefined."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan, math.nan, math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx == 0:
        return math.nan, math.nan, math.nan
    slope = sxy / sxx
    r2 = 0.0 if syy == 0 else sxy * sxy / (sxx * syy)
    return slope, float(y.mean() - slope * x.mean()), r2


def connectivity_R2(W_learned: np.ndarray, W_true: np.ndarray) -> float:
    """R^2 of the least-squares line of learned vs true W over the off-diagonal entries (scale/sign free)."""
    return line_fit(offdiag(W_true), offdiag(W_learned))[2]


def edge_gain(lin_edge_values: np.ndarray, phi_values: np.ndarray) -> float:
    """Least-squares gain k of ``lin_edge(u) ~ k phi(u) + b`` over sampled u (both (n,) arrays)."""
    return line_fit(phi_values, lin_edge_values)[0]


def edge_gains(lin_edge_values: np.ndarray, phi_values: np.ndarray) -> np.ndarray:
    """Per column j, the least-squares gain k_j of ``lin_edge_j(u) ~ k_j phi_j(u) + b_j``: (P, N) arrays -> (N,);
    NaN where phi_j is constant over the samples."""
    x, y = np.asarray(phi_values, dtype=np.float64), np.asarray(lin_edge_values, dtype=np.float64)  # (P, N)
    dx, dy = x - x.mean(axis=0), y - y.mean(axis=0)  # (P, N)
    sxx, sxy = (dx * dx).sum(axis=0), (dx * dy).sum(axis=0)  # (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), math.nan)  # (N,)


def scale_corrected(
    W_learned: np.ndarray, gain: float | np.ndarray = 1.0, g: np.ndarray | None = None
) -> np.ndarray:
    """``W_eff = gain * W_learned / g_i``: ``gain`` one number or one per column j (N,) (PDE_N4's per-source
    gains, :func:`edge_gains`); row i divided by the true coupling gain g_i when given."""
    W_eff = np.asarray(W_learned, dtype=np.float64) * gain
    if g is not None:
        W_eff = W_eff / np.asarray(g, dtype=np.float64)[:, None]
    return W_eff


def connectivity_slope(
    W_learned: np.ndarray, W_true: np.ndarray, gain: float | np.ndarray = 1.0, g: np.ndarray | None = None
) -> float:
    """Least-squares slope of the scale-corrected learned W on the true W (off-diagonal); 1 = exact."""
    return line_fit(offdiag(W_true), offdiag(scale_corrected(W_learned, gain, g)))[0]


def w_diagnosis(W_learned: np.ndarray, W_true: np.ndarray) -> dict[str, float]:
    """``zero_band``, ``vertical_band`` and ``cross`` (0.0/1.0) of the learned-vs-true scatter."""
    x, y = offdiag(W_true), offdiag(W_learned)
    slope, intercept, _ = line_fit(x, y)
    nan = {"zero_band": math.nan, "vertical_band": math.nan, "cross": 0.0}
    nonzero = x != 0
    if not math.isfinite(slope) or slope == 0 or not nonzero.any():
        return nan
    mapped = (y - intercept) / slope  # learned values on the true scale
    ref = float(np.median(np.abs(x[nonzero])))
    strong = nonzero & (np.abs(x) >= ref)
    zero_band = float(np.mean(np.abs(mapped[strong]) < BAND_FRACTION * np.abs(x[strong])))
    vertical = float(np.mean(np.abs(mapped[~nonzero]) > BAND_FRACTION * ref)) if (~nonzero).any() else 0.0
    cross = float(zero_band > BAND_THRESHOLD and vertical > BAND_THRESHOLD)
    return {"zero_band": zero_band, "vertical_band": vertical, "cross": cross}


def matched_accuracy(labels: np.ndarray, types: np.ndarray) -> float:
    """Accuracy of cluster ``labels`` against true ``types`` after the best one-to-one matching (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    _, lab = np.unique(labels, return_inverse=True)
    _, typ = np.unique(types, return_inverse=True)
    counts = np.zeros((lab.max() + 1, typ.max() + 1), dtype=np.int64)  # (clusters, types)
    np.add.at(counts, (lab, typ), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(types))


CLUSTER_METHODS = ("kmeans", "gmm", "single_linkage")


def cluster_labels(
    embedding: np.ndarray, n_clusters: int, method: str = "kmeans", seed: int = 0
) -> np.ndarray:
    """Cluster labels (N,) of the embedding (N, d): k-means (n_init 10, fixed seed), a Gaussian mixture with
    full covariances (``gmm``: follows elongated groups such as parallel lines; the most likely of 20 fits
    started from random points, fixed seed: a k-means start keeps k-means' cut) or single linkage."""
    x = np.asarray(embedding, dtype=np.float64)
    n_distinct = len(np.unique(x.round(12), axis=0))
    k = max(1, min(n_clusters, n_distinct))
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        scale = float(x.std()) or 1.0  # the covariance floor follows the embedding's scale
        mixture = GaussianMixture(
            k,
            covariance_type="full",
            n_init=20,
            init_params="random_from_data",
            random_state=seed,
            reg_covar=1e-6 * scale**2,
        )
        return mixture.fit_predict(x)
    if method == "single_linkage":
        from scipy.cluster.hierarchy import fcluster, linkage

        return fcluster(linkage(x, method="single"), t=n_clusters, criterion="maxclust")
    raise ValueError(f"cluster method {method!r} is not one of {', '.join(map(repr, CLUSTER_METHODS))}")


def cluster_accuracy(
    embedding: np.ndarray, types: np.ndarray, method: str = "kmeans", seed: int = 0
) -> float:
    """Fraction of neurons whose matched cluster is their true type (chance: 1/n_types); NaN if not finite,
    and NaN for one type (undefined: a study of such networks scores W alone)."""
    x = np.asarray(embedding)
    n_types = len(np.unique(types))
    if not np.isfinite(x).all() or n_types < 2:
        return math.nan
    return matched_accuracy(cluster_labels(x, n_types, method, seed), np.asarray(types))


def rollout_scores(pred: np.ndarray, true: np.ndarray, every: int = 10) -> tuple[float, float]:
    """(test_R2, test_pearson) of a learned trajectory ``pred`` (T, N) against the true one ``true`` (T, N)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if not (np.isfinite(pred).all() and np.isfinite(true).all()):
        return 0.0, 0.0
    snaps = np.arange(0, len(true), every)
    p, t = pred[snaps], true[snaps]  # (snapshots, N)
    ss_res = ((p - t) ** 2).sum(axis=1)
    ss_tot = ((t - t.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    ok = ss_tot > 0
    test_R2 = float(np.mean(1.0 - ss_res[ok] / ss_tot[ok])) if ok.any() else math.nan
    dp, dt = pred - pred.mean(axis=0), true - true.mean(axis=0)  # (T, N)
    norm = np.sqrt((dp**2).sum(axis=0) * (dt**2).sum(axis=0))  # (N,)
    ok = norm > 0
    test_pearson = float(np.mean((dp * dt).sum(axis=0)[ok] / norm[ok])) if ok.any() else math.nan
    return test_R2, test_pearson
