"""PackingSearcher: K suggestions of any Searcher per Tune trial, each member's result its own trial."""

from __future__ import annotations

import json
import random
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from rich.console import Console

from ntune.study.records import read_trials
from searchers.packing import MEMBERS_KEY, MemberCallbacks, PackingSearcher, member_id
from searchers.testing import conformance_kwargs, synthetic_result
from searchers.ucb import UCBTreeSearcher


class RandomSearcher(Searcher):
    """Random search with a budget (what BasicVariantGenerator does, as a Searcher): records every call."""

    def __init__(self, budget: int, seed: int = 0) -> None:
        super().__init__(metric="score", mode="max")
        self.budget, self.rng = budget, random.Random(seed)
        self.suggested: list[str] = []
        self.results: list[tuple[str, float]] = []
        self.completed: list[tuple[str, float | None, bool]] = []

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.suggested) >= self.budget:
            return Searcher.FINISHED
        self.suggested.append(trial_id)
        return {"x": self.rng.uniform(0, 1), "trial": trial_id}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.results.append((trial_id, result["score"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.completed.append((trial_id, None if result is None else result["score"], error))

    def get_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_metric", "_mode")}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({**self.get_state(), "rng": self.rng.getstate()}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        rng = state.pop("rng")
        self.set_state(state)
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))


def _member(result: float, final: bool) -> dict[str, Any]:
    return {"score": result, "final": final}


def test_k_suggestions_per_trial_and_each_member_completes_once() -> None:
    inner = RandomSearcher(budget=5)
    packer = PackingSearcher(inner, population=2)
    a, b, c = packer.suggest("a"), packer.suggest("b"), packer.suggest("c")
    assert [len(x[MEMBERS_KEY]) for x in (a, b, c)] == [2, 2, 1]  # the last one partial
    assert packer.suggest("d") == Searcher.FINISHED
    assert inner.suggested == [member_id(t, k) for t in "ab" for k in (0, 1)] + [member_id("c", 0)]
    assert a[MEMBERS_KEY][1]["trial"] == "a_m1"
    packer.on_trial_result("a", {"score": 0.2, MEMBERS_KEY: [_member(0.2, False), {}]})
    packer.on_trial_result("a", {"score": 0.5, MEMBERS_KEY: [_member(0.2, False), _member(0.5, True)]})
    assert inner.results == [("a_m0", 0.2), ("a_m0", 0.2)] and inner.completed == [("a_m1", 0.5, False)]
    packer.on_trial_complete("a", {"score": 0.5, MEMBERS_KEY: [_member(0.3, True), _member(0.5, True)]})
    packer.on_trial_complete("b", None, error=True)
    assert inner.completed == [
        ("a_m1", 0.5, False),
        ("a_m0", 0.3, False),
        ("b_m0", None, True),
        ("b_m1", None, True),
    ]
    packer.on_trial_complete("a", {"score": 0.5, MEMBERS_KEY: [_member(0.9, True), _member(0.9, True)]})
    assert len(inner.completed) == 4  # nothing completes twice


def test_save_restore_continues_exactly(tmp_path: Path) -> None:
    packer = PackingSearcher(RandomSearcher(budget=8, seed=1), population=3)
    packer.suggest("a")
    packer.on_trial_result("a", {"score": 1.0, MEMBERS_KEY: [{}, _member(1.0, True), {}]})
    packer.save(str(tmp_path / "ckpt.pkl"))
    expected = packer.suggest("b")
    packer.on_trial_complete("a", {"score": 1.0, MEMBERS_KEY: [_member(0.1, True)] * 3})
    restored = PackingSearcher(RandomSearcher(budget=8, seed=99), population=1)
    restored.restore(str(tmp_path / "ckpt.pkl"))
    assert restored.population == 3 and restored.suggest("b") == expected
    restored.on_trial_complete("a", {"score": 1.0, MEMBERS_KEY: [_member(0.1, True)] * 3})
    assert [c[0] for c in restored.searcher.completed] == ["a_m1", "a_m0", "a_m2"]


def test_ucb_searcher_packed_keeps_its_budget_and_trees() -> None:
    inner = UCBTreeSearcher(**{**conformance_kwargs(), "n_iter_block": 3})
    packer = PackingSearcher(inner, population=4)
    n, trial = 0, 0
    while (config := packer.suggest(f"t{trial}")) not in (None, Searcher.FINISHED):
        members = config[MEMBERS_KEY]
        results = [{**synthetic_result(m, f"t{trial}"), "score": 0.5, "final": True} for m in members]
        packer.on_trial_complete(f"t{trial}", {"score": 0.5, MEMBERS_KEY: results})
        n, trial = n + len(members), trial + 1
    assert n == 6 and trial == 2
    assert sum(t.n_runs for t in inner.trees.values()) == 6


def _members_trainable(config: dict[str, Any]) -> None:
    members = config[MEMBERS_KEY]
    latest: list[dict[str, Any]] = [{} for _ in members]
    for k, m in enumerate(members):
        latest[k] = {"score": -((m["x"] - 0.3) ** 2), "final": True}
        tune.report({"score": max(r["score"] for r in latest if r), MEMBERS_KEY: [dict(r) for r in latest]})


class Seen(tune.Callback):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.done: list[str] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.append(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        assert trial.last_result["final"] and "x" in trial.config
        self.done.append(trial.trial_id)


@pytest.mark.integration
def test_optuna_packed_under_a_real_tuner(tmp_path: Path, ray_session: None) -> None:
    import sys

    from ray import cloudpickle
    from ray.tune.search.optuna import OptunaSearch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    optuna = OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="score", mode="max", seed=0)
    seen = Seen()
    tuner = tune.Tuner(
        _members_trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(PackingSearcher(optuna, 3), max_concurrent=2),
            num_samples=3,
            trial_dirname_creator=lambda t: t.trial_id,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[MemberCallbacks([seen])], verbose=0),
    )
    grid = tuner.fit()
    assert len(grid) == 3 and not grid.errors
    trials = optuna._ot_study.trials
    assert len(trials) == 9 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(seen.done) == sorted(seen.started) and len(set(seen.done)) == 9


