"""Upstream NeuralGraph signal YAML (PDE_N2, PDE_N4) <-> ntune config: the importer and the exporter's inverse map.

Upstream keeps its own schema (``simulation``, ``graph_model``, ``plotting``, ``training`` plus
top-level ``description`` and ``dataset``). :data:`FIELD_MAP` is the one table of the fields whose
meaning ntune shares: the importer (:func:`import_upstream`) reads it forwards and reports every other
leaf as ignored, by its dotted upstream name; the exporter (:func:`upstream_values`, used by
``ntune export --format upstream``) reads it backwards. Upstream keeps the process noise
``noise_model_level`` under ``training``; ntune keeps it under ``simulation`` (:data:`ALIASES`: a value
under upstream ``simulation`` wins on import; the export writes wherever the template has it).
Upstream ``cluster_method`` names ``kmeans*`` map to ``kmeans`` and ``distance_*`` (hierarchical
clustering) to ``single_linkage``; the export keeps the template's spelling when it imports to the
value being written, and refuses a value that no upstream spelling imports back to.

Two upstream rules need more than one leaf: upstream ``simulation.connectivity_type`` ``chaotic`` or
``low_rank`` draws W itself and overrides ``connectivity_distribution`` (:data:`SWITCHES`; other values
leave W to the distribution and are ignored); upstream lists a ``params`` row per type it may ever use, and
ntune takes the first ``n_neuron_types`` rows (the others are never indexed) and reports how many it dropped.

Values go into the user's own YAML text by a line editor (:func:`fill_template`): every other line of the
template is kept as written, comments included; a layout it cannot follow (a value spanning several lines)
is written back by ``yaml.safe_dump`` instead, without its comments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ntune.config import PARAM_COLUMNS, ConfigError, NtuneConfig, config_from_dict, set_dotted
from ntune.yamlio import read_yaml

# upstream dotted name -> ntune dotted name (values copied, or converted by CONVERTERS, then validated by ntune)
FIELD_MAP: dict[str, str] = {
    "description": "description",
    "dataset": "dataset",
    "simulation.n_neurons": "simulation.n_neurons",
    "simulation.n_neuron_types": "simulation.n_neuron_types",
    "simulation.n_frames": "simulation.n_frames",
    "simulation.delta_t": "simulation.delta_t",
    "simulation.start_frame": "simulation.start_frame",
    "simulation.connectivity_filling_factor": "simulation.connectivity_filling_factor",
    "simulation.connectivity_distribution": "simulation.connectivity_type",
    "simulation.connectivity_init": "simulation.connectivity_init",
    "simulation.connectivity_rank": "simulation.connectivity_rank",
    "simulation.Dale_law": "simulation.Dale_law",
    "simulation.Dale_law_factor": "simulation.Dale_law_factor",
    "simulation.params": "simulation.params",
    "simulation.phi": "simulation.phi",
    "simulation.noise_model_level": "simulation.noise_model_level",
    "simulation.seed": "simulation.seed",
    "graph_model.signal_model_name": "simulation.signal_model_name",  # upstream's model names the simulator
    "graph_model.embedding_dim": "graph_model.embedding_dim",
    "graph_model.hidden_dim": "graph_model.hidden_dim",
    "graph_model.n_layers": "graph_model.n_layers",
    "training.n_epochs": "training.n_epochs",
    "training.batch_size": "training.batch_size",
    "training.data_augmentation_loop": "training.data_augmentation_loop",
    "training.learning_rate_W_start": "training.learning_rate_W_start",
    "training.learning_rate_start": "training.learning_rate_start",
    "training.learning_rate_embedding_start": "training.learning_rate_embedding_start",
    "training.coeff_W_L1": "training.coeff_W_L1",
    "training.coeff_lin_phi_zero": "training.coeff_lin_phi_zero",
    "training.coeff_edge_diff": "training.coeff_edge_diff",
    "training.cluster_method": "training.cluster_method",
    "training.seed": "training.seed",
    "training.device": "training.device",
}
# upstream dotted name -> ntune dotted name, read only when the field's FIELD_MAP name is absent
ALIASES: dict[str, str] = {"training.noise_model_level": "simulation.noise_model_level"}
# upstream dotted name -> the FIELD_MAP upstream name it overrides when ntune takes its value
SWITCHES: dict[str, str] = {"simulation.connectivity_type": "simulation.connectivity_distribution"}
CONNECTIVITY_TYPES = ("Lorentz", "Gaussian")
SWITCHED_TYPES = ("chaotic", "low_rank")  # upstream connectivity_type values that draw W themselves
DISTRIBUTION_TYPES = (
    "none",
    "distance",
)  # upstream connectivity_type values that leave W to the distribution
SIGNAL_MODELS = ("PDE_N2", "PDE_N4")


class _Ignored:
    """The converted value of an upstream leaf that ntune does not take (it is reported as ignored)."""


IGNORED = _Ignored()


def leaves(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to ``{"a.b.c": value}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _connectivity_type(value: Any) -> str:
    for name in CONNECTIVITY_TYPES:
        if str(value).lower() == name.lower():
            return name
    raise ConfigError(
        f"simulation.connectivity_distribution: {value!r} is not supported; valid: "
        + ", ".join(repr(n) for n in CONNECTIVITY_TYPES)
    )


def _connectivity_init(value: Any) -> Any:
    return value if isinstance(value, list) and len(value) == 2 else IGNORED


def _cluster_method(value: Any) -> Any:
    text = str(value)
    if text.startswith("kmeans"):
        return "kmeans"
    if text.startswith("distance"):
        return "single_linkage"
    return IGNORED


def _switched_type(value: Any) -> Any:
    if value in SWITCHED_TYPES:
        return value
    if value in DISTRIBUTION_TYPES:
        return IGNORED  # W is drawn from connectivity_distribution
    valid = ", ".join(repr(n) for n in (*SWITCHED_TYPES, *DISTRIBUTION_TYPES))
    raise ConfigError(f"simulation.connectivity_type: {value!r} is not supported; valid: {valid}")


def _signal_model(value: Any) -> Any:
    if value not in SIGNAL_MODELS:
        valid = ", ".join(repr(n) for n in SIGNAL_MODELS)
        raise ConfigError(f"graph_model.signal_model_name: {value!r} is not supported; valid: {valid}")
    return value


# upstream dotted name -> its value as ntune takes it (IGNORED: left out; ConfigError: refused)
CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "simulation.connectivity_distribution": _connectivity_type,
    "simulation.connectivity_init": _connectivity_init,
    "training.cluster_method": _cluster_method,
    "graph_model.signal_model_name": _signal_model,
    "simulation.connectivity_type": _switched_type,
}


def import_value(name: str, value: Any) -> Any:
    """The ntune value of upstream leaf ``name`` (``IGNORED`` when ntune does not take it)."""
    convert = CONVERTERS.get(name)
    return value if convert is None else convert(value)


def upstream_names(key: str) -> list[str]:
    """The upstream dotted names of ntune field ``key``: its FIELD_MAP name, then its aliases ([] if none)."""
    primary = _primary(key)
    return ([primary] if primary else []) + [u for u, n in ALIASES.items() if n == key]


def _primary(key: str) -> str | None:
    """The FIELD_MAP (upstream) name of ntune field ``key``; None when it has none."""
    names = [u for u, n in FIELD_MAP.items() if n == key]
    return names[0] if names else None


def _translate(flat: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ntune dict for the upstream leaves ``flat`` and the sorted upstream names left out (plus a
    ``simulation.params`` note when rows beyond ``n_neuron_types`` were dropped)."""
    out: dict[str, Any] = {}
    ignored = []
    overridden = {SWITCHES[n] for n, v in flat.items() if n in SWITCHES and import_value(n, v) is not IGNORED}
    for name, value in flat.items():
        target = FIELD_MAP.get(SWITCHES.get(name, name)) if name not in overridden else None
        if name in ALIASES and _primary(ALIASES[name]) not in flat:
            target = ALIASES[name]
        converted = IGNORED if target is None else import_value(name, value)
        if converted is IGNORED or target is None:
            ignored.append(name)
        else:
            set_dotted(out, target, converted)
    ignored += _first_params_rows(out.get("simulation", {}))
    return out, sorted(ignored)


