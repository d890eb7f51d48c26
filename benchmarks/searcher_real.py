"""Searcher on the real trainer: ntune's UCB tree vs random search vs Optuna TPE, each through Ray Tune.

One harness (``run_search``): the study's trainable (``ntune.tune.trainable.make_trainable``), base config, space,
objective, per-trial resources and ``max_concurrent_trials``, one block value at a time, ``budget`` trials,
run through a real ``tune.Tuner`` with one of four searchers:

* ``ucb``: ntune's searcher (``ntune.tune.driver.build_searcher``) on a study holding only that block, with
  ``n_iter_block = budget`` and ``seed``, without early stopping; it spends part of its budget on robustness
  re-runs.
* ``ucb_stop``: the same with lineage early stopping (``ntune.tune.early_stop.LineageScheduler``, the study's
  ``early_stop`` rule, the default rule when the study has none).
* ``random``: Tune's ``BasicVariantGenerator`` (``random_state = seed``) over the study's space mapped to
  Tune domains (``tune_domain``).
* ``tpe``: Tune's ``OptunaSearch`` (TPE, ``seed``) over the same space, metric ``score`` (the study's
  weighted score), warm-started with the UCB tree's root config (the base config's values).

Random search and TPE trials get training seeds derived from the harness seed and the config
(``run_seed``); the UCB tree draws its own. Afterwards every converged config of random search and TPE is
re-run with ``robustness_repeats - 1`` new seeds outside the budget (``verify``). ``searcher_tally.py``
defines and computes what is reported. Run (the progress goes to stderr, the table to stdout)::

    .venv/bin/python benchmarks/searcher_real.py --study configs/quickstart_study.yaml \
        --levels 1.0,0.5,0.25,0.1 --seeds 3 --out results.json
    .venv/bin/python benchmarks/searcher_real.py --table results.json     # re-tabulate, no training
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from searcher_tally import SEARCHERS, config_id, markdown, merge, summarize

from ntune.config import ConfigError, config_from_dict, get_dotted, set_dotted
from ntune.study.config import StudyConfig
from ntune.study.load import load_study
from ntune.study.stopping import EarlyStop
from searchers.objective import classify, score
from searchers.record import SEARCH_KEY
from searchers.space import Domain, format_value, parse_space

VERIFY_KEY = "_verify"  # a re-run's {"params", "repeat"} in its Tune config (the trainable applies it)
SEED_KEY = "training.seed"
METRIC_KEYS = (
    "connectivity_R2",
    "cluster_accuracy",
    "test_R2",
    "test_pearson",
    "final_loss",
    "training_time_min",
    "connectivity_slope",
    "zero_band",
    "status",
    "stopped_at",
)
OnTrial = Callable[[dict[str, Any]], None]


def tune_domain(domain: Domain) -> Any:
    """The Tune domain of an ntune domain.

    loguniform -> ``tune.loguniform(low, high)``; ``allow_zero`` adds nothing: 0 is never drawn, as
    ntune's own ``Domain.sample`` never draws it (only the UCB tree's mutations reach 0). uniform ->
    ``tune.uniform``; int (bounds inclusive) -> ``tune.randint(low, high + 1)`` (``lograndint`` when
    log); choice -> ``tune.choice(values)``.
    """
    from ray import tune

    if domain.type == "choice":
        return tune.choice(list(domain.values))
    if domain.type == "int":
        make = tune.lograndint if domain.log else tune.randint
        return make(int(domain.low), int(domain.high) + 1)
    if domain.type == "loguniform":
        return tune.loguniform(domain.low, domain.high)
    return tune.uniform(domain.low, domain.high)


def block_study(study: StudyConfig, level: Any, budget: int, seed: int) -> StudyConfig:
    """The study restricted to one block value, ``budget`` trials (``block_trials`` dropped: every
    searcher gets the same budget), searcher seed ``seed``; that block's ``block_set`` is kept."""
    block_set = {k: v for k, v in study.block_set.items() if str(k) == str(level)}
    data = {
        **study.model_dump(),
        "blocks": {study.block_key: [level]},
        "n_iter_block": budget,
        "seed": seed,
        "block_trials": {},
        "block_set": block_set,
    }
    return StudyConfig.model_validate(data)


def block_base(study: StudyConfig, base: dict[str, Any], level: Any) -> dict[str, Any]:
    """The base config with the block value set; ConfigError when the value is not valid there."""
    config = copy.deepcopy(base)
    set_dotted(config, study.block_key, level)
    config_from_dict(copy.deepcopy(config))
    return config


