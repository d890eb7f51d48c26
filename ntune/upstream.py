"""Import an upstream NeuralGraph ``signal_N2`` YAML: map the fields ntune knows, list the ones it ignores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ntune.config import ConfigError, NtuneConfig, config_from_dict, read_yaml, set_dotted


def _connectivity_type(value: Any) -> str:
    text = str(value)
    for name in ("Lorentz", "Gaussian"):
        if name.lower() in text.lower():
            return name
    raise ConfigError(
        f"simulation.connectivity_distribution: {value!r} is not supported; ntune knows 'Lorentz' and 'Gaussian'"
    )


def _same(value: Any) -> Any:
    return value


# upstream dotted name -> (ntune dotted name, conversion)
FIELD_MAP: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "description": ("description", str),
    "dataset": ("dataset", str),
    "simulation.connectivity_distribution": ("simulation.connectivity_type", _connectivity_type),
    "simulation.connectivity_filling_factor": ("simulation.connectivity_filling_factor", float),
    "simulation.connectivity_init": ("simulation.connectivity_init", _same),
    "simulation.params": ("simulation.params", _same),
    "simulation.phi": ("simulation.phi", _same),
    "simulation.n_neurons": ("simulation.n_neurons", int),
    "simulation.n_neuron_types": ("simulation.n_neuron_types", int),
    "simulation.n_frames": ("simulation.n_frames", int),
    "simulation.delta_t": ("simulation.delta_t", float),
    "simulation.start_frame": ("simulation.start_frame", int),
    "simulation.noise_model_level": ("simulation.noise_model_level", float),
    "simulation.seed": ("simulation.seed", int),
    "graph_model.signal_model_name": ("graph_model.signal_model_name", _same),
    "graph_model.embedding_dim": ("graph_model.embedding_dim", int),
    "graph_model.hidden_dim": ("graph_model.hidden_dim", int),
    "graph_model.n_layers": ("graph_model.n_layers", int),
    "training.n_epochs": ("training.n_epochs", int),
    "training.batch_size": ("training.batch_size", int),
    "training.data_augmentation_loop": ("training.data_augmentation_loop", int),
    "training.learning_rate_W_start": ("training.learning_rate_W_start", float),
    "training.learning_rate_start": ("training.learning_rate_start", float),
    "training.learning_rate_embedding_start": ("training.learning_rate_embedding_start", float),
    "training.coeff_W_L1": ("training.coeff_W_L1", float),
    "training.coeff_lin_phi_zero": ("training.coeff_lin_phi_zero", float),
    "training.coeff_edge_diff": ("training.coeff_edge_diff", float),
    "training.seed": ("training.seed", int),
    "training.device": ("training.device", str),
}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def import_upstream(path: str | Path) -> tuple[NtuneConfig, list[str]]:
    """An :class:`NtuneConfig` from an upstream signal_N2 YAML, and the sorted dotted upstream names ignored.

    Fields absent upstream keep ntune's defaults; a mapped value ntune rejects raises :class:`ConfigError`
    naming the ntune field.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an upstream config must be a mapping of sections")
    data: dict[str, Any] = {}
    ignored = []
    for name, value in _flatten(raw).items():
        if name not in FIELD_MAP or value is None:
            ignored.append(name)
            continue
        target, convert = FIELD_MAP[name]
        try:
            set_dotted(data, target, convert(value))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{path}: {name} = {value!r} cannot become {target}: {err}") from None
    try:
        config = config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} (imported from upstream):\n{err}") from None
    return config, sorted(ignored)
