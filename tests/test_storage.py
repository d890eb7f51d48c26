"""ntune.study.storage: URIs checked up front (exit 2, the field named), the mirror copied to and from S3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import S3_BUCKET

from ntune.config import ConfigError
from ntune.report.export import trial_folder
from ntune.study.guards import check_storage
from ntune.study.storage import JOURNAL_FILES, Remote, is_uri, mirror_dir, open_experiment


@pytest.mark.parametrize(
    ("uri", "says"),
    [("ftp://host/x", "scheme 'ftp'"), ("s3:///prefix", "names no bucket"), ("gs://", "names no bucket")],
)
def test_bad_uri_is_refused_naming_storage_path(uri: str, says: str) -> None:
    with pytest.raises(ConfigError, match="storage_path") as err:
        check_storage(uri)
    assert says in str(err.value)


def test_uri_gets_no_local_folder_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    check_storage("s3://bucket/prefix")
    check_storage("gs://bucket")
    assert is_uri("s3://b/p") and not is_uri("/tmp/x") and not is_uri("file:///tmp/x")
    assert list(tmp_path.iterdir()) == []  # nothing made locally (no "s3:" folder)


def test_cli_run_with_bad_storage_uri_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ntune.cli.app",
            "run",
            "configs/quickstart_study.yaml",
            "--storage",
            "s3:///nobucket",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "storage_path" in proc.stderr and "names no bucket" in proc.stderr


def test_run_and_view_mirrors_are_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTUNE_MIRROR_DIR", str(tmp_path))
    run, view = mirror_dir("s3://b/p/exp", "run"), mirror_dir("s3://b/p/exp/", "view")
    assert run != view and run.name == view.name == "exp" and tmp_path in run.parents
    assert mirror_dir("s3://b/q/exp") != view  # another experiment of the same name


def test_trial_folder_found_in_a_moved_or_mirrored_experiment(tmp_path: Path) -> None:
    (tmp_path / "t1_block_node0").mkdir()
    (tmp_path / "t1_block_node0" / "W_scatter.png").write_bytes(b"png")
    (tmp_path / "t2" / "member1").mkdir(parents=True)
    (tmp_path / "t2" / "member1" / "W_scatter.png").write_bytes(b"png")
    assert trial_folder(tmp_path, "bucket/studies/exp/t1_block_node0") == tmp_path / "t1_block_node0"
    assert trial_folder(tmp_path, "/tmp/ray/x/t2/member1") == tmp_path / "t2" / "member1"
    assert trial_folder(tmp_path, "bucket/studies/exp/t3") is None
    assert trial_folder(tmp_path, "") is None


def test_remote_push_pull_on_s3(tmp_path: Path, s3_endpoint: str) -> None:
    """Against moto's S3 server: push sends only what changed, pull and open_experiment read it back."""
    uri = f"s3://{S3_BUCKET}/studies/exp"
    local = tmp_path / "mirror"
    local.mkdir()
    (local / "study.json").write_text('{"study": {}, "block_key": "k"}')
    (local / "trials.jsonl").write_text("{}\n")
    (local / "ucb").mkdir()
    (local / "ucb" / "a.txt").write_text("Node 0")
    remote = Remote(uri)
    assert not remote.exists()
    assert remote.push(local) == ["study.json", "trials.jsonl", "ucb/a.txt"]
    assert remote.push(local) == []
    with open(local / "trials.jsonl", "a") as f:
        f.write("{}\n")
    assert remote.push(local) == ["trials.jsonl"]

    back = tmp_path / "back"
    assert Remote(uri).pull(back, JOURNAL_FILES, ("ucb",)) == 3  # analysis.md, memory.md: not there
    assert (back / "trials.jsonl").read_text() == "{}\n{}\n" and (back / "ucb" / "a.txt").is_file()
    opened, _ = open_experiment(uri)
    assert (opened / "study.json").is_file() and not (opened / "ucb").exists()

    with pytest.raises(FileNotFoundError, match="no study.json"):
        open_experiment(f"s3://{S3_BUCKET}/studies/none")
    with pytest.raises(ConfigError, match="bucket 'nobucket' does not exist"):
        Remote("s3://nobucket/x").check()
    remote.delete()
    assert not remote.exists()


def test_restored_journal_moves_to_the_new_mirror_and_syncs(tmp_path: Path) -> None:
    """A journal unpickled while reopening writes into the new folder, pushes to the new remote, marks
    the resume and is handed to the driver."""
    import pickle
    import shutil

    from study_fakes import FakeSearcher, make_experiment

    from ntune.study.journal import Journal, reopening

    old, new = tmp_path / "old", tmp_path / "new"
    make_experiment(old, n=3)
    state = pickle.dumps(Journal(old, FakeSearcher()))
    shutil.copytree(old, new)
    shutil.rmtree(old)  # the first driver's mirror is gone (another machine, another run)

    class Pushes:
        def __init__(self) -> None:
            self.folders: list[Path] = []

        def push(self, local: Path) -> list[str]:
            self.folders.append(local)
            return []

    pushes = Pushes()
    with reopening(new, pushes) as handover:
        journal = pickle.loads(state)
    assert handover.journal is journal
    assert journal.exp_dir == new and len(journal.ledger.records) == 3
    last = json.loads((new / "trials.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "resume" and set(last) == {"event", "time"}  # stamped (ntune.study.clock)
    journal.sync()
    journal.sync(every_s=60.0)  # within the interval: no second push
    assert pushes.folders == [new] and not old.exists()
    elsewhere = pickle.loads(state)  # outside reopening: where it was, no remote, no resume marked
    assert elsewhere.exp_dir == old and elsewhere.remote is None and not old.exists()
