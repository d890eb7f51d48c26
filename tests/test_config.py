"""Config validation: each bad input fails with a message naming the field and what is allowed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import ConfigError, config_from_dict, config_to_dict, dump_config, get_dotted, load_config
from ntune.study.load import load_study
from ntune.yamlio import parse_overrides, safe_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _error(data: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, overrides)
    return str(info.value)


def test_defaults_are_upstream_n2() -> None:
    cfg = config_from_dict({})
    assert cfg.simulation.params == [[10.0, 1.0, 1.0], [10.0, 2.0, 1.0], [10.0, 1.0, 2.0], [10.0, 2.0, 2.0]]
    assert cfg.simulation.n_neurons == 1000
    assert cfg.training.learning_rate_W_start == 1e-3
    assert cfg.graph_model.backend == "dense"


def test_unknown_key_suggests_closest_name() -> None:
    msg = _error({"training": {"coeff_W_LI": 1e-5}})
    assert "training.coeff_W_LI" in msg
    assert "did you mean 'coeff_W_L1'" in msg


def test_unknown_section_is_named() -> None:
    msg = _error({"trainig": {}})
    assert "trainig" in msg and "did you mean 'training'" in msg


def test_params_rows_must_match_types() -> None:
    msg = _error({"simulation": {"n_neuron_types": 3}})
    assert "params has 4 rows but n_neuron_types is 3" in msg


def test_params_row_length() -> None:
    msg = _error({"simulation": {"n_neuron_types": 1, "params": [[1.0, 2.0]]}})
    assert "params row 0" in msg and "[g, s, c]" in msg


@pytest.mark.parametrize("ff", [0.0, -0.1, 1.5])
def test_filling_factor_range(ff: float) -> None:
    msg = _error({"simulation": {"connectivity_filling_factor": ff}})
    assert "simulation.connectivity_filling_factor" in msg
    assert repr(ff) in msg and "(0, 1]" in msg


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("simulation", "n_neurons"),
        ("simulation", "n_frames"),
        ("training", "batch_size"),
        ("graph_model", "hidden_dim"),
    ],
)
def test_non_positive_sizes(section: str, field: str) -> None:
    msg = _error({section: {field: 0}})
    assert f"{section}.{field}" in msg and "greater than" in msg


def test_bad_choice_lists_valid_choices() -> None:
    msg = _error({"training": {"optimizer": "adagrad"}})
    assert "training.optimizer" in msg and "'adam'" in msg and "'sgd'" in msg


def test_overrides_are_typed_and_applied() -> None:
    cfg = config_from_dict(
        {}, ["training.coeff_W_L1=1e-6", "simulation.n_neurons=50", "training.optimizer=sgd"]
    )
    assert cfg.training.coeff_W_L1 == 1e-6
    assert cfg.simulation.n_neurons == 50
    assert cfg.training.optimizer == "sgd"
    assert parse_overrides(["a.b=[1, 2]"]) == [("a.b", [1, 2])]


def test_bad_override_names_field() -> None:
    assert "training.n_epoch" in _error({}, ["training.n_epoch=3"])
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_overrides(["training.n_epochs"])


def test_roundtrip_dump_load(tmp_path: Path) -> None:
    cfg = config_from_dict({"simulation": {"connectivity_filling_factor": 0.25}}, ["training.seed=3"])
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert get_dotted(config_to_dict(again), "simulation.connectivity_filling_factor") == 0.25


def test_simulation_hash_ignores_training_and_device() -> None:
    a = config_from_dict({})
    b = config_from_dict({}, ["training.coeff_W_L1=0.1", "simulation.device=cpu"])
    c = config_from_dict({}, ["simulation.seed=7"])
    assert a.simulation_hash() == b.simulation_hash()
    assert a.simulation_hash() != c.simulation_hash()


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_shipped_configs_validate() -> None:
    """Every shipped YAML is a run config or a study (a ``base:`` and a ``space:``); each kind validates."""
    runs, studies = [], []
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "base" in data:
            load_study(path)
            studies.append(path.name)
        else:
            assert load_config(path).simulation.n_neurons > 0
            runs.append(path.name)
    assert {"pde_n2.yaml", "quickstart.yaml"} <= set(runs), runs
    assert {"quickstart_study.yaml", "sparsity_study.yaml"} <= set(studies), studies


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    """A dozen lines of nested YAML aliases ("billion laughs", 9^9 values) is refused before it is built."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "simulation: *a8", ""]))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: refused: its aliases .* expand to more than 100000"):
        load_config(path)
    assert time.perf_counter() - start < 2.0  # milliseconds in practice; building it would never end
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2 and "refused" in result.output


def test_recursive_alias_and_bomb_override_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("simulation: &s {nested: *s}\n")
    with pytest.raises(ConfigError, match="recursive"):
        load_config(path)
    bomb = "[" + ", ".join(["&x [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"] + ["*x"] * 3) + "]"
    assert parse_overrides([f"training.seed={bomb}"])[0][1][1] == [0] * 10  # small aliases are fine
    deep = (
        "[&a0 [0,0,0,0,0,0,0,0,0,0], "
        + ", ".join(f"&a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, 7))
        + "]"
    )
    with pytest.raises(ConfigError, match="--set training.seed: value refused"):
        parse_overrides([f"training.seed={deep}"])


def test_anchors_within_the_limit_load() -> None:
    assert safe_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_cli_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("simulation:\n  connectivity_filling_factor: 2.0\n")
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    assert "simulation.connectivity_filling_factor" in result.output


def test_cli_show_applies_set(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("simulation:\n  n_neurons: 20\n")
    result = CliRunner().invoke(app, ["config", "show", str(path), "--set", "training.batch_size=4"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["simulation"]["n_neurons"] == 20
    assert shown["training"]["batch_size"] == 4