def ceiling(study: StudyConfig, base: dict[str, Any], level: Any) -> float:
    """The block's identifiability ceiling (simulates and caches its data first if needed)."""
    from ntune.data.load import load_or_simulate

    data = load_or_simulate(config_from_dict(block_base(study, base, level)).simulation)
    return float(data.summary.get("ceiling", float("nan")))


def root_params(study: StudyConfig, base: dict[str, Any]) -> dict[str, Any]:
    """The UCB tree's root config (base values, or the domain's default or centre): TPE's warm start."""
    from ntune.tune.driver import build_searcher

    return dict(build_searcher(study, base).root_params)


def run_seed(seed: int, params: dict[str, Any], repeat: int) -> int:
    """The training seed of a random-search or TPE trial: from the harness seed, the config and the repeat."""
    text = json.dumps([seed, sorted((k, repr(v)) for k, v in params.items()), repeat])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 2**31


def seeded_trainable(study: StudyConfig, seed: int) -> Callable[[dict[str, Any]], None]:
    """The study's trainable with ``training.seed = run_seed(...)`` and a re-run's values applied."""
    from ntune.tune.trainable import make_trial

    trainable = make_trial(study)  # the plain function: the seeded wrapper is the trial Tune runs
    keys = list(study.space)

    def ntune_seeded_trial(config: dict[str, Any]) -> None:
        config = copy.deepcopy(config)
        rerun = config.pop(VERIFY_KEY, None) or {}
        for key, value in (rerun.get("params") or {}).items():
            set_dotted(config, key, value)
        params = {k: get_dotted(config, k) for k in keys}
        set_dotted(config, SEED_KEY, run_seed(seed, params, int(rerun.get("repeat", 0))))
        trainable(config)

    return ntune_seeded_trial


def describe(config: dict[str, Any], keys: Sequence[str], seed: int) -> dict[str, Any]:
    """params, training seed, repeat and (UCB) search record of a finished trial's Tune config."""
    rerun = config.get(VERIFY_KEY) or {}
    params = {k: (rerun.get("params") or {}).get(k, get_dotted(config, k)) for k in keys}
    search = config.get(SEARCH_KEY)
    if search:
        out = {"params": params, "seed": get_dotted(config, SEED_KEY), "repeat": 0}
        return {**out, "node": search.get("id"), "strategy": search.get("strategy", "")}
    repeat = int(rerun.get("repeat", 0))
    return {"params": params, "seed": run_seed(seed, params, repeat), "repeat": repeat}


def _recorder(study: StudyConfig, seed: int, on_trial: OnTrial | None) -> Any:
    """A Tune callback collecting finished trials in completion order (with Tune's suggestion counter)."""
    from ray.tune import Callback

    weights, thresholds, keys = (
        dict(study.objective.weights),
        dict(study.objective.thresholds),
        list(study.space),
    )

    class Recorder(Callback):
        def __init__(self) -> None:
            self.trials: list[dict[str, Any]] = []

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._add(trial, error=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._add(trial, error=True)

        def _add(self, trial: Any, error: bool) -> None:
            result = dict(trial.last_result or {})
            metrics = {k: result[k] for k in METRIC_KEYS if k in result}
            if error:
                metrics["status"] = "error"
            record = {
                "index": len(self.trials) + 1,
                "suggested": int(str(trial.experiment_tag).split("_")[0]),  # Tune's counter; ranked later
                **describe(trial.config, keys, seed),
                "metrics": metrics,
                "score": score(metrics, weights),
                "classification": classify(metrics, thresholds),
            }
            self.trials.append(record)
            if on_trial is not None:
                on_trial(record)

    return Recorder()


def _fit(
    study: StudyConfig,
    trainable: Callable[[dict[str, Any]], None],
    *,
    param_space: dict[str, Any] | None,
    search_alg: Any,
    num_samples: int,
    seed: int,
    on_trial: OnTrial | None,
    storage: str | None,
    scheduler: Any = None,
) -> list[dict[str, Any]]:
    """One ``Tuner.fit`` with the study's resources and concurrency; its finished trials in order."""
    from ray import tune

    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(study.max_concurrent_trials)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if __name__ != "__main__":  # Ray workers cannot import this script's module by name: ship it by value
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    recorder = _recorder(study, seed, on_trial)
    folder = tempfile.mkdtemp(prefix="searcher_real_", dir=storage)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": study.resources.cpu, "gpu": study.resources.gpu}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples,
                metric="score",
                mode="max",
                max_concurrent_trials=study.max_concurrent_trials,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="run",
                storage_path=folder,
                failure_config=tune.FailureConfig(max_failures=study.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[recorder],
                verbose=0,
            ),
        )
        tuner.fit()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    trials = list(recorder.trials)
    rank = {c: k for k, c in enumerate(sorted(t["suggested"] for t in trials))}
    for t in trials:  # 0-based suggestion order (Tune's searchers count from 1, its variant generator from 0)
        t["suggested"] = rank[t["suggested"]]
    return trials


