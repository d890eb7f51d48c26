"""Journal files from fake trial records: analysis.md, memory.md, ucb/, trees/, trials.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

from study_fakes import TRIALS, FakeSearcher, fake_tree, make_experiment, trial

from ntune.labels import tree_nodes
from ntune.study.experiment import read_experiment
from ntune.study.info import read_info
from ntune.study.journal import Journal
from ntune.study.ledger import block_summary, group_nodes, mutation_effects
from ntune.study.records import make_record, read_trials
from ntune.study.render import (
    FILLING_FACTOR,
    MEMORY_SECTIONS,
    diagnosis_words,
    render_memory,
    render_table,
    table_title,
)


def test_analysis_has_one_entry_per_trial_in_log_form(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    text = (tmp_path / "analysis.md").read_text()
    heads = re.findall(r"^## Iter (\d+): (\S+)$", text, flags=re.M)
    assert [int(k) for k, _ in heads] == list(range(1, len(TRIALS) + 1))
    assert [c for _, c in heads] == ["converged", "partial", "converged", "partial-W", "failed", "failed"]
    assert "Node: id=1, parent=0\nMode/Strategy: success-exploit/exploit\n" in text
    assert "Node: id=0, parent=root\n" in text
    assert "Mode/Strategy: success-exploit/robustness-test" in text
    assert "Mutation: lr_W: 1e-3 -> 4e-3\nParent rule: highest UCB: node 0\n" in text
    assert "Sparsity: 50% (connectivity_filling_factor=0.5)" in text
    assert (
        "Config: lr_W=0.004, lr=0.0005, lr_emb=0.00075, coeff_W_L1=1e-05, batch_size=8, data_aug=10" in text
    )
    assert "Observation: vs parent: R2 0.4 -> 0.92 (+0.520), cluster 0.5 -> 0.6 (+0.100)" in text
    assert text.count("Next: parent=") == len(TRIALS)
    assert "RuntimeError: boom" in text
    assert "diverged" in text


def test_records_carry_status_score_and_classification(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    records, running = read_trials(tmp_path)
    assert running == {}
    assert [r["trial_id"] for r in records] == [f"t{k}" for k in range(len(TRIALS))]
    by_id = {r["trial_id"]: r for r in records}
    assert by_id["t0"]["score"] == 0.6 * 0.95 + 0.4 * 0.95
    assert by_id["t4"]["status"] == "diverged" and by_id["t4"]["score"] == 0.0
    assert by_id["t5"]["status"] == "error" and by_id["t5"]["classification"] == "failed"
    assert by_id["t3"]["params"]["training.learning_rate_W_start"] == 4e-3


def test_a_trial_completed_twice_counts_once(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=2)
    journal = Journal(tmp_path, FakeSearcher())
    trial_id, config, result, _ = trial(1, TRIALS[1], info)
    result = dict(result, connectivity_R2=0.5)
    journal.complete(make_record(info, trial_id, config, result))
    records, _ = read_trials(tmp_path)
    assert [r["trial_id"] for r in records] == ["t0", "t1"]
    assert records[1]["metrics"]["connectivity_R2"] == 0.4  # the first result stays, as in the searcher
    assert (tmp_path / "trials.jsonl").read_text().count('"t1"') == 2  # its start and one complete line
    assert (tmp_path / "analysis.md").read_text().count("## Iter") == 2


def test_a_good_repeat_replaces_a_failed_first_record(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=6)
    journal = Journal(tmp_path, FakeSearcher(), info=info)
    trial_id, config, result, _ = trial(5, TRIALS[5], info)  # recorded as an error
    good = dict(result or {}, connectivity_R2=0.7, cluster_accuracy=0.6, final=True, status="ok")
    journal.complete(make_record(info, trial_id, config, good))
    records, _ = read_trials(tmp_path)
    assert records[5]["status"] == "ok" and records[5]["metrics"]["connectivity_R2"] == 0.7


def test_started_but_unfinished_trials_are_running(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=2)
    trial_id, config, _, _ = trial(2, TRIALS[2], info)
    Journal(tmp_path).start(trial_id, config)
    records, running = read_trials(tmp_path)
    assert running == {"t2": "connectivity_filling_factor=1.0"}
    rows = block_summary(read_info(tmp_path), records, running)
    assert [r["running"] for r in rows] == [1, 0]


def test_block_summary_prefers_robust_nodes(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    records, _ = read_trials(tmp_path)
    rows = {r["block"]: r for r in block_summary(read_info(tmp_path), records)}
    full, half = rows["connectivity_filling_factor=1.0"], rows["connectivity_filling_factor=0.5"]
    assert (full["trials"], full["robust"], full["best_node"], full["failed"]) == (3, True, 0, 1)
    assert full["best_R2"] == 0.95 and full["state"] == "done"
    assert (half["robust"], half["best_node"], half["best_trial"], half["lr_W"]) == (False, 1, "t3", 4e-3)
    assert half["best_R2"] == 0.92 and half["best_cluster"] == 0.6


def test_nodes_and_mutation_effects(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    records, _ = read_trials(tmp_path)
    nodes = group_nodes(records)
    assert sorted(nodes["connectivity_filling_factor=0.5"]) == [0, 1, 2]
    assert len(nodes["connectivity_filling_factor=1.0"][0]["runs"]) == 2
    effects = mutation_effects(records)
    assert effects["lr_W"]["n"] == 2 and effects["lr_W"]["improved"] == 1
    assert effects["L1"]["improved"] == 0 and effects["L1"]["mean_delta"] < 0


def test_memory_table_and_files(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    memory = (tmp_path / "memory.md").read_text()
    assert memory == render_memory(read_info(tmp_path), read_trials(tmp_path)[0], {})
    assert (
        "| 1 | 100% | 1.0 | - | 0.95 | 0.95 | 2 | 0.930 / 0.92 | stable-robust | 1e-05 | 0.001 | "
        "robust, 3/3 trials, done |" in memory
    )
    assert "- lr_W: 2 mutations, 1 improved" in memory
    positions = [memory.index(section) for section in MEMORY_SECTIONS]
    assert positions == sorted(positions) and memory.startswith("# Working Memory")
    assert memory.rstrip().endswith("strategies exploit 2, root 1")  # Emerging Observations last
    for label in ("connectivity_filling_factor=1.0", "connectivity_filling_factor=0.5"):
        assert (tmp_path / "ucb" / f"{label}.txt").read_text().startswith("Node 0: UCB=")
        tree = json.loads((tmp_path / "trees" / f"{label}.json").read_text())
        assert tree == fake_tree(label).to_dict()  # the searcher's tree as data, next to its plot
        assert (tmp_path / "trees" / f"{label}.png").stat().st_size > 1000


def test_blocks_over_another_key_get_their_own_table(tmp_path: Path) -> None:
    make_experiment(tmp_path)
    rows = read_experiment(tmp_path).ledger.rows()
    table = render_table(rows, "dataset")  # say, the chaotic study's regimes
    assert table.startswith("| Block | dataset | held-out | Best R² |")
    assert "| 1 | 1.0 | - | 0.95 | 0.95 | 2 |" in table  # one value column, not a percentage
    assert "| 1 | 100% | 1.0 | - | 0.95 |" in render_table(rows)  # the seeds' columns for sparsity levels
    assert (table_title("dataset"), table_title(FILLING_FACTOR)) == (
        "Block Comparison Table",
        "Sparsity Comparison Table",
    )


def test_tree_plot_reads_the_tree_data() -> None:
    assert tree_nodes(fake_tree("b").to_dict()) == [(1, None, 0.95, ""), (2, 1, 0.6, "lr_W: 1e-3 -> 4e-3")]


def test_a_record_keeps_the_score_and_classification_the_trainable_reported(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=1)
    trial_id, config, result, _ = trial(1, TRIALS[1], info)
    carried = dict(result or {}, score=0.123, classification="partial-E")
    rec = make_record(info, trial_id, config, carried)
    assert (rec["score"], rec["classification"]) == (0.123, "partial-E")
    rec = make_record(info, trial_id, config, result)  # an old result without them: computed
    assert (rec["score"], rec["classification"]) == (0.6 * 0.4 + 0.4 * 0.5, "partial")
    failed = make_record(info, trial_id, config, dict(carried, status="diverged"))
    assert (failed["score"], failed["classification"]) == (0.0, "failed")


def test_the_journal_hands_over_what_the_folder_holds(tmp_path: Path) -> None:
    """The experiment the driver's journal holds at the end equals the one read back from its folder."""
    info = make_experiment(tmp_path, n=4)
    trial_id, config, _, _ = trial(4, TRIALS[4], info)
    journal = Journal(tmp_path, FakeSearcher(), info=info)
    journal.start(trial_id, config)
    journal.flush()
    held, read = journal.experiment(), read_experiment(tmp_path, trees=True)
    assert held.records == read.records
    assert held.running == read.running == {"t4": "connectivity_filling_factor=1.0"}
    assert held.ledger.rows() == read.ledger.rows()
    assert held.trees == read.trees and held.texts == read.texts and len(held.trees) == 2


