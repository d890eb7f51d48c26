"""Tallies of ``searcher_real.py`` runs: trials to the first converged and robust config, ratios, the table.

Pure Python (no Ray, no torch): a run is the JSON-safe dict the harness writes, so a saved results file
is re-tabulated without re-training. Definitions, the same for every searcher:

* **trials to first converged**: the 1-based position, in completion order, of the first trial of the
  search classified converged (``searchers.objective.classify``); budget + 1 when none converged.
* **robust config**: a config with ``robustness_repeats`` runs (seeds) in all, every one converged (the
  UCB tree's rule, ``searchers/tree.py``).
* UCB tree (``robustness: in-budget``): its robustness re-runs are trials of its own budget; trials to
  first robust = the position of the run that completed the first robust config.
* random search and TPE (``robustness: verified``): they never re-run a config, so after the search each
  converged config is re-run with ``robustness_repeats - 1`` new seeds outside the budget. Trials to
  first robust = what a verify-as-you-go wrapper with the same ``slots`` (``max_concurrent_trials``)
  would have spent, replayed with each trial's measured training time: the search trials start in
  suggestion order; as soon as a config's first run completes converged, its re-runs (one at a time,
  stopped at the first that did not converge) go ahead of new search trials; the count is the
  completion-order position of the re-run that made a config robust, as for the tree. With one slot
  this is the search trials up to that config plus the re-runs before and of it.
* Trials to first robust is budget + 1 when no config proved robust or the count exceeds the budget
  (a verify-as-you-go wrapper with the same budget would not have got there).
* **best score**: the highest score among the budget's trials; **training min**: their summed training time.
* **training min to first converged**: the training time of the trials up to and including the first
  converged one, in completion order (the whole budget's when none converged): the cost-aware twin of
  trials to first converged, since the searched duration parameters set what a trial costs.
* **training min to first robust**: the training time of the trials completed up to and including the run
  that made the first config robust (for random / TPE in the verify-as-you-go replay, re-runs included);
  the whole budget's, re-runs included, when none did.
* **robust configs**: UCB: robust configs within its budget; random / TPE: converged configs of the
  search whose re-runs all converged.
* **early stopping** (``ucb_stop`` beside ``ucb``): training min to first robust with over without, their
  difference, and the trials stopped per seed (``stopped_at`` in a trial's metrics).
* **± SE**: the standard error of a mean over seeds, ``stdev / sqrt(seeds)`` (nan with one seed). The
  searchers' seeds are independent runs, so a difference of two means has SE
  ``sqrt(SE_ntune**2 + SE_other**2)``; a difference within about two of them is within seed noise.
"""

from __future__ import annotations

import heapq
import json
import math
import statistics
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchers.space import config_key

Run = Mapping[str, Any]  # {"searcher", "level", "seed", "budget", "repeats", "robustness", "trials", ...}
Trial = Mapping[str, Any]  # {"index", "started", "params", "seed", "score", "classification", ...}
SEARCHERS = ("ucb", "ucb_stop", "random", "tpe")
NAMES = {
    "ucb": "ntune UCB tree",
    "ucb_stop": "ntune UCB tree, early stopping",
    "random": "random search",
    "tpe": "Optuna TPE",
}


def config_id(params: Mapping[str, Any]) -> str:
    """The identity of a config (its searched values; floats to 10 significant digits)."""
    return json.dumps(config_key(params))


def converged(trial: Trial) -> bool:
    return trial.get("classification") == "converged"


def first_converged(trials: Sequence[Trial]) -> int | None:
    """1-based position of the first converged trial; None when none converged."""
    return next((k for k, t in enumerate(trials, 1) if converged(t)), None)


def _minutes(trial: Trial) -> float:
    return float(trial.get("metrics", {}).get("training_time_min", 0.0))


def training_min(trials: Iterable[Trial]) -> float:
    """Summed training time (minutes) of ``trials``."""
    return sum(_minutes(t) for t in trials)


