"""Importer for upstream NeuralGraph signal YAMLs (N2, chaotic N4): mapped values, the exact ignored list, errors,
simulation of the imported chaotic configs, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ntune.cli.app import app
from ntune.config import ConfigError, config_from_dict, config_to_dict, load_config
from ntune.data.simulate import simulate
from ntune.upstream import import_upstream, upstream_values

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


# ---- GitHub issue #29, part 3: upstream's chaotic PDE_N4 YAMLs -----------------------------------------

# Upstream saalfeldlab/NeuralGraph config/signal/signal_chaotic_Claude.yaml (commit 066ed36a), verbatim.
CHAOTIC_CLAUDE = """\
description: "Dale's law: factor=0.3, n_types=1"
dataset: "signal_chaotic_Claude"

simulation:
  connectivity_type: "chaotic"
  connectivity_init: [0, 0.1]
  # params: [a, b, g, s, w, h]
  # a: decay, b: offset, g: gain, s: self-recurrence, w: width, h: threshold   MLP1((u-h)/w)
  params:
    [
      [1.0, 0.0, 10.0, 0.0, 1.0, 0.0],
      [2.0, 0.0, 10.0, 0.0, 1.0, 1.0],
      [3.0, 0.0, 10.0, 0.0, 1.0, 2.0],
      [4.0, 0.0, 10.0, 0.0, 1.0, 3.0],
    ]
  Dale_law: True
  Dale_law_factor: 0.3

  phi: "tanh"
  n_neurons: 100
  n_neuron_types: 1
  n_frames: 10000
  delta_t: 0.01
  dpos_init: 0
  boundary: "no"
  start_frame: -100

graph_model:
  signal_model_name: "PDE_N4"
  particle_model_name: ""
  mesh_model_name: ""
  prediction: "first_derivative"

  input_size: 3
  output_size: 1
  hidden_dim: 64
  n_layers: 3

  input_size_update: 3
  n_layers_update: 3
  hidden_dim_update: 64

  aggr_type: "add"
  embedding_dim: 2
  update_type: "none"

plotting:
  colormap: "tab10"
  arrow_length: 1
  xlim: [-5, 5]
  ylim: [-2, 2]

training:
  n_epochs: 1
  n_runs: 1
  device: "auto"

  batch_size: 8
  small_init_batch_size: False
  training_single_type: True

  seed: 24

  data_augmentation_loop: 200

  sparsity: "replace_embedding_function"
  sparsity_freq: 4
  cluster_method: "distance_plot"
  fix_cluster_embedding: True

  learning_rate_W_start: 1.0E-3
  learning_rate_start: 5.0E-4
  learning_rate_embedding_start: 2.5E-4

  coeff_W_L1: 1.0E-5
  coeff_edge_norm: 0.0
  coeff_edge_diff: 100
"""

# Upstream config/signal/signal_chaotic_1.yaml (commit 029643a2), verbatim: no Dale's law, gain 7, 2 rows.
CHAOTIC_1 = """\
description: "one type"
dataset: "signal_chaotic_1"

simulation:
  connectivity_type: "chaotic"
  connectivity_init: [0, 0.1]
  # params: [a, b, g, s, w, h]
  params: [[1.0, 0.0, 7.0, 0.0, 1.0, 0.0], [1.0, 0.0, 7.0, 0.0, 1.0, 0.0]]
  phi: "tanh"
  n_neurons: 100
  n_neuron_types: 1
  n_frames: 10000
  delta_t: 0.01
  dpos_init: 0
  boundary: "no"
  start_frame: -100

graph_model:
  signal_model_name: "PDE_N4"
  particle_model_name: ""
  mesh_model_name: ""
  prediction: "first_derivative"

  input_size: 3
  output_size: 1
  hidden_dim: 64
  n_layers: 3

  input_size_update: 3
  n_layers_update: 3
  hidden_dim_update: 64

  aggr_type: "add"
  embedding_dim: 2
  update_type: "none"

plotting:
  colormap: "tab10"
  arrow_length: 1
  xlim: [-5, 5]
  ylim: [-2, 2]

