"""``ntune export --format upstream``: each block's best config written into the user's upstream YAML.

The template (an upstream NeuralGraph signal_N2 YAML) is copied once per block with every searched
field, the block field and the block's ``block_set`` fields set to the block's best config, under upstream's names
(:func:`ntune.upstream.upstream_values`, the inverse of the importer's table), so
``ntune config import`` of the result gives back the best config on every one of those fields. Every
other line of the template is kept as written, comments included; a template whose layout the line
editor cannot follow (a value spanning several lines) is written back by ``yaml.safe_dump`` instead,
without its comments. No Ray, no printing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ntune.config import ConfigError, config_from_dict, config_to_dict, get_dotted
from ntune.study.config import StudyConfig
from ntune.study.guards import safe_name
from ntune.upstream import fill_template, flow, leaves, upstream_values
from ntune.yamlio import read_yaml


def block_overrides(info: Mapping[str, Any]) -> dict[Any, dict[str, Any]]:
    """block value -> the fields the study's ``block_set`` gives that block (validated once per export)."""
    return StudyConfig.model_validate(info["study"]).block_overrides()


def exported_fields(info: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> list[str]:
    """The ntune fields the upstream export sets for a block: the block field, the searched fields, then
    the block's ``overrides`` (what :func:`block_overrides` gives it: its data or training)."""
    fields = [info["block_key"], *(k for k in info["study"]["space"] if k != info["block_key"])]
    return [*fields, *(k for k in overrides or {} if k not in fields)]


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (a template's ``1`` is not the float ``1.0``)."""
    return type(a) is type(b) and a == b


def _header(rec: Mapping[str, Any], template: Path, changes: list[str]) -> str:
    m = rec["metrics"]
    return (
        f"# ntune export --format upstream: best config of block {rec['block']} (node "
        f"{rec['search'].get('node')}, trial {rec['trial_id']}), connectivity_R2={m['connectivity_R2']:.4g} "
        f"cluster_accuracy={m['cluster_accuracy']:.4g}\n# template: {template}; changed: {', '.join(changes)}\n"
    )


def export_upstream(
    best: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any], template: Path, folder: Path
) -> list[tuple[str, str]]:
    """Write ``<folder>/<block>.yaml`` for each block's best record in ``best`` (block label -> record), from
    the upstream YAML ``template``; returns ``("wrote", path)`` and ``("note", text)`` messages.

    Every block is translated before any file is written, so a field upstream has no name for (or a value
    it cannot spell) raises :class:`~ntune.config.ConfigError` naming it, with nothing written.
    """
    raw = read_yaml(template)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{template}: an upstream config must be a mapping of sections, got {type(raw).__name__}"
        )
    text = template.read_text()
    before = leaves(raw)
    overrides = block_overrides(info)
    files: list[tuple[Path, str, bool]] = []
    for label, rec in best.items():
        config = config_to_dict(config_from_dict(rec["config"]))  # defaults filled in
        fields = exported_fields(info, overrides.get(get_dotted(config, info["block_key"])))
        values = upstream_values({k: get_dotted(config, k) for k in fields}, raw)
        changed = {n: v for n, v in values.items() if n not in before or not _same(before[n], v)}
        body, kept = fill_template(text, changed)
        changes = [
            f"{n}: {flow(before[n]) if n in before else '(absent)'} -> {flow(v)}" for n, v in changed.items()
        ]
        files.append(
            (
                folder / f"{safe_name(label)}.yaml",
                _header(rec, template, changes or ["nothing (the template holds the best config)"]) + body,
                kept,
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, str]] = []
    for path, body, kept in files:
        path.write_text(body)
        done.append(("wrote", str(path)))
        if not kept:
            done.append(
                ("note", f"{path.name}: the template's layout was not kept (written by yaml.safe_dump)")
            )
    if not files:
        done.append(("note", "no completed trial yet: nothing to export"))
    elif len(files) > 1 and "dataset" in raw:
        done.append(
            (
                "note",
                f"every file keeps the template's dataset {raw['dataset']!r}: give each its own "
                "before running them side by side upstream",
            )
        )
    return done
