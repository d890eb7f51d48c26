"""Guards against bad inputs that validation alone cannot see: memory, non-finite data, file names from
data, the cluster's resources; and the smaller fault-probe findings (SIGINT table, one cache warning)."""

from __future__ import annotations

import json
import logging
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel
from rich.console import Console
from study_fakes import FakeSearcher, make_experiment, trial
from typer.testing import CliRunner

import ntune.data.load as sim
from ntune.cli.app import app
from ntune.config import ConfigError, NtuneConfig, SimulationConfig, config_from_dict
from ntune.data import cache
from ntune.study import guards
from ntune.study.config import Objective, Resources, StudyConfig
from ntune.study.journal import Journal
from ntune.study.load import study_from_dict

SMALL = {
    "n_neurons": 16,
    "n_neuron_types": 2,
    "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]],
    "n_frames": 200,
    "start_frame": -50,
    "device": "cpu",
}


# ---- every float field is finite, no field takes a bool ----------------------------------------------


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, 'int' | 'float') of every numeric scalar field of ``model`` and its sub-models."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        base = args[0] if args and typing.get_origin(ann) is not list else ann
        if isinstance(base, type) and issubclass(base, BaseModel):
            out += _numeric_fields(base, f"{prefix}{name}.")
        elif base in (int, float):
            out.append((f"{prefix}{name}", base.__name__))
    return out


CONFIG_FIELDS = _numeric_fields(NtuneConfig)


def test_the_field_walk_finds_the_numeric_fields() -> None:
    assert ("training.learning_rate_W_start", "float") in CONFIG_FIELDS
    assert ("simulation.n_neurons", "int") in CONFIG_FIELDS
    assert len(CONFIG_FIELDS) >= 25


