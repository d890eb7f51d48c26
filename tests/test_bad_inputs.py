"""A table of bad inputs: each exits 2 with one clear line naming the field, starts no Ray, writes nothing.

Configs go through ``ntune train`` / ``ntune simulate``, studies through ``ntune run``, experiment
folders through ``ntune status`` / ``report`` / ``export``, all in-process with typer's CliRunner.
``ray.init`` is replaced by a function that records the call, so a case that would start Ray fails.
The last tests check the resources of a study against a real Ray cluster (embedded and joined).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ntune.cli.app import app

BASE = {
    "simulation": {"n_neurons": 16, "n_neuron_types": 2, "params": [[10, 1, 1], [10, 2, 2]], "n_frames": 500}
}
STUDY = {
    "name": "tiny",
    "base": BASE,
    "blocks": {"simulation.connectivity_filling_factor": [1.0, 0.5]},
    "space": {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
    "n_iter_block": 2,
}
BINARY = bytes(range(256)) * 4


def _config(**sections: dict[str, Any]) -> str:
    data = json.loads(json.dumps(BASE))
    for name, fields in sections.items():
        data.setdefault(name, {}).update(fields)
    return yaml.safe_dump(data)


def _study(**changes: Any) -> str:
    data = json.loads(json.dumps(STUDY))
    data.update(changes)
    return yaml.safe_dump(data)


# (case id, command, file text or bytes (None: no file), extra args, text the message must contain)
# command "train"/"simulate" take the file as a config, "run" as a study. YAML's .nan/.inf are floats.
CONFIG_CASES: list[tuple[str, str, str | bytes | None, list[str], str]] = [
    ("int-true", "train", _config(training={"n_epochs": True}), [], "training.n_epochs"),
    ("neurons-true", "train", _config(simulation={"n_neurons": True}), [], "simulation.n_neurons"),
    ("float-true", "train", _config(training={"coeff_W_L1": True}), [], "training.coeff_W_L1"),
    (
        "lr-inf",
        "train",
        _config(training={"learning_rate_W_start": math.inf}),
        [],
        "training.learning_rate_W_start",
    ),
    ("dt-inf", "train", _config(simulation={"delta_t": math.inf}), [], "simulation.delta_t"),
    (
        "params-nan",
        "simulate",
        _config(simulation={"params": [[math.nan, 1, 1], [10, 2, 2]]}),
        [],
        "simulation.params.0.0",
    ),
    (
        "noise-nan",
        "simulate",
        _config(simulation={"noise_model_level": math.nan}),
        [],
        "simulation.noise_model_level",
    ),
    (
        "init-inf",
        "train",
        _config(simulation={"connectivity_init": [0, math.inf]}),
        [],
        "simulation.connectivity_init.1",
    ),
    ("w-init-neg-inf", "train", _config(graph_model={"W_init_std": -math.inf}), [], "graph_model.W_init_std"),
    ("nan-string", "train", _config(training={"coeff_edge_diff": "nan"}), [], "training.coeff_edge_diff"),
    (
        "huge-simulation",
        "simulate",
        _config(simulation={"n_neurons": 10_000_000}),
        [],
        "simulation.n_neurons",
    ),
    ("huge-trial", "train", _config(simulation={"n_neurons": 2_000_000}), [], "simulation.n_neurons"),
    ("empty-config", "train", "", [], "empty"),
    ("binary-config", "train", BINARY, [], "not a text file"),
    ("nul-config", "train", "simulation:\n  n_neurons: 16\x00\n", [], "not a text file"),
    ("folder-config", "train", None, ["<dir>"], "is a folder"),
    ("missing-config", "train", None, ["<missing>"], "no such file"),
    ("bad-yaml", "train", "simulation: [\n", [], "not valid YAML"),
    ("not-a-mapping", "train", "- 1\n- 2\n", [], "mapping"),
    ("unknown-field", "train", _config(training={"lr": 1}), [], "training.lr"),
    ("device", "train", _config(training={"device": "gpu"}), [], "training.device"),
    ("set-bad-yaml", "train", _config(), ["--set", "training.batch_size=[1"], "training.batch_size"),
    ("set-true", "train", _config(), ["--set", "training.batch_size=true"], "training.batch_size"),
    ("set-inf", "train", _config(), ["--set", "simulation.delta_t=.inf"], "simulation.delta_t"),
    ("set-no-equals", "train", _config(), ["--set", "training.batch_size"], "training.batch_size"),
    ("set-markup", "train", _config(), ["--set", "training.optimizer='[bold]x[/bold]'"], "'[bold]x[/bold]'"),
    # studies
    ("block-slash", "run", _study(blocks={"dataset": ["runs/a"]}), [], "blocks"),
    ("block-backslash", "run", _study(blocks={"dataset": ["a\\b"]}), [], "blocks"),
    ("block-dotdot", "run", _study(blocks={"dataset": ["../../x"]}), [], "blocks"),
    ("gpu-inf", "run", _study(resources={"gpu": math.inf}), [], "resources.gpu"),
    ("gpu-fraction-above-one", "run", _study(resources={"gpu": 1.5}), [], "resources.gpu"),
    ("cpu-true", "run", _study(resources={"cpu": True}), [], "resources.cpu"),
    ("ucb-inf", "run", _study(ucb_c=math.inf), [], "ucb_c"),
    ("iter-true", "run", _study(n_iter_block=True), [], "n_iter_block"),
    ("concurrency-true", "run", _study(max_concurrent_trials=True), [], "max_concurrent_trials"),
    (
        "weight-nan",
        "run",
        _study(objective={"weights": {"connectivity_R2": math.nan}}),
        [],
        "connectivity_R2",
    ),
    (
        "domain-inf",
        "run",
        _study(
            space={"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": math.inf}}
        ),
        [],
        "training.learning_rate_W_start']: high",
    ),
    ("study-huge", "run", _study(base={"simulation": {"n_neurons": 10_000_000}}), [], "simulation.n_neurons"),
    ("study-empty", "run", "", [], "empty"),
    ("study-binary", "run", BINARY, [], "not a text file"),
    ("study-folder", "run", None, ["<dir>"], "is a folder"),
    ("study-set-bad-yaml", "run", _study(), ["--set", "n_iter_block=[1"], "n_iter_block"),
    ("study-set-true", "run", _study(), ["--set", "training.n_epochs=true"], "training.n_epochs"),
    ("storage-under-file", "run", _study(), ["--storage", "<file>/sub"], "storage_path"),
    ("storage-is-file", "run", _study(), ["--storage", "<file>"], "storage_path"),
    ("storage-unwritable", "run", _study(), ["--storage", "/proc/ntune-test/x"], "storage_path"),
]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace ``ray.init``; the returned list records every call."""
    import ray

    calls: list[Any] = []

    def _init(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        raise AssertionError("ray.init called for a bad input")

    monkeypatch.setattr(ray, "init", _init)
    return calls


def _cache_entries(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.mark.parametrize(
    ("command", "text", "extra", "needle"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_bad_input_exits_2_names_the_field_and_starts_nothing(
    tmp_path: Path,
    no_ray: list[Any],
    _private_cache: Path,
    command: str,
    text: str | bytes | None,
    extra: list[str],
    needle: str,
) -> None:
    import ray

    was_initialized = ray.is_initialized()
    path = tmp_path / "input.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    (tmp_path / "a_file").write_text("not a folder")
    args = [a.replace("<file>", str(tmp_path / "a_file")) for a in extra]
    if args[:1] == ["<dir>"]:
        path, args = tmp_path, args[1:]
    elif args[:1] == ["<missing>"]:
        path, args = tmp_path / "missing.yaml", args[1:]
    out = tmp_path / "out"
    if command == "train":
        args = [*args, "--out", str(out)]
    elif command == "run" and "--storage" not in args:
        args = [*args, "--storage", str(out)]
    before = _cache_entries(_private_cache)
    result = CliRunner().invoke(app, [command, str(path), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: "), result.output
    assert needle in result.output, result.output
    assert "Traceback" not in result.output
    assert no_ray == [] and ray.is_initialized() == was_initialized
    assert not out.exists()
    assert _cache_entries(_private_cache) == before  # nothing simulated, nothing cached


def _experiment(tmp_path: Path, study_json: str | bytes) -> Path:
    exp = tmp_path / "exp"
    exp.mkdir()
    if isinstance(study_json, bytes):
        (exp / "study.json").write_bytes(study_json)
    else:
        (exp / "study.json").write_text(study_json)
    return exp


@pytest.mark.parametrize(
    ("command", "study_json"),
    [
        (["status"], ""),
        (["status"], '{"study": {"name": '),
        (["status"], "[]"),
        (["status"], BINARY),
        (["report"], "{}"),
        (["export"], "null"),
    ],
    ids=[
        "status-empty",
        "status-truncated",
        "status-list",
        "status-binary",
        "report-empty-dict",
        "export-null",
    ],
)
def test_corrupt_study_json_exits_2_and_writes_nothing(
    tmp_path: Path, no_ray: list[Any], command: list[str], study_json: str | bytes
) -> None:
    exp = _experiment(tmp_path, study_json)
    result = CliRunner().invoke(app, [*command, str(exp)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "study.json" in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in exp.iterdir()) == ["study.json"]
    assert no_ray == []


def test_user_text_is_printed_verbatim_not_as_markup(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"simulation": {"n_neuron_types": 3}}))
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    assert "give one [g, s, c] row per neuron type" in result.output, result.output


# ---- resources against a real Ray cluster ------------------------------------------------------


def _write_study(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(_study(**changes))
    return path


@pytest.mark.integration
@pytest.mark.parametrize(
    ("resources", "needle"),
    [({"gpu": 4}, "resources.gpu = 4 per trial"), ({"cpu": 64}, "resources.cpu = 64 per trial")],
    ids=["gpu", "cpu"],
)
def test_joined_cluster_too_small_exits_2_before_any_trial(
    tmp_path: Path, ray_session: None, resources: dict[str, float], needle: str
) -> None:
    """ray_session: a running 2-CPU, 0-GPU Ray (the 'joined' case: ntune did not start it)."""
    import ray

    path = _write_study(tmp_path, resources=resources)
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "the cluster has" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert ray.is_initialized()  # not ours to shut down


@pytest.mark.integration
def test_embedded_ray_too_small_exits_2_and_shuts_down(tmp_path: Path) -> None:
    """A subprocess starts its own embedded Ray (no GPU), refuses resources.gpu=4, stops Ray, writes nothing."""
    path = _write_study(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    code = (
        "import sys, ray; from ntune.cli.app import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    print('initialized-after', ray.is_initialized()); sys.exit(e.code)\n"
    )
    args = ["run", str(path), "--set", "resources.gpu=4", "--storage", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "resources.gpu = 4 per trial" in proc.stderr and "0 GPU" in proc.stderr, proc.stderr
    assert "initialized-after False" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_preflight_error_stops_before_the_experiment_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Ray: a fake cluster of one 2-CPU node; an embedded Ray started by ntune is shut down."""
    import ray

    import ntune.tune.driver as study_mod

    events: list[str] = []
    monkeypatch.setattr(
        study_mod, "_start_ray", lambda address, console, metadata: events.append("start") or True
    )
    monkeypatch.setattr(study_mod, "_ray_nodes", lambda: [{"CPU": 2.0}])
    monkeypatch.setattr(ray, "shutdown", lambda: events.append("shutdown"))
    path = _write_study(tmp_path, resources={"gpu": 0.5})
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "resources.gpu = 0.5 per trial" in result.output and "0 GPU" in result.output
    assert events == ["start", "shutdown"]
    assert not (tmp_path / "out").exists()
