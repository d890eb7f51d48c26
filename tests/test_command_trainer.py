"""A study's command trainer (``trainer:``): each trial runs the user's own program.

Fast tests check the section's validation, the files exchanged (the config written in ntune's and in
upstream's form, the metrics read in jsonl and key: value form) and the runner's timeout. The integration
tests run real studies on a real Ray: the closed-form program of tests/command_trainer_script.py (whose
metrics are known exactly) with a failing and a hanging block, and ``python -m ntune train`` as the
command, killed and resumed, whose metrics equal the built-in trainer's for the same seed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from command_trainer_script import FAIL_MESSAGE, KILL_FF, STEPS, closed_form
from study_fakes import TINY_RUN, study_dict, write_study
from test_upstream_import import UPSTREAM

from ntune.config import ConfigError, config_from_dict, config_to_dict, get_dotted, set_dotted
from ntune.learn.metrics import RECORD_METRICS
from ntune.study.load import load_study, relocated, study_from_dict
from ntune.study.records import read_trials
from ntune.study.trainer import TrainerConfigFile, parse_key_value, trial_config_text
from ntune.tune.command import MetricsFile, Outcome, run_command, stderr_tail
from ntune.upstream import import_upstream

SCRIPT = Path(__file__).resolve().parent / "command_trainer_script.py"
NAMES = {"connectivity_R2": "R2", "cluster_accuracy": "cluster_acc"}


def _trainer(fmt: str = "jsonl", **changes: Any) -> dict[str, Any]:
    """The closed-form program as a study's trainer (its metrics under its own names)."""
    command = ["{python}", str(SCRIPT), "{config}", "{metrics}", "--format", fmt]
    return {"command": command, "metrics": {"format": fmt, "names": NAMES}, **changes}


def _load(tmp_path: Path, **changes: Any) -> Any:
    return study_from_dict(study_dict("cmd", **changes), tmp_path)[0]


# ---- the study section -------------------------------------------------------------------------------


def test_a_command_trainer_is_validated_when_the_study_is_loaded(tmp_path: Path) -> None:
    study = _load(tmp_path, trainer=_trainer(timeout_min=0.5))
    assert study.trainer.command[0] == "{python}" and study.trainer.timeout_min == 0.5
    assert _load(tmp_path).trainer is None  # ntune's own trainer
    bad = {
        "unknown placeholder {cfg} in '{cfg}'; valid here: {trial_dir}, {trial_id}, {seed}, {python}, {config}": {
            "command": ["train", "{cfg}"]
        },
        "trainer.cwd: '{config}': unknown placeholder {config}": {"command": ["t"], "cwd": "{config}"},
        "trainer.metrics.names: unknown ntune metric 'R2'; valid: connectivity_R2": {
            "command": ["t"],
            "metrics": {"names": {"R2": "connectivity_R2"}},
        },
        "trainer.metrics.format: 'csv'": {"command": ["t"], "metrics": {"format": "csv"}},
        "format upstream needs template": {"command": ["t"], "config": {"format": "upstream"}},
        "trainer.command: []": {"command": []},
        "trainer.timeout_min: 0": {"command": ["t"], "timeout_min": 0},
        "trainer.env: A: unknown placeholder {x}": {"command": ["t"], "env": {"A": "{x}"}},
        "'t {': Single '{' encountered in format string (write a literal brace as '{{' or '}}')": {
            "command": ["t {"]
        },
    }
    for message, trainer in bad.items():
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, trainer=trainer)
        assert message in str(err.value), (message, str(err.value))


