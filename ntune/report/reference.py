"""The configuration reference (``docs/reference.md``), generated from the pydantic models.

Every field of the run config (:class:`ntune.config.NtuneConfig`), of the study config
(:class:`ntune.study.config.StudyConfig`) and of a search-space domain (:data:`searchers.space.DomainSpec`)
is listed with its dotted name, type, default, allowed values (from the field's constraints: ``gt``,
``ge``, ``lt``, ``le``, lengths, ``Literal`` choices) and description, so the reference cannot drift from
the code: ``ntune config reference --out docs/reference.md`` rewrites it and ``tests/test_reference.py``
fails when the committed file differs. Pure pydantic: no Ray, no torch.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ntune.config import NtuneConfig
from ntune.study.config import OBJECTIVE_METRICS, StudyConfig
from searchers.space import DomainSpec

COMMAND = "ntune config reference --out docs/reference.md"


@dataclass(frozen=True)
class Row:
    """One field of a model, as the reference shows it."""

    path: str  # dotted name, e.g. simulation.n_neurons
    type: str
    default: str
    allowed: str
    description: str
    finite: bool | None  # float fields: NaN and infinity refused (None: not a float field)


# ---- walking the models ---------------------------------------------------------------------------


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _optional_model(annotation: Any) -> type[BaseModel] | None:
    """The model of an optional section (``Model | None``: absent unless the config gives it)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return _nested_model(args[0]) if len(args) == 1 and len(get_args(annotation)) == 2 else None


def sections(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel], list[Row]]]:
    """(dotted prefix, model, rows of its own fields) for ``model`` and, after it, each nested model."""
    rows, nested = [], []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _nested_model(field.annotation)
        optional = _optional_model(field.annotation)
        if sub is not None:
            nested.append((f"{path}.", sub))
        else:
            rows.append(_row(path, field))
        if optional is not None:  # its own row (absent by default) and its fields' section
            nested.append((f"{path}.", optional))
    yield prefix.rstrip("."), model, rows
    for sub_prefix, sub in nested:
        yield from sections(sub, sub_prefix)


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf field of ``model`` as a dotted name (nested models walked recursively)."""
    return [row.path for _, _, rows in sections(model, prefix) for row in rows]


def domain_models() -> list[type[BaseModel]]:
    """The search-space domain models, one per ``type`` (the members of ``DomainSpec``)."""
    union = get_args(DomainSpec)[0]
    return [m for m in get_args(union) if _nested_model(m) is not None]


def missing_descriptions() -> list[str]:
    """The fields that have no ``description`` (a dash in the reference), as ``Model: dotted.name``."""
    missing = [
        f"{model.__name__}: {row.path}"
        for model in (NtuneConfig, StudyConfig)
        for _, _, rows in sections(model)
        for row in rows
        if not row.description
    ]
    for model in domain_models():
        missing += [
            f"{model.__name__}: space.<key>.{name}"
            for name, field in model.model_fields.items()
            if not field.description
        ]
    return missing


# ---- one field -----------------------------------------------------------------------------------


def _row(path: str, field: FieldInfo) -> Row:
    return Row(
        path=path,
        type=_type_text(field.annotation, top=True),
        default=_default_text(field),
        allowed=_allowed_text(field),
        description=" ".join((field.description or "").split()),
        finite=_finite(field) if _is_float(field.annotation) else None,
    )


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _type_text(annotation: Any, top: bool = False) -> str:
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        if top:  # the choices go to the allowed column
            return " | ".join(sorted({type(v).__name__ for v in args}))
        return " | ".join(json.dumps(v) for v in args)
    if _is_union(annotation):
        return " | ".join(_type_text(a) for a in args)
    if origin in (list, tuple, set):
        return f"{origin.__name__}[{', '.join(_type_text(a) for a in args)}]"
    if origin is dict:
        return f"dict[{', '.join(_type_text(a) for a in args)}]"
    if annotation is Any:
        return "any"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _is_float(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if _is_union(annotation):
        return any(_is_float(a) for a in get_args(annotation))
    return annotation is float


def _finite(field: FieldInfo) -> bool:
    """NaN and infinity are refused: ``allow_inf_nan=False``, or ntune's finite-number validator."""

    def marks(items: Any) -> bool:
        for m in items:
            if getattr(m, "allow_inf_nan", None) is False:
                return True
            if getattr(getattr(m, "func", None), "__name__", "") == "_finite":
                return True
        return False

    def walk(annotation: Any) -> bool:
        if get_origin(annotation) is Annotated:
            return marks(get_args(annotation)[1:]) or walk(get_args(annotation)[0])
        return any(walk(a) for a in get_args(annotation))

    return marks(field.metadata) or walk(field.annotation)


