"""Where training works: boundary probes (searchers.ranges), working regions, the study's ``ranges``
section, and what memory.md, the report and ``ntune export --format ranges`` show (no Ray runs).

The closed-form landscape: a run converges iff lr_W lies in [2e-4, 2e-2]; the robust config has lr_W 1e-3.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from study_fakes import BASE, study_dict

from ntune.config import ConfigError
from ntune.report.export import export, report
from ntune.study.experiment import read_experiment
from ntune.study.info import study_info, total_budget
from ntune.study.journal import Journal
from ntune.study.load import study_from_dict
from ntune.study.records import make_record
from searchers.dotted import get_dotted
from searchers.early_stop import NEVER_STOPPED
from searchers.ranges import (
    BOUNDED,
    CONVERGED,
    FAILED,
    OPEN,
    PROBE,
    UNDECIDED,
    UNSTABLE,
    WAITING,
    RangeSettings,
    middle,
    next_line,
    outward,
    plan,
    verdict,
)
from searchers.record import SEARCH_KEY
from searchers.regions import NodeFacts, regions, tree_facts
from searchers.search import FINISHED, TreeSearch
from searchers.settings import SearchSettings
from searchers.space import parse_space
from searchers.tree import Tree

LR = "training.learning_rate_W_start"
L1 = "training.coeff_W_L1"
LOW, HIGH = 2e-4, 2e-2  # the closed form converges iff LOW <= lr_W <= HIGH
LR_SPACE = {LR: {"type": "loguniform", "low": 1e-4, "high": 1e-1, "default": 1e-3}}
DEFAULTS = RangeSettings(trials=30)


def works(lr: float) -> bool:
    return LOW <= lr <= HIGH


def drive_plan(
    space: dict[str, Any],
    centre: dict[str, Any],
    settings: RangeSettings,
    converges: Callable[[Any, int], bool],
) -> tuple[list[tuple[str, Any]], list[Any]]:
    """Probe as the planner asks (``converges(value, attempt)`` judges each run); returns the (direction,
    value) sequence and the final intervals."""
    domains, runs = parse_space(space), {}
    key = next(iter(space))

    def lookup(params: dict[str, Any]) -> tuple[list[str], int]:
        return runs.get(params[key], []), 0

    sequence = []
    for _ in range(100):
        line = next_line(plan(centre, domains, settings, lookup))
        if line is None:
            break
        assert line.next is not None
        value = line.next.value
        sequence.append((line.direction, value))
        attempt = len(runs.get(value, []))
        runs.setdefault(value, []).append("converged" if converges(value, attempt) else "failed")
    return sequence, plan(centre, domains, settings, lookup)


def test_the_probes_find_the_closed_form_interval_to_the_bisection_tolerance() -> None:
    sequence, (interval,) = drive_plan(LR_SPACE, {LR: 1e-3}, DEFAULTS, lambda v, _: works(v))
    assert sequence == [
        ("down", 5.62e-4),  # 1e-3 / 10^0.25: converged
        ("up", 1.78e-3),
        ("down", 1.78e-4),  # 1e-3 / 10^0.75: failed ...
        ("down", 1.78e-4),  # ... and its retry failed: the boundary lies between 1.78e-4 and 5.62e-4
        ("up", 5.62e-3),
        ("down", 3.16e-4),  # bisection 1 (geometric middle): converged
        ("up", 0.1),  # 1e-3 x 10^2.25 clipped to the domain's edge: failed twice
        ("up", 0.1),
        ("down", 2.37e-4),  # bisection 2: converged
        ("up", 0.0237),
        ("up", 0.0237),
        ("up", 0.0115),
    ]
    assert (interval.low, interval.high) == (2.37e-4, 0.0115)
    assert (interval.failed_below, interval.failed_above) == (1.78e-4, 0.0237)
    assert interval.state == "done" and interval.confirmed
    assert [line.state for line in interval.lines] == [BOUNDED, BOUNDED]
    assert interval.failed_below < LOW <= interval.low and interval.high <= HIGH < interval.failed_above
    # two bisections quarter each first bracket (in decades; values carry three significant digits)
    for first, (a, b) in (
        (math.log10(5.62e-4 / 1.78e-4), (1.78e-4, 2.37e-4)),
        (math.log10(0.1 / 5.62e-3), (0.0115, 0.0237)),
    ):
        assert math.log10(b / a) <= first / 4 + 0.01


def test_a_choice_line_takes_its_turn_with_the_numeric_lines() -> None:
    """The choices not yet run do not count as probes: with 12 probes over five parameters, seed 003's
    batch_size was never probed before this (its three choices counted as three probes from the start)."""
    batch = "training.batch_size"
    domains = parse_space({**LR_SPACE, batch: {"type": "choice", "values": [1, 4, 8, 16], "default": 8}})
    centre, runs = {LR: 1e-3, batch: 8}, {}

    def lookup(params: dict[str, Any]) -> tuple[list[str], int]:
        return runs.get((params[LR], params[batch]), []), 0

    picked = []
    for _ in range(5):
        line = next_line(plan(centre, domains, DEFAULTS, lookup))
        assert line is not None and line.next is not None
        params = {**centre, line.key: line.next.value}
        runs[(params[LR], params[batch])] = ["converged"]
        picked.append((line.direction, line.next.value))
    assert picked == [("down", 5.62e-4), ("up", 1.78e-3), ("choices", 1), ("down", 1.78e-4), ("up", 5.62e-3)]


def test_a_retry_that_converges_moves_the_boundary_on() -> None:
    """5.62e-3 fails once, then converges: it counts as converged (unstable) and the line goes outward."""
    sequence, (interval,) = drive_plan(
        LR_SPACE, {LR: 1e-3}, RangeSettings(bisections=0), lambda v, k: works(v) and (v != 5.62e-3 or k > 0)
    )
    up = [v for d, v in sequence if d == "up"]
    assert up == [1.78e-3, 5.62e-3, 5.62e-3, 0.1, 0.1]
    assert (interval.high, interval.failed_above) == (5.62e-3, 0.1)
    assert [p.verdict for p in interval.lines[1].probes] == [CONVERGED, UNSTABLE, FAILED]


def test_verdicts_and_uninformative_runs() -> None:
    assert verdict([]) == OPEN and verdict(["failed"]) == OPEN  # first run, then its retry
    assert verdict(["failed", "partial-W"]) == FAILED and verdict(["partial"], needed=1) == FAILED
    assert verdict(["converged"]) == CONVERGED and verdict(["failed", "converged"]) == UNSTABLE
    assert verdict(["failed"], pending=1) == WAITING
    assert verdict(["data-limited", "stopped"]) == UNDECIDED  # neither converged nor failed
    assert verdict(["data-limited", "failed", "converged"]) == UNSTABLE
    assert verdict(["data-limited", "failed"]) == OPEN
    # a value whose runs say nothing twice ends its line there: no boundary, not confirmed
    domains = parse_space(LR_SPACE)

    def lookup(params: dict[str, Any]) -> tuple[list[str], int]:
        return (["data-limited", "stopped"] if params[LR] == 1.78e-3 else ["converged"]), 0

    (interval,) = plan({LR: 1e-3}, domains, DEFAULTS, lookup)
    assert interval.lines[1].state == UNDECIDED and interval.high == 1e-3 and not interval.confirmed
    assert interval.state == UNDECIDED
    assert PROBE in NEVER_STOPPED


def test_steps_and_middles_on_every_kind_of_domain() -> None:
    s = RangeSettings(step=0.5, linear_step=0.1)
    l1 = parse_space({L1: {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True}})[L1]
    assert outward(l1, 1e-5, -1, s) == [
        3.16e-6,
        3.16e-7,
        1e-7,
        0.0,
    ]  # / 10^0.5, 10^1.5, 10^4.5 (clipped), then 0
    assert outward(l1, 1e-5, +1, s) == [3.16e-5, 3.16e-4, 0.001]
    assert outward(l1, 0.0, +1, s) == [1e-7, 3.16e-7, 3.16e-6, 0.001] and outward(l1, 0.0, -1, s) == []
    assert middle(l1, 1e-7, 0.0) is None and middle(l1, 1e-6, 1e-4) == 1e-5
    batch = parse_space({"b": {"type": "int", "low": 1, "high": 16}})["b"]
    assert outward(batch, 8, +1, s) == [10, 12, 16] and outward(batch, 8, -1, s) == [6, 4, 1]
    assert middle(batch, 8, 10) == 9 and middle(batch, 8, 9) is None
    ratio = parse_space({"r": {"type": "uniform", "low": 0.0, "high": 1.0}})["r"]
    assert outward(ratio, 0.5, +1, s) == [0.6, 0.8, 1.0] and middle(ratio, 0.6, 0.8) == 0.7
    opt = {"o": {"type": "choice", "values": ["adam", "adamw", "sgd"]}}
    runs = {"adamw": ["converged"], "sgd": ["failed"]}
    (interval,) = plan({"o": "adam"}, parse_space(opt), s, lambda p: (runs.get(p["o"], []), 0))
    assert interval.working == ("adam", "adamw") and interval.failing == ("sgd",)  # one run per choice
    assert interval.lines[0].state == "done" and not interval.confirmed


def _tree_with_two_regions() -> Tree:
    """1 (converged) -> 2 (converged), 1 -> 3 (failed) -> 4 (converged) -> 5 (converged), 4 -> 6 (partial)."""
    tree = Tree("b")
    spec = [
        (None, 1e-3, 0.5, "converged"),
        (1, 2e-3, 0.6, "converged"),
        (1, 1e-2, 0.0, "failed"),
        (3, 1e-2, 0.9, "converged"),
        (4, 1e-2, 0.8, "converged"),
        (4, 1e-2, 0.3, "partial"),
    ]
    for k, (parent, lr, score, cls) in enumerate(spec):
        node = tree.add_node({LR: lr, "o": "adam" if k < 4 else "sgd", "x": k}, parent)
        tree.add_pending(node.id, f"t{k}", k)
        tree.complete(f"t{k}", score, {"status": "ok"}, cls)
    return tree


def test_working_regions_are_split_by_a_failed_node() -> None:
    found = regions(tree_facts(_tree_with_two_regions()))
    assert [r.nodes for r in found] == [(1, 2), (4, 5)]
    assert found[0].spans[LR] == (1e-3, 2e-3) and found[0].best == 2 and found[0].best_score == 0.6
    assert found[1].spans["o"] == ("adam", "sgd") and found[1].spans["x"] == (3, 4) and found[1].best == 4
    assert regions([NodeFacts(1, None, {}, False, 0.0)]) == []


SEARCH: dict[str, Any] = dict(
    space=LR_SPACE,
    base_config={"simulation": {"seed": 42}},
    blocks={"simulation.connectivity_filling_factor": [0.5]},
    weights={"connectivity_R2": 1.0},
    thresholds={"connectivity_R2": 0.9},
    n_iter_block=2,
    robustness_repeats=2,
    instance_key="simulation.seed",
    held_out=2,
    ranges={"trials": 6, "bisections": 1},
)


BLOCK = "connectivity_filling_factor=0.5"


def _result(config: dict[str, Any]) -> dict[str, Any]:
    return {"connectivity_R2": 0.95 if works(get_dotted(config, LR)) else 0.0, "status": "ok"}


def _drive(search: TreeSearch, n: int, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        config = search.suggest(f"t{i}")
        if config == FINISHED:
            out.append({"finished": True})
            break
        assert isinstance(config, dict)
        out.append(_record(config))
        search.complete(f"t{i}", _result(config))
    return out


def _record(config: dict[str, Any]) -> dict[str, Any]:
    """A suggestion's search record with its lr_W and network."""
    return {**config[SEARCH_KEY], "lr": get_dotted(config, LR), "net": get_dotted(config, "simulation.seed")}