@pytest.mark.parametrize(("path", "kind"), CONFIG_FIELDS, ids=[p for p, _ in CONFIG_FIELDS])
def test_every_config_number_rejects_nan_inf_and_bool(path: str, kind: str) -> None:
    section, field = path.split(".")
    bad: list[Any] = [True, False] + (
        [math.nan, math.inf, -math.inf, "nan", "inf"] if kind == "float" else []
    )
    for value in bad:
        with pytest.raises(ConfigError) as err:
            config_from_dict(
                {"simulation": SMALL, section: {field: value}}
                if section != "simulation"
                else {"simulation": {**SMALL, field: value}}
            )
        assert path in str(err.value), (value, str(err.value))


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (Resources, {"cpu": math.nan}, "cpu"),
        (Resources, {"gpu": math.inf}, "gpu"),
        (Resources, {"cpu": True}, "cpu"),
        (Objective, {"weights": {"connectivity_R2": math.nan}}, "connectivity_R2"),
        (Objective, {"thresholds": {"connectivity_R2": math.inf}}, "connectivity_R2"),
    ],
)
def test_study_numbers_reject_nan_inf_and_bool(model: type[BaseModel], data: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        model.model_validate(data)


def test_study_level_numbers_are_strict(tmp_path: Path) -> None:
    study = yaml.safe_load((Path(__file__).parents[1] / "configs" / "quickstart_study.yaml").read_text())
    for key, value in [("ucb_c", math.nan), ("ucb_c", math.inf), ("seed", True), ("retry_failed", False)]:
        with pytest.raises(ConfigError, match=key):
            study_from_dict({**study, "base": {}, key: value}, tmp_path)
    assert "ucb_c" in StudyConfig.model_fields


def test_numbers_that_are_fine_still_pass() -> None:
    cfg = config_from_dict(
        {"simulation": {**SMALL, "delta_t": "1e-2"}, "training": {"coeff_W_L1": 0, "n_epochs": 2.0}}
    )
    assert cfg.simulation.delta_t == 0.01 and cfg.training.coeff_W_L1 == 0.0 and cfg.training.n_epochs == 2


# ---- memory ----------------------------------------------------------------------------------------


def test_memory_estimates_grow_with_the_sizes() -> None:
    small = config_from_dict({"simulation": SMALL})
    s = guards.simulation_bytes(small.simulation)
    assert s == 40 * 16 * 16 + 8 * 200 * 16 + 16 * 200 * 16
    upstream = config_from_dict({"simulation": {"n_neurons": 1000}})  # 1000 x 100 000: u, y are 0.8 GB
    assert 0.8e9 < guards.simulation_bytes(upstream.simulation) < 1.0e9
    assert 0.8e9 < guards.trial_bytes(upstream) < 1.2e9
    edge = config_from_dict({"simulation": {"n_neurons": 1000}, "graph_model": {"backend": "edge"}})
    assert guards.trial_bytes(edge) > guards.trial_bytes(upstream)
    huge = config_from_dict({"simulation": {"n_neurons": 10_000_000}})
    assert guards.simulation_bytes(huge.simulation) > 2**40 * 100  # hundreds of TiB


def test_check_memory_refuses_and_says_the_estimate() -> None:
    cfg = config_from_dict({"simulation": {"n_neurons": 30_000}})
    with pytest.raises(ConfigError) as err:
        guards.check_memory(cfg, "simulation", available=16 * 2**30)
    msg = str(err.value)
    assert "simulation.n_neurons = 30000" in msg and "GiB of memory (estimate)" in msg and "16.0 GiB" in msg
    guards.check_memory(config_from_dict({"simulation": SMALL}), "trial", available=16 * 2**30)


def test_study_memory_uses_the_largest_searched_size(tmp_path: Path) -> None:
    data = {
        "name": "s",
        "base": {"simulation": SMALL},
        "blocks": {"simulation.connectivity_filling_factor": [1.0]},
        "space": {"simulation.n_neurons": {"type": "int", "low": 16, "high": 5_000_000}},
        "storage_path": str(tmp_path / "res"),
    }
    study, base = study_from_dict(data, tmp_path)
    with pytest.raises(ConfigError, match="simulation.n_neurons = 5000000"):
        guards.check_study(study, base)
    assert not (tmp_path / "res").exists()


# ---- resources ---------------------------------------------------------------------------------------


def test_check_resources_names_the_field_and_what_is_there() -> None:
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]
    guards.check_resources({"cpu": 8, "gpu": 0}, nodes)
    guards.check_resources({"cpu": 1, "gpu": 0.25}, nodes)
    with pytest.raises(ConfigError, match=r"resources.gpu = 2 per trial.*1 GPU in all \(2 node"):
        guards.check_resources({"cpu": 1, "gpu": 2}, nodes)
    with pytest.raises(ConfigError, match=r"resources.cpu = 9 per trial.*10 CPU in all.*largest 8"):
        guards.check_resources({"cpu": 9}, nodes)
    with pytest.raises(ConfigError, match="resources.cpu"):
        guards.check_resources({"cpu": 1}, [])


# ---- storage -----------------------------------------------------------------------------------------