def _first_params_rows(sim: dict[str, Any]) -> list[str]:
    """Keep the first ``n_neuron_types`` rows of ``sim["params"]`` (in place) and return a note naming how
    many were dropped ([] if none); refuse rows whose width does not fit the model, naming the model field.
    """
    params, n_types = sim.get("params"), sim.get("n_neuron_types")
    if not isinstance(params, list):
        return []
    model = sim.get("signal_model_name", "PDE_N2")
    columns = PARAM_COLUMNS[model]
    for k, row in enumerate(params):
        if isinstance(row, list) and len(row) != len(columns):
            raise ConfigError(
                f"simulation.params: row {k} is {row}; graph_model.signal_model_name {model!r} takes rows "
                f"[{', '.join(columns)}] ({len(columns)} numbers)"
            )
    if not isinstance(n_types, int) or isinstance(n_types, bool) or not 0 < n_types < len(params):
        return []
    dropped = len(params) - n_types
    sim["params"] = params[:n_types]
    return [f"simulation.params ({dropped} of {len(params)} rows dropped: n_neuron_types is {n_types})"]


def _imports_to(name: str, value: Any, wanted: Any) -> bool:
    """Whether upstream leaf ``name`` holding ``value`` imports as ``wanted``."""
    try:
        got = import_value(name, value)
    except ConfigError:
        return False
    return got is not IGNORED and type(got) is type(wanted) and got == wanted