training:
  n_epochs: 10
  n_runs: 1
  device: "cuda:1"

  batch_size: 8
  small_init_batch_size: False
  training_single_type: True

  seed: 24

  data_augmentation_loop: 100

  sparsity: "replace_embedding_function"
  sparsity_freq: 4
  cluster_method: "distance_plot"
  fix_cluster_embedding: True

  learning_rate_W_start: 2.0E-3
  learning_rate_start: 1.0E-4
  learning_rate_embedding_start: 2.5E-4

  coeff_W_L1: 1.0E-5
  coeff_edge_norm: 0.0
  coeff_edge_diff: 100
"""

# Every upstream field of the two chaotic files that ntune ignores, checked one by one: none changes the
# simulated dynamics (the PDE_N4 Euler trajectory u(t) that ntune writes).
CHAOTIC_IRRELEVANT = [
    "graph_model.aggr_type",  # "add": the GNN's sum over j, which ntune's SignalGNN does; the model only
    "graph_model.hidden_dim_update",  # update MLP, used by upstream only with an update_type (here "none")
    "graph_model.input_size",  # 3 = [u, a] with a 2-d embedding: ntune derives it from embedding_dim
    "graph_model.input_size_update",  # update MLP, not used (update_type "none")
    "graph_model.mesh_model_name",  # "": no mesh model
    "graph_model.n_layers_update",  # update MLP, not used (update_type "none")
    "graph_model.output_size",  # 1 = du_i/dt per neuron, what ntune's GNN outputs
    "graph_model.particle_model_name",  # "": no particle model
    "graph_model.prediction",  # "first_derivative" (du/dt), ntune's only target; a training target only
    "graph_model.update_type",  # "none": no update MLP
    "plotting.arrow_length",  # plots only
    "plotting.colormap",  # plots only
    "plotting.xlim",  # plots only
    "plotting.ylim",  # plots only
    "simulation.boundary",  # particle-position boundary; a signal network has no positions
    "simulation.dpos_init",  # initial particle velocity; a signal network has no positions
    # the 3 (or 1) rows beyond n_neuron_types 1: every neuron is type 0, upstream never indexes them
    "simulation.params (3 of 4 rows dropped: n_neuron_types is 1)",
    "training.coeff_edge_norm",  # 0.0: the edge-norm penalty is off (training only)
    "training.fix_cluster_embedding",  # upstream's between-epoch embedding clustering (training only)
    "training.n_runs",  # how many times upstream repeats the training (training only)
    "training.small_init_batch_size",  # False: batch_size from the start, as ntune (training only)
    "training.sparsity",  # upstream replaces embeddings by cluster between epochs (training only)
    "training.sparsity_freq",  # how often it does (training only)
    "training.training_single_type",  # an upstream training mode (training only)
]


def test_chaotic_claude_imports_as_configs_signal_chaotic(tmp_path: Path) -> None:
    config, ignored = import_upstream(_write(tmp_path, CHAOTIC_CLAUDE))
    assert ignored == CHAOTIC_IRRELEVANT
    hand = load_config(Path(__file__).parent.parent / "configs" / "signal_chaotic.yaml")
    got, want = config_to_dict(config), config_to_dict(hand)
    # device is ntune's own (upstream has no simulation.device); every other simulation field is shared
    assert {k: v for k, v in got["simulation"].items() if k != "device"} == {
        k: v for k, v in want["simulation"].items() if k != "device"
    }
    assert got["simulation"]["params"] == [[1.0, 0.0, 10.0, 0.0, 1.0, 0.0]]
    assert (config.simulation.Dale_law, config.simulation.Dale_law_factor) == (True, 0.3)
    assert got["graph_model"] == want["graph_model"]
    # the hand-written training section leaves cluster_method at ntune's default; upstream's distance_plot
    # is single linkage
    assert {k: v for k, v in got["training"].items() if k != "cluster_method"} == {
        k: v for k, v in want["training"].items() if k != "cluster_method"
    }
    assert config.training.cluster_method == "single_linkage"


def test_chaotic_1_imports_without_dale_law(tmp_path: Path) -> None:
    config, ignored = import_upstream(_write(tmp_path, CHAOTIC_1))
    sim, train = config.simulation, config.training
    assert ignored == [
        n.replace("3 of 4 rows", "1 of 2 rows") if n.startswith("simulation.params") else n
        for n in CHAOTIC_IRRELEVANT
    ]
    assert (sim.signal_model_name, sim.connectivity_type, sim.Dale_law) == ("PDE_N4", "chaotic", False)
    assert sim.params == [[1.0, 0.0, 7.0, 0.0, 1.0, 0.0]]
    assert (sim.n_neurons, sim.n_neuron_types, sim.n_frames, sim.delta_t, sim.start_frame) == (
        100,
        1,
        10000,
        0.01,
        -100,
    )
    assert (train.n_epochs, train.device, train.data_augmentation_loop) == (10, "cuda:1", 100)
    assert (train.learning_rate_W_start, train.learning_rate_start) == (2e-3, 1e-4)


@pytest.mark.parametrize("text", [CHAOTIC_CLAUDE, CHAOTIC_1])
def test_imported_chaotic_config_simulates(tmp_path: Path, text: str) -> None:
    config, _ = import_upstream(_write(tmp_path, text))
    short = config_from_dict(
        config_to_dict(config), ["simulation.n_frames=200", "simulation.device=cpu"]
    )  # what `ntune simulate` validates, shortened from 10 000 frames
    data = simulate(short.simulation)
    assert data.u.shape == (200, 100) and np.isfinite(data.u).all() and np.isfinite(data.y).all()
    assert float(data.u.std()) > 0.1  # the chaotic network moves
    if config.simulation.Dale_law:  # 30 excitatory presynaptic columns, 70 inhibitory
        assert (data.W[:, :30] >= 0).all() and (data.W[:, 30:] <= 0).all()


def test_connectivity_rank_low_rank_and_the_switch(tmp_path: Path) -> None:
    text = CHAOTIC_1.replace('connectivity_type: "chaotic"', 'connectivity_type: "low_rank"').replace(
        "  phi:", "  connectivity_rank: 5\n  Dale_law_factor: 0.4\n  phi:"
    )
    sim = import_upstream(_write(tmp_path, text))[0].simulation
    assert (sim.connectivity_type, sim.connectivity_rank, sim.Dale_law_factor) == ("low_rank", 5, 0.4)
    # chaotic overrides a distribution written beside it (reported as ignored); "none" leaves W to it
    both = CHAOTIC_1.replace("  phi:", "  connectivity_distribution: 'Gaussian'\n  phi:")
    config, ignored = import_upstream(_write(tmp_path, both))
    assert config.simulation.connectivity_type == "chaotic"
    assert "simulation.connectivity_distribution" in ignored
    config, ignored = import_upstream(_write(tmp_path, both.replace('"chaotic"', '"none"')))
    assert config.simulation.connectivity_type == "Gaussian" and "simulation.connectivity_type" in ignored
    with pytest.raises(ConfigError, match="simulation.connectivity_type: 'ring attractor'"):
        import_upstream(_write(tmp_path, CHAOTIC_1.replace('"chaotic"', '"ring attractor"')))
    with pytest.raises(ConfigError, match="graph_model.signal_model_name: 'PDE_N5'"):
        import_upstream(_write(tmp_path, CHAOTIC_1.replace('"PDE_N4"', '"PDE_N5"')))


def test_chaotic_template_exports_back_under_upstream_names() -> None:
    values = {
        "simulation.connectivity_type": "chaotic",
        "simulation.signal_model_name": "PDE_N4",
        "simulation.Dale_law_factor": 0.4,
    }
    assert upstream_values(values, yaml.safe_load(CHAOTIC_CLAUDE)) == {
        "simulation.connectivity_type": "chaotic",
        "graph_model.signal_model_name": "PDE_N4",
        "simulation.Dale_law_factor": 0.4,
    }
