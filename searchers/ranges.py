"""Where training works around a block's robust config: boundary probes per parameter, working regions.

Seed 003 asks, once a config is validated, for "the robust operating range" and for "multiple distinct
working regions". Once a block's search budget is spent and its held-out confirmation (if any) is done,
its robust config (the held-out one, else the best robust node) is the **centre**, and every searched
parameter gets lines of probes. Each probe is a one-parameter move from the centre: a child node of the
robust node (strategy :data:`PROBE`, mutation ``lr_W: 1e-3 -> 1.78e-3``), or the node the search already
made for that config, which then gets the run.

* **Numeric parameters**, one line down and one up. Step outward from the robust value by ``step``
  decades (log-scale domains: loguniform, int with log) or ``linear_step`` of the range (uniform, int),
  the offset growing x :data:`GROWTH` per probe (0.25, 0.75, 2.25 decades ...), clipped at the domain's
  edge; a loguniform domain with ``allow_zero`` ends its down line at 0. After the first confirmed
  failure, ``bisections`` probes at the middle (geometric on a log scale) of the farthest converged
  value and the nearest failed one narrow the boundary. Values have three significant digits.
* **A choice parameter**, one line: every other choice, once each.

A value's **verdict** reads every run of its config in the tree: ``converged`` when a counted run
converged (``unstable`` when an earlier one had not); ``failed`` when two runs did not converge: the
first failure is retried once (another training seed and, with network instances, another network), and
a retry that converges makes the value a converged one and the line goes on outward. A choice is failed
after one run. A run that cannot judge the config (:data:`UNINFORMATIVE`: its network was data-limited,
or it was stopped early) is neither: the value runs again, and after :data:`MAX_UNDECIDED` of them the
line ends ``undecided`` there. A parameter's interval is [farthest converged value down, farthest
converged value up], with the failures bracketing it.

The plan is recomputed from the tree (:func:`plan`), so a planner's state is only each block's centre
and probe trial ids (:class:`BoundaryProbes`). Working regions are :mod:`searchers.regions`. Pure
Python, no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from searchers.decision import Decision
from searchers.objective import STOPPED
from searchers.space import Domain, format_value

PROBE = "boundary-probe"  # the strategy of a boundary probe's run
GROWTH = 3.0  # each outward step is this many times the one before (in decades, or fractions of the range)
MAX_UNDECIDED = 2  # runs that cannot judge a value before its line ends undecided
UNINFORMATIVE = (
    "data-limited",
    STOPPED,
)  # classes of runs that say nothing of the config (robustness.DATA_LIMITED)
# verdicts of a value, and the states of a line
CONVERGED, UNSTABLE, FAILED, OPEN, WAITING = "converged", "unstable", "failed", "open", "waiting"
UNDECIDED, EDGE, BOUNDED, DONE = "undecided", "edge", "bounded", "done"
WORKS = (CONVERGED, UNSTABLE)

Lookup = Callable[[Mapping[str, Any]], tuple[Sequence[str], int]]  # config -> (run classes, pending runs)


class Tree(Protocol):
    """What the planner reads of a block's tree (a :class:`searchers.tree.Tree`; not imported, so that the
    planner stays low in the import layers): its nodes by id and the node holding a config."""

    @property
    def nodes(self) -> Mapping[int, Any]: ...

    def find(self, params: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class RangeSettings:
    """How a block's boundaries are probed: ``trials`` probe runs per block (its own budget, after the
    search's), ``bisections`` per boundary, the first outward ``step`` in decades (log-scale domains) and
    ``linear_step`` as a fraction of the range (linear domains). ``ValueError`` names a bad field."""

    trials: int = 24
    bisections: int = 2
    step: float = 0.25
    linear_step: float = 0.1

    def __post_init__(self) -> None:
        for name, low in (("trials", 1), ("bisections", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"ranges.{name} must be an int >= {low}, got {value!r}")
        for name, high in (("step", 3.0), ("linear_step", 1.0)):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or not 0 < value <= high:
                raise ValueError(f"ranges.{name} must be a number in (0, {high:g}], got {value!r}")


def range_settings(value: RangeSettings | Mapping[str, Any] | None) -> RangeSettings | None:
    """``RangeSettings`` from a dict (as a study writes it) or as given; None: no probes."""
    if value is None or isinstance(value, RangeSettings):
        return value
    names = [f.name for f in fields(RangeSettings)]
    if not isinstance(value, Mapping):
        raise ValueError(f"ranges must be a dict with keys {names} or None, got {value!r}")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f"ranges: unknown key(s) {unknown}; allowed keys are {names}")
    return RangeSettings(**value)


def verdict(classes: Sequence[str], pending: int = 0, needed: int = 2) -> str:
    """What the runs of one config (their classes, in order; ``pending`` runs still out) say of it:
    converged / unstable / failed (``needed`` informative runs, none converged) / waiting / undecided / open
    (run it: first, or again)."""
    informative = [c for c in classes if c not in UNINFORMATIVE]
    if "converged" in informative:
        return CONVERGED if informative[0] == "converged" else UNSTABLE
    if len(informative) >= needed:
        return FAILED
    if pending:
        return WAITING
    return UNDECIDED if len(classes) - len(informative) >= MAX_UNDECIDED else OPEN


@dataclass(frozen=True)
class Probe:
    """One value of a line and its verdict; ``phase``: step, bisect or choice."""

    value: Any
    verdict: str
    phase: str


@dataclass(frozen=True)
class Line:
    """One direction of one parameter (``down``, ``up`` or ``choices``): its probes in order, the farthest
    value that converged (the robust value when none did), the nearest confirmed failure beyond it (None:
    none found) and its state: edge / bounded / done / undecided (finished), open (``next`` runs next) or
    waiting (a probe is out)."""

    key: str
    direction: str
    probes: tuple[Probe, ...]
    reached: Any
    failed: Any
    state: str

    @property
    def next(self) -> Probe | None:
        """The probe to run next (the line's open value), None unless the line is open."""
        return next((p for p in self.probes if p.verdict == OPEN), None) if self.state == OPEN else None


@dataclass(frozen=True)
class Interval:
    """Where one parameter still converges around its robust value: a number's contiguous [low, high] and
    the confirmed failures just beyond it (None: the domain's edge, or none found yet); a choice's
    working values (the robust one first) and failing ones. ``lines``: the probes behind them."""

    key: str
    robust: Any
    lines: tuple[Line, ...]
    low: Any = None
    high: Any = None
    failed_below: Any = None
    failed_above: Any = None
    working: tuple[Any, ...] = ()
    failing: tuple[Any, ...] = ()

    @property
    def state(self) -> str:
        """open / waiting while a line is, else undecided when one is, else done."""
        states = [line.state for line in self.lines]
        return next((s for s in (OPEN, WAITING, UNDECIDED) if s in states), DONE)

    @property
    def confirmed(self) -> bool:
        """Every side ends at the domain's edge or at a failure confirmed by its retry (a choice: every
        other choice converged; a choice's failure has no retry)."""
        return all(
            line.state in (EDGE, BOUNDED) or (line.state == DONE and not self.failing) for line in self.lines
        )


def log_scale(domain: Domain) -> bool:
    """Whether probes of ``domain`` move on a log scale (loguniform, int with log)."""
    return domain.type == "loguniform" or (domain.type == "int" and domain.log)


def _snap(domain: Domain, raw: float) -> Any:
    """``raw`` clipped to the domain, rounded (an int, or three significant digits), clipped again."""
    value = min(max(raw, domain.low), domain.high)
    value = int(round(value)) if domain.type == "int" else float(f"{value:.3g}")
    return min(max(value, domain.low), domain.high)


def outward(domain: Domain, value: Any, sign: int, settings: RangeSettings) -> list[Any]:
    """The step values of one numeric line from ``value`` (``sign`` -1 down, +1 up), nearest first, up to
    the domain's edge (then 0 down a loguniform domain that allows it)."""
    out: list[Any] = []
    previous = value
    log = log_scale(domain)
    if not (log and value == 0 and sign < 0):
        for k in range(64):
            if log and value == 0:  # from an allowed zero: the range's low end, then outward from it
                raw = domain.low * 10 ** (settings.step * GROWTH ** (k - 1)) if k else domain.low
            elif log:
                raw = value * 10 ** (sign * settings.step * GROWTH**k)
            else:
                raw = value + sign * settings.linear_step * (domain.high - domain.low) * GROWTH**k
            new = _snap(domain, raw)
            if domain.type == "int" and new == previous and domain.contains(previous + sign):
                new = previous + sign
            if (new - previous) * sign <= 0:
                break
            out.append(new)
            previous = new
    if sign < 0 and domain.allow_zero and previous != 0:
        out.append(0.0)
    return out


def middle(domain: Domain, a: Any, b: Any) -> Any:
    """The value halfway between ``a`` and ``b`` (geometric on a log scale), None when none lies strictly
    between them (the boundary is as narrow as values go, or one end is an allowed zero)."""
    if log_scale(domain):
        if a <= 0 or b <= 0:
            return None
        raw = math.sqrt(a * b)
    else:
        raw = (a + b) / 2
    value = _snap(domain, raw)
    return value if min(a, b) < value < max(a, b) else None


Judge = Callable[[Any, int], str]  # value, runs needed to fail -> verdict


def _walk(
    key: str, direction: str, domain: Domain, value: Any, settings: RangeSettings, judge: Judge
) -> Line:
    """One numeric line: outward steps until a confirmed failure or the edge, then the bisections."""
    probes: list[Probe] = []
    reached, failed = value, None
    for step in outward(domain, value, -1 if direction == "down" else 1, settings):
        got = judge(step, 2)
        probes.append(Probe(step, got, "step"))
        if got in WORKS:
            reached = step
        elif got == FAILED:
            failed = step
            break
        else:
            return Line(key, direction, tuple(probes), reached, None, got)
    if failed is None:
        return Line(key, direction, tuple(probes), reached, None, EDGE)
    for _ in range(settings.bisections):
        mid = middle(domain, reached, failed)
        if mid is None:
            break
        got = judge(mid, 2)
        probes.append(Probe(mid, got, "bisect"))
        if got in WORKS:
            reached = mid
        elif got == FAILED:
            failed = mid
        elif got == UNDECIDED:
            break
        else:
            return Line(key, direction, tuple(probes), reached, failed, got)
    return Line(key, direction, tuple(probes), reached, failed, BOUNDED)


def _choices(key: str, domain: Domain, value: Any, judge: Judge) -> Line:
    """The line of a choice parameter: every other choice, one run each (one probe out at a time)."""
    probes = tuple(Probe(v, judge(v, 1), "choice") for v in domain.values if v != value)
    verdicts = {p.verdict for p in probes}
    state = next((s for s in (WAITING, OPEN, UNDECIDED) if s in verdicts), DONE)
    return Line(key, "choices", probes, value, None, state)


def plan(
    centre: Mapping[str, Any], space: Mapping[str, Domain], settings: RangeSettings, lookup: Lookup
) -> list[Interval]:
    """Every searched parameter's interval around the ``centre`` config, as far as the runs ``lookup``
    finds go (their classes and pending count per config); open lines name their next probe."""
    out = []
    for key, domain in space.items():
        value = centre[key]

        def judge(v: Any, needed: int, key: str = key) -> str:
            classes, pending = lookup({**centre, key: v})
            return verdict(classes, pending, needed)

        if domain.type == "choice":
            line = _choices(key, domain, value, judge)
            works = tuple(p.value for p in line.probes if p.verdict in WORKS)
            fails = tuple(p.value for p in line.probes if p.verdict == FAILED)
            out.append(Interval(key, value, (line,), working=(value, *works), failing=fails))
        else:
            down, up = (_walk(key, d, domain, value, settings, judge) for d in ("down", "up"))
            out.append(Interval(key, value, (down, up), down.reached, up.reached, down.failed, up.failed))
    return out


def next_line(intervals: Sequence[Interval]) -> Line | None:
    """The open line to probe next: the one with the fewest probes run so far (ties: parameter order, down
    before up), so that a small budget is spread over the parameters; None when no line is open. A probe
    not yet run (verdict open: a choice line lists all of its choices at once) does not count."""
    lines = [line for interval in intervals for line in interval.lines]
    open_lines = [
        (sum(p.verdict != OPEN for p in line.probes), k) for k, line in enumerate(lines) if line.state == OPEN
    ]
    return lines[min(open_lines)[1]] if open_lines else None


def tree_lookup(tree: Tree) -> Lookup:
    """A :data:`Lookup` over the runs (and pending runs) of a tree's nodes."""

    def lookup(params: Mapping[str, Any]) -> tuple[list[str], int]:
        node = tree.find(params)
        return ([], 0) if node is None else ([r.classification for r in node.runs], len(node.pending))

    return lookup


class BoundaryProbes:
    """The boundary probes of every block of one search: each block's centre (fixed when its probes start;
    None: it had no robust node, so none) and its probe trial ids. The plan itself is read from the tree."""

    def __init__(self, settings: RangeSettings | None, space: Mapping[str, Domain]) -> None:
        self.settings, self.space = settings, space
        self.centres: dict[str, int | None] = {}
        self.trials: dict[str, list[str]] = {}

    def owns(self, label: str, trial_id: str) -> bool:
        """Whether ``trial_id`` is a probe of block ``label``."""
        return trial_id in self.trials.get(label, ())

    def plan(self, label: str, tree: Tree) -> list[Interval]:
        """The block's intervals as its tree stands (empty before its probes start, or without a centre)."""
        centre = self.centres.get(label)
        if self.settings is None or centre is None:
            return []
        return plan(tree.nodes[centre].params, self.space, self.settings, tree_lookup(tree))

    def active(self, label: str, tree: Tree, *, settled: bool, robust: int | None) -> bool:
        """Whether the block may still get a probe: before its start, unless it is ``settled`` (search and
        held-out runs done) without a ``robust`` node; after, while budget and an unfinished line remain."""
        if self.settings is None:
            return False
        if label not in self.centres:
            return not settled or robust is not None
        if self.centres[label] is None or len(self.trials.get(label, [])) >= self.settings.trials:
            return False
        return any(line.state in (OPEN, WAITING) for i in self.plan(label, tree) for line in i.lines)

    def step(
        self, label: str, tree: Tree, trial_id: str, *, settled: bool, robust: int | None
    ) -> Decision | None:
        """The block's next probe as a decision for ``trial_id`` (recorded as a probe), None when it has
        none now. The first call once the block is ``settled`` fixes its centre at ``robust``."""
        if self.settings is None or (label not in self.centres and not settled):
            return None
        centre = self.centres.setdefault(label, robust)
        if centre is None or len(self.trials.get(label, [])) >= self.settings.trials:
            return None
        line = next_line(self.plan(label, tree))
        probe = line.next if line is not None else None
        if line is None or probe is None:
            return None
        params = {**tree.nodes[centre].params, line.key: probe.value}
        node, domain = tree.find(params), self.space[line.key]
        retry = node is not None and any(r.classification not in UNINFORMATIVE for r in node.runs)
        self.trials.setdefault(label, []).append(trial_id)
        return Decision(
            PROBE,
            node_id=None if node is None else node.id,
            parent=centre,
            params=params,
            mutation=f"{domain.short}: {format_value(tree.nodes[centre].params[line.key])} -> {format_value(probe.value)}",
            key=line.key,
            rule=f"{domain.short} {line.direction}, {'retry' if retry else probe.phase}",
        )

    def adopt(self, label: str, trial_id: str, robust: int | None) -> None:
        """Count a probe trial a restored state missed (its centre, when not yet fixed, is ``robust``)."""
        self.centres.setdefault(label, robust)
        self.trials.setdefault(label, []).append(trial_id)

    def get_state(self) -> dict[str, Any]:
        """The centres and probe trial ids, as plain data."""
        return {"centres": dict(self.centres), "trials": {k: list(v) for k, v in self.trials.items()}}

    def set_state(self, state: Mapping[str, Any] | None) -> None:
        """Inverse of :meth:`get_state`; None (a state saved before boundary probes): none started."""
        state = state or {}
        self.centres = dict(state.get("centres") or {})
        self.trials = {k: list(v) for k, v in (state.get("trials") or {}).items()}