@pytest.mark.integration
@pytest.mark.slow
def test_packed_study_records_every_member_and_resumes_after_sigkill(
    tmp_path: Path, ray_session: None
) -> None:
    import ray
    from test_study_integration import _interrupt, _ntune_run, _study, _tree_nodes

    address = ray.get_runtime_context().gcs_address
    study = _study(tmp_path, "packed", population=2, max_concurrent_trials=1)
    exp_dir = tmp_path / "results" / "packed"
    out = _interrupt(study, exp_dir, address, signal.SIGKILL, 2)
    last = _ntune_run(study, address)
    out += last.communicate(timeout=300)[0]
    assert last.returncode == 0, out
    records, running = read_trials(exp_dir)
    assert len(records) == 6 and running == {}, out
    assert all(r["trial_id"].rsplit("_m", 1)[1] in ("0", "1") for r in records)
    assert Counter(r["block"] for r in records) == {
        "connectivity_filling_factor=1.0": 3,
        "connectivity_filling_factor=0.5": 3,
    }
    for rec in records:
        assert rec["status"] == "ok" and 0 <= rec["metrics"]["connectivity_R2"] <= 1
        trial_dir = Path(rec["trial_dir"])
        assert trial_dir.name.startswith("member") and (trial_dir / "W_scatter.png").is_file()
        assert json.loads((trial_dir / "metrics.json").read_text())["final"] is True
        assert list(trial_dir.glob("events.out.tfevents.*"))
    for label, rows in _tree_nodes(exp_dir).items():
        assert {n for n, _, _ in rows} == {r["search"]["node"] for r in records if r["block"] == label}
        assert next(v for n, p, v in rows if not p.isdigit()) == 3
    assert (exp_dir / "analysis.md").read_text().count("## Iter ") >= 6
    Console().print(out[-300:])


def test_member_callbacks_complete_each_member_once_across_a_restore() -> None:
    @dataclass
    class Trial:
        trial_id: str
        config: dict
        last_result: dict
        path: str = "/t"

    seen = Seen()
    callbacks = MemberCallbacks([seen])
    config = {MEMBERS_KEY: [{"x": 0.1}, {"x": 0.2}]}
    trial = Trial("a", config, {})
    callbacks.on_trial_start(0, [], trial)
    trial.last_result = {"score": 1.0, MEMBERS_KEY: [{}, {"score": 1.0, "final": True}]}
    callbacks.on_trial_result(0, [], trial, trial.last_result)
    restored = MemberCallbacks([seen])
    restored.set_state(callbacks.get_state())
    trial.last_result = {"score": 1.0, MEMBERS_KEY: [{"score": 0.5, "final": True}] * 2}
    restored.on_trial_complete(0, [], trial)
    assert seen.started == ["a_m0", "a_m1"] and seen.done == ["a_m1", "a_m0"]


def test_study_population_setting() -> None:
    from ntune.config import ConfigError
    from ntune.study.config import GPU_POPULATION
    from ntune.study.load import study_from_dict

    study = {
        "name": "p",
        "base": {"simulation": {"n_neurons": 16, "n_neuron_types": 2, "params": [[10, 1, 1], [10, 2, 2]]}},
        "blocks": {"simulation.connectivity_filling_factor": [1.0]},
        "space": {"training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3}},
    }
    assert study_from_dict(study, Path("."))[0].population_size == 1  # auto on CPU
    gpu = study_from_dict({**study, "resources": {"cpu": 1, "gpu": 1}}, Path("."))[0]
    assert gpu.population == "auto" and gpu.population_size == GPU_POPULATION
    assert study_from_dict(study, Path("."), ["population=4"])[0].population_size == 4
    for bad in (0, "many"):
        with pytest.raises(ConfigError, match="population"):
            study_from_dict({**study, "population": bad}, Path("."))
