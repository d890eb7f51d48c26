"""The Tune trial of a study with a command trainer (``trainer:`` in the study, :mod:`ntune.study.trainer`).

Each trial writes its config file, starts the command in its own process group (its working directory,
the trial worker's environment, so CUDA_VISIBLE_DEVICES as Ray set it, plus OMP_NUM_THREADS = the
trial's threads), follows the metrics file while the command runs and reports each new evaluation to
Tune (``status --watch``, the dashboard and early stopping see them), then reports the final metrics,
judged like any trial's. A non-zero exit, the timeout (the whole process group is killed) or missing
metrics raise :class:`CommandFailed` with the tail of the command's stderr, so Tune records the trial as
an error and the journal's error record holds the tail; the study goes on. A command that exits
non-zero after writing a final result with status ``diverged`` (``ntune train`` exits 1) is a diverged
run, not an error. Should the trial's worker die, Linux kills the command with it (parent-death signal).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ntune.config import config_from_dict, dump_config
from ntune.study.config import StudyConfig
from ntune.study.records import SEARCH_KEY
from ntune.study.trainer import (
    CommandTrainer,
    ntune_metrics,
    parse_jsonl,
    parse_key_value,
    render,
    trial_config_text,
)
from ntune.tune.observe import TrialMetrics

POLL_S = 0.25  # seconds between looks at the metrics file and the process
KILL_GRACE_S = 5.0  # seconds between SIGTERM and SIGKILL of a timed-out process group
TAIL_LINES = 20  # stderr lines an error carries
TAIL_CHARS = 1200  # ... at most this many characters (the journal keeps the error's last 2000)
TAIL_CMD = 300  # characters of the command line an error shows
# run by the child before the command: die with the parent (Linux), then become the command
_EXEC = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(137)\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as err:\n"
    "    sys.exit(f'ntune: cannot run {sys.argv[2]!r}: {err.strerror}')\n"
)

Judge = Callable[[Mapping[str, Any]], dict[str, Any]]


class CommandFailed(RuntimeError):
    """The command exited non-zero, ran past its timeout, or left no usable metrics; the message ends with
    the tail of its stderr."""


@dataclass
class MetricsFile:
    """The command's metrics file, read as it grows: new evaluations while it runs, the result at the end."""

    path: Path
    format: str
    names: Mapping[str, str]
    _offset: int = 0
    _stamp: tuple[float, int] = (0.0, -1)
    rows: list[dict[str, Any]] = field(default_factory=list)  # every evaluation read, in order

    def poll(self) -> list[dict[str, Any]]:
        """The evaluations written since the last call (complete lines only), as ntune metrics."""
        if not self.path.is_file():
            return []
        if self.format == "jsonl":
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(whole)
            new = [ntune_metrics(r, self.names) for r in parse_jsonl(whole.decode(errors="replace"))]
        else:
            st = self.path.stat()
            if (st.st_mtime, st.st_size) == self._stamp:
                return []
            self._stamp = (st.st_mtime, st.st_size)
            row = ntune_metrics(parse_key_value(self.path.read_text(errors="replace")), self.names)
            new = [row] if row and (not self.rows or row != self.rows[-1]) else []
        self.rows += new
        return new

    def result(self) -> dict[str, Any] | None:
        """After the command exited: its last evaluation marked final, else its last one (None: none)."""
        if self.path.is_file() and self.format == "jsonl":
            rest = self.path.read_bytes()[self._offset :]
            self.rows += [ntune_metrics(r, self.names) for r in parse_jsonl(rest.decode(errors="replace"))]
            self._offset += len(rest)
        elif self.path.is_file():
            row = ntune_metrics(parse_key_value(self.path.read_text(errors="replace")), self.names)
            self.rows += [row] if row else []
        rows = [r for r in self.rows if r.get("final") is True] or self.rows
        return dict(rows[-1]) if rows else None