def test_probes_follow_the_search_and_its_held_out_runs_with_their_own_budget() -> None:
    search = TreeSearch(SearchSettings(**SEARCH))
    records = _drive(search, 20)
    assert [r.get("strategy") for r in records] == [
        *("root", "robustness-test", "held-out", "held-out"),
        *[PROBE] * 6,
        None,  # FINISHED: the 6 probe trials are spent
    ]
    probes = records[4:10]
    assert [(r["lr"], r["rule"]) for r in probes] == [
        (5.62e-4, "learning_rate_W_start down, step"),
        (1.78e-3, "learning_rate_W_start up, step"),
        (1.78e-4, "learning_rate_W_start down, step"),
        (1.78e-4, "learning_rate_W_start down, retry"),  # the down line has as few probes as the up line
        (5.62e-3, "learning_rate_W_start up, step"),
        (3.16e-4, "learning_rate_W_start down, bisect"),
    ]
    assert all(r["parent"] == 1 for r in probes)  # children of the robust (held-out) node
    assert probes[0]["mutation"] == "learning_rate_W_start: 0.001 -> 0.000562" and probes[3]["mutation"] == ""
    assert [r["net"] for r in probes] == [42, 42, 42, 1060599954, 42, 42]  # a retry: the node's next network
    tree = search.trees["connectivity_filling_factor=0.5"]
    assert tree.n_runs == 8 and len(tree.held_out.runs) == 2 and tree.nodes[1].robust
    assert {n.strategy for n in tree.nodes.values() if n.id > 1} == {PROBE}
    assert search.blocks["connectivity_filling_factor=0.5"].consec_converged == 2  # probes do not steer
    (interval,) = search.probes.plan("connectivity_filling_factor=0.5", tree)
    assert (interval.low, interval.high, interval.failed_below, interval.state) == (
        3.16e-4,
        5.62e-3,
        1.78e-4,
        OPEN,
    )
    assert not interval.confirmed  # the budget ran out with the up line open