def test_check_storage_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guards.check_storage(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []

    def _denied(**kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(guards.tempfile, "mkdtemp", _denied)
    with pytest.raises(ConfigError, match=r"storage_path: cannot create folders in .* \(Permission denied\)"):
        guards.check_storage(tmp_path / "x")


# ---- file names derived from data ---------------------------------------------------------------------


@pytest.mark.parametrize("label", ["a/b", "../../escape", "/abs/x", "a\\b", "..", ".", "", "x\x00y"])
def test_safe_name_is_one_component(label: str) -> None:
    name = guards.safe_name(label)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..")
    assert Path(name).name == name


def test_report_and_export_write_inside_the_experiment(tmp_path: Path) -> None:
    """A hand-made experiment whose block labels hold '/../': every file stays inside its folder."""
    exp = tmp_path / "deep" / "exp"
    make_experiment(exp)
    path = exp / "trials.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    label = "connectivity_filling_factor=../../../../escaped"
    for event in lines:
        if event.get("block"):
            event["block"] = label
        if "search" in event:
            event["search"]["block"] = label
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    info = json.loads((exp / "study.json").read_text())
    info["study"]["blocks"] = {info["block_key"]: ["../../../../escaped"]}
    (exp / "study.json").write_text(json.dumps(info))
    escaped = "connectivity_filling_factor=.._.._.._.._escaped"  # the journal names files with safe_name
    for folder, suffix in (("ucb", ".txt"), ("trees", ".json")):
        tree = next((exp / folder).glob(f"*{suffix}")).read_text()
        (exp / folder / f"{escaped}{suffix}").write_text(tree)
    before = set(tmp_path.rglob("*"))
    from ntune.cli.commands import export_command, report_command

    report_command(exp, console=Console(record=True))
    export_command(exp, out=None, fmt="yaml", console=Console(record=True))
    new = set(tmp_path.rglob("*")) - before
    assert new and all(exp in p.parents for p in new), sorted(map(str, new))
    assert (exp / "trees" / "connectivity_filling_factor=.._.._.._.._escaped.png").is_file()
    assert (exp / "best" / "connectivity_filling_factor=.._.._.._.._escaped.yaml").is_file()


# ---- non-finite simulations are reported and never cached ---------------------------------------------


def test_cache_refuses_non_finite_arrays(tmp_path: Path) -> None:
    entry = tmp_path / "pde_n2-x-v1"
    u = np.zeros((5, 3), dtype=np.float32)
    u[2, 1] = np.inf
    with pytest.raises(cache.NonFiniteDataError, match=r"u has 1 NaN/inf values of 15 \(first at frame 2\)"):
        cache.write_entry(entry, {"u": u, "types": np.zeros(3, dtype=np.int64)}, {})
    assert list(tmp_path.iterdir()) == []


def test_diverging_simulation_exits_2_and_caches_nothing(tmp_path: Path, _private_cache: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"simulation": {**SMALL, "delta_t": 1e6}}))
    before = set(_private_cache.iterdir()) if _private_cache.is_dir() else set()
    result = CliRunner().invoke(app, ["simulate", str(path)])
    assert result.exit_code == 2, result.output
    assert "not finite" in result.output and "nothing was cached" in result.output
    assert "Traceback" not in result.output
    after = {p for p in _private_cache.iterdir() if not p.name.endswith(".lock")}
    assert after == {p for p in before if not p.name.endswith(".lock")}


# ---- smaller findings ------------------------------------------------------------------------------


def test_corrupt_cache_warning_is_printed_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = SimulationConfig(**SMALL)
    first = sim.load_or_simulate(config, cache_dir=tmp_path)
    assert first.path is not None
    (first.path / "u.npy").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="ntune.data.simulate"):
        again = sim.load_or_simulate(config, cache_dir=tmp_path)
    warnings = [r for r in caplog.records if "corrupt cache entry" in r.getMessage()]
    assert len(warnings) == 1
    np.testing.assert_array_equal(again.u, first.u)


def test_table_printed_when_a_run_stops_shows_nothing_running(tmp_path: Path) -> None:
    """After SIGINT Tune has stopped every trial: the final table must not show started ones as running."""
    from ntune.cli.run import _finish
    from ntune.tune.driver import StudyRun

    info = make_experiment(tmp_path, n=2)
    trial_id, config, _, _ = trial(7, (1.0, 1, 0, "exploit", "", 1e-3, 0.5, 0.5, "ok"), info)
    journal = Journal(tmp_path, FakeSearcher(), info=info)  # what the driver's journal holds at the end
    journal.start(trial_id, config)
    (tmp_path / "trials.jsonl").unlink()  # the table comes from memory, not from the folder
    study = StudyConfig.model_validate(info["study"])
    console = Console(record=True, width=200)
    assert _finish(StudyRun(tmp_path, study.n_trials, journal.experiment()), console) == 130
    text = console.export_text()
    assert "2/6 trials done, 0 running" in text, text
    assert " running" not in text.replace("0 running", "")
