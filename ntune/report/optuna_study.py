"""An experiment as Optuna studies: ``ntune export --format optuna`` and the report's Pareto fronts and importances.

One study per block, two objectives (``connectivity_R2``, ``cluster_accuracy``, both maximised, so
``optuna-dashboard`` draws the Pareto front), one trial per completed record in order of completion:

* parameters: the study's searched fields by their dotted names (a value the record's params lack is
  its config's default, :func:`searched`), with distributions built from the study's space
  (:func:`distributions`);
* state (:data:`STATES`): ``ok`` -> COMPLETE with both metrics as values; ``incomplete`` (the trial
  stopped before its final report: stopped early, or killed) -> PRUNED; ``diverged``, ``error`` and any
  other status -> FAIL; a COMPLETE record with a non-finite metric -> FAIL (Optuna needs finite values);
* user attributes: block, node, parent (and their study-wide ``id``, ``parent_id``), strategy,
  mutation, classification, status, score, trial id, run, seed, network, the last line of an error (its
  exception), every finite metric (``metric.<name>``);
* times: completed at the record's time, started ``training_time_min`` before it when known.

Held-out runs (strategy ``held-out``: the block's robust config trained on networks the search never
used) are included as trials with ``strategy=held-out``: they are evaluations of a config of the space
like any other, and the Pareto front and importances should see them; filter on the attribute to leave
them out. Optuna is imported inside the functions (an extra: ``pip install ntune[optuna]``).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntune.config import ConfigError, config_from_dict, config_to_dict, get_dotted
from ntune.plots import plot_pareto, save_figure
from ntune.study.experiment import Experiment
from ntune.study.guards import safe_name
from ntune.study.records import fmt
from searchers.space import parse_space

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

OBJECTIVES = ("connectivity_R2", "cluster_accuracy")
STATES = {
    "ok": "COMPLETE",
    "incomplete": "PRUNED",
    "stopped": "PRUNED",
    "diverged": "FAIL",
    "error": "FAIL",
}  # else FAIL
ATTRS = ("block", "node", "parent", "id", "parent_id", "strategy", "mutation", "run", "seed", "network")
INSTALL = "pip install 'ntune[optuna]'"


def have_optuna() -> bool:
    """Whether Optuna is installed."""
    return find_spec("optuna") is not None


def _need_optuna() -> None:
    if not have_optuna():
        raise ModuleNotFoundError(f"Optuna is not installed: {INSTALL}")


@contextmanager
def _quiet() -> Iterator[None]:
    """Optuna without its INFO lines and experimental-API warnings, restored afterwards."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def distributions(
    space: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> dict[str, BaseDistribution]:
    """Dotted name -> Optuna distribution of each searched field of ``space`` (the study's space as in
    study.json), widened to hold every value the ``records`` used.

    loguniform -> ``FloatDistribution(log=True)``, uniform -> ``FloatDistribution``, int ->
    ``IntDistribution`` (log when the domain is), choice -> ``CategoricalDistribution``. A zero that
    ``allow_zero`` admits has no place on a log scale: a log domain that some record set to zero becomes
    linear from 0.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    domains = parse_space(space)
    used = [searched(r, domains) for r in records]
    for name, d in domains.items():
        seen = [values[name] for values in used if name in values]
        if d.type == "choice":
            out[name] = CategoricalDistribution(list(dict.fromkeys([*d.values, *seen])))
            continue
        numbers = [float(v) for v in seen if _number(v)]
        low, high = min([d.low, *numbers]), max([d.high, *numbers])
        log = d.type == "loguniform" or (d.type == "int" and d.log)
        if d.type == "int":
            low, high = math.floor(low), math.ceil(high)
            out[name] = IntDistribution(int(low), int(high), log=log and low >= 1)
        else:
            out[name] = FloatDistribution(low, high, log=log and low > 0)
    return out


def trial_state(rec: Mapping[str, Any]) -> str:
    """The Optuna trial state name of a record (:data:`STATES`; COMPLETE needs both metrics finite)."""
    state = STATES.get(rec["status"], "FAIL")
    if state == "COMPLETE" and not all(_number(rec["metrics"].get(k)) for k in OBJECTIVES):
        return "FAIL"
    return state


def user_attrs(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes of a record's trial (see the module docstring)."""
    search = rec.get("search") or {}
    attrs = {k: search.get(k) for k in ATTRS if k in search}
    attrs.update(
        trial_id=rec["trial_id"],
        status=rec["status"],
        classification=rec["classification"],
        score=rec["score"],
        block=rec["block"],
    )
    if rec.get("error"):
        attrs["error"] = str(rec["error"]).strip().splitlines()[-1]
    attrs.update({f"metric.{k}": float(v) for k, v in rec["metrics"].items() if _number(v)})
    return attrs


