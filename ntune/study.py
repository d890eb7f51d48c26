"""``ntune run``: a study on Ray Tune — the searcher, the trainable, the Tuner, resume, console progress.

Data flow: validate the study (before Ray starts) -> start or join Ray -> one UCBTreeSearcher with one
tree per block, behind a ConcurrencyLimiter -> ``Tuner.fit`` -> each trial loads its block's data from
the cache and trains, reporting every metric about ``n_log_points`` times -> the searcher updates the
block's tree -> the journal callback writes analysis.md, memory.md, ucb/ and trees/ -> at the end the
best config per block is exported. Running the same study name again resumes it (``Tuner.restore``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from ntune.commands import make_console
from ntune.config import ConfigError, config_from_dict, dump_config
from ntune.guards import check_study, preflight
from ntune.identifiability import console_lines, probe_budgets, study_ceilings, total_budget
from ntune.journal import Journal
from ntune.observe import TrialMetrics, block_metrics_callback, job_metadata, readable_trainable
from ntune.records import SEARCH_KEY, read_info, read_trials, study_info
from ntune.storage import JOURNAL_DIRS, JOURNAL_FILES, TUNE_STATE, Remote, is_uri, join, mirror_dir
from ntune.study_config import StudyConfig, load_study, relocated
from ntune.tune_callbacks import ConsoleProgress, JournalCallback, LiveProgress
from searchers.objective import classify, score
from searchers.packing import MEMBERS_KEY, MemberCallbacks, PackingSearcher, member_id


def build_searcher(study: StudyConfig, base: dict[str, Any], info: dict[str, Any] | None = None) -> Any:
    """The study's UCBTreeSearcher; bad arguments become a ConfigError naming the study field."""
    from searchers.ucb import UCBTreeSearcher

    try:
        return UCBTreeSearcher(
            space=study.space,
            base_config=base,
            blocks=study.blocks,
            weights=study.objective.weights,
            thresholds=study.objective.thresholds,
            ucb_c=study.ucb_c,
            n_iter_block=study.n_iter_block,
            robustness_repeats=study.robustness_repeats,
            retry_failed=study.retry_failed,
            formula=study.formula,
            seed=study.seed,
            seed_key="training.seed",
            metric="score",
            mode="max",
            block_budgets=probe_budgets(study, info or {}),
            block_overrides=study.block_overrides(),
            n_scouts=study.scouts,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"search settings (space, blocks, objective): {err}") from None


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON/Tune-safe scalars (floats, ints, bools, strings)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, bool | str | int):
            out[k] = v
        else:
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                out[k] = str(v)
    return out


def _write_trial_files(trial_dir: Path, cfg: Any, metrics: dict[str, Any], result: Any, data: Any) -> None:
    """config.yaml, metrics.json and (unless diverged) W_scatter.png, embedding.png in the trial folder."""
    from ntune.train import figures

    dump_config(cfg, trial_dir / "config.yaml")
    (trial_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    if result.status == "ok":
        for name, fig in figures(result.model, data, metrics, kinds=("W_scatter", "embedding")).items():
            fig.savefig(trial_dir / f"{name}.png", dpi=90)


def make_trainable(study: StudyConfig) -> type:
    """The Tune trainable of a study (:func:`make_trial` with its resources), its actor named per trial."""
    from ray import tune

    resources = {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
    return readable_trainable(tune.with_resources(make_trial(study), resources))


def make_trial(study: StudyConfig) -> Callable[[dict[str, Any]], None]:
    """The Tune function of one trial of ``study``: simulate-or-load, fit, report, write trial files."""
    study_name = study.name
    weights = dict(study.objective.weights)
    thresholds = dict(study.objective.thresholds)
    threads = study.threads
    cache_dir = os.environ.get("NTUNE_CACHE") or None  # the driver's cache folder, shared by all trials

    def ntune_trial(config: dict[str, Any]) -> None:
        import ray
        import torch
        from ray import tune

        from ntune.population import train_population
        from ntune.simulate import load_or_simulate, resolve_device
        from ntune.train import fit, save_checkpoint

        torch.set_num_threads(threads)
        if MEMBERS_KEY in config:
            _population_trial(config[MEMBERS_KEY], weights, thresholds, cache_dir, study_name)
            return
        config = dict(config)
        search = dict(config.pop(SEARCH_KEY, None) or {})
        cfg = config_from_dict(config)
        # the trial's working directory, which Tune syncs to storage_path from every node; get_trial_dir()
        # names the driver-side staging folder for an actor's first trial, lost when it ran on another node
        trial_dir = Path(tune.get_context().get_storage().trial_working_directory)
        trial_dir.mkdir(parents=True, exist_ok=True)
        tags = {
            "block": str(search.get("block", "")),
            "node": int(search.get("node", -1)),
            "strategy": str(search.get("strategy", "")),
            "trial_dir": str(trial_dir),
            "ray_node_id": ray.get_runtime_context().get_node_id(),  # which cluster node ran the trial
        }
        watch = TrialMetrics(study_name, search, tune.get_context().get_trial_id(), _echo)

        def full(m: dict[str, Any]) -> dict[str, Any]:
            m = _plain(m)
            m["score"] = score(m, weights)
            m["classification"] = classify(m, thresholds) if m.get("final") else "running"
            return {**m, **tags}

        def on_progress(m: dict[str, Any]) -> None:
            if not m.get("final"):
                tune.report(full(m))
                watch.update(full(m))

        data = load_or_simulate(cfg.simulation, cache_dir=cache_dir)
        if resolve_device(cfg.training.device).startswith("cuda"):  # the population trainer's CUDA-graph step
            result = train_population(
                [cfg], data, on_progress=lambda _, m: on_progress(m), log_dirs=[trial_dir]
            )[0]
        else:
            result = fit(cfg, data, on_progress=on_progress, log_dir=trial_dir)
        final = full(result.metrics)
        watch.update(final)
        _write_trial_files(trial_dir, cfg, final, result, data)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(result, Path(tmp) / "model.pt")
            tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))

    return ntune_trial