@dataclass
class Outcome:
    """How the command ended: exit code (None: killed at its timeout), seconds it ran."""

    returncode: int | None
    seconds: float


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float | None,
    metrics: MetricsFile,
    on_progress: Callable[[dict[str, Any]], None],
    stdout: Path,
    stderr: Path,
) -> Outcome:
    """Run ``argv`` in its own process group, its output in ``stdout`` / ``stderr``; each new evaluation in
    ``metrics`` that is not final goes to ``on_progress``. Past ``timeout_s`` the group gets SIGTERM, then
    SIGKILL; whatever ends this call, no process of the group is left."""
    start = time.monotonic()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXEC, str(os.getpid()), *argv],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            while proc.poll() is None:
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    _kill_group(proc)
                    return Outcome(None, time.monotonic() - start)
                for row in metrics.poll():
                    if row.get("final") is not True:
                        on_progress(row)
                time.sleep(POLL_S)
            return Outcome(proc.returncode, time.monotonic() - start)
        finally:
            _kill_group(proc, grace=0.0)


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group of ``proc`` (its leader's pid), wait ``grace`` s for the leader, then SIGKILL
    whatever is left of the group and reap the leader."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        if sig == signal.SIGTERM and not grace:
            continue
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def stderr_tail(path: Path) -> str:
    """The last TAIL_LINES lines of a file (at most TAIL_CHARS characters); "(empty)" when there are none."""
    if not path.is_file():
        return "(no stderr file)"
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 8 * TAIL_CHARS))
        text = f.read().decode(errors="replace")
    lines = [line.rstrip() for line in text.splitlines() if line.strip()][-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:] or "(empty)"


@dataclass(frozen=True)
class TrialFiles:
    """A trial's rendered paths and placeholder values."""

    cwd: Path
    config: Path
    metrics: Path
    values: dict[str, str]


def trial_files(trainer: CommandTrainer, trial_dir: Path, trial_id: str, seed: int) -> TrialFiles:
    """The trial's working directory, config and metrics paths (relative ones under the working directory)
    and the values of every placeholder."""
    values = {"trial_dir": str(trial_dir), "trial_id": trial_id, "seed": str(seed), "python": sys.executable}
    cwd = Path(render(trainer.cwd, values)) if trainer.cwd else trial_dir
    cwd = cwd if cwd.is_absolute() else trial_dir / cwd
    config = cwd / render(trainer.config.default_path, values)
    values |= {"config": str(config), "config_name": config.stem}
    metrics = cwd / render(trainer.metrics.file, values)
    return TrialFiles(cwd, config, metrics, values | {"metrics": str(metrics)})


