"""The study schema: a base config, blocks (e.g. filling factors), the search space, the budget.

:class:`StudyConfig` checks each field on its own (unknown keys, bad values, domains);
:mod:`ntune.study.load` checks a study as a whole against its base config. This module imports no Ray.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ntune.config import FiniteFloat, Int
from ntune.study.guards import BAD_NAME_CHARS
from ntune.study.ranges import Ranges
from ntune.study.stopping import EarlyStop
from ntune.study.trainer import TrainerField
from ntune.yamlio import parse_overrides
from searchers.objective import default_thresholds, default_weights
from searchers.space import validate_domain
from searchers.tree import DEFAULT_UCB_C

CONFIG_SECTIONS = ("simulation", "graph_model", "training", "description", "dataset")
OBJECTIVE_METRICS = ("connectivity_R2", "cluster_accuracy", "test_R2", "test_pearson")
INSTANCE_KEY = "simulation.seed"  # what a network instance varies (W, types, initial state)
DEFAULT_HELD_OUT = 3  # held-out networks per block with repeats_vary: instance
GPU_POPULATION = 16  # population "auto" on a GPU: 90x / 17x fit's member throughput at N = 100 / 1000 (H100, benchmarks/README.md)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Model):
    """score = sum of weight * metric (clipped to [0, 1]); converged when every thresholded metric passes."""

    weights: dict[str, FiniteFloat] = Field(default_factory=default_weights, description="metric -> weight.")
    thresholds: dict[str, FiniteFloat] = Field(
        default_factory=default_thresholds,
        description="metric -> value a converged run exceeds.",
    )

    @model_validator(mode="after")
    def _check(self) -> Objective:
        if not self.weights:
            raise ValueError("weights is empty; give at least one metric, e.g. {connectivity_R2: 1.0}")
        for name, table in (("weights", self.weights), ("thresholds", self.thresholds)):
            for metric, value in table.items():
                if metric not in OBJECTIVE_METRICS:
                    raise ValueError(
                        f"{name}: unknown metric {metric!r}; valid metrics: {', '.join(OBJECTIVE_METRICS)}"
                    )
                if not 0 <= value <= 1:
                    raise ValueError(f"{name}.{metric} = {value} must be in [0, 1]")
        if sum(self.weights.values()) <= 0:
            raise ValueError("weights must sum to a positive number")
        return self


class Resources(_Model):
    """Resources of one trial; fractional GPUs pack several trials on one device."""

    cpu: FiniteFloat = Field(1.0, gt=0, description="CPUs per trial (> 0).")
    gpu: FiniteFloat = Field(0.0, ge=0, description="GPUs per trial (>= 0; 0.25 packs four trials on a GPU).")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and not v.is_integer():
            raise ValueError(f"{v} GPUs: a request above 1 must be a whole number (Ray cannot split it)")
        return v


class DataLimited(_Model):
    """Blocks whose identifiability ceiling is below the connectivity_R2 threshold (ntune.data.identifiability)."""

    check: bool = Field(True, description="Compute each block's ceiling before the study starts.")
    probe_trials: Int = Field(
        2, ge=0, description="Trials a data-limited block gets instead of n_iter_block (>= 0)."
    )


class StudyConfig(_Model):
    """One study: one UCB tree per block value, ``n_iter_block`` trials each."""

    name: str = Field(..., min_length=1, description="Experiment name (folder under storage_path).")
    description: str = Field("", description="Free text.")
    base: str | dict[str, Any] = Field(
        ..., description="Base run config: a YAML path (relative to the study file) or an inline mapping."
    )
    set: list[str] = Field(default_factory=list, description="Overrides of the base config, 'a.b=c' strings.")
    blocks: dict[str, list[Any]] = Field(
        ..., description="Exactly one dotted key and its values, one search tree per value."
    )
    block_set: dict[Any, list[str]] = Field(
        default_factory=dict,
        description="Per-block overrides of the base config: block value -> 'a.b=c' strings "
        "(a searched key sets that block's root; any other key, simulation fields included, changes every "
        "trial of the block). A block's data come from the base config, its block value and its "
        "simulation overrides here, so one study can compare regimes that differ in several fields.",
    )
    block_trials: dict[Any, Int] = Field(
        default_factory=dict,
        description="Per-block budgets: block value -> trials (> 0), instead of n_iter_block "
        "(a data-limited block still gets only its probe trials).",
    )
    objective: Objective = Field(default_factory=Objective)
    space: dict[str, dict[str, Any]] = Field(
        ..., description="Dotted key -> domain (type, low, high | values)."
    )
    n_iter_block: Int = Field(12, gt=0, description="Trials per block (> 0).")
    ucb_c: FiniteFloat = Field(
        DEFAULT_UCB_C, ge=0, description="Exploration constant c of UCB (>= 0; scores lie in [0, 1])."
    )
    formula: Literal["ucb", "puct"] = Field(
        "ucb", description="'ucb' (mean + c sqrt(ln N / n)) or upstream 'puct'."
    )
    robustness_repeats: Int = Field(
        3, ge=1, description="Runs (seeds) a converged config needs to be robust (>= 1)."
    )
    repeats_vary: Literal["instance", "seed"] = Field(
        "instance",
        description="What a config's repeats vary: 'instance' (run r trains on network r of its block: "
        "network 0 is the base config's simulation.seed, the others new networks derived from the study "
        "seed, the block and r, each with a new training seed) or 'seed' (the training seed only, one network).",
    )
    held_out: Int | None = Field(
        None,
        ge=0,
        description="Networks the search never used on which each block's robust config is confirmed once "
        "its budget is spent ('held-out k of K'); default 3 with repeats_vary 'instance', 0 with 'seed' "
        "(which allows no other value).",
    )
    time_budget_h: FiniteFloat | None = Field(
        None,
        gt=0,
        description="Hours of wall time the study may run, summed over its sessions (> 0; none: until its "
        "trials are done). When it is spent the run stops as on Ctrl-C; raise it and run again to go on.",
    )
    retry_failed: Int = Field(1, ge=0, description="Retries of a config whose only run failed (>= 0).")
    scouts: Int = Field(
        2,
        ge=0,
        description="Children of each block's root started before it reports: the root trained longer "
        "(when a cost key is searched), then a Latin hypercube over the numeric parameters; until a run of the "
        "block meets an objective (>= 0; 0 = none).",
    )
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: Int = Field(2, ge=1, description="Trials running at once (>= 1).")
    max_failures: Int = Field(
        0, ge=0, description="Ray retries of a crashed trial before it is recorded failed."
    )
    storage_path: str = Field(
        "./ntune_results",
        min_length=1,
        description="Folder holding the experiment folder, or a URI (s3://bucket/prefix, gs://...; "
        "an S3-compatible store's endpoint in $AWS_ENDPOINT_URL).",
    )
    seed: Int = Field(0, ge=0, description="Searcher seed (mutations, run seeds).")
    population: Int | Literal["auto"] = Field(
        "auto",
        description="Configs per Tune trial trained as one batched model (>= 1), or 'auto' "
        f"(1 on CPU, where it does not pay; {GPU_POPULATION} when trials have a GPU).",
    )
    data_limited: DataLimited = Field(default_factory=DataLimited)
    early_stop: EarlyStop | None = Field(
        None, description="Lineage early stopping of search children ({} for the defaults; absent: none)."
    )
    ranges: Ranges | None = Field(
        None,
        description="After each block's search and held-out runs, boundary probes around its robust config: "
        "where training still converges, per parameter ({} for the defaults; absent: none).",
    )
    loggers: list[Literal["mlflow", "wandb"]] = Field(
        default_factory=list,
        description="Trackers every trial also logs to: 'mlflow' (MLFLOW_TRACKING_URI), 'wandb' (WANDB_PROJECT, "
        "WANDB_MODE=offline); pip install 'ntune[mlflow]' / 'ntune[wandb]'.",
    )
    torch_threads: Int | None = Field(
        None, ge=1, description="torch threads per trial (default: resources.cpu)."
    )
    trainer: TrainerField = Field(
        None,
        description="Train each trial with your own command instead of ntune's trainer (absent: ntune's).",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not all(c.isalnum() or c in "-_." for c in v) or v.startswith("."):
            raise ValueError(f"name {v!r} may use letters, digits, '-', '_' and '.' only (it names a folder)")
        return v

    @field_validator("blocks")
    @classmethod
    def _check_blocks(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if len(v) != 1:
            raise ValueError(f"blocks must have exactly one key (got {len(v)}: {', '.join(v) or 'none'})")
        key, values = next(iter(v.items()))
        if not values:
            raise ValueError(f"blocks.{key} has no values")
        if len({repr(x) for x in values}) != len(values):
            raise ValueError(f"blocks.{key} has duplicate values: {values}")
        for value in values:
            bad = [c for c in BAD_NAME_CHARS if c in str(value)]
            if bad:
                raise ValueError(
                    f"{key}: value {value!r} contains {' and '.join(map(repr, bad))}; block values "
                    "name folders and files, so they may not contain path separators or NUL"
                )
        return v

    @field_validator("space")
    @classmethod
    def _check_space(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("space is empty; give at least one parameter domain")
        for key, dom in v.items():
            validate_domain(key, dom)  # the searcher's domain models: one validation for both
        return v

    @property
    def block_key(self) -> str:
        """The dotted config key that differs between blocks."""
        return next(iter(self.blocks))

    @property
    def block_values(self) -> list[Any]:
        """The block values, in the study's order."""
        return list(self.blocks[self.block_key])

    def _block_value(self, key: Any) -> Any:
        """The block value a ``block_set`` / ``block_trials`` key names (YAML may write 1.0 as '1.0')."""
        by_text = {str(v): v for v in self.block_values}
        return key if key in self.block_values else by_text.get(str(key), key)

    def block_budgets(self) -> dict[Any, int]:
        """block value -> trials from ``block_trials``."""
        return {self._block_value(k): int(n) for k, n in self.block_trials.items()}

    def block_overrides(self) -> dict[Any, dict[str, Any]]:
        """block value -> {dotted key: value} from ``block_set`` (keys matched to the block values)."""
        return {self._block_value(k): dict(parse_overrides(items)) for k, items in self.block_set.items()}

    @property
    def n_trials(self) -> int:
        """The study's whole budget before the identifiability check (``block_trials`` included)."""
        budgets = self.block_budgets()
        return sum(budgets.get(v, self.n_iter_block) for v in self.block_values)

    @field_validator("population")
    @classmethod
    def _check_population(cls, v: int | str) -> int | str:
        if v != "auto" and (not isinstance(v, int) or v < 1):
            raise ValueError(f"population must be an integer >= 1 or 'auto', got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_held_out(self) -> StudyConfig:
        if self.repeats_vary == "seed" and self.held_out:
            raise ValueError(
                f"held_out: {self.held_out} held-out networks need repeats_vary: instance "
                "(with repeats_vary: seed every run trains on one network); set held_out: 0"
            )
        if self.early_stop is not None and self.population_size > 1:
            raise ValueError(
                f"early_stop needs one config per Tune trial (population: {self.population} packs "
                f"{self.population_size}); set population: 1 or remove early_stop"
            )
        return self

    @property
    def held_out_networks(self) -> int:
        """K: held-out networks per block (``held_out``, else 3 with instances and 0 with seeds)."""
        if self.held_out is not None:
            return int(self.held_out)
        return DEFAULT_HELD_OUT if self.repeats_vary == "instance" else 0

    @property
    def instance_key(self) -> str | None:
        """The config key a network instance varies (``simulation.seed``), None when repeats vary the seed."""
        return INSTANCE_KEY if self.repeats_vary == "instance" else None

    @property
    def population_size(self) -> int:
        """K: members per Tune trial (``auto``: 1 on CPU, GPU_POPULATION with a GPU per trial)."""
        if self.population == "auto":
            return GPU_POPULATION if self.resources.gpu > 0 else 1
        return int(self.population)

    @property
    def threads(self) -> int:
        """torch threads per trial."""
        return self.torch_threads or max(1, int(self.resources.cpu))
