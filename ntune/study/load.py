"""Loading a study file: its base config resolved, and every key and value checked against it.

A study is checked completely before Ray starts: unknown keys, bad values, and search-space or block
keys that are not real fields of the base :class:`~ntune.config.NtuneConfig` (each domain bound,
choice and block value is set into the base config and validated) all raise a
:class:`~ntune.config.ConfigError` naming the field. This module imports no Ray.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ntune.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    format_validation_error,
    get_dotted,
    set_dotted,
)
from ntune.data.simulate import check_trainable
from ntune.study.config import CONFIG_SECTIONS, StudyConfig
from ntune.yamlio import parse_overrides, read_yaml


def _domain_samples(dom: dict[str, Any]) -> list[Any]:
    """Values a domain can take that every field must accept (bounds, choices, 0 when allowed)."""
    if dom["type"] == "choice":
        return list(dom["values"])
    samples = [dom["low"], dom["high"]]
    if dom["type"] == "int":
        samples = [int(x) for x in samples]
    if dom.get("allow_zero"):
        samples.append(0.0)
    return samples


def _check_key(base: dict[str, Any], where: str, key: str, values: list[Any]) -> None:
    """Set each value at ``key`` in the base config and validate; names ``where`` on failure."""
    if key.split(".")[0] not in CONFIG_SECTIONS:
        raise ConfigError(
            f"{where}: {key!r} is not a config field; it must start with {', '.join(CONFIG_SECTIONS[:3])}"
        )
    if get_dotted(base, key, default=_MISSING) is _MISSING:
        raise ConfigError(f"{where}: {key!r} is not a field of the base config")
    for value in values:
        trial = copy.deepcopy(base)
        set_dotted(trial, key, value)
        try:
            config_from_dict(trial)
        except ConfigError as err:
            raise ConfigError(f"{where}: value {value!r} is not valid for {key}: {err}") from None


_MISSING = object()


def resolve_base(study: StudyConfig, study_dir: Path) -> dict[str, Any]:
    """The complete base config (defaults filled, ``set`` overrides applied) as a plain dict."""
    if isinstance(study.base, dict):
        data: Any = study.base
        where = "base"
    else:
        path = Path(study.base)
        path = path if path.is_absolute() else study_dir / path
        where = f"base ({path})"
        try:
            data = read_yaml(path)
        except ConfigError as err:
            raise ConfigError(f"base: {err}") from None
    try:
        return config_to_dict(config_from_dict(data, study.set))
    except ConfigError as err:
        raise ConfigError(f"{where}:\n{err}") from None


def study_from_dict(
    data: Any, study_dir: Path, overrides: list[str] | None = None
) -> tuple[StudyConfig, dict]:
    """Validate a study mapping; returns the study and its resolved base config dict.

    ``overrides`` (``a.b=c``) whose first part is a study field (``n_iter_block=4``,
    ``resources.cpu=2``) change the study; those starting with a config section
    (``training.n_epochs=1``) are appended to its ``set`` list.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a study must be a mapping of fields, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key.split(".")[0] in CONFIG_SECTIONS:
            parse_overrides([item])
            data["set"] = list(data.get("set") or []) + [item]
        else:
            for okey, value in parse_overrides([item]):
                set_dotted(data, okey, value)
    try:
        study = StudyConfig.model_validate(data, context={"study_dir": study_dir})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, StudyConfig, data)) from None
    base = resolve_base(study, study_dir)
    check_trainable(config_from_dict(base).simulation)
    for key, dom in study.space.items():
        _check_key(base, f"space.{key}", key, _domain_samples(dom))
    _check_key(base, f"blocks.{study.block_key}", study.block_key, study.block_values)
    if study.block_key in study.space:
        raise ConfigError(f"space.{study.block_key}: the block key cannot also be searched")
    if study.instance_key in (study.block_key, *study.space):
        raise ConfigError(
            f"repeats_vary: instance varies {study.instance_key}, which this study also uses as its "
            "block key or searches; set repeats_vary: seed"
        )
    _check_block_set(study, base)
    return study, base


def _check_block_set(study: StudyConfig, base: dict[str, Any]) -> None:
    """Each ``block_set`` entry names a block value and valid overrides of other keys than the block key;
    each ``block_trials`` entry a block value and a budget > 0."""
    for value, n in study.block_budgets().items():
        if value not in study.block_values:
            raise ConfigError(
                f"block_trials.{value}: {value!r} is not a block value; the block values are {study.block_values}"
            )
        if n < 1:
            raise ConfigError(f"block_trials.{value}: {n} trials; a block needs at least 1")
    for value, changes in study.block_overrides().items():
        where = f"block_set.{value}"
        if value not in study.block_values:
            raise ConfigError(
                f"{where}: {value!r} is not a block value; the block values are {study.block_values}"
            )
        for key, new in changes.items():
            if key == study.block_key:
                raise ConfigError(f"{where}: {key!r} is the block key; blocks.{key} sets it")
            _check_key(base, f"{where}", key, [new])


def load_study(path: str | Path, overrides: list[str] | None = None) -> tuple[StudyConfig, dict]:
    """Load and validate a study YAML; errors name the file and the field."""
    path = Path(path)
    data = read_yaml(path)  # its errors name the file already
    try:
        return study_from_dict(data, path.resolve().parent, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}:\n{err}") from None


def relocated(study: StudyConfig, name: str | None = None, storage: str | None = None) -> StudyConfig:
    """``study`` under another ``name`` and/or ``storage_path`` (``--name`` / ``--storage``), validated."""
    if not (name or storage):
        return study
    update = {"name": name or study.name, "storage_path": storage or study.storage_path}
    try:
        return StudyConfig.model_validate({**study.model_dump(), **update})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, StudyConfig)) from None