def test_a_command_trains_one_config_per_trial(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trainer: .*population 4 packs several; set population: 1"):
        _load(tmp_path, trainer=_trainer(), population=4)
    with pytest.raises(ConfigError, match="population 'auto' packs several when trials have a GPU"):
        _load(tmp_path, trainer=_trainer(), resources={"cpu": 1, "gpu": 1})
    assert _load(tmp_path, trainer=_trainer(), population=1, resources={"gpu": 1}).population_size == 1


def test_upstream_studies_search_fields_upstream_names(tmp_path: Path) -> None:
    template = tmp_path / "signal_N2.yaml"
    template.write_text(UPSTREAM)
    upstream = {"format": "upstream", "template": str(template)}
    space = {"training.optimizer": {"type": "choice", "values": ["adam", "sgd"]}}
    with pytest.raises(ConfigError, match="training.optimizer has no upstream NeuralGraph name"):
        _load(tmp_path, trainer=_trainer(config=upstream), space=space)
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        _load(tmp_path, trainer=_trainer(config={**upstream, "template": str(tmp_path / "missing.yaml")}))
    assert _load(tmp_path, trainer=_trainer(config=upstream)).trainer.config.template == str(template)


def test_relative_template_and_cwd_are_taken_from_the_study_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "signal_N2.yaml").write_text(UPSTREAM)
    trainer = _trainer(cwd="NeuralGraph", config={"format": "upstream", "template": "signal_N2.yaml"})
    (folder / "study.yaml").write_text(yaml.safe_dump(study_dict("cmd", trainer=trainer)))
    monkeypatch.chdir(tmp_path)  # not the study's folder: relative paths must not follow it
    study = load_study(folder / "study.yaml")[0]
    assert study.trainer.config.template == str(folder / "signal_N2.yaml")
    assert study.trainer.cwd == str(folder / "NeuralGraph")
    assert relocated(study, name="other").trainer.cwd == str(folder / "NeuralGraph")  # revalidated as it is


# ---- the files exchanged ----------------------------------------------------------------------------


def test_the_upstream_config_is_the_template_with_the_trial_values(tmp_path: Path) -> None:
    template = tmp_path / "signal_N2.yaml"
    template.write_text("# my run\n" + UPSTREAM.replace("simulation:\n", "simulation:  # the data\n"))
    trial = config_to_dict(import_upstream(template)[0])
    changes = {
        "simulation.connectivity_filling_factor": 0.5,
        "training.learning_rate_W_start": 3e-3,
        "training.seed": 11,
    }
    for key, value in changes.items():
        set_dotted(trial, key, value)
    spec = TrainerConfigFile(format="upstream", template=str(template), set={"dataset": "ntune_{trial_id}"})
    written = tmp_path / "written.yaml"
    written.write_text(trial_config_text(spec, trial, {"trial_id": "t7"}))
    before, after = template.read_text().splitlines(), written.read_text().splitlines()
    assert len(before) == len(after)  # the template's own lines, comments included, one per value changed
    changed = [b.split(":")[0].strip() for b, a in zip(before, after, strict=True) if b != a]
    assert sorted(changed) == ["connectivity_filling_factor", "dataset", "learning_rate_W_start", "seed"]
    back = config_to_dict(import_upstream(written)[0])
    for key, value in changes.items():
        assert get_dotted(back, key) == value
    assert back == {**trial, "dataset": "ntune_t7"}
    raw, original = yaml.safe_load(written.read_text()), yaml.safe_load(UPSTREAM)
    assert (
        raw["plotting"] == original["plotting"] and raw["training"]["n_runs"] == 2
    )  # upstream-only leaves kept
    set_dotted(trial, "training.optimizer", "sgd")
    with pytest.raises(ConfigError, match="training.optimizer: has no upstream NeuralGraph name"):
        trial_config_text(spec, trial, {"trial_id": "t7"})


def test_the_ntune_config_is_the_trial_config() -> None:
    spec = TrainerConfigFile(set={"dataset": "run_{seed}"})
    text = trial_config_text(spec, TINY_RUN, {"seed": "3"})
    assert yaml.safe_load(text) == {**config_to_dict(config_from_dict(TINY_RUN)), "dataset": "run_3"}


