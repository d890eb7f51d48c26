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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from ntune.config import ConfigError
from ntune.study.ceilings import study_ceilings
from ntune.study.config import StudyConfig
from ntune.study.experiment import Experiment
from ntune.study.guards import check_study, preflight
from ntune.study.info import (
    block_budget,
    block_label,
    console_lines,
    probe_budgets,
    study_info,
    total_budget,
)
from ntune.study.journal import Journal, reopening
from ntune.study.records import SEARCH_KEY
from ntune.study.storage import Remote, is_uri, join, mirror_dir
from ntune.tune.callbacks import ConsoleProgress, JournalCallback, LiveProgress
from ntune.tune.deadline import time_budget, time_left
from ntune.tune.experiment_dir import check_dir, prepare_dir, pull_mirror
from ntune.tune.loggers import check_loggers, logger_callbacks
from ntune.tune.observe import block_metrics_callback, job_metadata
from ntune.tune.trainable import make_trainable
from searchers.packing import MEMBERS_KEY, MemberCallbacks, PackingSearcher


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
            instance_key=study.instance_key,
            held_out=study.held_out_networks,
            ranges=study.ranges.settings() if study.ranges is not None else None,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"search settings (space, blocks, objective): {err}") from None


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


@dataclass(frozen=True)
class StudyRun:
    """What :func:`run_study` leaves: the experiment folder (a local mirror for object storage), the
    study's whole trial budget, what the journal held at the end (records, ledger, trees) and, for
    object storage, the remote experiment."""

    exp_dir: Path
    n_trials: int
    experiment: Experiment
    remote: Remote | None = None
    budget_spent: bool = False  # the run stopped because the study's time_budget_h was spent


@dataclass(frozen=True)
class Place:
    """Where an experiment lives: its folder (for object storage, the journal's local mirror) and remote."""

    exp_dir: Path
    remote: Remote | None = None

    @property
    def where(self) -> str:
        """The experiment as a person names it: its folder, or its URI."""
        return self.remote.uri if self.remote is not None else str(self.exp_dir)

    @property
    def tune_path(self) -> str:
        """The experiment folder as Tune names it (on the remote's filesystem for object storage)."""
        return self.remote.path if self.remote is not None else str(self.exp_dir)

    def storage(self) -> dict[str, Any]:
        """Tune's ``storage_path`` (and ``storage_filesystem``): Tune writes its state and the trial folders
        there itself, on the remote for object storage."""
        if self.remote is None:
            return {"storage_path": str(self.exp_dir.parent)}
        return {"storage_path": self.remote.path.rsplit("/", 1)[0], "storage_filesystem": self.remote.fs}


def place_of(study: StudyConfig) -> Place:
    """``storage_path/name``: a local folder, or a URI whose journal is written into a local mirror."""
    if is_uri(study.storage_path):
        remote = Remote(join(study.storage_path, study.name))
        return Place(mirror_dir(remote.uri, "run"), remote)
    return Place(Path(study.storage_path).expanduser().resolve() / study.name)


def _tune_environment(study: StudyConfig) -> None:
    """The environment Tune reads when it starts: pending trials, its own output, snapshot warnings."""
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(study.max_concurrent_trials)
    # with verbose=0 and the legacy reporter Tune prints no tables; ntune prints the progress
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # the final report carries a checkpoint, which forces an experiment snapshot: wanted, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _announce(console: Console, study: StudyConfig, info: dict[str, Any], place: Place) -> None:
    """Where the experiment and its journal are, each block's identifiability, the budget."""
    exp_dir = place.exp_dir
    mirror = f" (journal mirrored in {exp_dir})" if place.remote is not None else ""
    console.print(f"experiment: {place.where}{mirror}\nTensorBoard: tensorboard --logdir {place.where}")
    console.print("\n".join(console_lines(info)), markup=False)
    repeats = (
        f"robust = {study.robustness_repeats} of {study.robustness_repeats} networks, then {study.held_out_networks} "
        "held-out networks per block"
        if study.repeats_vary == "instance"
        else f"robust = {study.robustness_repeats} of {study.robustness_repeats} training seeds on one network"
    )
    budgets = sorted({block_budget(info, block_label(study.block_key, v)) for v in study.block_values})
    per_block = str(budgets[0]) if len(budgets) == 1 else f"{budgets[0]}-{budgets[-1]}"
    console.print(
        f"{len(study.block_values)} blocks x {per_block} trials ({repeats}), "
        f"{study.max_concurrent_trials} at a time; journal: {exp_dir / 'memory.md'}, {exp_dir / 'analysis.md'}"
    )


