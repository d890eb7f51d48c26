"""The Tune trainable of a study: one trial (or one packed population) loads its block's data, trains,
reports its metrics to Tune about ``n_log_points`` times and writes its files (config, metrics, PNGs,
TensorBoard, checkpoint) into its trial folder. A study with a command ``trainer`` runs the user's
command instead (:mod:`ntune.tune.command`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ntune.config import config_from_dict, dump_config
from ntune.data.identifiability import is_data_limited
from ntune.study.config import StudyConfig
from ntune.study.numbers import as_float
from ntune.study.records import SEARCH_KEY
from ntune.tune.command import make_command_trial
from ntune.tune.observe import TrialMetrics, readable_trainable
from searchers.objective import classify, score
from searchers.packing import MEMBERS_KEY, member_id


def judged(
    metrics: Mapping[str, Any],
    weights: Mapping[str, float],
    thresholds: Mapping[str, float],
) -> dict[str, Any]:
    """A trainer's metrics as Tune-safe scalars with the study's ``score`` and ``classification``.

    The one place ntune judges a trial's result: Tune and the journal's record
    (:func:`ntune.study.records.make_record`) read these two values from the reported result. Ints,
    bools and strings stay, anything else becomes a float (NaN when it has none); ``classification`` is
    ``running`` until the result is ``final``. Where the trial's network has an identifiability ceiling
    (``ceiling``, :mod:`ntune.data.identifiability`) below the study's R^2 threshold, the result says
    ``data_limited`` and a run that does not converge is ``data-limited``, not a failure of its config.
    """
    out = {k: v if isinstance(v, bool | str | int) else as_float(v) for k, v in metrics.items()}
    out["data_limited"] = is_data_limited(out, thresholds.get("connectivity_R2", math.nan))
    out["score"] = score(out, weights)
    out["classification"] = classify(out, thresholds) if out.get("final") else "running"
    return out


def _write_trial_files(trial_dir: Path, cfg: Any, metrics: dict[str, Any], result: Any, data: Any) -> None:
    """config.yaml, metrics.json and (unless diverged) W_scatter.png, embedding.png in the trial folder."""
    from ntune.learn.evaluate import figures

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
    """The Tune function of one trial of ``study``: simulate-or-load, fit, report, write trial files; with a
    command ``trainer``, :func:`ntune.tune.command.make_command_trial` (its results judged here too)."""
    study_name = study.name
    weights = dict(study.objective.weights)
    thresholds = dict(study.objective.thresholds)
    if study.trainer is not None:
        return make_command_trial(study, lambda m: judged(m, weights, thresholds))
    threads = study.threads
    cache_dir = os.environ.get("NTUNE_CACHE") or None  # the driver's cache folder, shared by all trials

    def ntune_trial(config: dict[str, Any]) -> None:
        import ray
        import torch
        from ray import tune

        from ntune.data.load import load_or_simulate
        from ntune.data.simulate import resolve_device
        from ntune.learn.checkpoint import save_checkpoint
        from ntune.learn.population import train_population
        from ntune.learn.train import fit

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
        data = load_or_simulate(cfg.simulation, cache_dir=cache_dir)

        def full(m: dict[str, Any]) -> dict[str, Any]:
            return {**judged(m, weights, thresholds), **tags}

        def on_progress(m: dict[str, Any]) -> None:
            if not m.get("final"):
                result = full(m)
                tune.report(result)
                watch.update(result)

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

    from ntune.data.load import load_or_simulate
    from ntune.learn.checkpoint import save_checkpoint
    from ntune.learn.population import train_population

    trial_dir = Path(tune.get_context().get_storage().trial_working_directory)
    trial_dir.mkdir(parents=True, exist_ok=True)
    searches = [dict(m.get(SEARCH_KEY) or {}) for m in members]
    cfgs = [config_from_dict({k: v for k, v in m.items() if k != SEARCH_KEY}) for m in members]
    dirs = [trial_dir / f"member{k}" for k in range(len(members))]
    latest: list[dict[str, Any]] = [{} for _ in members]
    trial_id = tune.get_context().get_trial_id()
    watches = [TrialMetrics(study_name, s, member_id(trial_id, k), _echo) for k, s in enumerate(searches)]

    def full(k: int, m: dict[str, Any]) -> dict[str, Any]:
        s = searches[k]
        tags = {"block": str(s.get("block", "")), "node": int(s.get("node", -1))}
        tags |= {"strategy": str(s.get("strategy", "")), "trial_dir": str(dirs[k])}
        return {**judged(m, weights, thresholds), **tags}

    def report(k: int, result: dict[str, Any]) -> None:
        """Report member ``k``'s judged ``result`` (from :func:`full`) with the others' latest."""
        latest[k] = result
        watches[k].update(result)
        best = max((r["score"] for r in latest if r), default=0.0)
        tune.report({"score": best, MEMBERS_KEY: [dict(r) for r in latest]})

    by_data: dict[str, list[int]] = {}
    for k, c in enumerate(cfgs):
        by_data.setdefault(c.simulation_hash(), []).append(k)

    def progress(ids: list[int]) -> Callable[[int, dict[str, Any]], None]:
        """The progress callback of one group: member ``j`` of the group is member ``ids[j]`` of the trial."""

        def on_progress(j: int, m: dict[str, Any]) -> None:
            if not m.get("final"):  # the final result is reported once its files are written
                report(ids[j], full(ids[j], m))

        return on_progress

    for ids in by_data.values():
        data = load_or_simulate(cfgs[ids[0]].simulation, cache_dir=cache_dir)
        for d in (dirs[k] for k in ids):
            d.mkdir(parents=True, exist_ok=True)
        results = train_population(
            [cfgs[k] for k in ids], data, on_progress=progress(ids), log_dirs=[dirs[k] for k in ids]
        )
        for k, result in zip(ids, results, strict=True):
            final = full(k, result.metrics)
            _write_trial_files(dirs[k], cfgs[k], final, result, data)
            save_checkpoint(result, dirs[k] / "model.pt")
            report(k, final)