def test_metrics_files_are_read_as_they_grow(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    reader = MetricsFile(path, "jsonl", NAMES)
    assert reader.poll() == [] and reader.result() is None  # no file yet
    path.write_text('{"R2": 0.5, "iteration": 1, "n_iterations": 4, "final": false}\n{"R2": 0.')
    assert reader.poll() == [
        {"connectivity_R2": 0.5, "iteration": 1, "n_iterations": 4, "final": False, "progress": 0.25}
    ]
    with path.open("a") as f:
        f.write('7, "cluster_acc": 1.0, "loss": NaN, "final": true}\n{"R2": 0.1}\n')
    assert [r["connectivity_R2"] for r in reader.poll()] == [0.7, 0.1]
    final = reader.result()
    assert final is not None and final["final"] is True and final["connectivity_R2"] == 0.7
    assert final["cluster_accuracy"] == 1.0 and math.isnan(final["loss"])

    log = "iteration 3\nconnectivity_R2: 0.25\nspectral radius: 1.5\ncluster_accuracy=0.75\nconnectivity_R2: 0.5\n"
    assert parse_key_value(log) == {"connectivity_R2": 0.5, "spectral radius": 1.5, "cluster_accuracy": 0.75}
    (tmp_path / "analysis.log").write_text(log)
    upstream = MetricsFile(tmp_path / "analysis.log", "key_value", {"spectral_radius": "spectral radius"})
    assert upstream.result() == {"connectivity_R2": 0.5, "cluster_accuracy": 0.75, "spectral_radius": 1.5}


def test_a_hanging_command_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """The runner alone (no Ray): the program and its child are gone right after the timeout."""
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**TINY_RUN, "simulation": {"connectivity_filling_factor": 0.25}})
    )
    env = dict(os.environ, NTUNE_TRIAL_DIR=str(tmp_path))
    start = time.monotonic()
    outcome = run_command(
        [sys.executable, str(SCRIPT), str(tmp_path / "config.yaml"), str(tmp_path / "m.jsonl")],
        cwd=tmp_path,
        env=env,
        timeout_s=1.5,
        metrics=MetricsFile(tmp_path / "m.jsonl", "jsonl", {}),
        on_progress=lambda m: None,
        stdout=tmp_path / "out.log",
        stderr=tmp_path / "err.log",
    )
    assert outcome.returncode is None and 1.5 <= outcome.seconds < 1.5 + 5 and time.monotonic() - start < 8
    _assert_gone(json.loads((tmp_path / "pids.json").read_text()))
    assert isinstance(outcome, Outcome) and stderr_tail(tmp_path / "err.log") == "(empty)"


def _wait_for_no_command(marker: str, timeout: float = 30.0) -> None:
    """Wait until no process runs the closed-form program with ``marker`` in its command line."""
    end = time.monotonic() + timeout
    while True:
        running = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if str(SCRIPT).encode() in args and any(marker.encode() in a for a in args):
                running.append(cmdline.parent.name)
        if not running:
            return
        assert time.monotonic() < end, f"commands still running: {running}"
        time.sleep(0.5)