def searched(rec: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The record's values of the searched fields ``names``; one its params lack (a config that left it to
    the default) is read from its config with the defaults filled in, and left out if that config is invalid."""
    values = {k: rec["params"].get(k) for k in names}
    if any(v is None for v in values.values()):
        try:
            config = config_to_dict(config_from_dict(rec["config"]))
        except ConfigError:
            config = {}
        values = {k: get_dotted(config, k) if v is None else v for k, v in values.items()}
    return {k: v for k, v in values.items() if v is not None}


def frozen_trial(rec: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> FrozenTrial:
    """The Optuna trial of one completed record."""
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    state = trial_state(rec)
    params = {
        k: int(v) if isinstance(dists[k], IntDistribution) else v for k, v in searched(rec, dists).items()
    }
    trial = create_trial(
        state=TrialState[state],
        values=[float(rec["metrics"][k]) for k in OBJECTIVES] if state == "COMPLETE" else None,
        params=params,
        distributions={k: dists[k] for k in params},
        user_attrs=user_attrs(rec),
    )
    try:
        done = _dt.datetime.fromisoformat(str(rec.get("time")))
    except ValueError:
        return trial
    minutes = rec["metrics"].get("training_time_min")
    trial.datetime_complete = done
    trial.datetime_start = done - _dt.timedelta(minutes=float(minutes)) if _number(minutes) else done
    return trial


def study_name(exp: Experiment, label: str) -> str:
    """The Optuna study name of block ``label``: ``<study name>:<block label>``."""
    return f"{exp.info['study']['name']}:{label}"


def block_studies(exp: Experiment, storage: Any) -> dict[str, optuna.Study]:
    """Block label -> a new Optuna study in ``storage`` holding the block's trials (see the module docstring)."""
    import optuna

    records = exp.records
    dists = distributions(exp.info["study"]["space"], records)
    studies: dict[str, optuna.Study] = {}
    with _quiet():
        for label in exp.ledger.labels():
            study = optuna.create_study(
                storage=storage, study_name=study_name(exp, label), directions=["maximize"] * len(OBJECTIVES)
            )
            study.set_metric_names(list(OBJECTIVES))
            study.set_user_attr("ntune_study", exp.info["study"]["name"])
            study.set_user_attr("block", label)
            study.set_user_attr("block_key", exp.info["block_key"])
            study.add_trials([frozen_trial(r, dists) for r in records if r["block"] == label])
            studies[label] = study
    return studies


def write_journal(exp: Experiment, path: Path) -> list[tuple[str, str]]:
    """Write the experiment's studies as an Optuna journal file at ``path`` (replaced whole, atomically);
    returns ``("wrote", path)`` and a ``("note", how to view it)`` message."""
    _need_optuna()
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    block_studies(exp, optuna.storages.JournalStorage(JournalFileBackend(str(tmp))))
    os.replace(tmp, path)
    return [("wrote", str(path)), ("note", f"view it: optuna-dashboard {path}")]


def pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's Pareto-optimal trials (both objectives maximised), best connectivity_R2 first."""
    rows = [
        {
            "number": t.number,
            **t.user_attrs,
            **dict(zip(OBJECTIVES, t.values, strict=True)),
            "params": t.params,
        }
        for t in study.best_trials
    ]
    return sorted(rows, key=lambda r: (-r[OBJECTIVES[0]], -r[OBJECTIVES[1]], r["number"]))


def varied(trials: Sequence[FrozenTrial]) -> list[str]:
    """The parameters that take more than one value over ``trials``, in the order of their first appearance."""
    names = list(dict.fromkeys(p for t in trials for p in t.params))
    return [p for p in names if len({repr(t.params.get(p)) for t in trials}) > 1]


def _objective(k: int) -> Callable[[FrozenTrial], float]:
    """The ``k``-th objective value of a completed trial (an importance evaluator's target)."""

    def value(trial: FrozenTrial) -> float:
        return float(trial.values[k])

    return value