def test_a_block_without_a_robust_config_gets_no_probes() -> None:
    search = TreeSearch(
        SearchSettings(
            **{
                **SEARCH,
                "base_config": {"simulation": {"seed": 42}},
                "space": {LR: {**LR_SPACE[LR], "default": 0.05}},
            }
        )
    )
    records = _drive(search, 10)
    assert [r.get("strategy") for r in records] == ["root", "retry", None]  # no robust node: FINISHED
    assert search.probes.get_state() == {"centres": {}, "trials": {}}


def test_a_restored_search_continues_identically_through_its_probes() -> None:
    settings = {**SEARCH, "ranges": {"trials": 12, "bisections": 2}}
    whole = _drive(TreeSearch(SearchSettings(**settings)), 30)
    first = TreeSearch(SearchSettings(**settings))
    head = _drive(first, 7)  # the search, its held-out runs and the first 3 probes
    running = first.suggest("t7")  # a probe still running when the state is saved
    assert isinstance(running, dict)
    restored = TreeSearch(SearchSettings(**settings))
    restored.set_state(copy.deepcopy(first.get_state()))
    restored.complete("t7", _result(running))
    assert head + [_record(running)] + _drive(restored, 30, start=8) == whole
    assert [r.get("strategy") for r in whole].count(PROBE) == 12 and whole[-1] == {"finished": True}


