"""Validated run configuration: simulation, graph_model and training sections.

Field names follow upstream NeuralGraph where the meaning matches, so users recognise their
configs. Every model forbids unknown keys; :func:`load_config` turns any validation problem into
a :class:`ConfigError` whose message names the dotted field path, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from ntune.yamlio import ConfigError as ConfigError
from ntune.yamlio import parse_overrides, read_yaml
from searchers.dotted import get_dotted as get_dotted
from searchers.dotted import set_dotted as set_dotted


def _check_device_name(v: str) -> str:
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError(f"device {v!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:<index>'")


DeviceName = Annotated[str, AfterValidator(_check_device_name)]


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    return v


def _finite(v: Any) -> Any:
    v = _not_bool(v)
    if isinstance(v, int | float | str):
        try:
            x = float(v)
        except ValueError:
            return v  # pydantic reports the parse error
        if not math.isfinite(x):
            raise ValueError("not a finite number (NaN and infinity are not allowed)")
    return v


Int = Annotated[int, BeforeValidator(_not_bool)]
"""An integer field: ``true``/``false`` are rejected (a bool is not a number)."""

FiniteFloat = Annotated[float, BeforeValidator(_finite)]
"""A float field: NaN, +-inf and booleans are rejected; every float field of ntune uses it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PARAM_COLUMNS: dict[str, tuple[str, ...]] = {
    "PDE_N2": ("g", "s", "c"),
    "PDE_N4": ("a", "b", "g", "s", "w", "h"),
}
"""The columns of one ``simulation.params`` row, per ``signal_model_name`` (upstream's order)."""

OMITTED_AT_DEFAULT = ("connectivity_rank", "Dale_law", "Dale_law_factor")
"""Simulation fields left out of every dump while at their defaults, so that the dumps, the hashes and the
data-cache keys of configs written before these fields existed are unchanged."""