def _echo(line: str) -> None:
    """A line of the trial's log (its worker's stdout: the actor's Log link in the dashboard)."""
    print(line, flush=True)


def _population_trial(
    members: list[dict[str, Any]],
    weights: dict[str, float],
    thresholds: dict[str, float],
    cache_dir: str | None,
    study_name: str,
) -> None:
    """A packed Tune trial: members grouped by data, trained by ``train_population``, each reported.

    Every report carries ``score`` (the best member's so far, for Tune) and ``MEMBERS_KEY``: one result per
    member (``{}`` until it has one), the member's own folder ``member<k>`` in ``trial_dir``. A member's
    final result (``final: True``) completes it in the PackingSearcher and the MemberCallbacks.
    """
    from ray import tune

    from ntune.population import train_population
    from ntune.simulate import load_or_simulate
    from ntune.train import save_checkpoint

    trial_dir = Path(tune.get_context().get_storage().trial_working_directory)
    trial_dir.mkdir(parents=True, exist_ok=True)
    searches = [dict(m.get(SEARCH_KEY) or {}) for m in members]
    cfgs = [config_from_dict({k: v for k, v in m.items() if k != SEARCH_KEY}) for m in members]
    dirs = [trial_dir / f"member{k}" for k in range(len(members))]
    latest: list[dict[str, Any]] = [{} for _ in members]
    trial_id = tune.get_context().get_trial_id()
    watches = [TrialMetrics(study_name, s, member_id(trial_id, k), _echo) for k, s in enumerate(searches)]

    def full(k: int, m: dict[str, Any]) -> dict[str, Any]:
        m = _plain(m)
        m["score"] = score(m, weights)
        m["classification"] = classify(m, thresholds) if m.get("final") else "running"
        s = searches[k]
        tags = {"block": str(s.get("block", "")), "node": int(s.get("node", -1))}
        return {**m, **tags, "strategy": str(s.get("strategy", "")), "trial_dir": str(dirs[k])}

    def report(k: int, m: dict[str, Any]) -> None:
        latest[k] = full(k, m)
        watches[k].update(latest[k])
        best = max((r["score"] for r in latest if r), default=0.0)
        tune.report({"score": best, MEMBERS_KEY: [dict(r) for r in latest]})

    by_data: dict[str, list[int]] = {}
    for k, c in enumerate(cfgs):
        by_data.setdefault(c.simulation_hash(), []).append(k)
    for ids in by_data.values():
        data = load_or_simulate(cfgs[ids[0]].simulation, cache_dir=cache_dir)
        for d in (dirs[k] for k in ids):
            d.mkdir(parents=True, exist_ok=True)
        results = train_population(
            [cfgs[k] for k in ids],
            data,
            on_progress=lambda j, m, ids=ids: None if m.get("final") else report(ids[j], m),
            log_dirs=[dirs[k] for k in ids],
        )
        for k, result in zip(ids, results, strict=True):
            final = full(k, result.metrics)
            _write_trial_files(dirs[k], cfgs[k], final, result, data)
            save_checkpoint(result, dirs[k] / "model.pt")
            report(k, result.metrics)


