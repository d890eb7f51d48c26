"""Import an upstream NeuralGraph signal_N2 YAML as an ntune config.

Upstream keeps its own schema (``simulation``, ``graph_model``, ``plotting``, ``training`` plus
top-level ``description`` and ``dataset``). :data:`FIELD_MAP` lists the upstream fields whose meaning
ntune shares and where they go; every other leaf is reported as ignored, by its dotted upstream
name. Upstream keeps the process noise ``noise_model_level`` under ``training``; ntune keeps it under
``simulation`` (a value under upstream ``simulation`` wins). Upstream ``cluster_method`` names
``kmeans*`` map to ``kmeans`` and ``distance_*`` (hierarchical clustering) to ``single_linkage``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ntune.config import ConfigError, NtuneConfig, config_from_dict, read_yaml, set_dotted

# upstream dotted name -> ntune dotted name (values copied unchanged, then validated by ntune)
FIELD_MAP: dict[str, str] = {
    "description": "description",
    "dataset": "dataset",
    "simulation.n_neurons": "simulation.n_neurons",
    "simulation.n_neuron_types": "simulation.n_neuron_types",
    "simulation.n_frames": "simulation.n_frames",
    "simulation.delta_t": "simulation.delta_t",
    "simulation.start_frame": "simulation.start_frame",
    "simulation.connectivity_filling_factor": "simulation.connectivity_filling_factor",
    "simulation.params": "simulation.params",
    "simulation.phi": "simulation.phi",
    "simulation.noise_model_level": "simulation.noise_model_level",
    "simulation.seed": "simulation.seed",
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
    "training.seed": "training.seed",
    "training.device": "training.device",
}
CONNECTIVITY_TYPES = ("Lorentz", "Gaussian")


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to ``{"a.b.c": value}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_leaves(value, f"{name}."))
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


def _cluster_method(value: Any) -> str | None:
    text = str(value)
    if text.startswith("kmeans"):
        return "kmeans"
    if text.startswith("distance"):
        return "single_linkage"
    return None


def _translate(flat: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ntune dict for the upstream leaves ``flat`` and the sorted upstream names left out."""
    out: dict[str, Any] = {}
    ignored = []
    for name, value in flat.items():
        if name in FIELD_MAP:
            set_dotted(out, FIELD_MAP[name], value)
        elif name == "simulation.connectivity_distribution":
            set_dotted(out, "simulation.connectivity_type", _connectivity_type(value))
        elif name == "simulation.connectivity_init" and isinstance(value, list) and len(value) == 2:
            set_dotted(out, "simulation.connectivity_init", value)
        elif name == "training.noise_model_level" and "simulation.noise_model_level" not in flat:
            set_dotted(out, "simulation.noise_model_level", value)
        elif name == "training.cluster_method" and _cluster_method(value) is not None:
            set_dotted(out, "training.cluster_method", _cluster_method(value))
        elif name == "graph_model.signal_model_name":
            if value != "PDE_N2":
                raise ConfigError(
                    f"graph_model.signal_model_name: {value!r} is not supported; valid: 'PDE_N2'"
                )
            set_dotted(out, "graph_model.signal_model_name", value)
        else:
            ignored.append(name)
    return out, sorted(ignored)


def import_upstream(path: str | Path) -> tuple[NtuneConfig, list[str]]:
    """The ntune config of an upstream NeuralGraph signal_N2 YAML and the sorted dotted upstream names ignored.

    Raises :class:`~ntune.config.ConfigError` naming the file and the field for an unreadable file, an
    unsupported model or distribution, or values ntune rejects.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: an upstream config must be a mapping of sections, got {type(raw).__name__}"
        )
    try:
        data, ignored = _translate(_leaves(raw))
        return config_from_dict(data), ignored
    except ConfigError as err:
        raise ConfigError(f"{path}:\n{err}") from None