def command_environment(trainer: CommandTrainer, files: TrialFiles, threads: int) -> dict[str, str]:
    """The command's environment: the trial worker's, thread limits, the trial's paths, ``trainer.env``."""
    env = dict(os.environ)
    env |= {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env |= {
        "NTUNE_TRIAL_DIR": files.values["trial_dir"],
        "NTUNE_TRIAL_ID": files.values["trial_id"],
        "NTUNE_CONFIG": str(files.config),
        "NTUNE_METRICS": str(files.metrics),
    }
    return env | {k: render(v, files.values) for k, v in trainer.env.items()}


def final_metrics(
    trainer: CommandTrainer, outcome: Outcome, row: dict[str, Any] | None, required: list[str]
) -> dict[str, Any]:
    """The command's final metrics with ``final``, ``status``, ``progress`` and ``training_time_min`` filled in;
    raises :class:`CommandFailed` (without the stderr tail, added by the caller) when the run is not a result."""
    timeout = trainer.timeout_min
    if outcome.returncode is None:
        raise CommandFailed(
            f"killed at its timeout of {timeout:g} min (timeout_min) after {outcome.seconds:.1f} s"
        )
    diverged = row is not None and row.get("status") == "diverged"
    if outcome.returncode != 0 and not diverged:
        raise CommandFailed(f"exited with code {outcome.returncode} after {outcome.seconds:.1f} s")
    where = f"{trainer.metrics.format} file"
    if row is None:
        raise CommandFailed(f"exited {outcome.returncode} but its {where} holds no metrics")
    missing = [m for m in required if m not in row]
    if missing and not diverged:
        names = ", ".join(f"{m} (read as {trainer.metrics.names.get(m, m)!r})" for m in missing)
        raise CommandFailed(f"exited {outcome.returncode} but its {where} has no {names}")
    status = row.get("status") if row.get("status") in ("ok", "diverged") else "ok"
    out = {**row, "final": True, "status": status}
    out.setdefault("training_time_min", outcome.seconds / 60.0)
    out.setdefault("progress", 1.0 if status == "ok" else math.nan)
    return out


def make_command_trial(study: StudyConfig, judge: Judge) -> Callable[[dict[str, Any]], None]:
    """The Tune function of one trial of ``study`` (which has a ``trainer``): write the config, run the
    command, report its evaluations and its final metrics (``judge``: the study's judgement of metrics,
    :func:`ntune.tune.trainable.judged`), write config.yaml and metrics.json in the trial folder."""
    trainer = study.trainer
    assert trainer is not None, "a study without trainer trains with ntune's trainer"
    study_name, threads = study.name, study.threads
    required = list(study.objective.weights)

    def command_trial(config: dict[str, Any]) -> None:
        import ray
        from ray import tune

        config = dict(config)
        search = dict(config.pop(SEARCH_KEY, None) or {})
        cfg = config_from_dict(config)
        trial_dir = Path(tune.get_context().get_storage().trial_working_directory)
        trial_dir.mkdir(parents=True, exist_ok=True)
        trial_id = tune.get_context().get_trial_id()
        tags = {
            "block": str(search.get("block", "")),
            "node": int(search.get("node", -1)),
            "strategy": str(search.get("strategy", "")),
            "trial_dir": str(trial_dir),
            "ray_node_id": ray.get_runtime_context().get_node_id(),
        }
        watch = TrialMetrics(study_name, search, trial_id, _echo)
        files = trial_files(trainer, trial_dir, trial_id, cfg.training.seed)
        files.cwd.mkdir(parents=True, exist_ok=True)
        files.config.parent.mkdir(parents=True, exist_ok=True)
        files.config.write_text(trial_config_text(trainer.config, config, files.values))
        dump_config(cfg, trial_dir / "config.yaml")  # the trial's ntune config, as every trial has
        files.metrics.unlink(missing_ok=True)  # a resumed trial must not read its killed run's metrics
        files.metrics.parent.mkdir(parents=True, exist_ok=True)
        argv = [render(a, files.values) for a in trainer.command]
        _echo(f"{watch.label} | command: {shlex.join(argv)} (in {files.cwd})")

        def report(m: dict[str, Any]) -> None:
            result = {**judge(m), **tags}
            tune.report(result)
            watch.update(result)

        reader = MetricsFile(files.metrics, trainer.metrics.format, trainer.metrics.names)
        stderr = trial_dir / "stderr.log"
        outcome = run_command(
            argv,
            cwd=files.cwd,
            env=command_environment(trainer, files, threads),
            timeout_s=None if trainer.timeout_min is None else trainer.timeout_min * 60.0,
            metrics=reader,
            on_progress=lambda m: report({**m, "final": False, "status": "running"}),
            stdout=trial_dir / "stdout.log",
            stderr=stderr,
        )
        try:
            metrics = final_metrics(trainer, outcome, reader.result(), required)
        except CommandFailed as err:
            command = shlex.join(argv)
            command = command if len(command) <= TAIL_CMD else f"{command[: TAIL_CMD - 3]}..."
            raise CommandFailed(
                f"command: {command}\nthe command {err}; stderr ({stderr}), last lines:\n{stderr_tail(stderr)}"
            ) from None
        final = {**judge(metrics), **tags}
        watch.update(final)
        (trial_dir / "metrics.json").write_text(json.dumps(final, indent=2, default=str))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "metrics.json").write_text(json.dumps(final, default=str))
            tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))

    return command_trial


def _echo(line: str) -> None:
    """A line of the trial's log (its worker's stdout: the actor's Log link in the dashboard)."""
    print(line, flush=True)
