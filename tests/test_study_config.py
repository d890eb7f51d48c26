"""Study files: validation names the field, before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ntune.config import ConfigError, get_dotted
from ntune.study.load import load_study, study_from_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = {
    "simulation": {"n_neurons": 16, "n_neuron_types": 2, "params": [[10, 1, 1], [10, 2, 2]], "n_frames": 500}
}


def _study(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny",
        "base": BASE,
        "blocks": {"simulation.connectivity_filling_factor": [1.0, 0.5]},
        "space": {
            "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "training.optimizer": {"type": "choice", "values": ["adam", "sgd"]},
        },
        "n_iter_block": 3,
    }
    data.update(changes)
    return data


def test_valid_study_resolves_base_and_defaults(tmp_path: Path) -> None:
    study, base = study_from_dict(_study(set=["training.n_epochs=2"]), tmp_path)
    assert study.block_key == "simulation.connectivity_filling_factor"
    assert study.block_values == [1.0, 0.5]
    assert study.n_trials == 6
    assert study.objective.weights == {"connectivity_R2": 0.6, "cluster_accuracy": 0.4}
    assert base["simulation"]["n_neurons"] == 16
    assert base["training"]["n_epochs"] == 2
    assert base["training"]["coeff_W_L1"] == 1e-5  # default filled in
    assert study.threads == 1
    assert (study.ucb_c, study.scouts) == (
        0.1,
        2,
    )  # c = 0.1 beat sqrt(2) (benchmarks/README.md)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*_study.yaml")), ids=lambda p: p.name)
def test_shipped_studies_validate(path: Path) -> None:
    assert (CONFIGS / yaml.safe_load(path.read_text())["base"]).is_file(), f"{path.name}: its base is missing"
    study, base = load_study(path)
    budgets = study.block_budgets()
    assert study.n_trials == sum(budgets.get(v, study.n_iter_block) for v in study.block_values)
    assert set(budgets) <= set(study.block_values)
    assert get_dotted(base, study.block_key) is not None


def test_shipped_study_settings() -> None:
    sparsity = yaml.safe_load((CONFIGS / "sparsity_study.yaml").read_text())
    assert sparsity["blocks"]["simulation.connectivity_filling_factor"] == [1.0, 0.75, 0.5, 0.25, 0.1, 0.05]
    assert sparsity["resources"]["gpu"] == 0.25
    conv = yaml.safe_load((CONFIGS / "convergence_study.yaml").read_text())
    assert conv["objective"] == {"weights": {"connectivity_R2": 1.0}, "thresholds": {"connectivity_R2": 0.9}}
    assert (conv["robustness_repeats"], conv["retry_failed"]) == (3, 1)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"n_iter_blok": 3}, "n_iter_blok: unknown field; did you mean 'n_iter_block'"),
        ({"n_iter_block": 0}, "n_iter_block"),
        ({"scouts": -1}, "scouts"),
        ({"resources": {"cpu": 1, "gpus": 1}}, "resources.gpus"),
        ({"resources": {"cpu": 0}}, "resources.cpu"),
        ({"blocks": {}}, "blocks must have exactly one key"),
        ({"blocks": {"simulation.connectivity_filling_factor": [1.0, 1.0]}}, "duplicate"),
        (
            {"blocks": {"simulation.connectivity_filling_factor": [1.5]}},
            "blocks.simulation.connectivity_filling_factor",
        ),
        ({"blocks": {"simulation.filling": [0.5]}}, "blocks.simulation.filling"),
        (
            {"space": {"training.lr_W": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}},
            "space.training.lr_W",
        ),
        ({"space": {"training.optimizer": {"type": "choice", "values": ["adam", "lbfgs"]}}}, "lbfgs"),
        ({"space": {"training.coeff_W_L1": {"type": "gauss", "low": 0, "high": 1}}}, "valid types"),
        ({"space": {"training.coeff_W_L1": {"type": "uniform", "low": 0}}}, "missing high"),
        (
            {"space": {"training.learning_rate_W_start": {"type": "uniform", "low": -1.0, "high": 1.0}}},
            "-1.0",
        ),
        ({"objective": {"weights": {"R2": 1.0}}}, "unknown metric 'R2'"),
        (
            {
                "space": {
                    "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "log": True}
                }
            },
            "space['training.coeff_W_L1']: unknown key 'log'",
        ),
        (
            {"space": {"training.batch_size": {"type": "int", "low": 1, "high": 8, "step": 2}}},
            "unknown key 'step'",
        ),
        ({"formula": "bandit"}, "formula"),
        ({"name": "a/b"}, "name"),
        ({"set": ["training.n_epoch=2"]}, "training.n_epoch"),
        ({"base": "missing.yaml"}, "missing.yaml: no such file"),
        ({"block_set": {0.3: ["training.n_epochs=2"]}}, "block_set.0.3: 0.3 is not a block value"),
        ({"block_trials": {0.3: 2}}, "block_trials.0.3: 0.3 is not a block value"),
        ({"block_trials": {1.0: 0}}, "block_trials.1.0: 0 trials"),
        (
            {"block_set": {1.0: ["simulation.connectivity_filling_factor=0.5"]}},
            "block_set.1.0: 'simulation.connectivity_filling_factor' is the block key",
        ),
        (
            {"block_set": {1.0: ["simulation.n_frame=100"]}},
            "block_set.1.0: 'simulation.n_frame' is not a field",
        ),
        ({"block_set": {1.0: ["training.n_epoch=2"]}}, "block_set.1.0: 'training.n_epoch' is not a field"),
        ({"block_set": {1.0: ["training.n_epochs=-1"]}}, "block_set.1.0: value -1 is not valid"),
        ({"repeats_vary": "network"}, "repeats_vary"),
        (
            {"repeats_vary": "seed", "held_out": 3},
            "held_out: 3 held-out networks need repeats_vary: instance",
        ),
        ({"held_out": -1}, "held_out"),
        (
            {"blocks": {"simulation.seed": [1, 2]}},
            "repeats_vary: instance varies simulation.seed, which this study also uses",
        ),
    ],
)
def test_bad_study_names_the_field(tmp_path: Path, changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        study_from_dict(_study(**changes), tmp_path)
    assert needle in str(err.value)


def test_overrides_split_between_study_and_base(tmp_path: Path) -> None:
    study, base = study_from_dict(
        _study(), tmp_path, ["n_iter_block=5", "resources.cpu=2", "training.batch_size=4", "name=other"]
    )
    assert (study.n_iter_block, study.resources.cpu, study.name, study.threads) == (5, 2.0, "other", 2)
    assert base["training"]["batch_size"] == 4
    with pytest.raises(ConfigError, match="training.batch_sise"):
        study_from_dict(_study(), tmp_path, ["training.batch_sise=4"])


def test_base_path_is_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "sub" / "study.yaml").write_text(yaml.safe_dump(_study(base="base.yaml")))
    study, base = load_study(tmp_path / "sub" / "study.yaml")
    assert base["simulation"]["n_neuron_types"] == 2


def test_run_with_bad_study_exits_2_and_starts_no_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from ntune.cli.app import app

    calls: list[tuple[Any, ...]] = []

    def _no_ray(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("ray.init called for a bad study")

    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_study(max_concurrent_trials=0)))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "res")])
    assert result.exit_code == 2, result.output
    assert "max_concurrent_trials" in result.output
    assert calls == []
    assert not (tmp_path / "res").exists()


def _ray_must_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def _no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ray.init called")

    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def test_run_refuses_a_folder_that_is_not_an_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ntune.cli.run import run_command

    _ray_must_not_start(monkeypatch)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_study(storage_path=str(tmp_path))))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "precious.txt").write_text("keep me")
    for fresh in (False, True):
        with pytest.raises(ConfigError, match="not an ntune experiment"):
            run_command(path, fresh=fresh)
    assert (tmp_path / "tiny" / "precious.txt").read_text() == "keep me"


def test_run_refuses_to_resume_a_different_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from ntune.cli.run import run_command
    from ntune.study.info import study_info

    _ray_must_not_start(monkeypatch)
    study, base = study_from_dict(_study(storage_path=str(tmp_path)), tmp_path)
    exp = tmp_path / "tiny"
    exp.mkdir()
    (exp / "study.json").write_text(json.dumps(study_info(study, base)))
    (exp / "tuner.pkl").write_bytes(b"")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_study(storage_path=str(tmp_path), n_iter_block=5)))
    with pytest.raises(ConfigError, match="different study"):
        run_command(path)


def test_block_set_changes_one_block_base_and_root(tmp_path: Path) -> None:
    text = yaml.safe_dump(
        _study(block_set={1.0: ["training.learning_rate_W_start=2e-2", "training.n_epochs=3"]})
    )
    (tmp_path / "s.yaml").write_text(text)
    study, base = load_study(tmp_path / "s.yaml")
    assert study.block_overrides() == {1.0: {"training.learning_rate_W_start": 2e-2, "training.n_epochs": 3}}
    from ntune.tune.driver import build_searcher

    searcher = build_searcher(study, base)
    dense, sparse = "connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"
    assert searcher.roots(dense)["training.learning_rate_W_start"] == 2e-2
    assert (
        searcher.roots(sparse)["training.learning_rate_W_start"] == base["training"]["learning_rate_W_start"]
    )
    assert searcher.base_of(dense)["training"]["n_epochs"] == 3
    assert searcher.base_of(sparse)["training"]["n_epochs"] == base["training"]["n_epochs"]


def test_block_trials_give_one_block_its_own_budget(tmp_path: Path) -> None:
    from ntune.study.ceilings import study_ceilings
    from ntune.study.info import probe_budgets, total_budget
    from ntune.tune.driver import build_searcher

    study, base = study_from_dict(_study(block_trials={"1.0": 5}, data_limited={"check": False}), tmp_path)
    assert study.block_budgets() == {1.0: 5} and study.n_trials == 5 + 3
    info = study_ceilings(study, base)
    assert info == {"block_budgets": {"connectivity_filling_factor=1.0": 5}}
    searcher = build_searcher(study, base, info)
    assert probe_budgets(study, info) == {1.0: 5}
    assert searcher.budget("connectivity_filling_factor=1.0") == 5
    assert searcher.budget("connectivity_filling_factor=0.5") == 3
    assert total_budget({**info, "study": {"n_iter_block": 3}}, list(searcher.trees)) == 8
    assert total_budget({**info, "study": {"n_iter_block": 3}, "held_out": 2}, list(searcher.trees)) == 12


def test_announce_names_the_per_block_budgets(tmp_path: Path) -> None:
    from rich.console import Console

    from ntune.study.info import study_info
    from ntune.tune.driver import Place, _announce

    study, base = study_from_dict(_study(block_trials={"1.0": 5}, data_limited={"check": False}), tmp_path)
    console = Console(record=True, width=300)
    info = {**study_info(study, base), "block_budgets": {"connectivity_filling_factor=1.0": 5}}
    _announce(console, study, info, Place(tmp_path / "tiny"))
    assert (
        "2 blocks x 3-5 trials (robust = 3 of 3 networks, then 3 held-out networks per block)"
        in console.export_text()
    )


def test_repeats_vary_the_network_by_default(tmp_path: Path) -> None:
    from ntune.study.info import study_info
    from ntune.tune.driver import build_searcher

    study, base = study_from_dict(_study(), tmp_path)
    assert (study.repeats_vary, study.held_out_networks, study.instance_key) == (
        "instance",
        3,
        "simulation.seed",
    )
    assert study_info(study, base)["held_out"] == 3
    searcher = build_searcher(study, base, {})
    assert (searcher.settings.instance_key, searcher.settings.held_out) == ("simulation.seed", 3)
    seed_only, base = study_from_dict(_study(repeats_vary="seed"), tmp_path)
    assert (seed_only.held_out_networks, seed_only.instance_key) == (0, None)
    assert build_searcher(seed_only, base, {}).settings.held_out == 0
    assert study_from_dict(_study(held_out=5), tmp_path)[0].held_out_networks == 5
