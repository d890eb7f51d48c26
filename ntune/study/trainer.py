"""A study's ``trainer`` section: each trial runs the user's own training command instead of ntune's trainer.

The contract between ntune and the command is two files. Before the command starts, ntune writes the
trial's config (:func:`trial_config_text`): ntune's YAML, or the user's upstream NeuralGraph template
with the trial's values under upstream names (:func:`ntune.upstream.upstream_values`, the table the
``export --format upstream`` uses; a field upstream has no name for is refused). While it runs and when
it exits, ntune reads its metrics file (:func:`parse_jsonl`, :func:`parse_key_value`), with the user's
metric names mapped onto ntune's (:func:`ntune_metrics`). Strings of the section may hold placeholders
(:data:`PLACEHOLDERS`, written ``{name}``; ``{{`` and ``}}`` are literal braces), checked when the study
is loaded. Running the command is :mod:`ntune.tune.command`'s job. No Ray.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ntune.config import ConfigError, FiniteFloat, config_from_dict, config_to_dict, dump_config, set_dotted
from ntune.learn.metrics import REPORTED_METRICS
from ntune.upstream import fill_template, import_upstream, leaves, upstream_names, upstream_values

PLACEHOLDERS = {
    "trial_dir": "the trial's folder (absolute)",
    "trial_id": "Tune's id of the trial",
    "seed": "the trial's training.seed",
    "python": "the Python interpreter that runs ntune's trials",
    "config": "the trial's config file (config.path, absolute)",
    "config_name": "that file's name without its suffix",
    "metrics": "the metrics file (metrics.file, absolute)",
}
TRIAL = ("trial_dir", "trial_id", "seed", "python")  # known before any file is named
CONFIG = (*TRIAL, "config", "config_name")  # known once the config file is named
ALL = tuple(PLACEHOLDERS)
COMPUTED = ("classification", "data_limited")  # judged by ntune from the others, never read
MAPPABLE = tuple(k for k in REPORTED_METRICS if k not in COMPUTED)


def placeholders(text: str) -> list[str]:
    """The placeholder names of ``text`` in order; ValueError for a malformed one or a format spec."""
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as err:
        raise ValueError(f"{text!r}: {err} (write a literal brace as '{{{{' or '}}}}')") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{text!r}: placeholder {{{name}}} takes no format spec or conversion")
        names.append(name)
    return names


def check_placeholders(texts: Iterable[str], allowed: tuple[str, ...], where: str = "") -> None:
    """ValueError naming the unknown placeholder of any of ``texts`` (and ``where``: a key) and the valid ones."""
    for text in texts:
        for name in placeholders(text):
            if name not in allowed:
                valid = ", ".join(f"{{{a}}}" for a in allowed)
                head = f"{where}: " if where else ""
                raise ValueError(f"{head}unknown placeholder {{{name}}} in {text!r}; valid here: {valid}")


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its placeholders replaced by ``values`` (checked at load time: all are known)."""
    return text.format_map(dict(values))


