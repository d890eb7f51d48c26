"""A config's robustness over its repeats, and the network instances the repeats train on (no Ray).

**Robust** (what the searcher and every view use): every counted repeat converged and there are at
least ``repeats`` of them. A repeat whose network was data-limited (classification ``data-limited``:
its identifiability ceiling is below the R^2 threshold, so no config could converge on it) is kept but
not counted, neither for nor against the config.

**Spread** (upstream NeuralGraph's robustness classes, read on the counted repeats' connectivity R^2):

* ``catastrophic``: some repeat has R^2 < 0.50 (a failed run counts as R^2 0);
* ``stable-robust``: every repeat has R^2 >= 0.90 and the coefficient of variation is < 3 %;
* ``stable``: mean R^2 >= 0.85 and CV < 10 %;
* ``unstable``: otherwise.

Standard deviations are population ones (ddof 0), CV = std / mean.

**Instances.** With network instances (a study's ``repeats_vary: instance``), run ``r`` of a config
trains on network ``r`` of its block: network 0 is the block's own ``simulation.seed``, network
``r >= 1`` a seed derived from the study seed, the block and ``r`` (:func:`instance_seed`); the
held-out networks that confirm a block's robust config have seeds of their own (:func:`held_out_seed`).
Derived seeds are even for repeats and odd for held-out networks, and never the block's own seed, so a
held-out network is one the search never trained on. They come from SHA-256, so they are the same on
every machine and after any restore.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from searchers.objective import metric_value

DATA_LIMITED = "data-limited"
STABLE_R2 = 0.90  # stable-robust: every repeat at least this
STABLE_CV = 0.03  # ... and a CV below this
STEADY_MEAN = 0.85  # stable: a mean at least this
STEADY_CV = 0.10  # ... and a CV below this
CATASTROPHIC_R2 = 0.50  # catastrophic: some repeat below this
SPREADS = ("stable-robust", "stable", "unstable", "catastrophic")
SEED_SPACE = 2**31


def counted(classes: Sequence[str]) -> list[str]:
    """The classifications that count for robustness (all but ``data-limited``)."""
    return [c for c in classes if c != DATA_LIMITED]


def is_robust(classes: Sequence[str], repeats: int) -> bool:
    """At least ``repeats`` counted repeats, every one converged."""
    valid = counted(classes)
    return len(valid) >= repeats and all(c == "converged" for c in valid)


@dataclass(frozen=True)
class Repeat:
    """One run of a config: its classification, metrics and score (and its network seed, if known)."""

    classification: str
    metrics: Mapping[str, Any]
    score: float
    network: int | None = None


@dataclass(frozen=True)
class Robustness:
    """What a config's repeats add up to (see the module doc); NaN where nothing is counted."""

    n: int  # counted repeats
    n_converged: int
    n_data_limited: int
    R2_mean: float
    R2_std: float
    R2_cv: float
    cluster_mean: float
    cluster_std: float
    worst_R2: float
    worst_cluster: float
    worst_network: int | None  # the network seed of the lowest-scoring counted repeat
    robust: bool
    spread: str  # one of SPREADS, "" with fewer than two counted repeats

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-safe except NaN)."""
        return asdict(self)


def _value(metrics: Mapping[str, Any], name: str) -> float:
    v = metric_value(metrics, name)
    return v if math.isfinite(v) else 0.0


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))


def spread(r2: Sequence[float]) -> str:
    """Upstream's class of a list of connectivity R^2 values (NaN or a failed run: pass 0); "" for
    fewer than two (a spread needs repeats)."""
    if len(r2) < 2:
        return ""
    mean, std = _mean_std(list(r2))
    cv = std / mean if mean > 0 else math.inf
    if min(r2) < CATASTROPHIC_R2:
        return "catastrophic"
    if min(r2) >= STABLE_R2 and cv < STABLE_CV:
        return "stable-robust"
    if mean >= STEADY_MEAN and cv < STEADY_CV:
        return "stable"
    return "unstable"


def robustness(repeats: Sequence[Repeat], needed: int) -> Robustness:
    """The robustness of a config from its repeats; ``needed``: repeats a robust config must have."""
    valid = [r for r in repeats if r.classification != DATA_LIMITED]
    r2 = [_value(r.metrics, "connectivity_R2") for r in valid]
    cluster = [_value(r.metrics, "cluster_accuracy") for r in valid]
    ran = [r for r in valid if math.isfinite(metric_value(r.metrics, "connectivity_R2"))]
    undefined = bool(ran) and not any(math.isfinite(metric_value(r.metrics, "cluster_accuracy")) for r in ran)
    if undefined:  # one neuron type: every run that reported R^2 has cluster_accuracy NaN, not 0
        cluster = [math.nan] * len(valid)
    r2_mean, r2_std = _mean_std(r2)
    cl_mean, cl_std = _mean_std(cluster)
    worst = min(valid, key=lambda r: r.score) if valid else None
    return Robustness(
        n=len(valid),
        n_converged=sum(r.classification == "converged" for r in valid),
        n_data_limited=len(repeats) - len(valid),
        R2_mean=r2_mean,
        R2_std=r2_std,
        R2_cv=r2_std / r2_mean if valid and r2_mean > 0 else math.nan,
        cluster_mean=cl_mean,
        cluster_std=cl_std,
        worst_R2=_value(worst.metrics, "connectivity_R2") if worst else math.nan,
        worst_cluster=_value(worst.metrics, "cluster_accuracy") if worst and not undefined else math.nan,
        worst_network=worst.network if worst else None,
        robust=is_robust([r.classification for r in repeats], needed),
        spread=spread(r2),
    )


def _derive(study_seed: int, block: str, kind: str, index: int, parity: int, avoid: int | None) -> int:
    salt = 0
    while True:
        text = f"ntune/{study_seed}/{block}/{kind}/{index}/{salt}".encode()
        h = int.from_bytes(hashlib.sha256(text).digest()[:8], "big")
        seed = (h % (SEED_SPACE // 2)) * 2 + parity
        if seed != avoid:
            return seed
        salt += 1


def instance_seed(study_seed: int, block: str, index: int, base: int | None) -> int | None:
    """The network seed of repeat ``index`` of a block: ``base`` (the block's own seed) for 0, else an
    even seed derived from the study seed, the block label and ``index`` (never ``base``)."""
    if index == 0:
        return base
    return _derive(study_seed, block, "repeat", index, 0, base)


def held_out_seed(study_seed: int, block: str, index: int, base: int | None) -> int:
    """The network seed of held-out network ``index`` (0-based) of a block: odd, never ``base``."""
    return _derive(study_seed, block, "held-out", index, 1, base)
