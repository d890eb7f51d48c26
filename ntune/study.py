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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ray.tune import Callback
from rich.console import Console
from rich.markup import escape

from ntune.config import ConfigError, config_from_dict, dump_config, format_validation_error
from ntune.identifiability import console_lines, probe_budgets, study_ceilings, total_budget
from ntune.journal import Journal, JournalCallback
from ntune.records import SEARCH_KEY, block_summary, fmt, read_info, read_trials, study_info
from ntune.study_config import StudyConfig, load_study

PROGRESS_EVERY_S = 30.0  # seconds between per-block progress lines while trials run


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


def make_trainable(study: StudyConfig) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable of a study: simulate-or-load, fit, report, write trial files."""
    weights = dict(study.objective.weights)
    thresholds = dict(study.objective.thresholds)
    threads = study.threads
    cache_dir = os.environ.get("NTUNE_CACHE") or None  # the driver's cache folder, shared by all trials

    def ntune_trial(config: dict[str, Any]) -> None:
        import torch
        from ray import tune

        from ntune.metrics import classify, score
        from ntune.simulate import load_or_simulate
        from ntune.train import fit, save_checkpoint

        torch.set_num_threads(threads)
        config = dict(config)
        search = dict(config.pop(SEARCH_KEY, None) or {})
        cfg = config_from_dict(config)
        trial_dir = Path(tune.get_context().get_trial_dir())
        trial_dir.mkdir(parents=True, exist_ok=True)
        tags = {
            "block": str(search.get("block", "")),
            "node": int(search.get("node", -1)),
            "strategy": str(search.get("strategy", "")),
            "trial_dir": str(trial_dir),
        }

        def full(m: dict[str, Any]) -> dict[str, Any]:
            m = _plain(m)
            m["score"] = score(m, weights)
            m["classification"] = classify(m, thresholds) if m.get("final") else "running"
            return {**m, **tags}

        def on_progress(m: dict[str, Any]) -> None:
            if not m.get("final"):
                tune.report(full(m))

        data = load_or_simulate(cfg.simulation, cache_dir=cache_dir)
        result = fit(cfg, data, on_progress=on_progress, log_dir=trial_dir)
        final = full(result.metrics)
        _write_trial_files(trial_dir, cfg, final, result, data)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(result, Path(tmp) / "model.pt")
            tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))

    return ntune_trial


class ConsoleProgress(Callback):
    """Tune callback printing one line per finished trial and the per-block progress whenever it changes."""

    def __init__(self, exp_dir: Path) -> None:
        self.exp_dir = exp_dir
        self._last = 0.0
        self._shown: list[str] = []

    def _print(self, text: str) -> None:
        Console(highlight=False, soft_wrap=True).print(text)

    def _blocks(self) -> None:
        """One line per block, printed only when some block's progress changed since the last print."""
        info = read_info(self.exp_dir)
        records, running = read_trials(self.exp_dir)
        lines = [
            f"  {escape(r['block'])}: {r['trials']}/{r['budget']} done, {r['running']} running, "
            f"best R2 {fmt(r['best_R2'])}, best cluster {fmt(r['best_cluster'])}"
            + (", robust" if r["robust"] else "")
            for r in block_summary(info, records, running)
        ]
        self._last = time.monotonic()
        if lines != self._shown:
            self._shown = lines
            self._print("\n".join(lines))

    def _trial_done(self, trial_id: str) -> None:
        records, _ = read_trials(self.exp_dir)
        rec = next((r for r in records if r["trial_id"] == trial_id), None)
        if rec is None:
            return
        s, m = rec["search"], rec["metrics"]
        mutation = f": {s['mutation']}" if s.get("mutation") else ""
        status = "" if rec["status"] == "ok" else f" ({rec['status']})"
        self._print(
            f"[{time.strftime('%H:%M:%S')}] {len(records)} done | {escape(rec['block'])} node {s.get('node')} "
            f"({escape(str(s.get('strategy')) + mutation)}) -> R2 {fmt(m['connectivity_R2'])}, "
            f"cluster {fmt(m['cluster_accuracy'])}, {rec['classification']}{status}"
        )
        self._blocks()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_done(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_done(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._last:
            self._last = time.monotonic()
        elif time.monotonic() - self._last > PROGRESS_EVERY_S:
            self._blocks()


def trial_dirname(trial: Any) -> str:
    """Short trial folder names: ``<trial id>_<block>_node<k>``."""
    search = trial.config.get(SEARCH_KEY) or {}
    block = str(search.get("block", "")).replace("=", "")
    return f"{trial.trial_id}_{block}_node{search.get('node', '')}"


def _start_ray(address: str | None, console: Console) -> bool:
    """Join ``address`` / $RAY_ADDRESS or start an embedded Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
        console.print(f"joined Ray cluster at {address}: {ray.cluster_resources()}")
        return True
    dashboard = (
        importlib.util.find_spec("aiohttp") is not None
        and importlib.util.find_spec("ray.dashboard") is not None
    )
    ctx = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", log_to_driver=False)
    url = getattr(ctx, "dashboard_url", None)
    if url:
        console.print(f"Ray dashboard: http://{url}" if "://" not in url else f"Ray dashboard: {url}")
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            console.print(
                "  token authentication is on: the dashboard asks for the token; print it with "
                "`ray get-auth-token` (stored in ~/.ray/auth_token, or $RAY_AUTH_TOKEN)"
            )
    return True


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    """A study.json without the fields that only say where the experiment lives."""
    study = {k: v for k, v in info["study"].items() if k not in ("name", "storage_path")}
    return {**info, "study": study}


def _prepare_dir(exp_dir: Path, info: dict[str, Any], fresh: bool, console: Console) -> bool:
    """Create or check the experiment folder; True when an earlier run of it will be resumed."""
    from ray import tune

    ours = (exp_dir / "study.json").is_file() or (exp_dir / "tuner.pkl").is_file()
    if exp_dir.exists() and any(exp_dir.iterdir()) and not ours:
        raise ConfigError(
            f"{exp_dir} exists and is not an ntune experiment; choose another --name or --storage"
        )
    if fresh and exp_dir.exists():
        shutil.rmtree(exp_dir)
    if exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        old = read_info(exp_dir) if (exp_dir / "study.json").is_file() else None
        if old is not None and _comparable(old) != _comparable(json.loads(json.dumps(info))):
            raise ConfigError(
                f"{exp_dir} holds an experiment of a different study; resume it with its own settings, "
                "or pass --fresh (start over) or --name (another experiment)"
            )
        console.print(f"resuming experiment {exp_dir} (pass --fresh to start over)")
        Journal(exp_dir).resumed()
        return True
    if exp_dir.exists():
        console.print(
            f"{exp_dir} has no Tune state to resume (the driver stopped before it saved any); starting over"
        )
        shutil.rmtree(exp_dir)
    exp_dir.mkdir(parents=True)
    (exp_dir / "study.json").write_text(json.dumps(info, indent=2))
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
    console = console or Console(highlight=False, soft_wrap=True)
    study, base = load_study(study_path, overrides)
    if name or storage:
        update = {"name": name or study.name, "storage_path": storage or study.storage_path}
        try:
            study = StudyConfig.model_validate({**study.model_dump(), **update})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, StudyConfig)) from None
    exp_dir = Path(study.storage_path).expanduser().resolve() / study.name
    info = study_info(study, base)
    with console.status("identifiability of each block's data (simulating where not cached)"):
        info.update(study_ceilings(study, base))
    searcher = build_searcher(study, base, info)

    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    resume = _prepare_dir(exp_dir, info, fresh, console)
    started = _start_ray(address, console)
    try:
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(study.max_concurrent_trials)
        # with verbose=0 and the legacy reporter Tune prints no tables; ntune prints the progress
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # the final report carries a checkpoint, which forces an experiment snapshot: wanted, not a warning
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        trainable = tune.with_resources(
            make_trainable(study), {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
        )
        console.print(f"experiment: {exp_dir}\nTensorBoard: tensorboard --logdir {exp_dir}")
        console.print("\n".join(console_lines(info)), markup=False)
        console.print(
            f"{len(study.block_values)} blocks x {study.n_iter_block} trials, "
            f"{study.max_concurrent_trials} at a time; journal: {exp_dir / 'memory.md'}, {exp_dir / 'analysis.md'}"
        )
        if resume:
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=study.max_concurrent_trials),
                    num_samples=total_budget(info, list(searcher.trees)),
                    metric="score",
                    mode="max",
                    reuse_actors=True,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=study.name,
                    storage_path=str(exp_dir.parent),
                    failure_config=tune.FailureConfig(max_failures=study.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    # trial files must reach storage also from reused actors and remote nodes
                    sync_config=tune.SyncConfig(sync_artifacts=True),
                    callbacks=[JournalCallback(exp_dir, searcher), ConsoleProgress(exp_dir)],
                    verbose=0,
                ),
            )
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return _finish(exp_dir, total_budget(info, list(searcher.trees)), console)


def _finish(exp_dir: Path, n_trials: int, console: Console) -> int:
    from ntune.export import export_command, status_command

    records, _ = read_trials(exp_dir)
    status_command(exp_dir, console=console)
    if len(records) < n_trials:
        console.print(f"stopped after {len(records)}/{n_trials} trials; run the same command to resume")
        return 130
    export_command(exp_dir, out=None, fmt="yaml", console=console)
    return 0