def _first_robust_in_budget(trials: Sequence[Trial], repeats: int) -> int | None:
    runs: dict[str, list[bool]] = defaultdict(list)
    for k, trial in enumerate(trials, 1):
        seen = runs[config_id(trial["params"])]
        seen.append(converged(trial))
        if len(seen) >= repeats and all(seen):
            return k
    return None


def _reruns(run: Run) -> dict[str, list[Trial]]:
    """config id -> its verification re-runs, in repeat order."""
    out: dict[str, list[Trial]] = defaultdict(list)
    for trial in run.get("verification", []):
        out[config_id(trial["params"])].append(trial)
    return {key: sorted(items, key=lambda t: int(t.get("repeat", 0))) for key, items in out.items()}


Running = tuple[float, int, str, int, Trial]  # (end time, start order, config id, re-run number or -1, trial)


def _first_robust_verified(
    trials: Sequence[Trial], reruns: Mapping[str, list[Trial]], repeats: int, slots: int
) -> tuple[int, float] | None:
    """The verify-as-you-go replay (module doc): an event loop over ``slots`` running trials; the trials
    completed up to the first robust config and their summed training minutes."""
    search = deque(sorted(trials, key=lambda t: int(t.get("suggested", t.get("index", 0)))))
    ready: deque[tuple[str, int]] = deque()  # (config id, re-run number) allowed to start
    running: list[Running] = []  # a heap: the next to complete first
    verified: set[str] = set()
    started = completed = 0
    now = spent = 0.0
    while True:
        while len(running) < slots and (ready or search):
            key, k = ready.popleft() if ready else (config_id(search[0]["params"]), -1)
            trial = reruns[key][k] if k >= 0 else search.popleft()
            heapq.heappush(running, (now + _minutes(trial), started, key, k, trial))
            started += 1
        if not running:
            return None
        now, _, key, k, trial = heapq.heappop(running)
        completed += 1
        spent += _minutes(trial)
        if not converged(trial) or (k < 0 and key in verified):
            continue
        verified.add(key)
        if k + 2 >= repeats:  # this run completed the config's repeats, all converged
            return completed, spent
        if k + 1 < len(reruns.get(key, [])):
            ready.append((key, k + 1))


def first_robust(run: Run) -> int | None:
    """Trials (search and, for ``verified`` runs, re-runs) spent up to the first robust config; None if none.

    A ``verified`` run is replayed with ``run["slots"]`` concurrent trials (1 when absent)."""
    found = _robust_cost(run)
    return None if found is None else found[0]


def _robust_cost(run: Run) -> tuple[int, float] | None:
    """(trials, training minutes) completed up to the first robust config; None if none."""
    trials, repeats = run["trials"], int(run["repeats"])
    if run["robustness"] == "in-budget":
        k = _first_robust_in_budget(trials, repeats)
        return None if k is None else (k, training_min(trials[:k]))
    return _first_robust_verified(trials, _reruns(run), repeats, int(run.get("slots", 1)))


def robust_configs(run: Run) -> int:
    """Configs that proved robust (see the module doc)."""
    repeats = int(run["repeats"])
    if run["robustness"] == "in-budget":
        runs: dict[str, list[bool]] = defaultdict(list)
        for trial in run["trials"]:
            runs[config_id(trial["params"])].append(converged(trial))
        return sum(len(v) >= repeats and all(v) for v in runs.values())
    reruns = {key: [converged(t) for t in items] for key, items in _reruns(run).items()}
    found = {config_id(t["params"]) for t in run["trials"] if converged(t)}
    return sum(len(reruns.get(k, [])) >= repeats - 1 and all(reruns.get(k, [])) for k in found)


