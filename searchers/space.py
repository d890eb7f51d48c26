"""Parameter domains declared from plain dicts, and the one-parameter mutation of a config.

A space maps dotted config keys to domains::

    {"training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
     "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]}}

Pure Python: no Ray, no torch, no numpy. Randomness comes from a ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    ) -> Any:
        """A new value different from ``value`` (or ``value`` itself when the domain has one point).

        Continuous values are multiplied or divided by a factor in ``factor_range`` (log domains) or
        shifted by a fraction of the range (linear); choices move to a neighbour; ``extreme`` jumps to
        the range bound farther from ``value``. ``direction`` is -1 (down), +1 (up) or 0 (random).
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
        if self._log_scale:
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


def parse_domain(name: str, spec: Mapping[str, Any]) -> Domain:
    """Validate one domain dict; ``ValueError`` names the parameter and the allowed values."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"space[{name!r}] must be a dict with a 'type' in {DOMAIN_TYPES}, got {spec!r}")
    kind = spec.get("type")
    if kind not in DOMAIN_TYPES:
        raise ValueError(f"space[{name!r}].type must be one of {DOMAIN_TYPES}, got {kind!r}")
    allowed = {"type", "default"} | ({"values"} if kind == "choice" else {"low", "high", "allow_zero", "log"})
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"space[{name!r}] has unknown keys {unknown}; allowed keys are {sorted(allowed)}")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"space[{name!r}].values must be a non-empty list, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"space[{name!r}].values must be distinct, got {values!r}")
        domain = Domain(name=name, type=kind, values=tuple(values), default=spec.get("default"))
    else:
        low, high = spec.get("low"), spec.get("high")
        for label, bound in (("low", low), ("high", high)):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise ValueError(f"space[{name!r}].{label} must be a finite number, got {bound!r}")
        if not low < high:
            raise ValueError(f"space[{name!r}] needs low < high, got low={low!r}, high={high!r}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"space[{name!r}].low must be > 0 for a loguniform domain, got {low!r}")
        log = bool(spec.get("log", False))
        if kind == "int" and (int(low) != low or int(high) != high or (log and low <= 0)):
            raise ValueError(
                f"space[{name!r}] int bounds must be integers (low > 0 when log), got {low}, {high}"
            )
        allow_zero = bool(spec.get("allow_zero", False))
        if allow_zero and kind != "loguniform":
            raise ValueError(f"space[{name!r}].allow_zero is only allowed for type 'loguniform'")
        domain = Domain(
            name=name,
            type=kind,
            low=float(low) if kind != "int" else int(low),
            high=float(high) if kind != "int" else int(high),
            allow_zero=allow_zero,
            log=log,
            default=spec.get("default"),
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
) -> Mutation | None:
    """Change exactly one parameter of ``params``; None if no new config (outside ``exclude``) is found.

    ``key`` fixes the parameter (else drawn from ``candidates`` or the whole space); every attempt
    after the first that collides with ``exclude`` draws again (a fixed key keeps its key).
    """
    keys = [key] if key is not None else list(candidates or space)
    for attempt in range(attempts):
        name = keys[0] if key is not None else rng.choice(keys)
        domain = space[name]
        old = params[name]
        new = domain.move(old, rng, direction=direction, factor_range=factor_range, extreme=extreme)
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