def trial_dirname(trial: Any) -> str:
    """Short trial folder names: ``<trial id>_<block>_node<k>``."""
    members = trial.config.get(MEMBERS_KEY) or [trial.config]  # a packed trial is named by its first member
    search = members[0].get(SEARCH_KEY) or {}
    block = str(search.get("block", "")).replace("=", "")
    return f"{trial.trial_id}_{block}_node{search.get('node', '')}"


def _start_ray(address: str | None, console: Console, metadata: dict[str, str] | None = None) -> bool:
    """Join ``address`` / $RAY_ADDRESS or start an embedded Ray, its job carrying ``metadata``; True when
    this call started it."""
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return False
    job_config = JobConfig(metadata=dict(metadata or {}))
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False, job_config=job_config)
        console.print(f"joined Ray cluster at {address}: {ray.cluster_resources()}")
        return True
    dashboard = (
        importlib.util.find_spec("aiohttp") is not None
        and importlib.util.find_spec("ray.dashboard") is not None
    )
    ctx = ray.init(
        include_dashboard=dashboard, dashboard_host="127.0.0.1", log_to_driver=False, job_config=job_config
    )
    url = getattr(ctx, "dashboard_url", None)
    if url:
        console.print(f"Ray dashboard: http://{url}" if "://" not in url else f"Ray dashboard: {url}")
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            console.print(
                "  token authentication is on: the dashboard asks for the token; print it with "
                "`ray get-auth-token` (stored in ~/.ray/auth_token, or $RAY_AUTH_TOKEN)"
            )
    return True


def _ray_nodes() -> list[dict[str, float]]:
    """Total resources of each alive node of the Ray cluster this driver is connected to."""
    import ray

    return [dict(node.get("Resources") or {}) for node in ray.nodes() if node.get("Alive")]


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    """A study.json without the fields that only say where the experiment lives."""
    study = {k: v for k, v in info["study"].items() if k not in ("name", "storage_path")}
    return {**info, "study": study}


def _check_dir(exp_dir: Path, info: dict[str, Any], fresh: bool) -> None:
    """Raise when the experiment folder cannot be used; changes nothing (called before Ray starts)."""
    from ray import tune

    ours = (exp_dir / "study.json").is_file() or (exp_dir / "tuner.pkl").is_file()
    if exp_dir.exists() and any(exp_dir.iterdir()) and not ours:
        raise ConfigError(
            f"{exp_dir} exists and is not an ntune experiment; choose another --name or --storage"
        )
    if not fresh and exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        old = read_info(exp_dir) if (exp_dir / "study.json").is_file() else None
        if old is not None and _comparable(old) != _comparable(json.loads(json.dumps(info))):
            raise ConfigError(
                f"{exp_dir} holds an experiment of a different study; resume it with its own settings, "
                "or pass --fresh (start over) or --name (another experiment)"
            )


def _pull_mirror(exp_dir: Path, remote: Remote) -> None:
    """A run on object storage: the driver's mirror folder, emptied, then the experiment's journal files
    and Tune's ``tuner.pkl`` (so the checks below see what a local folder would show)."""
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    remote.check()
    try:
        remote.pull(exp_dir, (*JOURNAL_FILES, TUNE_STATE), JOURNAL_DIRS)
    except OSError as err:
        raise ConfigError(f"storage_path: cannot read {remote.uri} ({err})") from None


def _prepare_dir(
    exp_dir: Path, info: dict[str, Any], fresh: bool, console: Console, remote: Remote | None = None
) -> bool:
    """Create or check the experiment folder; True when an earlier run of it will be resumed.

    With a ``remote``, ``exp_dir`` is its mirror: what is deleted here is deleted there too, and the new
    ``study.json`` is copied up.
    """
    from ray import tune

    _check_dir(exp_dir, info, fresh)
    if fresh and exp_dir.exists():
        shutil.rmtree(exp_dir)
        if remote is not None:
            remote.delete()
    if exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        where = remote.uri if remote is not None else exp_dir
        console.print(f"resuming experiment {where} (pass --fresh to start over)")
        return True
    if exp_dir.exists():
        console.print(
            f"{exp_dir} has no Tune state to resume (the driver stopped before it saved any); starting over"
        )
        shutil.rmtree(exp_dir)
        if remote is not None:
            remote.delete()
    exp_dir.mkdir(parents=True)
    (exp_dir / "study.json").write_text(json.dumps(info, indent=2))
    if remote is not None:
        remote.push(exp_dir)
    return False