def test_diagnosis_in_words() -> None:
    rec = {"status": "ok", "error": "", "metrics": {"connectivity_R2": 0.4, "connectivity_slope": 0.2}}
    rec["metrics"].update(zero_band=0.35, cross=0.0)
    words = diagnosis_words(rec)
    assert "weak diagonal" in words and "zero band: 35%" in words and "shrunk" in words
    rec["metrics"].update(connectivity_R2=0.97, connectivity_slope=1.0, zero_band=0.0)
    assert diagnosis_words(rec) == "tight diagonal (R2 0.970); slope 1.00"
    assert "diverged" in diagnosis_words({"status": "diverged", "error": "", "metrics": {}})


def test_memory_stays_bounded(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=1)
    journal = Journal(tmp_path, FakeSearcher())
    spec = TRIALS[2]
    sizes = []
    for k in range(1, 200):
        trial_id, config, result, _ = trial(k, spec, info)
        journal.complete(make_record(info, f"x{k}", config, result))
        sizes.append(len((tmp_path / "memory.md").read_text()))
    assert max(sizes[50:]) - sizes[50] <= 40  # last 10 iterations only; iteration numbers grow a digit


def test_a_killed_driver_loses_no_entry(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=3)
    text = (tmp_path / "analysis.md").read_text()
    cut = text.index("## Iter 3")
    (tmp_path / "analysis.md").write_text(text[:cut])  # killed between trials.jsonl and analysis.md
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"event": "complete", "trial_id": "t9", "sta')  # killed mid-line
    journal = Journal(tmp_path, FakeSearcher(), info=info)
    assert (tmp_path / "analysis.md").read_text().count("## Iter") == 3
    trial_id, config, result, _ = trial(3, TRIALS[3], info)
    journal.complete(make_record(info, trial_id, config, result))
    records, _ = read_trials(tmp_path)
    assert [r["trial_id"] for r in records] == ["t0", "t1", "t2", "t3"]
    assert re.findall(r"^Trial: (\S+)", (tmp_path / "analysis.md").read_text(), re.M) == [
        "t0",
        "t1",
        "t2",
        "t3",
    ]