def param_space(study: StudyConfig, base: dict[str, Any], level: Any) -> dict[str, Any]:
    """The base config at the block value with every searched key replaced by its Tune domain."""
    space = block_base(study, base, level)
    for key, domain in parse_space(study.space).items():
        set_dotted(space, key, tune_domain(domain))
    return space


def run_search(
    kind: str,
    study: StudyConfig,
    base: dict[str, Any],
    level: Any,
    budget: int,
    seed: int,
    *,
    on_trial: OnTrial | None = None,
    storage: str | None = None,
) -> list[dict[str, Any]]:
    """``budget`` trials of searcher ``kind`` at block value ``level``: the finished trials, completion order.

    Each trial: ``index`` (1-based, completion order), ``suggested`` (0-based suggestion order), ``params`` (the
    searched values), ``seed`` (training), ``repeat``, ``metrics``, ``score``, ``classification`` and, for
    the UCB tree, ``node`` and ``strategy``. Ray must be initialized.
    """
    one = block_study(study, level, budget, seed)
    common: dict[str, Any] = {"num_samples": budget, "seed": seed, "on_trial": on_trial, "storage": storage}
    if kind in ("ucb", "ucb_stop"):
        from ntune.tune.driver import build_searcher, scheduler_for
        from ntune.tune.trainable import make_trainable

        rule = (one.early_stop or EarlyStop()) if kind == "ucb_stop" else None
        one = one.model_copy(update={"early_stop": rule})
        searcher = build_searcher(one, base)
        scheduler = scheduler_for(one, searcher)
        return _fit(
            one, make_trainable(one), param_space=None, search_alg=searcher, scheduler=scheduler, **common
        )
    space = param_space(one, base, level)
    if kind == "random":
        from ray.tune.search import BasicVariantGenerator

        search_alg: Any = BasicVariantGenerator(random_state=seed)
    elif kind == "tpe":
        from ray.tune.search.optuna import OptunaSearch

        start = {k.replace(".", "/"): v for k, v in root_params(one, base).items()}  # Optuna's flat names
        search_alg = OptunaSearch(metric="score", mode="max", points_to_evaluate=[start], seed=seed)
    else:
        raise ValueError(f"searcher must be one of {', '.join(SEARCHERS)}, got {kind!r}")
    return _fit(one, seeded_trainable(one, seed), param_space=space, search_alg=search_alg, **common)


def verify(
    study: StudyConfig,
    base: dict[str, Any],
    level: Any,
    trials: Sequence[dict[str, Any]],
    seed: int,
    *,
    on_trial: OnTrial | None = None,
    storage: str | None = None,
) -> list[dict[str, Any]]:
    """Re-runs (repeats 1 .. robustness_repeats - 1, new seeds) of every distinct converged config of ``trials``."""
    from ray import tune

    reruns, seen = [], set()
    for trial in trials:
        key = config_id(trial["params"])
        if trial["classification"] != "converged" or key in seen:
            continue
        seen.add(key)
        reruns += [{"params": trial["params"], "repeat": r} for r in range(1, study.robustness_repeats)]
    if not reruns:
        return []
    one = block_study(study, level, len(reruns), seed)
    space = {**block_base(one, base, level), VERIFY_KEY: tune.grid_search(reruns)}
    return _fit(
        one,
        seeded_trainable(one, seed),
        param_space=space,
        search_alg=None,
        num_samples=1,
        seed=seed,
        on_trial=on_trial,
        storage=storage,
    )


def run_one(
    kind: str,
    study: StudyConfig,
    base: dict[str, Any],
    level: Any,
    budget: int,
    seed: int,
    *,
    on_trial: OnTrial | None = None,
    storage: str | None = None,
) -> dict[str, Any]:
    """One searcher at one block value and seed: the search and (random, TPE) its re-runs, as a tally run."""
    start = time.monotonic()
    kw: dict[str, Any] = {"on_trial": on_trial, "storage": storage}
    trials = run_search(kind, study, base, level, budget, seed, **kw)
    in_budget = kind in ("ucb", "ucb_stop")
    reruns = [] if in_budget else verify(study, base, level, trials, seed, **kw)
    return {
        "searcher": kind,
        "level": level,
        "seed": seed,
        "budget": budget,
        "repeats": study.robustness_repeats,
        "robustness": "in-budget" if in_budget else "verified",
        "slots": study.max_concurrent_trials,  # the verify-as-you-go replay runs as many at once
        "trials": trials,
        "verification": reruns,
        "wall_s": round(time.monotonic() - start, 1),
    }