@dataclass(frozen=True)
class Outcome:
    """One run's numbers; the trial counts are budget + 1 when not reached within the budget."""

    first_converged: int
    first_robust: int
    best_score: float
    robust_configs: int
    found_converged: bool
    found_robust: bool
    train_min: float
    min_to_converged: float  # training minutes up to the first converged trial (all of them if none)
    min_to_robust: float  # training minutes up to the run that made the first robust config (all if none)
    stopped: int  # trials stopped early (``stopped_at`` in their metrics)


def outcome(run: Run) -> Outcome:
    """The tally of one run (one searcher, block value and seed)."""
    budget = int(run["budget"])
    conv, cost = first_converged(run["trials"]), _robust_cost(run)
    rob = cost[0] if cost is not None and cost[0] <= budget else None
    spent = training_min(run["trials"]) + training_min(run.get("verification", []))
    scores = [float(t.get("score", 0.0)) for t in run["trials"]]
    return Outcome(
        first_converged=conv if conv is not None else budget + 1,
        first_robust=rob if rob is not None else budget + 1,
        best_score=max(scores, default=0.0),
        robust_configs=robust_configs(run),
        found_converged=conv is not None,
        found_robust=rob is not None,
        train_min=training_min(run["trials"]),
        min_to_converged=training_min(run["trials"][: conv or len(run["trials"])]),
        min_to_robust=cost[1] if cost is not None and rob is not None else spent,
        stopped=sum("stopped_at" in t.get("metrics", {}) for t in run["trials"]),
    )


@dataclass(frozen=True)
class Row:
    """Means over the seeds of one searcher at one block value."""

    level: Any
    searcher: str
    seeds: int
    budget: int
    first_converged: float
    converged_seeds: int
    first_robust: float
    robust_seeds: int
    best_score: float
    robust_configs: float
    train_min: float
    min_to_converged: float
    first_converged_se: float
    first_robust_se: float
    min_to_robust: float
    min_to_robust_se: float
    stopped: float  # trials stopped early per seed


MERGE_KEYS = ("study", "overrides", "budget", "robustness_repeats", "max_concurrent_trials")


