"""Data cache: hits without simulating, corrupt entries detected and regenerated, one build per machine; CLI."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import ntune.data.load as sim
from ntune.cli.app import app
from ntune.config import SimulationConfig, load_config
from ntune.data import cache

SMALL = {
    "n_neurons": 30,
    "n_neuron_types": 2,
    "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]],
    "n_frames": 400,
    "start_frame": -100,
    "device": "cpu",
    "seed": 11,
}


def _config(**fields: object) -> SimulationConfig:
    return SimulationConfig(**{**SMALL, **fields})


def _refuse(config: SimulationConfig, *, progress: object = None) -> sim.SimData:
    raise AssertionError("simulate() called although the data are cached")


def _assert_same(a: sim.SimData, b: sim.SimData) -> None:
    for name in ("u", "y", "W", "mask", "types", "params"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_hit_returns_identical_arrays_without_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    first = sim.load_or_simulate(config, cache_dir=tmp_path)
    assert first.path == sim.cache_entry(config, tmp_path) and first.path.is_dir()
    monkeypatch.setattr(sim, "simulate", _refuse)
    second = sim.load_or_simulate(config, cache_dir=tmp_path)
    _assert_same(first, second)
    assert second.summary == pytest.approx(first.summary)
    assert second.path == first.path
    # the device is not part of the key, the seed is
    assert sim.cache_entry(_config(device="auto"), tmp_path) == first.path
    assert sim.cache_entry(_config(seed=12), tmp_path) != first.path


def test_cache_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTUNE_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NTUNE_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "ntune"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x5A
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "file", "reason"),
    [(_truncate, "y.npy", "truncated"), (_flip_last_byte, "u.npy", "checksum mismatch")],
)
def test_corrupt_entry_detected_and_regenerated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object, file: str, reason: str
) -> None:
    config = _config()
    original = sim.load_or_simulate(config, cache_dir=tmp_path)
    assert original.path is not None
    damage(original.path / file)  # type: ignore[operator]
    with pytest.raises(cache.CacheCorruptError, match=reason):
        cache.read_entry(original.path)
    with caplog.at_level(logging.WARNING, logger="ntune.data.simulate"):
        again = sim.load_or_simulate(config, cache_dir=tmp_path)
    assert any("corrupt cache entry" in r.getMessage() and file in r.getMessage() for r in caplog.records)
    _assert_same(original, again)
    assert cache.read_entry(original.path) is not None  # the rewritten entry verifies


def test_missing_meta_is_corrupt(tmp_path: Path) -> None:
    entry = sim.load_or_simulate(_config(), cache_dir=tmp_path).path
    assert entry is not None
    (entry / cache.META_FILE).unlink()
    with pytest.raises(cache.CacheCorruptError, match="meta.json"):
        cache.read_entry(entry)


def _build_in_child(cache_dir: str, marker: str, barrier: object) -> None:
    """Spawned child: count calls of simulate() in ``marker``, then load_or_simulate at the same moment."""
    real = sim.simulate

    def counting(config: SimulationConfig, *, progress: object = None) -> sim.SimData:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # keep the build window open while the other process arrives
        return real(config, progress=progress)

    sim.simulate = counting  # type: ignore[assignment]
    barrier.wait()  # type: ignore[attr-defined]
    data = sim.load_or_simulate(_config(), cache_dir=cache_dir)
    if data.path != sim.cache_entry(_config(), cache_dir) or data.u.shape != (SMALL["n_frames"], 30):
        raise SystemExit(3)


def test_two_processes_simulate_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    marker = tmp_path / "simulate-calls.txt"
    procs = [
        ctx.Process(target=_build_in_child, args=(str(tmp_path), str(marker), barrier)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(marker.read_text().split()) == 1
    assert cache.read_entry(sim.cache_entry(_config(), tmp_path)) is not None


def _write_config(path: Path, simulation: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"simulation": simulation}))
    return path


def test_cli_bad_config_exits_2_and_names_the_field(tmp_path: Path) -> None:
    bad = _write_config(tmp_path / "bad.yaml", {**SMALL, "connectivity_filling_factor": 1.5})
    result = CliRunner().invoke(app, ["simulate", str(bad)])
    assert result.exit_code == 2
    assert "simulation.connectivity_filling_factor" in result.output
    result = CliRunner().invoke(app, ["simulate", str(bad), "--set", "simulation.n_neuron=10"])
    assert result.exit_code == 2 and "n_neurons" in result.output


def test_cli_simulate_prints_path_and_writes_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _write_config(tmp_path / "tiny.yaml", {**SMALL, "n_neurons": 20, "n_frames": 200})
    result = CliRunner().invoke(app, ["simulate", str(good)])
    assert result.exit_code == 0, result.output
    entry = sim.cache_entry(load_config(good).simulation)
    assert str(entry) in "".join(result.output.split())  # rich may wrap the long path
    assert "spectral_radius" in result.output
    assert (entry / "activity.png").stat().st_size > 1000
    assert (entry / "connectivity.png").stat().st_size > 1000
    monkeypatch.setattr(sim, "simulate", _refuse)
    again = CliRunner().invoke(app, ["simulate", str(good)])
    assert again.exit_code == 0, again.output