# ---- command line


def _progress(kind: str, level: Any, seed: int, budget: int) -> OnTrial:
    def show(t: dict[str, Any]) -> None:
        m = t["metrics"]
        what = f"re-run {t['repeat']}" if t["repeat"] else f"trial {t['index']}/{budget}"
        node = f" node {t['node']} {t['strategy']}" if t.get("node") is not None else ""
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in t["params"].items())
        print(
            f"[{time.strftime('%H:%M:%S')}] {kind} {level} seed {seed} {what}{node}: "
            f"R2 {m.get('connectivity_R2', float('nan')):.3f} cluster {m.get('cluster_accuracy', float('nan')):.3f} "
            f"score {t['score']:.3f} {t['classification']} ({params})",
            file=sys.stderr,
            flush=True,
        )

    return show


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--study", default="configs/quickstart_study.yaml", help="study YAML")
    parser.add_argument("--levels", default="1.0,0.5,0.25,0.1", help="block values, comma separated")
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds per searcher and level (first .. first+n-1)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first seed (add seeds to an earlier run's; default 0)"
    )
    parser.add_argument("--budget", type=int, default=None, help="trials per block (default: n_iter_block)")
    parser.add_argument(
        "--searchers",
        default="ucb,random,tpe",
        help=f"comma separated, of {','.join(SEARCHERS)} (ucb_stop: the tree with lineage early stopping)",
    )
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="study override a.b=c")
    parser.add_argument("--out", default=None, help="JSON of every trial (rewritten after each run)")
    parser.add_argument(
        "--table",
        nargs="+",
        default=None,
        metavar="JSON",
        help="re-tabulate these JSON files, no training (several: merged, a later file's run of the same "
        "searcher, level and seed replacing an earlier one; with --out, the merged file is written there)",
    )
    parser.add_argument("--address", default=None, help="join this Ray cluster (default: a local Ray)")
    args = parser.parse_args(argv)
    args.kinds = [s.strip() for s in args.searchers.split(",") if s.strip()]
    bad = [s for s in args.kinds if s not in SEARCHERS]
    if bad or not args.kinds:
        parser.error(
            f"--searchers: unknown searcher {bad[0] if bad else ''!r}; valid choices: {', '.join(SEARCHERS)}"
        )
    try:
        args.level_values = [float(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--levels: {args.levels!r} is not a comma separated list of numbers, e.g. 1.0,0.5")
    if not args.level_values:
        parser.error("--levels: give at least one block value, e.g. 1.0,0.5")
    if args.seeds < 1:
        parser.error(f"--seeds: must be >= 1, got {args.seeds}")
    if args.first_seed < 0:
        parser.error(f"--first-seed: must be >= 0, got {args.first_seed}")
    if args.budget is not None and args.budget < 1:
        parser.error(f"--budget: must be >= 1, got {args.budget}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.table:
        try:
            data = merge([json.loads(Path(name).read_text()) for name in args.table])
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"error: --table: {err}", file=sys.stderr)
            return 2
        if args.out:
            Path(args.out).write_text(json.dumps(data, separators=(",", ":")))
        slots = (data.get("meta") or {}).get("max_concurrent_trials", 1)
        runs = [{"slots": slots, **run} for run in data["runs"]]  # files from before runs carried their slots
        print(markdown(summarize(runs), data.get("meta")))
        return 0
    try:
        study, base = load_study(args.study, args.overrides)
        for level in args.level_values:
            block_base(study, base, level)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    budget = args.budget or study.n_iter_block
    meta: dict[str, Any] = {
        "study": args.study,
        "overrides": args.overrides,
        "budget": budget,
        "robustness_repeats": study.robustness_repeats,
        "max_concurrent_trials": study.max_concurrent_trials,
        "ceilings": {repr(v): ceiling(study, base, v) for v in args.level_values},
    }
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    runs: list[dict[str, Any]] = []
    try:
        for level in args.level_values:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for kind in args.kinds:
                    show = _progress(kind, level, seed, budget)
                    runs.append(run_one(kind, study, base, level, budget, seed, on_trial=show))
                    if args.out:
                        Path(args.out).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    finally:
        ray.shutdown()
    print(markdown(summarize(runs), meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
