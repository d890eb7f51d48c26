"""benchmarks/searcher_real.py: UCB tree, random search and TPE on the real trainer (tiny study), and the tally."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
from study_fakes import TINY_RUN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import searcher_real  # noqa: E402
import searcher_tally  # noqa: E402

from ntune.study.config import StudyConfig  # noqa: E402
from ntune.study.load import study_from_dict  # noqa: E402
from searchers.space import parse_space  # noqa: E402

LEVEL = 0.5
BUDGET = 2
SPACE = {
    "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
    "training.data_augmentation_loop": {"type": "int", "low": 5, "high": 12},
    "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]},
}


def _study(tmp_path: Path) -> tuple[StudyConfig, dict[str, Any]]:
    """The tiny study; thresholds 0 make every run that does not fail converge, so re-runs happen."""
    data = {
        "name": "tiny",
        "base": TINY_RUN,
        "blocks": {"simulation.connectivity_filling_factor": [1.0, LEVEL]},
        "space": SPACE,
        "objective": {"thresholds": {"connectivity_R2": 0.0, "cluster_accuracy": 0.0}},
        "n_iter_block": 5,
        "robustness_repeats": 2,
        "max_concurrent_trials": 2,
    }
    return study_from_dict(data, tmp_path)


@pytest.fixture(
    scope="module"
)  # about 95 s on 2 cores: five Tuner runs (search, and re-runs of random and TPE)
def runs(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run of each searcher at block value 0.5, budget 2, seed 0."""
    study, base = _study(tmp_path_factory.mktemp("study"))
    return {
        kind: searcher_real.run_one(kind, study, base, LEVEL, BUDGET, 0) for kind in searcher_tally.SEARCHERS
    }


@pytest.mark.integration
@pytest.mark.slow
def test_each_searcher_runs_its_budget(runs: dict[str, dict[str, Any]]) -> None:
    for kind, run in runs.items():
        trials = run["trials"]
        assert len(trials) == BUDGET, kind
        assert [t["index"] for t in trials] == [1, 2]
        assert sorted(t["suggested"] for t in trials) == [0, 1]
        for t in trials:
            assert t["metrics"]["status"] == "ok"
            assert 0 < t["score"] <= 1
            assert t["classification"] == "converged"  # thresholds 0