def _absolute(text: str, info: ValidationInfo) -> str:
    """A relative path made absolute against the study file's folder (the validation context's
    ``study_dir``, as ``base`` is), else the working directory; a path starting with a placeholder
    (``{trial_dir}/...``) is left as it is."""
    if text.startswith("{") or Path(text).is_absolute():
        return text
    study_dir = (info.context or {}).get("study_dir")
    return str((Path(study_dir) if study_dir else Path.cwd()) / text)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainerConfigFile(_Model):
    """The file each trial's config is written to before its command starts."""

    format: Literal["ntune", "upstream"] = Field(
        "ntune",
        description="'ntune' (ntune's run config YAML) or 'upstream' (the template with the trial's values under "
        "upstream NeuralGraph names; fields without an upstream name are refused).",
    )
    path: str | None = Field(
        None,
        description="Where the file is written (placeholders {trial_dir}, {trial_id}, {seed}, {python}; relative "
        "to cwd); default {trial_dir}/config.yaml (ntune) or {trial_dir}/upstream_config.yaml (upstream).",
    )
    template: str | None = Field(
        None,
        description="format upstream: the user's upstream YAML the trial's values are written into (relative to "
        "the study file's folder, as base is).",
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Leaves set in the written file after the trial's values: dotted name (an upstream name with "
        "format upstream) -> value; strings may hold placeholders, e.g. {dataset: 'ntune_{trial_id}'}.",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str | None) -> str | None:
        check_placeholders([v] if v else [], TRIAL)
        return v

    @field_validator("set")
    @classmethod
    def _check_set(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            check_placeholders([value] if isinstance(value, str) else [], TRIAL, key)
        return v

    @model_validator(mode="after")
    def _check_template(self, info: ValidationInfo) -> TrainerConfigFile:
        if self.format == "ntune":
            if self.template is not None:
                raise ValueError(
                    "template is read with format upstream only; remove it or set format: upstream"
                )
            return self
        if self.template is None:
            raise ValueError("format upstream needs template: the upstream NeuralGraph YAML to write into")
        self.template = _absolute(self.template, info)
        import_upstream(self.template)  # readable, and a signal config ntune understands
        return self

    @property
    def default_path(self) -> str:
        """``path``, else the default file name of the format in the trial folder."""
        name = "config.yaml" if self.format == "ntune" else "upstream_config.yaml"
        return self.path or f"{{trial_dir}}/{name}"


class TrainerMetrics(_Model):
    """The file the command writes its metrics to, and how ntune reads it."""

    file: str = Field(
        "{trial_dir}/metrics.jsonl",
        description="The metrics file (placeholders {trial_dir}, {trial_id}, {seed}, {python}, {config}, "
        "{config_name}; relative to cwd); removed before the command starts.",
    )
    format: Literal["jsonl", "key_value"] = Field(
        "jsonl",
        description="'jsonl' (one JSON object per evaluation; the last with \"final\": true, or the last at "
        "exit, is the result) or 'key_value' (lines 'name: value' or 'name=value', upstream's analysis.log; "
        "the last value of a name counts).",
    )
    names: dict[str, str] = Field(
        default_factory=dict,
        description="ntune metric -> its name in the file, e.g. {connectivity_R2: R2}; other ntune names are "
        "read as they are.",
    )

    @field_validator("file")
    @classmethod
    def _check_file(cls, v: str) -> str:
        check_placeholders([v], CONFIG)
        return v

    @field_validator("names")
    @classmethod
    def _check_names(cls, v: dict[str, str]) -> dict[str, str]:
        for metric, name in v.items():
            if metric not in MAPPABLE:
                raise ValueError(f"unknown ntune metric {metric!r}; valid: {', '.join(MAPPABLE)}")
            if not name.strip():
                raise ValueError(f"{metric}: an empty name")
        if len(set(v.values())) != len(v):
            raise ValueError(f"two metrics read from one name: {v}")
        return v


class CommandTrainer(_Model):
    """Each trial runs ``command`` (with the trial's Ray resources) instead of ntune's trainer."""

    command: list[str] = Field(
        ...,
        min_length=1,
        description="The program and its arguments, e.g. [python, GNN_Main.py, -o, train, '{config_name}'] "
        "(placeholders: all of {trial_dir}, {trial_id}, {seed}, {python}, {config}, {config_name}, {metrics}).",
    )
    cwd: str | None = Field(
        None,
        description="Working directory of the command (placeholders {trial_dir}, {trial_id}, {seed}, {python}; "
        "relative to the study file's folder, as base is); default the trial folder.",
    )
    config: TrainerConfigFile = Field(default_factory=TrainerConfigFile)
    metrics: TrainerMetrics = Field(default_factory=TrainerMetrics)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables added for the command (values may hold every placeholder); it also "
        "gets the trial worker's (CUDA_VISIBLE_DEVICES as Ray set it), OMP_NUM_THREADS and NTUNE_TRIAL_DIR, "
        "NTUNE_TRIAL_ID, NTUNE_CONFIG, NTUNE_METRICS.",
    )
    timeout_min: FiniteFloat | None = Field(
        None,
        gt=0,
        description="Minutes after which the command's process group is killed and the trial is an error "
        "(> 0; none: no limit).",
    )

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: list[str]) -> list[str]:
        check_placeholders(v, ALL)
        if not v[0].strip():
            raise ValueError("the program name is empty")
        return v

    @field_validator("cwd")
    @classmethod
    def _check_cwd(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        check_placeholders([v], TRIAL)
        return _absolute(v, info)

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_placeholders([value], ALL, key)
        return v


def _with_study(trainer: CommandTrainer | None, info: ValidationInfo) -> CommandTrainer | None:
    """Checks against the study's other fields (those declared before ``trainer``)."""
    if trainer is None:
        return None
    data = info.data
    population, resources = data.get("population"), data.get("resources")
    gpu = getattr(resources, "gpu", 0.0)
    if (isinstance(population, int) and population > 1) or (population == "auto" and gpu > 0):
        raise ValueError(
            f"a command trainer trains one config per Tune trial, but population {population!r} packs several"
            + (" when trials have a GPU" if population == "auto" else "")
            + "; set population: 1"
        )
    if trainer.config.format == "upstream":
        keys = [*data.get("blocks", {}), *data.get("space", {})]
        missing = [k for k in keys if not upstream_names(k)]
        if missing:
            raise ValueError(
                f"config.format upstream: {', '.join(missing)} has no upstream NeuralGraph name, so a trial's "
                "value cannot be written into the template; search and block on fields upstream shares "
                "(ntune config import lists them) or use config.format: ntune"
            )
    return trainer


TrainerField = Annotated[CommandTrainer | None, AfterValidator(_with_study)]
"""The study field's type: a command trainer (or none: ntune's trainer), checked against the study."""


# ---- the files the command and ntune exchange -------------------------------------------------------


def trial_config_text(spec: TrainerConfigFile, config: dict[str, Any], values: Mapping[str, str]) -> str:
    """The text of a trial's config file in ``spec.format`` for the trial's ntune ``config`` (a plain dict);
    ``values`` fill the placeholders of ``spec.set``.

    upstream: the template with every field where ``config`` differs from the template's own import,
    written under its upstream name, then ``spec.set``; raises :class:`~ntune.config.ConfigError` naming a
    field upstream has no name for. The template's other lines stay as written, comments included
    (:func:`ntune.upstream.fill_template`).
    """
    extra = {k: render(v, values) if isinstance(v, str) else v for k, v in spec.set.items()}
    if spec.format == "ntune":
        data = config_to_dict(config_from_dict(config))
        for key, value in extra.items():
            set_dotted(data, key, value)
        try:
            return dump_config(config_from_dict(data))
        except ConfigError as err:
            raise ConfigError(f"trainer.config.set: {err}") from None
    assert spec.template is not None  # checked at load time
    text = Path(spec.template).read_text()
    template = yaml.safe_load(text) or {}
    imported = leaves(config_to_dict(import_upstream(spec.template)[0]))
    trial = leaves(config_to_dict(config_from_dict(config)))
    changed = {k: v for k, v in trial.items() if imported.get(k, _ABSENT) != v}
    try:
        written = upstream_values(changed, template)
    except ConfigError as err:
        raise ConfigError(
            f"trainer.config: the trial differs from the template's import ({spec.template}) on a field "
            f"upstream cannot hold:\n{err}"
        ) from None
    return fill_template(text, {**written, **extra})[0]


_ABSENT = object()


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a jsonl text, one per line; blank lines and lines that are not one object
    (a line cut by a running writer) are skipped."""
    out = []
    for line in text.splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def parse_key_value(text: str) -> dict[str, Any]:
    """``name: value`` / ``name=value`` lines (upstream's analysis.log): name -> the last number given, and
    ``status`` as text; every other line is ignored."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        cut = min((i for i in (line.find(":"), line.find("=")) if i > 0), default=-1)
        if cut < 0:
            continue
        name, value = line[:cut].strip(), line[cut + 1 :].strip()
        if name == "status":
            out[name] = value
            continue
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def ntune_metrics(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The ntune metrics of one row of the command's metrics: ``names`` (ntune -> the command's name)
    mapped, other ntune names taken as they are, everything else left out; ``progress`` from
    ``iteration / n_iterations`` when the row has those but no progress."""
    out = {k: row[k] for k in MAPPABLE if k in row and k not in names}
    out.update({k: row[n] for k, n in names.items() if n in row})
    if "progress" not in out and "iteration" in out and "n_iterations" in out:
        try:
            out["progress"] = float(out["iteration"]) / float(out["n_iterations"])
        except (TypeError, ValueError, ZeroDivisionError):
            out["progress"] = math.nan
    return out
