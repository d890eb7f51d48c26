"""Parameter domains declared from plain dicts, and the one-parameter mutation of a config.

A space maps dotted config keys to domains (validated once, by the pydantic models below, which
the study config uses too; unknown keys are errors)::

    {"training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
     "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]}}

No Ray, no torch, no numpy. Randomness comes from a ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

DOMAIN_TYPES = ("loguniform", "uniform", "int", "choice")
FACTOR_RANGE = (1.5, 10.0)
ZERO_JUMP_PROBABILITY = 0.1


@dataclass(frozen=True)
class Domain:
    """One parameter's domain: a continuous range (log or linear), an integer range or choices."""

    name: str
    type: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()
    allow_zero: bool = False
    log: bool = False
    default: Any = None

    @property
    def short(self) -> str:
        """The leaf of the dotted key, used in mutation records (``coeff_W_L1``)."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def is_numeric(self) -> bool:
        return self.type != "choice"

    def contains(self, value: Any) -> bool:
        """True when ``value`` lies in the domain."""
        if self.type == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.allow_zero and value == 0:
            return True
        if self.type == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def center(self) -> Any:
        """The default value, else the geometric (log) or arithmetic middle, else the first choice."""
        if self.default is not None:
            return self.default
        if self.type == "choice":
            return self.values[0]
        mid = math.sqrt(self.low * self.high) if self._log_scale else (self.low + self.high) / 2
        return int(round(mid)) if self.type == "int" else _round(mid)

    def sample(self, rng: random.Random) -> Any:
        """A uniform draw (on the log scale for log domains)."""
        if self.type == "choice":
            return rng.choice(self.values)
        if self._log_scale:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return int(round(value)) if self.type == "int" else value

    def at_quantile(self, q: float) -> Any:
        """The value a fraction ``q`` in [0, 1] along the range (on the log scale for log domains).

        A choice domain maps [0, 1) onto its values in order. Used for stratified (space-filling) draws.
        """
        q = min(max(q, 0.0), 1.0)
        if self.type == "choice":
            return self.values[min(int(q * len(self.values)), len(self.values) - 1)]
        if self._log_scale:
            value = math.exp(math.log(self.low) + q * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + q * (self.high - self.low)
        return int(round(value)) if self.type == "int" else _round(value)

    def quantile(self, value: float) -> float:
        """The fraction along the range where ``value`` lies, clipped to [0, 1] (inverse of ``at_quantile``
        for numeric domains; 0 for a zero that ``allow_zero`` admits on a log range)."""
        if self.high == self.low:
            return 0.0
        if self._log_scale:
            if value <= 0:
                return 0.0
            q = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            q = (value - self.low) / (self.high - self.low)
        return min(max(q, 0.0), 1.0)

    @property
    def _log_scale(self) -> bool:
        return self.type == "loguniform" or (self.type == "int" and self.log)

    def move(
        self,
        value: Any,
        rng: random.Random,
        *,
        direction: int = 0,
        factor_range: tuple[float, float] = FACTOR_RANGE,
        extreme: bool = False,
        log: bool | None = None,
    ) -> Any:
        """A new value different from ``value`` (or ``value`` itself when the domain has one point).

        Continuous values are multiplied or divided by a factor in ``factor_range`` (log domains) or
        shifted by a fraction of the range (linear); choices move to a neighbour; ``extreme`` jumps to
        the range bound farther from ``value``. ``direction`` is -1 (down), +1 (up) or 0 (random).
        ``log`` overrides the domain's scale for this move (a cost parameter is scaled by a factor).
        """
        if self.type == "choice":
            return self._move_choice(value, rng, direction, extreme)
        if extreme:
            return self._extreme(value, direction)
        direction = direction or rng.choice((-1, 1))
        if self.allow_zero and value == 0:
            return _round(self.low * math.exp(rng.uniform(0.0, math.log(factor_range[0]))))
        if value <= self.low and direction < 0 and not self.allow_zero:
            direction = 1
        if value >= self.high and direction > 0:
            direction = -1
        if (self._log_scale if log is None else log) and value > 0:
            factor = math.exp(rng.uniform(math.log(factor_range[0]), math.log(factor_range[1])))
            new = value * factor if direction > 0 else value / factor
        else:
            new = value + direction * (self.high - self.low) * rng.uniform(0.05, 0.3)
        if self.allow_zero and direction < 0 and (new < self.low or rng.random() < ZERO_JUMP_PROBABILITY):
            return 0.0
        new = min(max(new, self.low), self.high)
        if self.type == "int":
            new = int(round(new))
            if new == value:
                new = min(max(value + direction, int(self.low)), int(self.high))
            return new
        return _round(new)

    def _extreme(self, value: Any, direction: int) -> Any:
        if direction == 0:
            if self._log_scale and value > 0:
                down = math.log(value) - math.log(self.low)
                up = math.log(self.high) - math.log(value)
            else:
                down, up = value - self.low, self.high - value
            direction = 1 if up >= down else -1
        new = self.high if direction > 0 else self.low
        return int(new) if self.type == "int" else float(new)

    def _move_choice(self, value: Any, rng: random.Random, direction: int, extreme: bool) -> Any:
        index = self.values.index(value) if value in self.values else 0
        last = len(self.values) - 1
        if extreme:
            return self.values[last if index < last / 2 else 0]
        step = direction or rng.choice((-1, 1))
        if not 0 <= index + step <= last:
            step = -step
        return self.values[min(max(index + step, 0), last)]


@dataclass(frozen=True)
class Mutation:
    """The outcome of ``mutate_one``: the new config and the single change that made it."""

    params: dict[str, Any]
    key: str
    old: Any
    new: Any
    text: str = field(default="")


class _Spec(BaseModel):
    """A domain as written in a study or passed to a searcher; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    default: Any = None