class SimulationConfig(_Section):
    """PDE_N2: du_i/dt = -c_i u_i + s_i tanh(u_i) + g_i sum_j W_ij phi(u_j);
    PDE_N4: du_i/dt = -a_i u_i + b_i + s_i tanh(u_i) + g_i sum_j W_ij phi((u_j - h_j) / w_j)."""

    signal_model_name: Literal["PDE_N2", "PDE_N4"] = Field(
        "PDE_N2",
        description="Simulator: 'PDE_N2' (params rows [g, s, c]) or 'PDE_N4' (rows [a, b, g, s, w, h], "
        "transfer function of the source neuron's type).",
    )
    n_neurons: Int = Field(1000, gt=0, description="Number of neurons N (> 0).")
    n_neuron_types: Int = Field(
        4, gt=0, description="Number of neuron types; types are contiguous blocks of N/n_types."
    )
    n_frames: Int = Field(100_000, gt=1, description="Stored frames T after burn-in (> 1).")
    delta_t: FiniteFloat = Field(0.01, gt=0, description="Euler step dt (> 0).")
    start_frame: Int = Field(
        -1000, le=0, description="Burn-in: -start_frame Euler steps are run and discarded (<= 0)."
    )
    connectivity_type: Literal["Lorentz", "Gaussian", "chaotic", "low_rank"] = Field(
        "Lorentz",
        description="Distribution of W entries: 'Lorentz' (Cauchy), 'Gaussian' (connectivity_init), "
        "'chaotic' (N(0, 1)/sqrt(N), upstream's; connectivity_init is not used) or 'low_rank' "
        "(U V / sqrt(rank N), U and V standard normal, rank connectivity_rank).",
    )
    connectivity_rank: Int = Field(
        1, gt=0, description="Rank of a 'low_rank' W before its diagonal is zeroed (> 0, <= n_neurons)."
    )
    connectivity_filling_factor: FiniteFloat = Field(
        1.0, gt=0, le=1, description="Probability that an off-diagonal synapse is present, in (0, 1]."
    )
    connectivity_init: list[FiniteFloat] = Field(
        [0.0, 1.0],
        min_length=2,
        max_length=2,
        description="Gaussian W: [mean, std] of entries before division by sqrt(n_neurons).",
    )
    lorentz_exponent: FiniteFloat | None = Field(
        None,
        gt=0,
        description="Lorentz W is divided by N**exponent; None uses upstream's table (0.7 for N < 2000).",
    )
    Dale_law: bool = Field(
        False,
        description="Dale's law: W <- |W|, then the columns (presynaptic neurons) j >= floor(N * "
        "Dale_law_factor) are negated, so each neuron is excitatory or inhibitory.",
    )
    Dale_law_factor: FiniteFloat = Field(
        0.5, ge=0, le=1, description="Fraction of excitatory (positive) columns under Dale's law, in [0, 1]."
    )
    params: list[list[FiniteFloat]] = Field(
        [[10.0, 1.0, 1.0], [10.0, 2.0, 1.0], [10.0, 1.0, 2.0], [10.0, 2.0, 2.0]],
        description="One row per neuron type: PDE_N2 [g, s, c] (coupling gain, self-excitation, decay); "
        "PDE_N4 [a, b, g, s, w, h] (decay, offset, gain, self-excitation, width, threshold).",
    )
    phi: Literal["tanh", "linear"] = Field(
        "tanh", description="Synaptic transfer function phi: 'tanh' or 'linear'."
    )
    noise_model_level: FiniteFloat = Field(
        0.0, ge=0, description="Std of process noise added per Euler step (>= 0)."
    )
    seed: Int = Field(42, ge=0, description="One seed fixes W, the mask, u0 and the noise (>= 0).")
    device: DeviceName = Field("auto", description="'auto', 'cpu' or 'cuda[:k]' for the simulation.")

    @model_validator(mode="after")
    def _check_params(self) -> SimulationConfig:
        columns = PARAM_COLUMNS[self.signal_model_name]
        row_text = f"[{', '.join(columns)}]"
        if len(self.params) != self.n_neuron_types:
            raise ValueError(
                f"params has {len(self.params)} rows but n_neuron_types is {self.n_neuron_types}; "
                f"give one {row_text} row per neuron type"
            )
        for k, row in enumerate(self.params):
            if len(row) != len(columns):
                raise ValueError(
                    f"params row {k} is {row}: each {self.signal_model_name} row must be {row_text} "
                    f"({len(columns)} numbers)"
                )
            if "w" in columns and row[columns.index("w")] == 0:
                raise ValueError(f"params row {k} is {row}: the width w divides u - h, it must not be 0")
        if self.n_neurons < self.n_neuron_types:
            raise ValueError(
                f"n_neurons ({self.n_neurons}) must be >= n_neuron_types ({self.n_neuron_types})"
            )
        if self.connectivity_type == "low_rank" and self.connectivity_rank > self.n_neurons:
            raise ValueError(
                f"connectivity_rank ({self.connectivity_rank}) must be <= n_neurons ({self.n_neurons})"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in OMITTED_AT_DEFAULT:
            if name in data and data[name] == type(self).model_fields[name].default:
                del data[name]
        return data


class GraphModelConfig(_Section):
    """SignalGNN: pred_i = lin_phi([u_i, a_i]) + sum_{j != i} W_ij lin_edge(u_j) (PDE_N2);
    lin_edge([u_j, a_j]), the source's activity and embedding, for PDE_N4."""

    signal_model_name: Literal["PDE_N2", "PDE_N4"] = Field(
        "PDE_N2",
        description="Model family, the simulator's (simulation.signal_model_name; left out, it follows it): "
        "'PDE_N2' (lin_edge(u_j)) or 'PDE_N4' (lin_edge([u_j, a_j]): the transfer function of the source's type).",
    )
    embedding_dim: Int = Field(2, gt=0, description="Dimension of the per-neuron embedding a (> 0).")
    hidden_dim: Int = Field(64, gt=0, description="Width of the hidden layers of lin_edge and lin_phi (> 0).")
    n_layers: Int = Field(3, ge=2, description="Linear layers per MLP (>= 2); 3 gives in -> 64 -> 64 -> 1.")
    backend: Literal["dense", "edge"] = Field(
        "dense",
        description="'dense': (W*mask) @ lin_edge(u), one GEMM; 'edge': torch_geometric message passing.",
    )
    W_init_std: FiniteFloat = Field(0.01, ge=0, description="W is initialised N(0, W_init_std^2) (>= 0).")
    lin_edge_eval: Literal["auto", "pieces", "mlp"] = Field(
        "auto",
        description="How lin_edge (a ReLU MLP of one scalar) is evaluated: 'pieces' as the piecewise-linear "
        "function it is (same values and gradients, far less arithmetic), 'mlp' layer by layer, 'auto' "
        "pieces on CPU from 2 500 inputs per call (N >= 157 at batch 8) and mlp on GPU; PDE_N4's lin_edge "
        "also takes the embedding, so 'auto' is 'mlp' there and 'pieces' is refused.",
    )

    @model_validator(mode="after")
    def _check_lin_edge_eval(self) -> GraphModelConfig:
        if self.signal_model_name == "PDE_N4" and self.lin_edge_eval == "pieces":
            raise ValueError(
                "lin_edge_eval 'pieces' evaluates a lin_edge of one scalar input, but with signal_model_name "
                "PDE_N4 lin_edge takes [u_j, a_j]; set graph_model.lin_edge_eval to 'auto' or 'mlp'"
            )
        return self


class TrainingConfig(_Section):
    """Trainer hyperparameters (upstream semantics; what upstream changed in code is configurable here)."""

    n_epochs: Int = Field(1, gt=0, description="Epochs (> 0).")
    batch_size: Int = Field(8, gt=0, description="Frames per iteration (> 0).")
    data_augmentation_loop: Int = Field(
        10,
        gt=0,
        description="Iterations per epoch = int(n_frames * data_augmentation_loop // batch_size * 0.2).",
    )
    learning_rate_W_start: FiniteFloat = Field(1e-3, gt=0, description="Learning rate of W (> 0).")
    learning_rate_start: FiniteFloat = Field(
        5e-4, gt=0, description="Learning rate of lin_edge and lin_phi (> 0)."
    )
    learning_rate_embedding_start: FiniteFloat = Field(
        7.5e-4, gt=0, description="Learning rate of embeddings a (> 0)."
    )
    coeff_W_L1: FiniteFloat = Field(1e-5, ge=0, description="Weight of ||W||_1 (>= 0).")
    coeff_W_L1_scale_by_filling: bool = Field(
        False, description="Divide coeff_W_L1 by connectivity_filling_factor (sparser nets get more L1)."
    )
    n_epochs_init: Int = Field(
        0,
        ge=0,
        description="Two-phase L1 (upstream): the first n_epochs_init epochs use first_coeff_L1 (>= 0).",
    )
    first_coeff_L1: FiniteFloat = Field(
        0.0, ge=0, description="Weight of ||W||_1 during the first n_epochs_init epochs."
    )
    W_L1_proximal: bool = Field(
        False,
        description="L1 as a proximal step after each optimizer step (W <- soft-threshold(W, lr_W * coeff)) "
        "instead of a loss term: exact zeros.",
    )
    coeff_lin_phi_zero: FiniteFloat = Field(1.0, ge=0, description="Weight of ||lin_phi([0, a])||_2 (>= 0).")
    coeff_edge_diff: FiniteFloat = Field(
        100.0, ge=0, description="Weight of the lin_edge monotonicity penalty (>= 0)."
    )
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = Field("adam", description="Optimizer.")
    scheduler: Literal["none", "cosine", "plateau"] = Field("none", description="Learning-rate schedule.")
    gradient_clip: FiniteFloat = Field(
        0.0, ge=0, description="Max gradient norm; 0 disables clipping (>= 0)."
    )
    test_fraction: FiniteFloat = Field(
        0.1, ge=0, lt=0.9, description="Held-out tail of the trajectory, in [0, 0.9)."
    )
    n_rollout_frames: Int = Field(1000, gt=0, description="Frames of the held-out rollout test (> 0).")
    cluster_method: Literal["kmeans", "gmm", "single_linkage"] = Field(
        "kmeans",
        description="Embedding clustering for cluster_accuracy: k-means (the seeds' criterion), a Gaussian "
        "mixture with full covariances (follows elongated groups), or single linkage.",
    )
    n_log_points: Int = Field(
        20, gt=0, description="In-training evaluations (TensorBoard, tune.report) per run."
    )
    seed: Int = Field(0, ge=0, description="Seed of W init, MLP init and frame sampling (>= 0).")
    device: DeviceName = Field("auto", description="'auto', 'cpu' or 'cuda[:k]' for training.")


class NtuneConfig(_Section):
    """A complete, runnable configuration (what `ntune train` takes and `ntune export` writes)."""

    description: str = Field("", description="Free text.")
    dataset: str = Field("", description="Free-text name of the data set.")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    graph_model: GraphModelConfig = Field(default_factory=GraphModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="before")
    @classmethod
    def _model_follows_simulation(cls, data: Any) -> Any:
        """A graph_model section without signal_model_name takes the simulation's (a PDE_N4 run trains PDE_N4)."""
        if not isinstance(data, dict):
            return data
        sim, gm = data.get("simulation"), data.get("graph_model")
        name = (
            sim.get("signal_model_name") if isinstance(sim, dict) else getattr(sim, "signal_model_name", None)
        )
        if name is None:
            return data
        if gm is None:
            return {**data, "graph_model": {"signal_model_name": name}}
        if isinstance(gm, dict) and "signal_model_name" not in gm:
            return {**data, "graph_model": {**gm, "signal_model_name": name}}
        if isinstance(gm, GraphModelConfig) and "signal_model_name" not in gm.model_fields_set:
            return {**data, "graph_model": {**gm.model_dump(), "signal_model_name": name}}
        return data

    @model_validator(mode="after")
    def _check_model_names(self) -> NtuneConfig:
        sim, model = self.simulation.signal_model_name, self.graph_model.signal_model_name
        if sim != model:
            raise ValueError(
                f"graph_model.signal_model_name is {model!r} but simulation.signal_model_name is {sim!r}; the "
                f"model must match the simulator: set graph_model.signal_model_name to {sim!r} (or leave it out)"
            )
        return self

    def simulation_hash(self) -> str:
        """Stable hash of the simulation section (the data cache key, with the data-format version)."""
        return config_hash(self.simulation.model_dump(exclude={"device"}))


def config_hash(data: dict[str, Any]) -> str:
    """SHA-256 (16 hex chars) of a JSON-canonical dump of ``data``."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``path`` (None if not a model level)."""
    for part in path:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        ann = next((a for a in get_args(ann) if a is not type(None)), ann)  # an optional section's model
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def format_validation_error(err: ValidationError, root: type[BaseModel], data: Any = None) -> str:
    """One line per problem: ``path: bad value -- what is allowed``."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc) or "<root>"
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = _model_at(root, loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            lines.append(f"{path}: unknown field; {hint}valid fields: {', '.join(valid)}")
            continue
        value = e.get("input")
        msg = e["msg"]
        if kind.startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        parent = _model_at(root, loc[:-1]) if loc else None
        desc = ""
        if parent is not None and isinstance(loc[-1], str) and loc[-1] in parent.model_fields:
            desc = parent.model_fields[loc[-1]].description or ""
        shown = "" if isinstance(value, dict) else f"{value!r}: "
        lines.append(f"{path}: {shown}{msg}" + (f" ({desc})" if desc else ""))
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any] | None, overrides: list[str] | None = None) -> NtuneConfig:
    """Validate a plain dict (plus ``a.b=c`` overrides) into an :class:`NtuneConfig`."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    merged = copy.deepcopy(data or {})
    for key, value in parse_overrides(overrides):
        set_dotted(merged, key, value)
    try:
        return NtuneConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, NtuneConfig, merged)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> NtuneConfig:
    """Load and validate a YAML config; ``overrides`` like ``["training.coeff_W_L1=1e-5"]``."""
    data = read_yaml(path)  # its errors name the file already
    try:
        return config_from_dict(data, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}:\n{err}") from None


def config_to_dict(config: NtuneConfig) -> dict[str, Any]:
    """Plain, YAML-safe dict of a config."""
    return config.model_dump(mode="json")


def dump_config(config: NtuneConfig, path: str | Path | None = None) -> str:
    """YAML text of a config (written to ``path`` when given)."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text