def _callbacks(study: StudyConfig, journal: Journal, searcher: Any) -> tuple[Any, list[Callback]]:
    """The search algorithm Tune asks (the searcher, packed K configs per Tune trial for a population) and
    the driver-side callbacks, all views of ``journal``."""
    callbacks: list[Callback] = [
        JournalCallback(journal),
        ConsoleProgress(journal),
        block_metrics_callback(study.name, lambda: journal.ledger.rows()),
    ]
    packed: Any = searcher
    if study.population_size > 1:  # each member is its own trial for the searcher and the journal
        packed = PackingSearcher(searcher, study.population_size)
        callbacks = [MemberCallbacks(callbacks)]
    callbacks.append(LiveProgress(journal))
    return packed, callbacks


def scheduler_for(study: StudyConfig, searcher: Any) -> Any:
    """The trial scheduler: lineage early stopping when the study has ``early_stop``, else Tune's FIFO."""
    if study.early_stop is None:
        return None
    from ntune.tune.early_stop import LineageScheduler

    return LineageScheduler(searcher, study.early_stop.rule())


def _new_tuner(
    study: StudyConfig, info: dict[str, Any], searcher: Any, trainable: type, place: Place
) -> tuple[Any, Journal]:
    """A Tuner for a new experiment, and the journal its callbacks feed."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    journal = Journal(place.exp_dir, searcher, info=info, remote=place.remote)
    packed, callbacks = _callbacks(study, journal, searcher)
    callbacks += logger_callbacks(study.loggers, study.name, place.exp_dir)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(packed, max_concurrent=study.max_concurrent_trials),
            scheduler=scheduler_for(study, searcher),
            num_samples=total_budget(info, list(searcher.trees)),
            metric="score",
            mode="max",
            reuse_actors=False,  # Ray names an actor once: one actor per trial keeps its name right
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=study.name,
            **place.storage(),
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            # trial files must reach storage also from reused actors and remote nodes
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    return tuner, journal


def _restored_tuner(trainable: type, place: Place) -> tuple[Any, Journal]:
    """The Tuner of an earlier run of the experiment, and the journal its callbacks feed.

    ``Tuner.restore`` brings back the searcher (packed or not) and the callbacks from the experiment state
    (Ray 2.60 takes no new callbacks); their journal, unpickled with them, reopens at ``place`` and is
    handed back through :func:`ntune.study.journal.reopening`.
    """
    from ray import tune

    with reopening(place.exp_dir, place.remote) as handover:
        tuner = tune.Tuner.restore(
            place.tune_path,
            trainable=trainable,
            resume_errored=True,
            storage_filesystem=place.storage().get("storage_filesystem"),
        )
    if handover.journal is None:
        raise ConfigError(f"{place.where}: its Tune state holds no ntune journal; pass --fresh to start over")
    return tuner, handover.journal


def run_study(
    study: StudyConfig,
    base: dict[str, Any],
    *,
    address: str | None = None,
    fresh: bool = False,
    console: Console,
) -> StudyRun:
    """Run or resume ``study`` (validated, with its resolved ``base`` config) until its budget is spent or
    it is interrupted; progress goes to ``console``. Returns what the journal held at the end."""
    place = place_of(study)
    info = study_info(study, base)
    check_study(study, base)  # storage folder and memory, before anything is simulated or Ray starts
    check_loggers(study.loggers)
    if place.remote is not None:  # the bucket exists and is reachable; the journal comes down into the mirror
        pull_mirror(place.exp_dir, place.remote)
    with console.status("identifiability of each block's data (simulating where not cached)"):
        info.update(study_ceilings(study, base))
    searcher = build_searcher(study, base, info)
    check_dir(place.exp_dir, info, fresh)
    left = time_left(study, place.exp_dir, fresh)  # refuses a spent budget before Ray starts
    started = _start_ray(address, console, job_metadata(study.name, place.where))
    try:
        preflight(study, _ray_nodes())  # each trial's resources fit the cluster; before any folder is made
        resume = prepare_dir(place.exp_dir, info, fresh, console, place.remote)
        info = json.loads(json.dumps(info))  # as study.json holds it; the journal never reads that file again
        _tune_environment(study)
        trainable = make_trainable(study)
        _announce(console, study, info, place)
        if resume:
            tuner, journal = _restored_tuner(trainable, place)
            journal.info["study"]["time_budget_h"] = study.time_budget_h  # its pickle holds the old one
        else:
            tuner, journal = _new_tuner(study, info, searcher, trainable, place)
        with time_budget(left) as spent:
            tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    budget = total_budget(info, list(searcher.trees))
    return StudyRun(place.exp_dir, budget, journal.experiment(), place.remote, budget_spent=spent.is_set())