def test_a_probe_the_restored_state_missed_is_adopted() -> None:
    """A driver killed between Tune's snapshot writes: the probe ran, the searcher's state predates it."""
    search = TreeSearch(SearchSettings(**SEARCH))
    _drive(search, 4)  # the search and its held-out runs
    before = copy.deepcopy(search.get_state())
    config = search.suggest("t4")
    assert isinstance(config, dict)
    search.complete("t4", _result(config))
    restored = TreeSearch(SearchSettings(**SEARCH))
    restored.set_state(before)
    assert restored.adopt("t4", config, _result(config))
    assert restored.probes.get_state() == {"centres": {BLOCK: 1}, "trials": {BLOCK: ["t4"]}}
    assert restored.trees[BLOCK].nodes[2].strategy == PROBE
    assert [r["lr"] for r in _drive(restored, 5, start=5)] == [r["lr"] for r in _drive(search, 5, start=5)]


def test_the_ray_searcher_takes_ranges_and_saves_them(tmp_path: Path) -> None:
    from searchers.ucb import UCBTreeSearcher

    kw = {**SEARCH, "ranges": {"trials": 3}}
    searcher = UCBTreeSearcher(**kw)
    assert searcher.settings.ranges == RangeSettings(trials=3)
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", _result(config))
    searcher.save(str(tmp_path / "state.pkl"))
    restored = UCBTreeSearcher(**kw)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.search.probes.get_state() == {"centres": {BLOCK: 1}, "trials": {BLOCK: ["t4", "t5"]}}
    old = pickle.loads(pickle.dumps(searcher))  # a searcher pickled before boundary probes
    del old.search.__dict__["probes"], old.search.settings.__dict__["ranges"]
    revived = pickle.loads(pickle.dumps(old))
    assert revived.settings.ranges is None and revived.suggest("t6") == "FINISHED"