def merge(files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One results file from several ``{"meta", "runs"}`` files of the same setup.

    Their metas must agree on ``MERGE_KEYS`` (``ValueError`` naming the first that differs); ceilings
    are united. A later file's run replaces an earlier run of the same searcher, level and seed. Runs
    come out by level (densest first), searcher (``SEARCHERS``) and seed.
    """
    meta: dict[str, Any] = {}
    ceilings: dict[str, float] = {}
    runs: dict[tuple[float, str, int], Run] = {}
    for data in files:
        other = data.get("meta") or {}
        for key in MERGE_KEYS:
            if key in meta and key in other and meta[key] != other[key]:
                raise ValueError(f"{key}: {meta[key]!r} in one file, {other[key]!r} in another")
        meta.update({k: other[k] for k in MERGE_KEYS if k in other and k not in meta})
        ceilings.update(other.get("ceilings") or {})
        for run in data["runs"]:
            runs[(float(run["level"]), str(run["searcher"]), int(run["seed"]))] = run
    meta["ceilings"] = dict(sorted(ceilings.items(), key=lambda kv: -float(kv[0])))
    order = sorted(runs, key=lambda k: (-k[0], _order(k[1]), k[2]))
    return {"meta": meta, "runs": [runs[k] for k in order]}


def summarize(runs: Iterable[Run]) -> list[Row]:
    """One row per (block value, searcher), block values in first-seen order, searchers ucb, random, tpe."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    levels: dict[str, Any] = {}
    for run in runs:
        levels.setdefault(repr(run["level"]), run["level"])
        groups[(repr(run["level"]), run["searcher"])].append(run)
    rows = []
    for lkey, level in levels.items():
        for name in sorted({s for lk, s in groups if lk == lkey}, key=_order):
            group = groups[(lkey, name)]
            outs = [outcome(r) for r in group]
            rows.append(
                Row(
                    level=level,
                    searcher=name,
                    seeds=len(outs),
                    budget=max(int(r["budget"]) for r in group),
                    first_converged=statistics.mean(o.first_converged for o in outs),
                    converged_seeds=sum(o.found_converged for o in outs),
                    first_robust=statistics.mean(o.first_robust for o in outs),
                    robust_seeds=sum(o.found_robust for o in outs),
                    best_score=statistics.mean(o.best_score for o in outs),
                    robust_configs=statistics.mean(o.robust_configs for o in outs),
                    train_min=statistics.mean(o.train_min for o in outs),
                    min_to_converged=statistics.mean(o.min_to_converged for o in outs),
                    first_converged_se=standard_error([o.first_converged for o in outs]),
                    first_robust_se=standard_error([o.first_robust for o in outs]),
                    min_to_robust=statistics.mean(o.min_to_robust for o in outs),
                    min_to_robust_se=standard_error([o.min_to_robust for o in outs]),
                    stopped=statistics.mean(o.stopped for o in outs),
                )
            )
    return rows


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values``: sample stdev / sqrt(n); nan for fewer than two."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def _order(name: str) -> tuple[int, str]:
    return (SEARCHERS.index(name) if name in SEARCHERS else len(SEARCHERS), name)


@dataclass(frozen=True)
class Ratio:
    """ntune's mean trials over another searcher's at one block value (< 1: the UCB tree needed fewer)."""

    level: Any
    other: str
    converged: float
    robust: float
    minutes: float  # the same ratio for training minutes to first converged
    converged_diff: float  # ntune's mean trials minus the other's, to first converged
    converged_diff_se: float  # its standard error (module doc)
    robust_diff: float
    robust_diff_se: float


def ratios(rows: Sequence[Row]) -> list[Ratio]:
    """ucb / random and ucb / tpe per block value, for trials to first converged and to first robust."""
    by = {(repr(r.level), r.searcher): r for r in rows}
    out = []
    for row in rows:
        ucb = by.get((repr(row.level), "ucb"))
        if row.searcher in ("ucb", "ucb_stop") or ucb is None:
            continue
        out.append(
            Ratio(
                level=row.level,
                other=row.searcher,
                converged=_div(ucb.first_converged, row.first_converged),
                robust=_div(ucb.first_robust, row.first_robust),
                minutes=_div(ucb.min_to_converged, row.min_to_converged),
                converged_diff=ucb.first_converged - row.first_converged,
                converged_diff_se=math.hypot(ucb.first_converged_se, row.first_converged_se),
                robust_diff=ucb.first_robust - row.first_robust,
                robust_diff_se=math.hypot(ucb.first_robust_se, row.first_robust_se),
            )
        )
    return out


@dataclass(frozen=True)
class StopGain:
    """The tree with lineage early stopping against the tree without, at one block value."""

    level: Any
    minutes: float  # training minutes to the first robust config, with / without (< 1: early stopping saved)
    minutes_diff: float  # with minus without, and its standard error
    minutes_diff_se: float
    trials: float  # trials to the first robust config, with / without
    robust: tuple[int, int, int]  # seeds that found a robust config: with, without, of
    stopped: float  # trials stopped per seed
    budget_minutes: tuple[float, float]  # the budget's training minutes per seed: with, without


def stop_gains(rows: Sequence[Row]) -> list[StopGain]:
    """``ucb_stop`` against ``ucb`` per block value where both ran."""
    by = {(repr(r.level), r.searcher): r for r in rows}
    out = []
    for row in rows:
        plain = by.get((repr(row.level), "ucb"))
        if row.searcher != "ucb_stop" or plain is None:
            continue
        out.append(
            StopGain(
                level=row.level,
                minutes=_div(row.min_to_robust, plain.min_to_robust),
                minutes_diff=row.min_to_robust - plain.min_to_robust,
                minutes_diff_se=math.hypot(row.min_to_robust_se, plain.min_to_robust_se),
                trials=_div(row.first_robust, plain.first_robust),
                robust=(row.robust_seeds, plain.robust_seeds, min(row.seeds, plain.seeds)),
                stopped=row.stopped,
                budget_minutes=(row.train_min, plain.train_min),
            )
        )
    return out


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def markdown(rows: Sequence[Row], meta: Mapping[str, Any] | None = None) -> str:
    """The results table and the ratio table in markdown, with a line on how to read them."""
    meta = meta or {}
    ceilings = meta.get("ceilings") or {}
    lines = [
        "| block value | ceiling | searcher | seeds | trials to 1st converged | converged in | "
        "trials to 1st robust | robust in | best score | robust configs | training min | "
        "training min to 1st converged | training min to 1st robust | stopped |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ceiling = ceilings.get(repr(r.level))
        lines.append(
            f"| {r.level} | {_num(ceiling, 4)} | {NAMES.get(r.searcher, r.searcher)} | {r.seeds} | "
            f"{_pm(r.first_converged, r.first_converged_se, 1)} | {r.converged_seeds}/{r.seeds} | "
            f"{_pm(r.first_robust, r.first_robust_se, 1)} | "
            f"{r.robust_seeds}/{r.seeds} | {r.best_score:.3f} | {r.robust_configs:.1f} | {r.train_min:.1f} | "
            f"{r.min_to_converged:.2f} | {_pm(r.min_to_robust, r.min_to_robust_se, 2)} | {r.stopped:.1f} |"
        )
    against = ratios(rows)
    if against:
        lines += [
            "",
            "| block value | ntune / | trials to 1st converged | trials to 1st robust | "
            "training min to 1st converged | difference, trials to 1st converged | "
            "difference, trials to 1st robust |",
            "|---|---|---|---|---|---|---|",
        ]
    for q in against:
        lines.append(
            f"| {q.level} | {NAMES.get(q.other, q.other)} | {q.converged:.2f} | {q.robust:.2f} | {q.minutes:.2f} | "
            f"{_pm(q.converged_diff, q.converged_diff_se, 2, sign=True)} | "
            f"{_pm(q.robust_diff, q.robust_diff_se, 2, sign=True)} |"
        )
    gains = stop_gains(rows)
    if gains:
        lines += [
            "",
            "| block value | early stopping / without: training min to 1st robust | difference (min) | "
            "trials to 1st robust | robust in (with, without) | stopped per seed | budget's training min "
            "(with, without) |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in gains:
            lines.append(
                f"| {g.level} | {g.minutes:.2f} | {_pm(g.minutes_diff, g.minutes_diff_se, 2, sign=True)} | "
                f"{g.trials:.2f} | {g.robust[0]}/{g.robust[2]}, {g.robust[1]}/{g.robust[2]} | {g.stopped:.1f} | "
                f"{g.budget_minutes[0]:.1f}, {g.budget_minutes[1]:.1f} |"
            )
    lines += [
        "",
        "Trial counts are means over seeds in completion order; budget + 1 counts a seed that did not get "
        "there within the budget. Robust: robustness_repeats runs of a config, all converged (random and "
        "TPE: re-runs outside the budget, counted as a verify-as-you-go wrapper would spend them). "
        "Ratios below 1 and negative differences: the UCB tree needed fewer trials. ± one standard error "
        "over seeds; a difference's SE is that of two independent means, and a difference within about two "
        "of them is within seed noise. Training min: the budget's summed training time "
        "(the searched values, e.g. data_augmentation_loop, set what a trial costs); to 1st converged: up to and "
        "including the first converged trial (the whole budget's when none did), its ratio the cost-aware one; "
        "to 1st robust: up to and including the run that made the first config robust (the whole budget's, "
        "re-runs included, when none did). Stopped: trials stopped early by lineage early stopping.",
    ]
    return "\n".join(lines)


def _pm(mean: float, se: float, digits: int, sign: bool = False) -> str:
    """``mean ± se`` (just the mean when se is nan, i.e. one seed)."""
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(se) else f"{text} ± {se:.{digits}f}"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"