def run_command(
    study_path: str | Path,
    *,
    overrides: list[str] | None = None,
    address: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    fresh: bool = False,
    console: Console | None = None,
) -> int:
    """Run or resume a study; returns 0 when every trial of the budget completed, 130 when interrupted."""
    console = console or make_console(highlight=False, soft_wrap=True)
    study, base = load_study(study_path, overrides)
    study = relocated(study, name, storage)
    remote = Remote(join(study.storage_path, study.name)) if is_uri(study.storage_path) else None
    if remote is not None:  # the journal writes into a local mirror; Remote copies it up
        exp_dir = mirror_dir(remote.uri, "run")
    else:
        exp_dir = Path(study.storage_path).expanduser().resolve() / study.name
    where = remote.uri if remote is not None else str(exp_dir)
    info = study_info(study, base)
    check_study(study, base)  # storage folder and memory, before anything is simulated or Ray starts
    if remote is not None:  # the bucket exists and is reachable; the journal comes down into the mirror
        _pull_mirror(exp_dir, remote)
    with console.status("identifiability of each block's data (simulating where not cached)"):
        info.update(study_ceilings(study, base))
    searcher = build_searcher(study, base, info)

    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    _check_dir(exp_dir, info, fresh)
    started = _start_ray(address, console, job_metadata(study.name, where))
    try:
        preflight(study, _ray_nodes())  # each trial's resources fit the cluster; before any folder is made
        resume = _prepare_dir(exp_dir, info, fresh, console, remote)
        info = json.loads(json.dumps(info))  # as study.json holds it; the journal never reads that file again
        if resume:  # Tuner.restore unpickles the callbacks with their journal, which then loads its records
            Journal.mark_resumed(exp_dir, remote)
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(study.max_concurrent_trials)
        # with verbose=0 and the legacy reporter Tune prints no tables; ntune prints the progress
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # the final report carries a checkpoint, which forces an experiment snapshot: wanted, not a warning
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        trainable = make_trainable(study)
        mirror = f" (journal mirrored in {exp_dir})" if remote is not None else ""
        console.print(f"experiment: {where}{mirror}\nTensorBoard: tensorboard --logdir {where}")
        console.print("\n".join(console_lines(info)), markup=False)
        console.print(
            f"{len(study.block_values)} blocks x {study.n_iter_block} trials, "
            f"{study.max_concurrent_trials} at a time; journal: {exp_dir / 'memory.md'}, {exp_dir / 'analysis.md'}"
        )
        storage: dict[str, Any] = {"storage_path": str(exp_dir.parent)}
        if remote is not None:  # Tune writes its state and the trial folders there itself
            storage = {"storage_path": remote.path.rsplit("/", 1)[0], "storage_filesystem": remote.fs}
        if resume:  # the searcher (packed or not) and the callbacks come back from the experiment state
            tuner = tune.Tuner.restore(
                remote.path if remote is not None else str(exp_dir),
                trainable=trainable,
                resume_errored=True,
                storage_filesystem=storage.get("storage_filesystem"),
            )
            Journal.resume_dir, Journal.resume_remote = None, None  # applied to the unpickled journal
        else:
            journal = Journal(exp_dir, searcher, info=info, remote=remote)
            callbacks: list[Callback] = [
                JournalCallback(journal),
                ConsoleProgress(journal),
                block_metrics_callback(study.name, lambda: journal.ledger.rows()),
            ]
            packed: Any = searcher
            if study.population_size > 1:  # K configs per Tune trial; each member is its own trial
                packed = PackingSearcher(searcher, study.population_size)
                callbacks = [MemberCallbacks(callbacks)]
            callbacks.append(LiveProgress(journal))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(packed, max_concurrent=study.max_concurrent_trials),
                    num_samples=total_budget(info, list(searcher.trees)),
                    metric="score",
                    mode="max",
                    reuse_actors=False,  # Ray names an actor once: one actor per trial keeps its name right
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=study.name,
                    **storage,
                    failure_config=tune.FailureConfig(max_failures=study.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    # trial files must reach storage also from reused actors and remote nodes
                    sync_config=tune.SyncConfig(sync_artifacts=True),
                    callbacks=callbacks,
                    verbose=0,
                ),
            )
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _finish(exp_dir, total_budget(info, list(searcher.trees)), console, remote)


def _finish(exp_dir: Path, n_trials: int, console: Console, remote: Remote | None = None) -> int:
    from ntune.commands import export_command, status_command

    records, _ = read_trials(exp_dir)
    status_command(exp_dir, console=console, stopped=True)
    if len(records) < n_trials:
        console.print(f"stopped after {len(records)}/{n_trials} trials; run the same command to resume")
        return 130
    export_command(exp_dir, out=None, fmt="yaml", console=console)
    if remote is not None:
        remote.push(exp_dir, (*JOURNAL_FILES, "summary.csv"), (*JOURNAL_DIRS, "best"))
        console.print(f"uploaded to {remote.uri}")
    return 0