@pytest.mark.integration
@pytest.mark.slow
def test_tpe_starts_from_the_base_config_and_random_stays_in_the_domains(
    runs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    study, base = _study(tmp_path)
    root = searcher_real.root_params(study, base)
    assert root == {
        "training.learning_rate_W_start": base["training"]["learning_rate_W_start"],
        "training.coeff_W_L1": base["training"]["coeff_W_L1"],
        "training.data_augmentation_loop": base["training"]["data_augmentation_loop"],
        "training.optimizer": base["training"]["optimizer"],
    }
    first = next(t for t in runs["tpe"]["trials"] if t["suggested"] == 0)
    assert first["params"] == root
    ucb_first = next(t for t in runs["ucb"]["trials"] if t["suggested"] == 0)
    assert ucb_first["strategy"] == "root" and ucb_first["params"] == root
    domains = parse_space(SPACE)
    for t in runs["random"]["trials"]:
        assert all(domains[k].contains(v) for k, v in t["params"].items()), t["params"]
        assert t["params"] != root
        assert isinstance(t["params"]["training.data_augmentation_loop"], int)


@pytest.mark.integration
@pytest.mark.slow
def test_random_and_tpe_reruns_use_new_seeds(runs: dict[str, dict[str, Any]]) -> None:
    for kind in ("random", "tpe"):
        run = runs[kind]
        trials, reruns = run["trials"], run["verification"]
        assert len({t["seed"] for t in trials}) == BUDGET
        assert all(t["seed"] == searcher_real.run_seed(0, t["params"], 0) for t in trials)
        assert len(reruns) == BUDGET  # every config converged; robustness_repeats 2: one re-run each
        by_config = {searcher_tally.config_id(t["params"]): t for t in trials}
        for r in reruns:
            search = by_config[searcher_tally.config_id(r["params"])]
            assert r["repeat"] == 1 and r["seed"] != search["seed"]
            assert r["metrics"]["connectivity_R2"] != search["metrics"]["connectivity_R2"]  # the seed applied
        assert searcher_tally.first_converged(trials) == 1
        assert run["slots"] == 2
        # the replay at 2 slots: both search trials start together; the first to end is re-run at once, and
        # its re-run completes second (robust at 2) only if it ends before the other search trial
        first, other = sorted(trials, key=lambda t: t["metrics"]["training_time_min"])
        rerun = next(
            r
            for r in reruns
            if searcher_tally.config_id(r["params"]) == searcher_tally.config_id(first["params"])
        )
        minutes = [t["metrics"]["training_time_min"] for t in (first, rerun, other)]
        robust_at_2 = rerun["classification"] == "converged" and minutes[0] + minutes[1] < minutes[2]
        assert searcher_tally.outcome(run).first_robust == (2 if robust_at_2 else BUDGET + 1)
    assert runs["ucb"]["verification"] == []


def _trial(
    params: dict[str, Any], ok: bool, score: float = 0.5, repeat: int = 0, minutes: float = 0.0
) -> dict[str, Any]:
    return {
        "params": params,
        "repeat": repeat,
        "score": score,
        "classification": "converged" if ok else "partial",
        "metrics": {"training_time_min": minutes},
    }


A, B, C, D = ({"x": v} for v in (1.0, 2.0, 3.0, 4.0))


def _run(searcher: str, seed: int, trials: list, verification: list | None = None) -> dict[str, Any]:
    return {
        "searcher": searcher,
        "level": LEVEL,
        "seed": seed,
        "budget": 4,
        "repeats": 2,
        "robustness": "in-budget" if searcher in ("ucb", "ucb_stop") else "verified",
        "trials": trials,
        "verification": verification or [],
    }


HAND_MADE = [
    # UCB seed 0: converged at trial 2, robust at 3 (its robustness re-run); seed 1: neither (counts 5)
    _run("ucb", 0, [_trial(A, False), _trial(B, True, 0.95), _trial(B, True, 0.93), _trial(C, False)]),
    _run("ucb", 1, [_trial(A, False, 0.3)] * 4),
    # random: converged at 2 (B, whose re-run fails) and 4 (D, whose re-run converges): a wrapper spends
    # A, B, B's re-run, C, D, D's re-run = 6 > budget 4 -> counts 5; one robust config (D)
    _run(
        "random",
        0,
        [_trial(A, False), _trial(B, True, 0.92), _trial(C, False), _trial(D, True, 0.97)],
        [_trial(B, False, repeat=1), _trial(D, True, repeat=1)],
    ),
    # TPE: converged at 1, robust after its re-run: 2
    _run("tpe", 0, [_trial(A, True, 0.91), _trial(B, False)] * 2, [_trial(A, True, repeat=1)]),
]


def test_tally_counts_and_ratios_on_a_hand_made_trial_list() -> None:
    rows = {r.searcher: r for r in searcher_tally.summarize(HAND_MADE)}
    assert (rows["ucb"].first_converged, rows["ucb"].first_robust) == (3.5, 4.0)  # (2 + 5) / 2, (3 + 5) / 2
    assert (rows["ucb"].converged_seeds, rows["ucb"].robust_seeds, rows["ucb"].robust_configs) == (1, 1, 0.5)
    assert rows["ucb"].best_score == pytest.approx((0.95 + 0.3) / 2)
    assert (rows["random"].first_converged, rows["random"].first_robust) == (2, 5)
    assert (rows["random"].robust_seeds, rows["random"].robust_configs) == (0, 1)
    assert (rows["tpe"].first_converged, rows["tpe"].first_robust, rows["tpe"].robust_configs) == (1, 2, 1)
    ratios = {q.other: q for q in searcher_tally.ratios(list(rows.values()))}
    assert ratios["random"].converged == pytest.approx(3.5 / 2)
    assert ratios["random"].robust == pytest.approx(4 / 5)
    assert ratios["tpe"].converged == pytest.approx(3.5 / 1)
    assert ratios["tpe"].robust == pytest.approx(4 / 2)
    table = searcher_tally.markdown(searcher_tally.summarize(HAND_MADE), {"ceilings": {repr(LEVEL): 0.99}})
    assert "| 0.5 | random search | 1.75 | 0.80 |" in table
    assert "| 0.5 | Optuna TPE | 3.50 | 2.00 |" in table
    assert (
        "| 0.5 | 0.9900 | ntune UCB tree | 2 | 3.5 ± 1.5 | 1/2 | 4.0 ± 1.0 | 1/2 | 0.625 | 0.5 | 0.0 | 0.00 "
        "| 0.00 ± 0.00 | 0.0 |" in table
    )


def _replay(slots: int, trials: list, reruns: list) -> int:
    run = _run("random", 0, trials, reruns)
    for k, trial in enumerate(trials):
        trial["suggested"] = k
    return searcher_tally.outcome({**run, "slots": slots}).first_robust


def test_verify_as_you_go_replays_the_concurrent_slots() -> None:
    """Random search / TPE re-runs are counted as a wrapper with the same concurrency would spend them."""
    # equal times: with one slot A, A's re-run -> 2; with two, B started beside A completes before the
    # re-run, which starts when A completes -> 3 (the tree's best case at 2 slots too)
    trials = [_trial(A, True, minutes=1.0), _trial(B, False, minutes=1.0), _trial(C, False, minutes=1.0)]
    assert _replay(1, trials, [_trial(A, True, repeat=1, minutes=1.0)]) == 2
    assert _replay(2, trials, [_trial(A, True, repeat=1, minutes=1.0)]) == 3
    # measured times decide the order: B (1 min) completes and is re-run (1 min) while A (3 min) trains
    trials = [_trial(A, True, minutes=3.0), _trial(B, True, minutes=1.0), _trial(C, False, minutes=1.0)]
    reruns = [_trial(A, True, repeat=1, minutes=3.0), _trial(B, True, repeat=1, minutes=1.0)]
    assert _replay(2, trials, reruns) == 2
    assert _replay(1, trials, reruns) == 2  # A, then its re-run
    # a failed re-run stops that config; the next converged one is verified
    reruns = [_trial(A, False, repeat=1, minutes=1.0), _trial(B, True, repeat=1, minutes=1.0)]
    assert _replay(1, [_trial(A, True, minutes=1.0), _trial(B, True, minutes=1.0)], reruns) == 4


def test_training_minutes_to_first_converged_and_their_ratio() -> None:
    runs = [
        # UCB: converged at trial 2 after 1 + 2 minutes; a seed that never converged counts its whole budget
        _run(
            "ucb",
            0,
            [_trial(A, False, minutes=1.0), _trial(B, True, minutes=2.0), _trial(C, True, minutes=4.0)],
        ),
        _run("ucb", 1, [_trial(A, False, minutes=1.5)] * 4),
        # random: longer trials, converged at its first
        _run("random", 0, [_trial(D, True, minutes=5.0), _trial(A, False, minutes=7.0)]),
    ]
    rows = {r.searcher: r for r in searcher_tally.summarize(runs)}
    assert rows["ucb"].min_to_converged == pytest.approx((3.0 + 6.0) / 2)
    assert rows["ucb"].train_min == pytest.approx((7.0 + 6.0) / 2)
    assert rows["random"].min_to_converged == pytest.approx(5.0)
    (ratio,) = searcher_tally.ratios(list(rows.values()))
    assert (ratio.converged, ratio.minutes) == (pytest.approx(3.5 / 1), pytest.approx(4.5 / 5.0))
    table = searcher_tally.markdown(list(rows.values()))
    assert "| 0.5 | random search | 3.50 | 1.00 | 0.90 |" in table


def _stopped(params: dict[str, Any], ok: bool, minutes: float) -> dict[str, Any]:
    trial = _trial(params, ok, minutes=minutes)
    trial["metrics"]["stopped_at"] = 0.5
    return trial


def test_training_minutes_to_first_robust_and_the_early_stopping_gain() -> None:
    """Minutes up to the run that made a config robust (the whole budget's when none did); with early
    stopping against without: their ratio, difference and SE, trials stopped per seed."""
    runs = [
        # without: robust at trial 3 after 1 + 2 + 3 minutes; a seed without one spends its budget (6)
        _run("ucb", 0, [_trial(A, False, minutes=1.0), _trial(B, True, minutes=2.0),
                        _trial(B, True, minutes=3.0), _trial(C, False, minutes=4.0)]),
        _run("ucb", 1, [_trial(A, False, minutes=1.5)] * 4),
        # with: A stopped early, robust at trial 3 after 5 minutes; the other seed's 4 trials all stopped
        _run("ucb_stop", 0, [_stopped(A, False, 1.0), _trial(B, True, minutes=2.0), _trial(B, True, minutes=2.0)]),
        _run("ucb_stop", 1, [_stopped(A, False, 1.0)] * 4),
        # random, verified with one slot: A (1 min), then A's re-run (1.5 min) makes it robust: 2.5 minutes
        _run("random", 0, [_trial(A, True, minutes=1.0), _trial(B, False, minutes=2.0)],
             [_trial(A, True, repeat=1, minutes=1.5)]),
    ]  # fmt: skip
    rows = {r.searcher: r for r in searcher_tally.summarize(runs)}
    assert (rows["ucb"].min_to_robust, rows["ucb"].min_to_robust_se) == (6.0, 0.0)
    assert (rows["ucb_stop"].min_to_robust, rows["ucb_stop"].min_to_robust_se) == (4.5, pytest.approx(0.5))
    assert rows["random"].min_to_robust == pytest.approx(2.5)
    assert (rows["ucb"].stopped, rows["ucb_stop"].stopped) == (0.0, 2.5)
    assert [r.other for r in searcher_tally.ratios(list(rows.values()))] == ["random"]
    (gain,) = searcher_tally.stop_gains(list(rows.values()))
    assert gain.minutes == pytest.approx(4.5 / 6.0)
    assert (gain.minutes_diff, gain.minutes_diff_se) == (-1.5, pytest.approx(0.5))
    assert (gain.trials, gain.robust, gain.stopped) == (1.0, (1, 1, 2), 2.5)
    assert gain.budget_minutes == (4.5, 8.0)
    table = searcher_tally.markdown(list(rows.values()))
    assert "| 0.5 | 0.75 | -1.50 ± 0.50 | 1.00 | 1/2, 1/2 | 2.5 | 4.5, 8.0 |" in table
    assert "| 0.5 | - | ntune UCB tree, early stopping | 2 |" in table
    trees_only = searcher_tally.markdown([rows["ucb"], rows["ucb_stop"]])
    assert "| block value | ntune / |" not in trees_only and "| 0.5 | 0.75 |" in trees_only  # no empty table


def test_standard_errors_over_seeds_and_of_the_differences() -> None:
    """SE = stdev / sqrt(seeds); a difference of two searchers' means has SE sqrt(SE_a**2 + SE_b**2)."""
    runs = [
        _run("ucb", 0, [_trial(A, True)]),  # converged at 1, never robust (5)
        _run("ucb", 1, [_trial(A, False), _trial(B, False), _trial(C, True)]),  # at 3
        _run("random", 0, [_trial(A, False), _trial(B, True)]),  # at 2
        _run("random", 1, [_trial(A, False), _trial(B, True)]),  # at 2
        _run("random", 2, [_trial(A, False)] * 4),  # none: 5
    ]
    rows = {r.searcher: r for r in searcher_tally.summarize(runs)}
    # ucb [1, 3]: mean 2, stdev sqrt(2), SE 1; random [2, 2, 5]: mean 3, stdev sqrt(3), SE 1
    assert (rows["ucb"].first_converged, rows["ucb"].first_converged_se) == (2.0, pytest.approx(1.0))
    assert (rows["random"].first_converged, rows["random"].first_converged_se) == (3.0, pytest.approx(1.0))
    assert (rows["ucb"].first_robust_se, rows["random"].first_robust_se) == (0.0, 0.0)  # 5 on every seed
    (ratio,) = searcher_tally.ratios(list(rows.values()))
    assert (ratio.converged_diff, ratio.converged_diff_se) == (-1.0, pytest.approx(math.sqrt(2)))
    assert (ratio.robust_diff, ratio.robust_diff_se) == (0.0, 0.0)
    table = searcher_tally.markdown(list(rows.values()))
    assert "| 0.5 | - | ntune UCB tree | 2 | 2.0 ± 1.0 | 2/2 | 5.0 ± 0.0 | 0/2 |" in table
    assert "| -1.00 ± 1.41 | +0.00 ± 0.00 |" in table
    # one seed has no SE: the mean alone
    (one,) = searcher_tally.summarize(runs[:1])
    assert math.isnan(one.first_converged_se)
    assert "| 0.5 | - | ntune UCB tree | 1 | 1.0 | 1/1 | 5.0 | 0/1 |" in searcher_tally.markdown([one])


def test_a_saved_run_is_tabulated_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    path.write_text(searcher_real.json.dumps({"meta": {}, "runs": HAND_MADE}))
    assert searcher_real.main(["--table", str(path)]) == 0
    assert "| 0.5 | random search | 1.75 | 0.80 |" in capsys.readouterr().out


def test_results_files_merge_later_runs_replacing_earlier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two files of one setup: the second's UCB seed 0 replaces the first's; the table is the merged one's."""
    meta = {"budget": 4, "max_concurrent_trials": 2, "ceilings": {"0.5": 0.99}}
    rerun = _run("ucb", 0, [_trial(B, True, 0.96), _trial(B, True, 0.97)] * 2)
    first, second, merged = (tmp_path / n for n in ("a.json", "b.json", "merged.json"))
    first.write_text(searcher_real.json.dumps({"meta": meta, "runs": HAND_MADE}))
    second.write_text(
        searcher_real.json.dumps({"meta": {**meta, "ceilings": {"1.0": 0.98}}, "runs": [rerun]})
    )
    assert searcher_real.main(["--table", str(first), str(second), "--out", str(merged)]) == 0
    data = searcher_real.json.loads(merged.read_text())
    assert data["meta"]["ceilings"] == {"1.0": 0.98, "0.5": 0.99}
    assert [(r["searcher"], r["seed"]) for r in data["runs"]] == [
        ("ucb", 0),
        ("ucb", 1),
        ("random", 0),
        ("tpe", 0),
    ]
    assert data["runs"][0] == rerun
    rows = {r.searcher: r for r in searcher_tally.summarize(data["runs"])}
    assert (rows["ucb"].first_converged, rows["ucb"].first_robust) == (3.0, 3.5)  # (1 + 5) / 2, (2 + 5) / 2
    assert (
        "| 0.5 | 0.9900 | ntune UCB tree | 2 | 3.0 ± 2.0 | 1/2 | 3.5 ± 1.5 | 1/2 |" in capsys.readouterr().out
    )
    second.write_text(searcher_real.json.dumps({"meta": {**meta, "budget": 8}, "runs": [rerun]}))
    assert searcher_real.main(["--table", str(first), str(second)]) == 2
    assert "budget: 4 in one file, 8 in another" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--searchers", "ucb,grid"], "--searchers"),
        (["--levels", "1.0,x"], "--levels"),
        (["--budget", "0"], "--budget"),
        (["--first-seed", "-1"], "--first-seed"),
    ],
)
def test_bad_arguments_name_the_field_and_exit_2(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        searcher_real.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert field in err
    if field == "--searchers":
        assert "'grid'" in err and "ucb, ucb_stop, random, tpe" in err


def test_tune_domains_match_the_study_domains() -> None:
    domains = parse_space(SPACE)
    lr = searcher_real.tune_domain(domains["training.learning_rate_W_start"])
    assert (lr.lower, lr.upper) == (1e-4, 1e-1)
    loops = searcher_real.tune_domain(domains["training.data_augmentation_loop"])
    assert (loops.lower, loops.upper) == (5, 13)  # Tune's upper bound is exclusive
    assert (
        searcher_real.tune_domain(domains["training.optimizer"]).categories
        == SPACE["training.optimizer"]["values"]
    )
    seeds = {searcher_real.run_seed(s, {"x": 1.0}, r) for s in (0, 1) for r in (0, 1)}
    assert len(seeds) == 4 and all(0 <= s < 2**31 for s in seeds)
    assert searcher_real.run_seed(0, {"x": 1.0}, 0) == searcher_real.run_seed(0, {"x": 1.0}, 0)


def test_one_block_of_the_shipped_study_keeps_its_block_set_and_drops_block_trials() -> None:
    from ntune.study.load import load_study
    from ntune.tune.driver import build_searcher

    study, base = load_study(Path(__file__).resolve().parents[1] / "configs" / "quickstart_study.yaml")
    for level in study.block_values:
        one = searcher_real.block_study(study, level, budget=3, seed=1)
        assert one.block_values == [level] and one.block_trials == {} and one.n_trials == 3
        searcher = build_searcher(one, base)
        assert searcher.budget(searcher.block_label(level)) == 3
