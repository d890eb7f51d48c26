"""``ntune cache list`` / ``prune`` on real cache entries: sizes, order, what each criterion picks, a held
lock, and bad options (exit 2, nothing deleted)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import SimulationConfig
from ntune.data import cache
from ntune.data.load import cache_entry, load_or_simulate

DAY = 86400.0
NOW = 1_800_000_000.0


def _entries(root: Path) -> list[Path]:
    """Three real entries of different sizes, written 30, 10 and 1 days before NOW (oldest first)."""
    paths = []
    for frames, age in ((300, 30), (600, 10), (900, 1)):
        cfg = SimulationConfig(n_neurons=12, n_frames=frames, start_frame=-50, device="cpu")
        load_or_simulate(cfg, cache_dir=root)
        entry = cache_entry(cfg, root)
        for f in [entry, *entry.iterdir()]:
            os.utime(f, (NOW - age * DAY, NOW - age * DAY))
        paths.append(entry)
    (root / "experiments").mkdir()  # a mirror folder is not an entry
    return paths


def test_entries_are_listed_oldest_first_with_their_sizes(tmp_path: Path) -> None:
    paths = _entries(tmp_path)
    found = cache.list_entries(tmp_path)
    assert [e.path for e in found] == paths
    for e in found:
        assert e.size_bytes == sum(f.stat().st_size for f in e.path.iterdir())
        assert e.simulation["n_neurons"] == 12
    assert [e.modified for e in found] == [NOW - 30 * DAY, NOW - 10 * DAY, NOW - DAY]
    assert found[0].size_bytes < found[1].size_bytes < found[2].size_bytes  # 300, 600, 900 frames


def test_prune_picks_the_old_then_the_oldest_until_the_rest_fits(tmp_path: Path) -> None:
    _entries(tmp_path)
    old, mid, new = cache.list_entries(tmp_path)
    pick = cache.select_prunable
    entries = [old, mid, new]
    assert pick(entries, now=NOW, older_than_days=20) == [old]
    assert pick(entries, now=NOW, older_than_days=0.5) == entries
    assert pick(entries, now=NOW, keep_bytes=new.size_bytes + mid.size_bytes) == [old]
    assert pick(entries, now=NOW, keep_bytes=new.size_bytes + mid.size_bytes - 1) == [old, mid]
    assert pick(entries, now=NOW, keep_bytes=0) == entries
    assert pick(entries, now=NOW, older_than_days=20, keep_bytes=new.size_bytes) == [old, mid]
    assert pick(entries, now=NOW, older_than_days=100, keep_bytes=10**12) == []


def test_cli_lists_dry_runs_prunes_and_refuses_bad_options(tmp_path: Path) -> None:
    old, mid, new = _entries(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list", "--dir", str(tmp_path)])
    assert listed.exit_code == 0 and "3 entries" in listed.output and old.name in listed.output
    keep_gb = (cache.list_entries(tmp_path)[2].size_bytes + 1) / 1e9
    dry = runner.invoke(
        app, ["cache", "prune", "--keep-gb", f"{keep_gb}", "--dry-run", "--dir", str(tmp_path)]
    )
    assert dry.exit_code == 0 and "would delete 2 of 3 entries" in dry.output
    assert old.exists() and mid.exists()  # nothing deleted
    for args in (["--older-than", "-1"], ["--keep-gb", "-2"], []):
        bad = runner.invoke(app, ["cache", "prune", *args, "--dir", str(tmp_path)])
        assert bad.exit_code == 2, args
        assert "nothing was deleted" in bad.output
    assert len(cache.list_entries(tmp_path)) == 3
    done = runner.invoke(app, ["cache", "prune", "--keep-gb", f"{keep_gb}", "--dir", str(tmp_path)])
    assert done.exit_code == 0 and "deleted 2 of 3 entries" in done.output
    assert not old.exists() and not mid.exists() and new.exists()
    assert not Path(f"{old}.lock").exists() and (tmp_path / "experiments").is_dir()
    cfg = SimulationConfig(n_neurons=12, n_frames=300, start_frame=-50, device="cpu")
    assert load_or_simulate(cfg, cache_dir=tmp_path).u.shape == (300, 12)  # simulated again when needed


def test_an_entry_whose_lock_another_process_holds_is_kept(tmp_path: Path) -> None:
    (entry, *_) = _entries(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time, filelock; lock = filelock.FileLock({str(entry) + '.lock'!r}); lock.acquire(); "
         "print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert cache.remove_entry(entry) is False
        assert entry.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert cache.remove_entry(entry) is True and not entry.exists()


def test_a_fresh_entry_is_not_old(tmp_path: Path) -> None:
    stamp = time.time()
    cfg = SimulationConfig(n_neurons=12, n_frames=300, start_frame=-50, device="cpu")
    load_or_simulate(cfg, cache_dir=tmp_path)
    (found,) = cache.list_entries(tmp_path)
    assert abs(found.modified - stamp) < 120
    assert cache.select_prunable([found], now=time.time(), older_than_days=1) == []