def _assert_gone(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        status = Path(f"/proc/{pid}/status")
        state = status.read_text() if status.is_file() else ""
        assert "zombie" in state, f"process {pid} still runs"


# ---- studies on a real Ray -------------------------------------------------------------------------


def _tune_results(trial_dir: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(trial_dir) / "result.json").read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("max_failures", [0, 1])
def test_a_trial_whose_worker_is_killed_runs_again_with_max_failures(
    tmp_path: Path, ray_session: None, max_failures: int
) -> None:
    """The Ray worker of the one trial is SIGKILLed on the trial's first attempt (as the OOM killer
    would): with max_failures 0 the run is an error record, a failed repeat of its config; with 1, Ray
    runs the trial again and the journal holds its result only."""
    from rich.console import Console

    from ntune.cli.run import run_command as ntune_run

    marker = tmp_path / "killed_once"
    path = write_study(
        tmp_path / "lost.yaml",
        "lost",
        blocks={"simulation.connectivity_filling_factor": [KILL_FF]},
        n_iter_block=1,
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        max_failures=max_failures,
        trainer=_trainer(env={"KILL_MARKER": str(marker)}),
    )
    console = Console(record=True, width=160)
    assert ntune_run(path, console=console) == 0, console.export_text()
    assert marker.is_file()  # the worker was killed once
    (rec,), running = read_trials(tmp_path / "results" / "lost")
    assert running == {} and _complete_count(tmp_path / "results" / "lost") == 1
    if max_failures == 0:
        assert rec["status"] == "error" and rec["classification"] == "failed"
        assert "died" in rec["error"].lower() or "unavailable" in rec["error"].lower(), rec["error"]
    else:
        assert rec["status"] == "ok" and rec["error"] == ""
        assert rec["metrics"]["connectivity_R2"] == closed_form(rec["config"])["connectivity_R2"]


def _complete_count(exp_dir: Path) -> int:
    lines = (exp_dir / "trials.jsonl").read_text().splitlines()
    return sum(json.loads(line)["event"] == "complete" for line in lines)


@pytest.mark.integration
@pytest.mark.slow
def test_a_command_study_records_closed_form_metrics_errors_and_timeouts(
    tmp_path: Path, ray_session: None
) -> None:
    """Block 1.0 trains (its metrics stream in, then equal the closed form exactly); block 0.5's command
    exits 3 (the error record holds its stderr tail); block 0.25's hangs and is killed at its timeout.
    The study goes on to its end."""
    from rich.console import Console

    from ntune.cli.run import run_command as ntune_run

    path = write_study(
        tmp_path / "cmd.yaml",
        "cmd",
        blocks={"simulation.connectivity_filling_factor": [1.0, 0.5, 0.25]},
        block_trials={0.5: 1, 0.25: 1},
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        max_concurrent_trials=2,
        trainer=_trainer(timeout_min=0.05),
    )
    console = Console(record=True, width=160)
    start = time.monotonic()
    assert ntune_run(path, console=console) == 0, console.export_text()
    records, running = read_trials(tmp_path / "results" / "cmd")
    assert running == {} and Counter(r["block_value"] for r in records) == {1.0: 3, 0.5: 1, 0.25: 1}
    ok = [r for r in records if r["block_value"] == 1.0]
    for rec in ok:
        expected = closed_form(rec["config"])
        assert rec["status"] == "ok" and rec["error"] == ""
        assert rec["metrics"]["connectivity_R2"] == expected["connectivity_R2"]  # exactly
        assert rec["metrics"]["cluster_accuracy"] == expected["cluster_accuracy"]
        results = _tune_results(rec["trial_dir"])
        progress = [r["progress"] for r in results if not r["final"]]
        assert progress == pytest.approx([k / STEPS for k in range(1, STEPS)])  # streamed while it ran
        assert results[-1]["final"] and results[-1]["score"] == rec["score"]
        env = json.loads((Path(rec["trial_dir"]) / "env.json").read_text())
        assert env["OMP_NUM_THREADS"] == "1" and env["NTUNE_TRIAL_ID"] == rec["trial_id"]
        assert Path(env["cwd"]).name == Path(rec["trial_dir"]).name  # the trial's folder (Tune syncs it)
        assert Path(env["NTUNE_CONFIG"]).name == "config.yaml"
    best = max(ok, key=lambda r: r["score"])
    assert best["score"] == max(
        0.6 * min(max(c, 0), 1) + 0.4 * min(max(a, 0), 1)
        for c, a in (closed_form(r["config"]).values() for r in ok)
    )
    failed = next(r for r in records if r["block_value"] == 0.5)
    assert failed["status"] == "error" and "exited with code 3" in failed["error"]
    assert FAIL_MESSAGE in failed["error"] and "preparing step 29" in failed["error"]
    assert "preparing step 5\n" not in failed["error"]  # a tail, not the whole stderr
    hung = next(r for r in records if r["block_value"] == 0.25)
    assert hung["status"] == "error" and "killed at its timeout of 0.05 min" in hung["error"]
    _assert_gone(json.loads((Path(hung["trial_dir"]) / "pids.json").read_text()))
    print(f"\ncommand study (5 trials, one failing, one hanging): {time.monotonic() - start:.0f} s")


@pytest.mark.integration
@pytest.mark.slow
def test_python_m_ntune_train_as_the_command_gives_the_builtin_metrics(
    tmp_path: Path, ray_session: None
) -> None:
    """``python -m ntune train`` through the command path: its progress streams in, and the trial's metrics are
    those of the built-in trainer (``fit``) on the same config and seed."""
    import torch
    from rich.console import Console

    from ntune.cli.run import run_command as ntune_run
    from ntune.data.load import load_or_simulate
    from ntune.learn.train import fit

    command = [
        "{python}",
        "-m",
        "ntune",
        "train",
        "{config}",
        "--out",
        "{trial_dir}",
        "--metrics-jsonl",
        "{metrics}",
    ]
    path = write_study(
        tmp_path / "train.yaml",
        "train",
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        n_iter_block=1,
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        trainer={"command": command, "timeout_min": 5},
    )
    console = Console(record=True, width=160)
    start = time.monotonic()
    assert ntune_run(path, console=console) == 0, console.export_text()
    elapsed = time.monotonic() - start
    [rec], running = read_trials(tmp_path / "results" / "train")
    assert rec["status"] == "ok" and running == {} and (Path(rec["trial_dir"]) / "W_scatter.png").is_file()
    progress = [r["progress"] for r in _tune_results(rec["trial_dir"]) if not r["final"]]
    assert len(progress) == TINY_RUN["training"]["n_log_points"] and progress[-1] == 1.0
    torch.set_num_threads(1)  # as the command's OMP_NUM_THREADS (resources.cpu 1)
    cfg = config_from_dict(rec["config"])
    builtin = fit(cfg, load_or_simulate(cfg.simulation)).metrics
    for key in RECORD_METRICS:
        if key != "training_time_min":
            assert rec["metrics"][key] == pytest.approx(builtin[key], rel=0, abs=0, nan_ok=True), key
    print(f"\nntune train as a command (1 trial): {elapsed:.0f} s")


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_command_study_resumes(tmp_path: Path, ray_session: None) -> None:
    """The closed-form program (key: value metrics), ``ntune run`` killed (SIGKILL) after its first completion
    and run again: it resumes, and the final journal has every trial once, with the closed-form metrics."""
    import ray
    from test_study_integration import _interrupt, _ntune_run

    address = ray.get_runtime_context().gcs_address
    path = write_study(
        tmp_path / "resumed.yaml",
        "resumed",
        blocks={"simulation.connectivity_filling_factor": [1.0]},
        storage_path=str(tmp_path / "results"),
        data_limited={"check": False},
        max_concurrent_trials=2,
        trainer=_trainer("key_value"),
    )
    exp_dir = tmp_path / "results" / "resumed"
    start = time.monotonic()
    out = _interrupt(path, exp_dir, address, signal.SIGKILL, 1)
    assert len(read_trials(exp_dir)[0]) < 3, out
    _wait_for_no_command(f"/{exp_dir.name}/")  # Ray ended the killed driver's trials, and their commands
    last = _ntune_run(path, address)
    out += last.communicate(timeout=300)[0]
    assert last.returncode == 0 and "resuming experiment" in out, out
    records, running = read_trials(exp_dir)
    assert len(records) == 3 and running == {}, out
    text = (exp_dir / "analysis.md").read_text()
    ids = [line.split()[1] for line in text.splitlines() if line.startswith("Trial: ")]
    assert sorted(ids) == sorted(r["trial_id"] for r in records), "every trial exactly once in analysis.md"
    for rec in records:
        assert rec["status"] == "ok"
        assert rec["metrics"]["connectivity_R2"] == closed_form(rec["config"])["connectivity_R2"]
    print(f"\nkilled and resumed command study (3 trials): {time.monotonic() - start:.0f} s")
