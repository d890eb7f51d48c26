"""The experiment folder of ``ntune run``: checked before Ray starts, created, or reopened to resume.

A folder is resumed only when it holds an experiment of the same study (``study.json`` compared without
the fields that say where it lives or how long it may run); with object storage the folder is the
driver's mirror of the remote experiment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from ntune.config import ConfigError, config_from_dict
from ntune.study.config import StudyConfig
from ntune.study.info import read_info
from ntune.study.storage import JOURNAL_DIRS, JOURNAL_FILES, TUNE_STATE, Remote

# study fields that say where the experiment lives or how long it may run, not what it is
UNCOMPARED = ("name", "storage_path", "time_budget_h")


def comparable(info: dict[str, Any]) -> dict[str, Any]:
    """A study.json as the current version reads it (fields added since filled with their defaults),
    without the ``UNCOMPARED`` fields."""
    study, base = info["study"], info.get("base")
    try:
        study = StudyConfig.model_validate(study).model_dump(mode="json")
        base = config_from_dict(base).model_dump(mode="json") if base is not None else None
    except (ValueError, ConfigError):
        pass  # compared as written: a field this version no longer has makes it another study
    return {**info, "study": {k: v for k, v in study.items() if k not in UNCOMPARED}, "base": base}


def check_dir(exp_dir: Path, info: dict[str, Any], fresh: bool) -> None:
    """Raise when the experiment folder cannot be used; changes nothing (called before Ray starts)."""
    from ray import tune

    ours = (exp_dir / "study.json").is_file() or (exp_dir / "tuner.pkl").is_file()
    if exp_dir.exists() and any(exp_dir.iterdir()) and not ours:
        raise ConfigError(
            f"{exp_dir} exists and is not an ntune experiment; choose another --name or --storage"
        )
    if not fresh and exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        old = read_info(exp_dir) if (exp_dir / "study.json").is_file() else None
        if old is not None and comparable(old) != comparable(json.loads(json.dumps(info))):
            raise ConfigError(
                f"{exp_dir} holds an experiment of a different study; resume it with its own settings, "
                "or pass --fresh (start over) or --name (another experiment)"
            )


def pull_mirror(exp_dir: Path, remote: Remote) -> None:
    """A run on object storage: the driver's mirror folder, emptied, then the experiment's journal files
    and Tune's ``tuner.pkl`` (so the checks below see what a local folder would show)."""
    if exp_dir.exists():
        shutil.rmtree(exp_dir)
    remote.check()
    try:
        remote.pull(exp_dir, (*JOURNAL_FILES, TUNE_STATE), JOURNAL_DIRS)
    except OSError as err:
        raise ConfigError(f"storage_path: cannot read {remote.uri} ({err})") from None


def _keep_budget(exp_dir: Path, info: dict[str, Any], remote: Remote | None) -> None:
    """A resumed study.json takes the run's ``time_budget_h`` (the one study field a resume may change
    besides where the experiment lives), before any journal reads it."""
    path = exp_dir / "study.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    budget = info["study"].get("time_budget_h")
    if old["study"].get("time_budget_h") != budget:
        old["study"]["time_budget_h"] = budget
        path.write_text(json.dumps(old, indent=2))
        if remote is not None:
            remote.push(exp_dir, ("study.json",), ())


def prepare_dir(
    exp_dir: Path, info: dict[str, Any], fresh: bool, console: Console, remote: Remote | None = None
) -> bool:
    """Create or check the experiment folder; True when an earlier run of it will be resumed.

    With a ``remote``, ``exp_dir`` is its mirror: what is deleted here is deleted there too, and the new
    ``study.json`` is copied up.
    """
    from ray import tune

    check_dir(exp_dir, info, fresh)
    if fresh and exp_dir.exists():
        shutil.rmtree(exp_dir)
        if remote is not None:
            remote.delete()
    if exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
        where = remote.uri if remote is not None else exp_dir
        console.print(f"resuming experiment {where} (pass --fresh to start over)")
        _keep_budget(exp_dir, info, remote)
        return True
    if exp_dir.exists():
        console.print(
            f"{exp_dir} has no Tune state to resume (the driver stopped before it saved any); starting over"
        )
        shutil.rmtree(exp_dir)
        if remote is not None:
            remote.delete()
    exp_dir.mkdir(parents=True)
    (exp_dir / "study.json").write_text(json.dumps(info, indent=2))
    if remote is not None:
        remote.push(exp_dir)
    return False