def test_settings_and_study_config_errors_name_the_field(tmp_path: Path) -> None:
    for bad, field in (
        ({"trials": 0}, "ranges.trials"),
        ({"step": -1}, "ranges.step"),
        ({"bisect": 2}, "bisect"),
    ):
        with pytest.raises(ValueError, match=field):
            SearchSettings(**{**SEARCH, "ranges": bad})
    for bad, words in (
        ({"trials": 0}, "ranges.trials"),
        ({"linear_step": 2}, "ranges.linear_step"),
        ({"bogus": 1}, "ranges.bogus"),
    ):
        with pytest.raises(ConfigError, match=words):
            study_from_dict(study_dict("bad", base=BASE, ranges=bad), tmp_path)
    study, _ = study_from_dict(study_dict("ok", base=BASE, ranges={}), tmp_path)
    assert study.ranges is not None and study.ranges.settings() == RangeSettings()
    assert study_from_dict(study_dict("none", base=BASE), tmp_path)[0].ranges is None


RANGES_STUDY = study_dict(
    "ranges",
    base=BASE,
    space={LR: LR_SPACE[LR]},
    blocks={"simulation.connectivity_filling_factor": [1.0, 0.5]},
    n_iter_block=2,
    objective={"weights": {"connectivity_R2": 1.0}, "thresholds": {"connectivity_R2": 0.9}},
    ranges={"trials": 12, "bisections": 1},
)
FULL, HALF = "connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"


def _journalled(exp_dir: Path, data: dict[str, Any]) -> tuple[TreeSearch, int]:
    """Run the study's searcher (built as ``ntune run`` builds it) with the closed form as its trainer (block
    0.5 never converges), every trial journalled as ``ntune run`` would; returns the search and Tune's
    num_samples."""
    from ntune.tune.driver import build_searcher

    study, base = study_from_dict(data, exp_dir)
    info = study_info(study, base)
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "study.json").write_text(json.dumps(info))
    searcher = build_searcher(study, base, info)
    journal = Journal(exp_dir, searcher, info=info, tree_every_s=0.0)
    for i in range(100):
        config = searcher.suggest(f"t{i}")
        if config == "FINISHED":
            break
        ff = get_dotted(config, "simulation.connectivity_filling_factor")
        r2 = 0.95 if works(get_dotted(config, LR)) and ff == 1.0 else 0.0
        result = {
            "connectivity_R2": r2,
            "cluster_accuracy": 0.5,
            "status": "ok",
            "final": True,
            "trial_dir": "",
        }
        journal.start(f"t{i}", config)
        searcher.on_trial_complete(f"t{i}", result)
        journal.complete(make_record(info, f"t{i}", config, result))
    journal.flush()
    return searcher.search, total_budget(info, list(searcher.trees))