class _RangeSpec(_Spec):
    low: float = Field(strict=True, allow_inf_nan=False)
    high: float = Field(strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> _RangeSpec:
        if not self.low < self.high:
            raise ValueError(f"needs low < high, got low={self.low!r}, high={self.high!r}")
        return self


class LogUniformSpec(_RangeSpec):
    """``{type: loguniform, low > 0, high, allow_zero?, default?}``."""

    type: Literal["loguniform"]
    allow_zero: bool = False

    @model_validator(mode="after")
    def _positive(self) -> LogUniformSpec:
        if self.low <= 0:
            raise ValueError(f"low must be > 0 for a loguniform domain, got {self.low!r}")
        return self


class UniformSpec(_RangeSpec):
    """``{type: uniform, low, high, default?}``."""

    type: Literal["uniform"]


class IntSpec(_RangeSpec):
    """``{type: int, low, high (integers), log?, default?}``."""

    type: Literal["int"]
    log: bool = False

    @model_validator(mode="after")
    def _integral(self) -> IntSpec:
        if int(self.low) != self.low or int(self.high) != self.high or (self.log and self.low <= 0):
            raise ValueError(f"int bounds must be integers (low > 0 when log), got {self.low}, {self.high}")
        return self


class ChoiceSpec(_Spec):
    """``{type: choice, values: [distinct, ...], default?}``."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> ChoiceSpec:
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"values must be distinct, got {self.values!r}")
        return self


DomainSpec = Annotated[LogUniformSpec | UniformSpec | IntSpec | ChoiceSpec, Field(discriminator="type")]
_SPEC = TypeAdapter(DomainSpec)
_CLASSES: dict[str, type[_Spec]] = {
    "loguniform": LogUniformSpec,
    "uniform": UniformSpec,
    "int": IntSpec,
    "choice": ChoiceSpec,
}
_KEYS = {kind: sorted(cls.model_fields) for kind, cls in _CLASSES.items()}


def _spec_error(err: ValidationError, spec: Mapping[str, Any]) -> str:
    """One line per problem of a domain dict, in the words a study author needs."""
    kind = str(spec.get("type"))
    out = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"][1:]) or "type"
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            out.append(f"type must be one of the valid types {DOMAIN_TYPES}, got {spec.get('type')!r}")
        elif e["type"] == "extra_forbidden":
            out.append(f"unknown key {where!r}; allowed keys are {_KEYS.get(kind, [])}")
        elif e["type"] == "missing":
            out.append(
                f"a {kind} domain needs {', '.join(k for k in ('low', 'high', 'values') if k in _KEYS.get(kind, []))} (missing {where})"
            )
        elif e["type"] == "too_short":
            out.append(f"{where} must be a non-empty list, got {e['input']!r}")
        elif e["type"] == "value_error":
            out.append(str(e["ctx"]["error"]))
        elif where in ("low", "high"):
            out.append(f"{where} must be a finite number, got {e['input']!r}")
        else:
            out.append(f"{where}: {e['msg']}, got {e['input']!r}")
    return "; ".join(out)


def validate_domain(name: str, spec: Any) -> DomainSpec:
    """The validated spec of one domain dict; ``ValueError`` names the parameter (``space['name']``)."""
    if isinstance(spec, _Spec):
        return spec  # type: ignore[return-value]
    if not isinstance(spec, Mapping):
        raise ValueError(f"space[{name!r}] must be a dict with a 'type' in {DOMAIN_TYPES}, got {spec!r}")
    try:
        return _SPEC.validate_python(dict(spec))
    except ValidationError as err:
        raise ValueError(f"space[{name!r}]: {_spec_error(err, spec)}") from None


def parse_domain(name: str, spec: Any) -> Domain:
    """Validate one domain (dict or spec model) and build its :class:`Domain`."""
    valid = validate_domain(name, spec)
    if isinstance(valid, ChoiceSpec):
        domain = Domain(name=name, type="choice", values=tuple(valid.values), default=valid.default)
    else:
        is_int = isinstance(valid, IntSpec)
        domain = Domain(
            name=name,
            type=valid.type,
            low=int(valid.low) if is_int else float(valid.low),
            high=int(valid.high) if is_int else float(valid.high),
            allow_zero=isinstance(valid, LogUniformSpec) and valid.allow_zero,
            log=isinstance(valid, IntSpec) and valid.log,
            default=valid.default,
        )
    if domain.default is not None and not domain.contains(domain.default):
        raise ValueError(f"space[{name!r}].default={domain.default!r} lies outside the domain")
    return domain


def parse_space(space: Mapping[str, Any]) -> dict[str, Domain]:
    """Dotted key -> Domain, from plain dicts (as in YAML) or ready Domain objects."""
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"space must be a non-empty dict of dotted key -> domain dict, got {space!r}")
    parsed: dict[str, Domain] = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"space keys must be non-empty dotted strings, got {name!r}")
        parsed[name] = spec if isinstance(spec, Domain) else parse_domain(name, spec)
    return parsed


def config_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable identity of a config; floats compared to 10 significant digits."""
    return tuple(sorted((k, f"{v:.10g}" if isinstance(v, float) else repr(v)) for k, v in params.items()))


def format_value(value: Any) -> str:
    """Short human form: ``1e-03`` style for small/large floats, plain otherwise."""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def mutate_one(
    params: Mapping[str, Any],
    space: Mapping[str, Domain],
    rng: random.Random,
    *,
    key: str | None = None,
    direction: int = 0,
    factor_range: tuple[float, float] = FACTOR_RANGE,
    extreme: bool = False,
    exclude: Collection[tuple[tuple[str, str], ...]] = (),
    candidates: list[str] | None = None,
    attempts: int = 12,
    log: bool | None = None,
) -> Mutation | None:
    """Change exactly one parameter of ``params``; None if no new config (outside ``exclude``) is found.

    ``key`` fixes the parameter (else drawn from ``candidates`` or the whole space); every attempt
    after the first that collides with ``exclude`` draws again (a fixed key keeps its key); ``log``
    overrides the domain's scale (``Domain.move``).
    """
    keys = [key] if key is not None else list(candidates or space)
    for attempt in range(attempts):
        name = keys[0] if key is not None else rng.choice(keys)
        domain = space[name]
        old = params[name]
        new = domain.move(old, rng, direction=direction, factor_range=factor_range, extreme=extreme, log=log)
        if extreme and attempt > 0 and new == old:
            new = domain.move(old, rng, direction=-direction or 1, extreme=True)
        if new == old or not domain.contains(new):
            continue
        child = dict(params)
        child[name] = new
        if config_key(child) in exclude:
            continue
        text = f"{domain.short}: {format_value(old)} -> {format_value(new)}"
        return Mutation(params=child, key=name, old=old, new=new, text=text)
    return None


def _round(value: float) -> float:
    """Three significant digits, the precision a person writes in a config."""
    return float(f"{value:.3g}")