def test_a_repeat_never_turns_a_good_result_into_a_failure(tmp_path: Path) -> None:
    info = make_experiment(tmp_path, n=2)
    journal = Journal(tmp_path, FakeSearcher(), info=info)
    trial_id, config, _, _ = trial(1, TRIALS[1], info)
    journal.complete(make_record(info, trial_id, config, None, error="Traceback...\nRuntimeError: lost"))
    records, _ = read_trials(tmp_path)
    assert records[1]["status"] == "ok" and records[1]["metrics"]["connectivity_R2"] == 0.4
    assert journal.ledger.records["t1"]["status"] == "ok"


def test_convergence_study_writes_its_own_form(tmp_path: Path) -> None:
    from ntune.study.render import format_entry

    info = make_experiment(tmp_path, n=4)
    records, _ = read_trials(tmp_path)
    parent = records[1]
    entry = format_entry(records[3], parent, convergence=True)
    lines = entry.splitlines()
    assert lines[0] == "## Iter 4: partial-W"
    assert lines[1] == "Node: id=1, parent=0"
    assert lines[2] == "Config: lr_W=0.004, lr=0.0005, coeff_W_L1=1e-05"
    assert lines[3] == "Metrics: test_R2=nan, test_pearson=nan, connectivity_R2=0.92, final_loss=nan"
    assert lines[4].startswith("Observation: vs parent: R2 0.4 -> 0.92 (+0.520)")
    assert lines[5] == "Change: lr_W: 1e-3 -> 4e-3"
    assert info["study"]["name"] == "fake"