def test_memory_report_and_export_show_the_ranges_the_search_found(tmp_path: Path) -> None:
    search, num_samples = _journalled(tmp_path, RANGES_STUDY)
    assert num_samples == 2 * (2 + 12)  # each block: its search budget and its probe budget
    (interval,) = search.probes.plan(FULL, search.trees[FULL])
    # down: 5.62e-4 converged, 1.78e-4 failed twice, bisection 3.16e-4 converged; up: 1.78e-3 and 5.62e-3
    # converged, 0.1 (the edge) and the bisection 0.0237 failed twice each
    assert (interval.low, interval.high, interval.failed_below, interval.failed_above) == (
        3.16e-4,
        5.62e-3,
        1.78e-4,
        0.0237,
    )
    assert interval.confirmed and interval.state == "done"
    exp = read_experiment(tmp_path)
    assert exp.ledger.n_probes == 10 and len(exp.records) == 2 + 2 + 10 == exp.ledger.expected_trials()
    assert [r["trials"] for r in exp.ledger.rows()] == [2, 2]  # probes count for no search budget
    done = export(exp, out=None, fmt="ranges")
    assert done == [("wrote", str(tmp_path / name)) for name in ("ranges.csv", "ranges.json", "regions.json")]
    rows = list(csv.DictReader(open(tmp_path / "ranges.csv")))
    assert rows == [
        {
            "block": FULL,
            "parameter": LR,
            "robust": "0.001",
            "low": "0.000316",
            "high": "0.00562",
            "failed_below": "0.000178",
            "failed_above": "0.0237",
            "probes": "10",
            "confirmed": "True",
            "state": "done",
            "working": "",
            "failing": "",
        }
    ]  # block 0.5 has no robust config
    as_json = json.loads((tmp_path / "ranges.json").read_text())
    assert as_json[0]["low"] == interval.low and as_json[0]["failed_above"] == interval.failed_above
    regions_json = json.loads((tmp_path / "regions.json").read_text())
    tree_regions = regions(tree_facts(search.trees[FULL]))
    assert (
        [r["nodes"] for r in regions_json[FULL]]
        == [list(r.nodes) for r in tree_regions]
        == [[1, 2, 3, 5, 6]]  # 4: lr_W 1.78e-4, failed
    )
    assert regions_json[FULL][0]["spans"] == {LR: [3.16e-4, 5.62e-3]} and regions_json[HALF] == []
    memory = (tmp_path / "memory.md").read_text()
    assert (
        "### Operating Ranges" in memory and f"#### {FULL}: around node 1, 10/12 probe trials, done" in memory
    )
    assert "| learning_rate_W_start | 0.001 | [0.000316, 0.00562] | 0.000178 | 0.0237 | 10 | yes |" in memory
    assert f"#### {HALF}\n\nno robust config: no boundary probes." in memory
    text = report(exp).read_text()
    png = "ranges_connectivity_filling_factor=1.0_learning_rate_W_start.png"
    assert (
        "### Operating ranges" in text and f"(report/{png})" in text and (tmp_path / "report" / png).is_file()
    )


def test_without_a_ranges_section_nothing_changes(tmp_path: Path) -> None:
    search, num_samples = _journalled(tmp_path, {k: v for k, v in RANGES_STUDY.items() if k != "ranges"})
    assert num_samples == 4 and search.settings.ranges is None
    assert "Operating Ranges" not in (tmp_path / "memory.md").read_text()
    exp = read_experiment(tmp_path)
    assert export(exp, out=None, fmt="ranges") == [
        ("note", "the study has no ranges section: no boundary probes to export")
    ]
    assert not (tmp_path / "ranges.csv").exists() and exp.ledger.expected_trials() == len(exp.records) == 4