def _choices(annotation: Any) -> str:
    annotation = _strip(annotation)
    if get_origin(annotation) is Literal:
        return ", ".join(f"`{v}`" for v in get_args(annotation))
    return ""


def _number(x: Any) -> str:
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e6:
            return f"{x:.1f}"
        text = repr(x)
        if "e" in text:
            mantissa, exponent = text.split("e")
            return f"{mantissa}e{int(exponent)}"
        return text
    return str(x)


def _value_text(value: Any) -> str:
    """A default as it would be written in YAML (flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return _value_text(field.get_default(call_default_factory=True))


def _bound(constraint: Any) -> tuple[str, float] | None:
    for kind, attr in ((at.Gt, "gt"), (at.Ge, "ge"), (at.Lt, "lt"), (at.Le, "le")):
        if isinstance(constraint, kind):
            return attr, getattr(constraint, attr)
    return None


def _allowed_text(field: FieldInfo) -> str:
    bounds = dict(b for b in map(_bound, field.metadata) if b is not None)
    parts = []
    low = next(((k, bounds[k]) for k in ("gt", "ge") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("lt", "le") if k in bounds), None)
    if low and high:
        parts.append(
            f"{'(' if low[0] == 'gt' else '['}{_number(low[1])}, {_number(high[1])}{')' if high[0] == 'lt' else ']'}"
        )
    elif low:
        parts.append(f"{'>' if low[0] == 'gt' else '>='} {_number(low[1])}")
    elif high:
        parts.append(f"{'<' if high[0] == 'lt' else '<='} {_number(high[1])}")
    lengths = {type(m): m for m in field.metadata if isinstance(m, at.MinLen | at.MaxLen)}
    min_len = getattr(lengths.get(at.MinLen), "min_length", None)
    max_len = getattr(lengths.get(at.MaxLen), "max_length", None)
    if min_len is not None and min_len == max_len:
        parts.append(f"length {min_len}")
    else:
        if min_len is not None:
            parts.append(f"length >= {min_len}")
        if max_len is not None:
            parts.append(f"length <= {max_len}")
    choices = _choices(field.annotation)
    members = get_args(_strip(field.annotation)) if _is_union(_strip(field.annotation)) else ()
    literal = ", ".join(c for c in map(_choices, members) if c)
    if choices:
        parts.append(f"one of {choices}")
    elif literal:  # e.g. int | Literal["auto"]
        others = [_type_text(m) for m in members if not _choices(m)]
        parts.append(f"{' or '.join(f'`{t}`' for t in others)} or {literal}")
    return "; ".join(parts)


# ---- the document --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "-"


def _code(text: str) -> str:
    return f"`{text}`".replace("|", "\\|") if text else "-"


def _table(rows: list[Row], show_finite: bool) -> list[str]:
    lines = ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
    for r in rows:
        allowed = r.allowed
        if show_finite and r.finite is False:
            allowed = "; ".join(x for x in (allowed, "NaN and infinity accepted") if x)
        lines.append(
            f"| {_code(r.path)} | {_code(r.type)} | {_code(r.default)} | {_cell(allowed)} | {_cell(r.description)} |"
        )
    return lines


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split()).replace("``", "`")


def _heading(prefix: str, model: type[BaseModel]) -> str:
    return f"`{prefix}`" if prefix else f"`{model.__name__}` (top level)"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _link(text: str) -> str:
    return f"[{text}](#{_anchor(text)})"


def _config_part(title: str, intro: list[str], model: type[BaseModel]) -> list[str]:
    lines = [f"## {title}", "", *intro, ""]
    for prefix, sub, rows in sections(model):
        if not rows:
            continue
        lines += [f"### {_heading(prefix, sub)}", "", _doc(sub), "", *_table(rows, show_finite=True), ""]
    return lines


def _domain_part() -> list[str]:
    lines = [
        "## Search-space domains",
        "",
        "Each value of a study's `space` (a dotted config key -> domain) is one of these, chosen by its "
        "`type`; unknown keys are refused. The searcher and the study validate a domain with the same "
        "models (`searchers/space.py`). The root of each block's tree takes the domain's `default`, else "
        "the base config's value when it lies in the domain, else the middle of the range (geometric on a "
        "log scale) or the first choice.",
        "",
    ]
    for model in domain_models():
        kind = _choices(model.model_fields["type"].annotation)
        names = sorted(model.model_fields, key=lambda n: (n != "type", n == "default"))
        rows = [_row(f"space.<key>.{name}", model.model_fields[name]) for name in names]
        lines += [f"### {kind}", "", _doc(model), "", *_table(rows, show_finite=True), ""]
    return lines


def _contents() -> str:
    parts = []
    for title, model in (("Run config", NtuneConfig), ("Study config", StudyConfig)):
        subs = [_link(_heading(prefix, sub)) for prefix, sub, rows in sections(model) if rows]
        parts.append(f"{_link(title)} ({', '.join(subs)})")
    kinds = [_link(_choices(m.model_fields["type"].annotation)) for m in domain_models()]
    parts.append(f"{_link('Search-space domains')} ({', '.join(kinds)})")
    return "; ".join(parts)


def reference_markdown() -> str:
    """The whole of ``docs/reference.md``: every field of the run config, the study config and a domain."""
    floats = [
        r
        for m in (NtuneConfig, StudyConfig)
        for _, _, rows in sections(m)
        for r in rows
        if r.finite is not None
    ]
    finite_note = (
        "Every float field of the run and study configs refuses NaN and infinity."
        if all(r.finite for r in floats)
        else "Float fields refuse NaN and infinity unless the table says otherwise."
    )
    lines = [
        "# Configuration reference",
        "",
        f"Generated from the pydantic models by `{COMMAND}`; do not edit by hand "
        "(`tests/test_reference.py` fails when this file and the models disagree).",
        "",
        "Every section refuses unknown keys (the error names the closest valid field). A field is set in "
        "the YAML file or on the command line with `--set section.field=value` (the value is read as "
        f"YAML: `1e-5`, `[1, 2]`, `true`). {finite_note} A boolean is never accepted as a number. "
        "Allowed ranges use interval notation: `(0, 1]` means > 0 and <= 1.",
        "",
        f"Contents: {_contents()}.",
        "",
    ]
    lines += _config_part(
        "Run config",
        [
            "What `ntune simulate` and `ntune train` take, what a study's `base` is and what `ntune export` "
            "writes (`ntune/config.py`, `NtuneConfig`). `ntune config show FILE` prints a file with every "
            "default filled in."
        ],
        NtuneConfig,
    )
    lines += _config_part(
        "Study config",
        [
            "What `ntune run` and `ntune submit` take (`ntune/study/config.py`, `StudyConfig`). Besides the "
            "per-field checks below, a study is validated as a whole before Ray starts "
            "(`ntune/study/load.py`): `blocks` has exactly one key; every `space` and `blocks` key is a "
            "field of the base config, and every bound, choice "
            "and block value is set into the base config and validated; the block key is not searched; "
            "`block_set` and `block_trials` name block values; `block_set` does not set the block key. "
            f"Objective metrics: {', '.join(f'`{m}`' for m in OBJECTIVE_METRICS)}.",
        ],
        StudyConfig,
    )
    lines += _domain_part()
    return "\n".join(lines).rstrip("\n") + "\n"
