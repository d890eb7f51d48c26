"""Importer for upstream NeuralGraph signal_N2 YAMLs: mapped values, the exact ignored list, errors, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import ConfigError, load_config
from ntune.upstream import import_upstream

# Shaped like upstream config/signal/archive/signal_N2_a43_2.yaml, with a few values changed so that
# every mapped field differs from the ntune default.
UPSTREAM = """\
description: 'test noise   synaptic network 100.000 points'
dataset: 'signal_N2_a43_2'

simulation:
    connectivity_file: 'random'
    adjacency_matrix: ''
    connectivity_init: [0,0.1]
    connectivity_distribution: 'Gaussian'
    connectivity_filling_factor: 0.25
    params: [[10.0,1.0,1.0],[10.0,2.0,1.0],[10.0,1.0,2.0]]
    phi: 'tanh'
    tau: 1.0
    min_radius: 1.0
    max_radius: 1.0E6
    n_neurons: 600
    n_neuron_types: 3
    n_frames: 20000
    delta_t: 0.02
    dpos_init:  0
    boundary: 'no'
    start_frame: -500
    seed: 7

graph_model:
    signal_model_name: 'PDE_N2'
    particle_model_name: ''
    prediction: 'first_derivative'
    hidden_dim: 32
    n_layers: 4
    aggr_type: 'add'
    embedding_dim: 3

plotting:
    colormap: 'tab10'
    xlim: [-5,5]

training:
    n_epochs: 20
    n_runs: 2
    device: 'auto'
    batch_size: 1
    data_augmentation_loop: 50
    cluster_method: 'distance_plot'
    cluster_distance_threshold: 0.1
    coeff_W_L1: 1.0E-4
    coeff_edge_diff: 10
    coeff_update_diff: 10
    learning_rate_W_start: 2.0E-3
    learning_rate_start: 1.0E-4
    learning_rate_embedding_start: 5.0E-3
    measurement_noise_level: 0.2
    noise_model_level: 0.01
    seed: 5
"""

IGNORED = [
    "graph_model.aggr_type",
    "graph_model.particle_model_name",
    "graph_model.prediction",
    "plotting.colormap",
    "plotting.xlim",
    "simulation.adjacency_matrix",
    "simulation.boundary",
    "simulation.connectivity_file",
    "simulation.dpos_init",
    "simulation.max_radius",
    "simulation.min_radius",
    "simulation.tau",
    "training.cluster_distance_threshold",
    "training.coeff_update_diff",
    "training.measurement_noise_level",
    "training.n_runs",
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signal_N2_test.yaml"
    path.write_text(text)
    return path


def test_values_mapped_and_ignored_list_exact(tmp_path: Path) -> None:
    config, ignored = import_upstream(_write(tmp_path, UPSTREAM))
    assert ignored == IGNORED
    sim, model, train = config.simulation, config.graph_model, config.training
    assert config.dataset == "signal_N2_a43_2"
    assert (sim.connectivity_type, sim.connectivity_filling_factor, sim.connectivity_init) == (
        "Gaussian",
        0.25,
        [0, 0.1],
    )
    assert sim.params == [[10.0, 1.0, 1.0], [10.0, 2.0, 1.0], [10.0, 1.0, 2.0]]
    assert (sim.n_neurons, sim.n_neuron_types, sim.n_frames, sim.delta_t, sim.start_frame) == (
        600,
        3,
        20000,
        0.02,
        -500,
    )
    assert (sim.phi, sim.seed, sim.noise_model_level) == ("tanh", 7, 0.01)
    assert (model.embedding_dim, model.hidden_dim, model.n_layers) == (3, 32, 4)
    assert (train.n_epochs, train.batch_size, train.data_augmentation_loop, train.seed) == (20, 1, 50, 5)
    assert (train.learning_rate_W_start, train.learning_rate_start, train.learning_rate_embedding_start) == (
        2e-3,
        1e-4,
        5e-3,
    )
    assert (train.coeff_W_L1, train.coeff_edge_diff, train.cluster_method) == (1e-4, 10.0, "single_linkage")


def test_simulation_noise_level_wins_over_training(tmp_path: Path) -> None:
    text = UPSTREAM.replace("    seed: 7\n", "    seed: 7\n    noise_model_level: 0.03\n")
    config, ignored = import_upstream(_write(tmp_path, text))
    assert config.simulation.noise_model_level == 0.03
    assert "training.noise_model_level" in ignored


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            "connectivity_distribution: 'Gaussian'",
            "connectivity_distribution: 'uniform'",
            "connectivity_distribution",
        ),
        ("signal_model_name: 'PDE_N2'", "signal_model_name: 'PDE_N4'", "graph_model.signal_model_name"),
        ("n_neuron_types: 3", "n_neuron_types: 4", "simulation"),
        (
            "connectivity_filling_factor: 0.25",
            "connectivity_filling_factor: 0",
            "connectivity_filling_factor",
        ),
    ],
)
def test_errors_name_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in UPSTREAM
    with pytest.raises(ConfigError, match=field):
        import_upstream(_write(tmp_path, UPSTREAM.replace(old, new)))


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        import_upstream(_write(tmp_path, "- 1\n- 2\n"))


def test_cli_import_writes_a_loadable_config(tmp_path: Path) -> None:
    out = tmp_path / "ntune.yaml"
    result = CliRunner().invoke(app, ["config", "import", str(_write(tmp_path, UPSTREAM)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "training.n_runs" in result.output
    loaded = load_config(out)
    assert loaded.simulation.n_neurons == 600 and loaded.training.learning_rate_W_start == 2e-3
    assert yaml.safe_load(out.read_text())["simulation"]["connectivity_type"] == "Gaussian"
    bad = _write(tmp_path, UPSTREAM.replace("n_neuron_types: 3", "n_neuron_types: 4"))
    assert CliRunner().invoke(app, ["config", "import", str(bad)]).exit_code == 2