def importances(study: optuna.Study) -> dict[str, dict[str, float] | None]:
    """Objective -> parameter -> importance by Optuna's fANOVA evaluator (seed 0, normalised to sum 1) over
    the completed trials, for the parameters they vary (:func:`varied`; one they never vary explains
    nothing); None where there is nothing to explain (no varied parameter, or one value of the objective)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = varied(done)
    out: dict[str, dict[str, float] | None] = {}
    for k, name in enumerate(OBJECTIVES):
        out[name] = None
        if not params or len({t.values[k] for t in done}) < 2:
            continue
        try:
            found = get_param_importances(
                study,
                evaluator=FanovaImportanceEvaluator(seed=0),
                params=params,
                target=_objective(k),
            )
        except RuntimeError:  # fANOVA's trees found no split that explains any variance
            continue
        out[name] = {p: float(v) for p, v in found.items()}
    return out


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _section(study: optuna.Study, label: str, folder: Path, rel: str) -> list[str]:
    """A block's Pareto front (table and plot) and parameter importances in report.md."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return ["### Pareto front\n\nNo completed trial with both metrics.\n\n"]
    front = pareto_rows(study)
    names = list(front[0]["params"])
    lines = [
        "### Pareto front\n\n",
        f"{len(front)} of {len(done)} completed trials are Pareto-optimal "
        "(no other trial has both a higher connectivity_R2 and a higher cluster_accuracy).\n\n",
    ]
    lines.append("| trial | node | strategy | R2 | cluster | " + " | ".join(map(_leaf, names)) + " |\n")
    lines.append("|---" * (5 + len(names)) + "|\n")
    for r in front:
        cells = [r.get("trial_id", r["number"]), r.get("node", ""), r.get("strategy", "")]
        cells += [fmt(r[OBJECTIVES[0]]), fmt(r[OBJECTIVES[1]]), *(fmt(r["params"].get(p, "")) for p in names)]
        lines.append("| " + " | ".join(map(str, cells)) + " |\n")
    png = folder / f"pareto_{safe_name(label)}.png"
    points = [tuple(t.values) for t in done]
    save_figure(
        partial(plot_pareto, points=points, front=[(r[OBJECTIVES[0]], r[OBJECTIVES[1]]) for r in front]),
        png,
        (5, 4),
    )
    lines.append(f"\n![Pareto front of {label}]({rel}/{png.name})\n\n### Parameter importance\n\n")
    found = importances(study)
    params = sorted(
        {p for v in found.values() if v for p in v}, key=lambda p: -(found[OBJECTIVES[0]] or {}).get(p, 0.0)
    )
    fixed = [_leaf(p) for p in names if p not in varied(done)]
    if not params:
        why = (
            "no parameter varies over the completed trials"
            if len(fixed) == len(names)
            else "no objective varies"
        )
        return [*lines, f"Not computed: {why}.\n\n"]
    lines.append(
        "Optuna's fANOVA importance (seed 0) over the completed trials, per objective (each column sums to 1)"
        + (f"; not varied by them, so left out: {', '.join(fixed)}" if fixed else "")
        + ".\n\n"
    )
    lines.append("| parameter | R2 | cluster |\n|---|---|---|\n")
    for p in params:
        cells = [f"{v[p]:.2f}" if v else "n/a" for v in (found[k] for k in OBJECTIVES)]
        lines.append(f"| {_leaf(p)} | " + " | ".join(cells) + " |\n")
    return [*lines, "\n"]


def report_sections(exp: Experiment, folder: Path, rel: str) -> dict[str, list[str]]:
    """Block label -> the report.md lines of its Pareto front and parameter importances, from in-memory
    studies built as the export builds them; figures go to ``folder`` (``rel``: that folder relative to
    report.md). Without Optuna, or with a space it cannot read, one line per block saying why."""
    if not have_optuna():
        return {
            label: [f"Pareto front and parameter importances: {INSTALL}\n\n"] for label in exp.ledger.labels()
        }
    import optuna

    try:
        studies = block_studies(exp, optuna.storages.InMemoryStorage())
    except (
        ValueError
    ) as err:  # a study.json whose space this version cannot read: the rest of the report stands
        return {
            label: [f"Pareto front and parameter importances: not available ({err})\n\n"]
            for label in exp.ledger.labels()
        }
    return {label: _section(study, label, folder, rel) for label, study in studies.items()}