def upstream_values(values: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream dotted name -> value to write, for the ntune fields ``values`` (dotted name -> value).

    Each field goes to every one of its upstream names (:func:`upstream_names`) that the upstream
    ``template`` (a nested mapping) holds, else to its FIELD_MAP name. The template's value is kept where
    it already imports as the value (``'gaussian'`` for ``Gaussian``, ``distance_plot`` for
    ``single_linkage``), else the ntune value is written, so importing the result gives back ``values``.
    A :data:`SWITCHES` name counts as one more upstream name of the field it overrides (a chaotic template's
    ``connectivity_type``).
    Raises :class:`~ntune.config.ConfigError` naming a field upstream has no name for, or a value that no
    upstream spelling imports back to.
    """
    flat = leaves(template)
    out: dict[str, Any] = {}
    for key, value in values.items():
        names = upstream_names(key)
        names += [s for s, primary in SWITCHES.items() if primary in names]
        if not names:
            shared = ", ".join(sorted(set(FIELD_MAP.values()) | set(ALIASES.values())))
            raise ConfigError(
                f"{key}: has no upstream NeuralGraph name, so it cannot be exported; fields with one: {shared}"
            )
        for name in [n for n in names if n in flat] or names[:1]:
            if name in flat and _imports_to(name, flat[name], value):
                out[name] = flat[name]
            elif _imports_to(name, value, value):
                out[name] = value
            else:
                raise ConfigError(
                    f"{key}: {value!r} has no upstream spelling of {name} that imports back to it; "
                    "write one in the template or leave the field out of the export"
                )
    return out


def import_upstream(path: str | Path) -> tuple[NtuneConfig, list[str]]:
    """The ntune config of an upstream NeuralGraph signal YAML and the sorted dotted upstream names ignored.

    Raises :class:`~ntune.config.ConfigError` naming the file and the field for an unreadable file, an
    unsupported model or distribution, or values ntune rejects.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: an upstream config must be a mapping of sections, got {type(raw).__name__}"
        )
    try:
        data, ignored = _translate(leaves(raw))
        return config_from_dict(data), ignored
    except ConfigError as err:
        raise ConfigError(f"{path}:\n{err}") from None


# ---- writing values into the user's YAML text -----------------------------------------------------

_SECTION = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:\s*(#.*)?$")
_LEAF = re.compile(
    r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w-]*)(?P<sep>\s*:\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|\[[^#]*\]|[^#\s][^#]*?)(?P<rest>\s+#.*)?\s*$"
)


def flow(value: Any) -> str:
    """``value`` as a one-line YAML scalar or flow collection (``1.0e-05``, ``Gaussian``, ``[0, 0.1]``)."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def set_leaves(text: str, values: Mapping[str, Any]) -> str | None:
    """``text`` (a YAML mapping of sections) with each top-level or ``section.key`` leaf in ``values`` set,
    every other line kept; a leaf the text lacks is added at the end of its section (or a new section).

    None when the text's layout is not one the line editor follows, or the result would not read back as
    the template with exactly these values set.
    """
    lines = text.splitlines()
    original = leaves(yaml.safe_load(text) or {})
    expected = {**original, **values}
    section, todo = "", dict(values)
    for i, line in enumerate(lines):
        head = _SECTION.match(line)
        if head:
            section = head["key"]
            continue
        leaf = _LEAF.match(line)
        if leaf is None:
            continue
        if not leaf["indent"]:
            section = ""
        name = f"{section}.{leaf['key']}" if section and leaf["indent"] else leaf["key"]
        if name in todo:
            lines[i] = f"{leaf['indent']}{leaf['key']}{leaf['sep']}{flow(todo.pop(name))}{leaf['rest'] or ''}"
    for name, value in todo.items():
        if name.count(".") > 1 or name in original:  # deeper, or a leaf whose line the editor did not follow
            return None
        lines = _insert(lines, name, value)
    out = "\n".join(lines) + "\n"
    try:
        back = yaml.safe_load(out)
    except yaml.YAMLError:
        return None
    return out if isinstance(back, dict) and leaves(back) == expected else None


def _insert(lines: list[str], name: str, value: Any) -> list[str]:
    """``lines`` with leaf ``name`` (``key`` or ``section.key``) added: after its section's last line, indented
    like the section's first leaf; a missing section is appended."""
    section, _, key = name.rpartition(".")
    if not section:
        return [f"{key}: {flow(value)}", *lines]
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(section)}\s*:", line)), None)
    if start is None:
        return [*lines, f"{section}:", f"    {key}: {flow(value)}"]
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or lines[end][:1].isspace() or lines[end].startswith("#")
    ):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    body = [line for line in lines[start + 1 : end] if line.strip() and not line.lstrip().startswith("#")]
    indent = body[0][: len(body[0]) - len(body[0].lstrip())] if body else "    "
    return [*lines[:end], f"{indent}{key}: {flow(value)}", *lines[end:]]


def fill_template(text: str, values: Mapping[str, Any]) -> tuple[str, bool]:
    """(``text`` with the upstream leaves ``values`` set, whether its comments and layout were kept)."""
    edited = set_leaves(text, values)
    if edited is not None:
        return edited, True
    data = yaml.safe_load(text) or {}
    for name, value in values.items():
        set_dotted(data, name, value)
    return yaml.safe_dump(data, sort_keys=False), False