def test_a_restored_searcher_gets_the_completions_its_older_snapshot_missed(tmp_path: Path) -> None:
    """Tune saved its trial table after a completion but the searcher's state before it (a driver killed
    between the two writes): on restore the journal hands that completion to the searcher."""
    from study_fakes import STUDY

    from ntune.study.info import study_info
    from ntune.study.load import study_from_dict
    from ntune.tune.callbacks import JournalCallback
    from ntune.tune.driver import build_searcher

    study, base = study_from_dict(STUDY, tmp_path)
    searcher = build_searcher(study, base)
    searcher.set_search_properties("score", "max", {})
    config = searcher.suggest("t1")
    older = searcher.get_state()  # the snapshot Tune kept: t1 pending
    info = study_info(study, base)
    journal = Journal(tmp_path, searcher, info=info)
    result = {"connectivity_R2": 0.95, "cluster_accuracy": 0.92, "final": True, "status": "ok"}
    rec = journal.complete(make_record(info, "t1", config, result))
    searcher.on_trial_complete("t1", result)
    searcher.set_state(older)
    assert "t1" in searcher.live

    JournalCallback(journal).setup()

    assert "t1" not in searcher.live
    tree = next(t for t in searcher.trees.values() if "t1" in t.trials)
    run = tree.nodes[tree.trials["t1"]].runs[-1]
    assert run.metrics["connectivity_R2"] == 0.95 and run.score == rec["score"]
    JournalCallback(journal).setup()  # nothing left to reconcile: no second run
    assert len(tree.nodes[tree.trials["t1"]].runs) == 1


def test_a_restored_searcher_adopts_a_finished_trial_it_never_suggested(tmp_path: Path) -> None:
    """The searcher's state was saved before the suggestion of a trial that then ran and finished."""
    from study_fakes import STUDY

    from ntune.study.info import study_info
    from ntune.study.load import study_from_dict
    from ntune.study.records import SEARCH_KEY
    from ntune.tune.callbacks import JournalCallback
    from ntune.tune.driver import build_searcher

    study, base = study_from_dict(STUDY, tmp_path)
    searcher = build_searcher(study, base)
    searcher.set_search_properties("score", "max", {})
    older = searcher.get_state()  # saved before t1 was suggested
    config = searcher.suggest("t1")
    info = study_info(study, base)
    journal = Journal(tmp_path, searcher, info=info)
    result = {"connectivity_R2": 0.9, "cluster_accuracy": 0.95, "final": True, "status": "ok"}
    rec = journal.complete(make_record(info, "t1", config, result))
    searcher.set_state(older)
    assert not any("t1" in t.trials for t in searcher.trees.values())

    JournalCallback(journal).setup()

    tree = searcher.trees[rec["block"]]
    node = tree.nodes[tree.trials["t1"]]
    assert node.runs[-1].score == rec["score"] and "t1" not in searcher.live
    assert searcher.uid(rec["block"], node.id) == rec["search"]["id"] == config[SEARCH_KEY]["id"]
    assert searcher.suggest("t2")[SEARCH_KEY]["id"] != rec["search"]["id"]  # ids are never reused
