"""The GNN for PDE_N4 (GitHub issue #29, part 2): lin_edge([u_j, a_j]) with the source's embedding.

    pred_i = lin_phi([u_i, a_i]) + sum_{j != i} W_ij * lin_edge([u_j, a_j])

Closed forms against the simulator's right-hand side, the split first layer against the plain MLP on
[u, a] (values and gradients), a short fit that recovers W, the metrics and rollout of PDE_N4, config
validation, populations, checkpoints, the objective with one neuron type, and the PDE_N2 path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ntune.learn.model as model_module
from ntune.cli.app import app
from ntune.config import ConfigError, NtuneConfig, config_from_dict, config_to_dict, load_config
from ntune.data.pde_n4 import pde_n4_params, pde_n4_rhs
from ntune.data.simulate import SimData, simulate
from ntune.learn import metrics as M
from ntune.learn.checkpoint import load_checkpoint, save_checkpoint
from ntune.learn.evaluate import final_metrics, rollout, w_metrics
from ntune.learn.loss import loss_terms
from ntune.learn.model import PIECES_MIN_ROWS, PopulationGNN, SignalGNN
from ntune.learn.population import batchable, train_population
from ntune.learn.reference import ReferenceGNN
from ntune.learn.train import fit
from searchers.objective import classify, score
from searchers.robustness import Repeat, robustness

CHAOTIC = Path(__file__).resolve().parents[1] / "configs" / "signal_chaotic.yaml"
# Two types with one decay a, gain g and width w, different offsets b and thresholds h: lin_phi and
# lin_edge are then exactly representable ReLU MLPs of [u, a_i] (below), and lin_edge must read the
# SOURCE's embedding (its h), not the target's. g differs from a, so reading the wrong column shows.
A, G, W_WIDTH = 1.5, 4.0, 2.0
PARAMS2 = [[A, 0.5, G, 0.0, W_WIDTH, -1.0], [A, -0.3, G, 0.0, W_WIDTH, 1.0]]


def _n4(n: int = 12, frames: int = 300, **sim: Any) -> NtuneConfig:
    """A small PDE_N4 config (two types, linear phi, the PARAMS2 rows) on the CPU."""
    fields = {
        "signal_model_name": "PDE_N4",
        "n_neurons": n,
        "n_neuron_types": 2,
        "params": PARAMS2,
        "phi": "linear",
        "connectivity_type": "chaotic",
        "n_frames": frames,
        "start_frame": -100,
        "device": "cpu",
        **sim,
    }
    return config_from_dict({"simulation": fields, "training": {"device": "cpu"}})


@torch.no_grad()
def _exact_model(data: SimData, backend: str = "dense") -> SignalGNN:
    """A PDE_N4 SignalGNN set by hand to the true model of ``data`` (linear phi, s = 0, one a, one w):

    embedding a_i = [b_i, h_i / w]; lin_phi([u, e]) = -A u + e_0 = -a u + b; lin_edge([u, e]) = u / w - e_1
    = (u - h_j) / w = phi((u - h_j) / w_j); W_model = g_i W_true (the gain moved into W's rows).
    """
    n = data.W.shape[0]
    model = SignalGNN(n, backend=backend, signal_model_name="PDE_N4")
    _, b, g, _, _, h = (
        torch.as_tensor(v, dtype=torch.float32) for v in pde_n4_params(data.params, data.types)
    )
    model.a.copy_(torch.stack([b, h / W_WIDTH], dim=1))  # (N, 2)
    model.W.copy_(g[:, None] * torch.from_numpy(data.W))  # (N, N)
    _linear_relu_net(model.lin_phi, input_index=1, u_gain=-A, e_gain=1.0)
    _linear_relu_net(model.lin_edge, input_index=2, u_gain=1.0 / W_WIDTH, e_gain=-1.0)
    return model


def _linear_relu_net(mlp: torch.nn.Module, input_index: int, u_gain: float, e_gain: float) -> None:
    """Set a 3-layer ReLU MLP of [u, e_0, e_1] to u_gain * u + e_gain * e_{input_index - 1} exactly:
    x = relu(x) - relu(-x) in the first layer, the identity on those 4 units in the second."""
    first, second, third = (m for m in mlp.modules() if isinstance(m, torch.nn.Linear))
    for layer in (first, second, third):
        layer.weight.zero_()
        layer.bias.zero_()
    first.weight[0, 0], first.weight[1, 0] = 1.0, -1.0  # relu(u), relu(-u)
    first.weight[2, input_index], first.weight[3, input_index] = 1.0, -1.0  # relu(e), relu(-e)
    for k in range(4):
        second.weight[k, k] = 1.0
    third.weight[0, :4] = torch.tensor([u_gain, -u_gain, e_gain, -e_gain])


@pytest.fixture(scope="module")
def data2() -> SimData:
    """12 neurons of two types, linear phi, 300 frames."""
    return simulate(_n4().simulation)


# ---- closed forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["dense", "edge"])
def test_hand_set_model_equals_the_pde_n4_rhs(data2: SimData, backend: str) -> None:
    model = _exact_model(data2, backend)
    u = torch.from_numpy(data2.u[::20])  # (15, N)
    W = torch.from_numpy(data2.W)
    p = [torch.as_tensor(v) for v in pde_n4_params(data2.params, data2.types)]
    want = pde_n4_rhs(u, W, *p, phi="linear")  # (15, N)
    with torch.no_grad():
        got = model(u)  # (15, N)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        got, torch.from_numpy(data2.y[::20]), rtol=1e-5, atol=1e-4
    )  # the stored target
    assert float((want - want.mean()).abs().max()) > 1.0  # the check compares non-trivial values


def test_the_source_embedding_decides_the_message(data2: SimData) -> None:
    """Give every neuron the TARGET's embedding in lin_edge (h of one type for all): the model is wrong."""
    model = _exact_model(data2)
    u = torch.from_numpy(data2.u[::20])  # (15, N)
    with torch.no_grad():
        right = model(u)
        h_one = model.lin_edge(torch.cat([u.unsqueeze(-1), model.a[0].expand(*u.shape, -1)], dim=-1))
        wrong = model.phi_term(u) + model.message(h_one.squeeze(-1))
    assert float((right - wrong).abs().max()) > 0.5


def test_metrics_and_rollout_of_the_exact_model(data2: SimData) -> None:
    """R^2 1, slope 1 after scale correction by the gain g (column 2 of [a, b, g, s, w, h]) and the
    per-source lin_edge gains, the held-out rollout of the learned model equal to the PDE_N4 rollout."""
    model = _exact_model(data2)
    m = w_metrics(model, data2, "kmeans")
    assert m["connectivity_R2"] == pytest.approx(1.0, abs=1e-9)
    assert m["connectivity_slope"] == pytest.approx(1.0, abs=1e-4)  # column 0 (a = 1.5) would give 4 / 1.5
    assert m["cluster_accuracy"] == 1.0  # embeddings [b_i, h_i / w] separate the two types
    learned, true = rollout(model, data2, 250, 50)
    np.testing.assert_allclose(learned, true, rtol=1e-4, atol=1e-3)
    base = {"spectral_radius": 1.0}
    final = final_metrics(model, data2, NtuneConfig().training, base, np.ones((10, 4)), 250)
    assert final["test_R2"] > 0.9999 and final["test_pearson"] > 0.9999


def test_per_source_gains_undo_a_scale_that_each_column_of_W_absorbed() -> None:
    """lin_edge_j = k_j phi_j + c_j with W's column j divided by k_j predicts the same: the scale-corrected
    W is the true one again (one joint gain would not undo it)."""
    rng = np.random.default_rng(0)
    u = np.linspace(-3, 3, 50)
    h = np.array([-1.0, 0.0, 1.0, 2.0])
    phi = np.tanh(u[:, None] - h)  # (P, 4)
    k, c = np.array([0.5, 1.0, 2.0, 4.0]), rng.standard_normal(4)
    W = rng.standard_normal((4, 4))
    gains = M.edge_gains(k * phi + c, phi)
    np.testing.assert_allclose(gains, k, rtol=1e-12)
    np.testing.assert_allclose(M.scale_corrected(W / k, gains), W, rtol=1e-12)
    assert M.connectivity_slope(W / k, W, gains) == pytest.approx(1.0)
    joint = M.edge_gain((k * phi + c).reshape(-1), phi.reshape(-1))
    assert abs(M.connectivity_slope(W / k, W, joint) - 1.0) > 0.1
    assert np.isnan(M.edge_gains(np.ones((5, 1)), np.ones((5, 1))))[0]  # a constant phi_j has no gain


# ---- the split first layer ---------------------------------------------------------------------------


def _random_n4(
    n: int = 9, seed: int = 0, backend: str = "dense", cls: type[SignalGNN] = SignalGNN
) -> SignalGNN:
    torch.manual_seed(seed)
    model = cls(
        n, embedding_dim=3, hidden_dim=16, backend=backend, signal_model_name="PDE_N4", W_init_std=0.3
    )
    with torch.no_grad():
        model.a.copy_(torch.randn(n, 3))
    return model


def test_split_first_layer_equals_the_mlp_on_u_and_the_source_embedding() -> None:
    model = _random_n4()
    u = torch.randn(5, 9, requires_grad=True)  # (batch, N)
    got = model.edge_term(u)  # (batch, N)
    plain = model.lin_edge(torch.cat([u.unsqueeze(-1), model.a.expand(5, -1, -1)], dim=-1)).squeeze(-1)
    torch.testing.assert_close(got, plain, rtol=1e-6, atol=1e-6)
    weights = torch.randn(5, 9)
    params = [u, model.a, *model.lin_edge.parameters()]
    g_split = torch.autograd.grad((got * weights).sum(), params)
    g_plain = torch.autograd.grad((plain * weights).sum(), params)
    assert float(g_split[1].abs().sum()) > 0  # the embedding gets a gradient through lin_edge
    for a, b in zip(g_split, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_loss_and_gradients_equal_the_reference_model() -> None:
    """The whole loss (prediction, L1, lin_phi zero, monotonicity with each source's embedding) and every
    parameter's gradient equal ReferenceGNN's direct evaluation."""
    fast, ref = _random_n4(), _random_n4(cls=ReferenceGNN)
    ref.load_state_dict(fast.state_dict())
    u, y = torch.randn(6, 9), torch.randn(6, 9)
    coeffs = (1e-3, 1.0, 100.0)
    t_fast, t_ref = loss_terms(fast, u, y, coeffs, 2.0), loss_terms(ref, u, y, coeffs, 2.0)
    torch.testing.assert_close(t_fast, t_ref, rtol=1e-5, atol=1e-6)
    assert float(t_fast[3].detach()) > 0  # a random lin_edge is not monotone: the term is exercised
    t_fast.sum().backward()
    t_ref.sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        scale = float(q.grad.abs().max())  # float32 rounding of 100 x relu(h - h_next) is ~1e-5 of it
        assert scale > 0 and float((p.grad - q.grad).abs().max()) <= 1e-4 * scale, name


def test_dense_and_edge_back_ends_agree_for_pde_n4() -> None:
    dense, edge = _random_n4(), _random_n4(backend="edge")
    edge.load_state_dict(dense.state_dict())
    u = torch.randn(4, 9)
    torch.testing.assert_close(dense(u), edge(u), rtol=1e-5, atol=1e-5)


def test_auto_never_evaluates_the_pde_n4_lin_edge_piece_by_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("piecewise_forward called for PDE_N4")

    n = 100
    model = SignalGNN(n, signal_model_name="PDE_N4")  # lin_edge_eval "auto"
    u = torch.randn(PIECES_MIN_ROWS // n + 1, n)  # enough inputs for "auto" to pick pieces with PDE_N2
    monkeypatch.setattr(model_module, "piecewise_forward", refuse)
    assert model.edge_term(u).shape == u.shape
    with pytest.raises(AssertionError, match="piecewise_forward called"):
        SignalGNN(n).edge_term(u)  # PDE_N2 on the same input does take the pieces
    with pytest.raises(ValueError, match="lin_edge_eval 'pieces' needs a lin_edge of one scalar input"):
        SignalGNN(n, signal_model_name="PDE_N4", lin_edge_eval="pieces")


# ---- training ----------------------------------------------------------------------------------------


def _tiny_chaotic(**training: Any) -> NtuneConfig:
    """configs/signal_chaotic.yaml without Dale's law at 30 neurons, 2000 frames, 1000 iterations."""
    sets = [
        "simulation.n_neurons=30",
        "simulation.n_frames=2000",
        "simulation.Dale_law=false",
        "training.data_augmentation_loop=20",
        "training.learning_rate_W_start=5e-3",
        "training.device=cpu",
    ]
    return load_config(CHAOTIC, sets + [f"training.{k}={v}" for k, v in training.items()])


def test_a_short_fit_recovers_W_of_a_tiny_chaotic_network() -> None:
    config = _tiny_chaotic()
    data = simulate(config.simulation)
    result = fit(config, data)
    m = result.metrics
    assert result.status == "ok" and result.model.edge_embedding
    # measured 0.957 (training seed 24; seeds 0-3 gave 0.85-0.97); lr_W 1e-5 stays near 0
    assert m["connectivity_R2"] > 0.9
    assert math.isnan(m["cluster_accuracy"])  # one neuron type: undefined
    assert m["classification"] == "converged"  # fit classifies one type by connectivity_R2 alone
    assert m["test_R2"] > 0.5
    for key in ("effective_rank_90", "effective_rank_99"):  # the activity's complexity, as upstream logs it
        assert m[key] == data.summary[key] and 1 <= m[key] <= config.simulation.n_neurons
    assert m["effective_rank_90"] <= m["effective_rank_99"]


def test_a_fit_of_two_types_recovers_W_and_the_types() -> None:
    """Two types whose thresholds h differ, so lin_edge must tell the sources apart (2 000 iterations)."""
    config = _tiny_chaotic(data_augmentation_loop=40)
    config = config_from_dict(
        config_to_dict(config),
        ["simulation.n_neuron_types=2", "simulation.params=[[1,0,10,0,1,0],[1,0,10,0,1,1]]"],
    )
    result = fit(config, simulate(config.simulation))
    # measured R^2 0.94 / 0.91 / 0.91 and cluster 1.0 / 0.97 / 1.0 at training seeds 0, 1, 2 (here 24)
    assert result.metrics["connectivity_R2"] > 0.8
    assert result.metrics["cluster_accuracy"] > 0.9


def test_a_population_of_pde_n4_configs_is_trained_by_fit(data2: SimData) -> None:
    config = config_from_dict(
        config_to_dict(_n4()), ["training.data_augmentation_loop=2", "training.n_log_points=2"]
    )
    assert not batchable(config)
    with pytest.raises(ValueError, match="PopulationGNN batches PDE_N2 members only"):
        PopulationGNN([SignalGNN.from_config(config.graph_model, 12)])
    other = config_from_dict(config_to_dict(config), ["training.learning_rate_W_start=3e-3"])
    results = train_population([config, other], data2)
    for cfg, got in zip([config, other], results, strict=True):
        alone = fit(cfg, data2)
        torch.testing.assert_close(got.model.W, alone.model.W)
    assert not torch.equal(results[0].model.W, results[1].model.W)


def test_a_checkpoint_round_trips_a_pde_n4_model(tmp_path: Path, data2: SimData) -> None:
    config = config_from_dict(config_to_dict(_n4()), ["training.data_augmentation_loop=2"])
    result = fit(config, data2)
    path = save_checkpoint(result, tmp_path / "n4.pt")
    loaded = load_checkpoint(path)
    model = loaded["model"]
    assert model.edge_embedding and loaded["config"].graph_model.signal_model_name == "PDE_N4"
    u = torch.from_numpy(data2.u[:7])
    torch.testing.assert_close(model(u), result.model(u))
    result.config = None  # a checkpoint without its config is rebuilt from model_args
    bare = load_checkpoint(save_checkpoint(result, tmp_path / "bare.pt"))["model"]
    torch.testing.assert_close(bare(u), result.model(u))


def test_ntune_train_runs_the_chaotic_config_and_prints_metrics(tmp_path: Path) -> None:
    sets = ["simulation.n_frames=1000", "training.data_augmentation_loop=2", "training.device=cpu"]
    args = ["train", str(CHAOTIC), "--out", str(tmp_path), *[x for s in sets for x in ("--set", s)]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "connectivity_R2" in result.output and "test_R2" in result.output
    for png in ("W_scatter", "embedding", "lin_phi", "lin_edge", "loss"):
        assert (tmp_path / f"{png}.png").is_file()


# ---- configuration -----------------------------------------------------------------------------------


def test_the_model_follows_the_simulator_and_a_mismatch_names_both_fields() -> None:
    config = load_config(CHAOTIC)
    assert config.graph_model.signal_model_name == "PDE_N4"
    assert config_from_dict(
        {"simulation": config_to_dict(config)["simulation"]}
    ).graph_model.signal_model_name == (
        "PDE_N4"
    )  # a graph_model section without the name takes the simulation's
    with pytest.raises(ConfigError) as err:
        config_from_dict(config_to_dict(config), ["graph_model.signal_model_name=PDE_N2"])
    assert "graph_model.signal_model_name is 'PDE_N2' but simulation.signal_model_name is 'PDE_N4'" in str(
        err.value
    )
    with pytest.raises(ConfigError, match="graph_model.signal_model_name is 'PDE_N4' but simulation"):
        config_from_dict({"graph_model": {"signal_model_name": "PDE_N4"}})
    with pytest.raises(ConfigError, match="graph_model.signal_model_name: 'PDE_N5'"):
        config_from_dict({"graph_model": {"signal_model_name": "PDE_N5"}})


def test_pieces_with_pde_n4_names_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CHAOTIC, ["graph_model.lin_edge_eval=pieces"])
    text = str(err.value)
    assert "graph_model" in text and "lin_edge_eval 'pieces'" in text and "'auto' or 'mlp'" in text
    assert load_config(CHAOTIC, ["graph_model.lin_edge_eval=mlp"]).graph_model.lin_edge_eval == "mlp"


def test_upstream_import_sets_the_model_name(tmp_path: Path) -> None:
    from ntune.upstream import import_upstream

    path = tmp_path / "up.yaml"
    path.write_text(
        "simulation: {n_neurons: 20, n_neuron_types: 1, params: [[1, 0, 7, 0, 1, 0]], connectivity_type: chaotic}\n"
        "graph_model: {signal_model_name: PDE_N4}\n"
    )
    config, _ = import_upstream(path)
    assert (config.simulation.signal_model_name, config.graph_model.signal_model_name) == ("PDE_N4", "PDE_N4")


def test_the_chaotic_study_gives_each_regime_its_own_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/chaotic_convergence_study.yaml: block_set's simulation fields reach each block's data (its
    ceiling is computed on them), shortened here to 300 frames (600 for the 20k block's 2x)."""
    from ntune.study.ceilings import study_ceilings
    from ntune.study.load import load_study

    monkeypatch.setenv("NTUNE_CACHE", str(tmp_path))
    study_path = CHAOTIC.parent / "chaotic_convergence_study.yaml"
    study, base = load_study(
        study_path, ["simulation.n_frames=300", "block_set.chaotic_Dale_20k=[simulation.n_frames=600]"]
    )
    assert study.objective.weights == {"connectivity_R2": 1.0}
    assert (study.robustness_repeats, study.retry_failed) == (3, 1)
    ceilings = study_ceilings(study, base)["ceilings"]
    assert list(ceilings) == [
        f"dataset={v}" for v in ("chaotic", "chaotic_Dale", "chaotic_Dale_20k", "low_rank")
    ]
    entries = [p for p in tmp_path.iterdir() if p.name.startswith("pde_n4") and p.is_dir()]
    assert len(entries) == 4  # four different simulation sections, four data sets
    data = {}
    for entry in entries:
        sim = json.loads((entry / "meta.json").read_text())["config"]
        data[sim["connectivity_type"], sim.get("Dale_law", False), sim["n_frames"]] = np.load(entry / "W.npy")
    assert sorted(data) == [
        ("chaotic", False, 300),
        ("chaotic", True, 300),
        ("chaotic", True, 600),
        ("low_rank", False, 300),
    ]
    assert (data["chaotic", True, 300][:, 30:] <= 0).all() and (data["chaotic", False, 300][:, 30:] > 0).any()

    def top20(W: np.ndarray) -> float:  # fraction of ||W||_F^2 in the 20 largest singular values
        s2 = np.linalg.svd(W, compute_uv=False) ** 2
        return float(s2[:20].sum() / s2.sum())

    assert top20(data["low_rank", False, 300]) > 0.9 > 0.6 > top20(data["chaotic", False, 300])  # rank 20 W


# ---- one neuron type: the objective scores W ---------------------------------------------------------


def test_one_type_scores_W_alone_under_a_W_objective_and_the_default_objective_is_unchanged() -> None:
    result = {"connectivity_R2": 0.95, "cluster_accuracy": math.nan, "status": "ok"}
    assert score(result, {"connectivity_R2": 1.0}) == pytest.approx(0.95)
    assert classify(result, {"connectivity_R2": 0.9}) == "converged"
    # existing studies (0.6 R^2 + 0.4 cluster, both thresholded) keep their behaviour: NaN counts 0
    assert score(result) == pytest.approx(0.6 * 0.95)
    assert classify(result) == "partial-W"
    assert score({**result, "cluster_accuracy": 1.0}) == pytest.approx(0.6 * 0.95 + 0.4)
    assert classify({**result, "cluster_accuracy": 1.0}) == "converged"


def test_robustness_of_one_type_repeats_reports_cluster_as_undefined_not_zero() -> None:
    nan = math.nan
    one_type = [
        Repeat("converged", {"connectivity_R2": r2, "cluster_accuracy": nan}, r2) for r2 in (0.99, 0.95)
    ]
    r = robustness(one_type, needed=2)
    assert r.robust and r.R2_mean == pytest.approx(0.97)
    assert math.isnan(r.cluster_mean) and math.isnan(r.worst_cluster)
    # a diverged repeat (the trainer reports cluster 0) keeps the numbers as before
    diverged = Repeat("failed", {"connectivity_R2": 0.0, "cluster_accuracy": 0.0, "status": "diverged"}, 0.0)
    mixed = robustness([*one_type, diverged], needed=3)
    assert not mixed.robust and mixed.cluster_mean == 0.0 and mixed.worst_cluster == 0.0


# ---- the PDE_N2 path ---------------------------------------------------------------------------------


def test_the_pde_n2_model_is_unchanged() -> None:
    assert config_to_dict(NtuneConfig())["graph_model"] == {
        "signal_model_name": "PDE_N2",
        "embedding_dim": 2,
        "hidden_dim": 64,
        "n_layers": 3,
        "backend": "dense",
        "W_init_std": 0.01,
        "lin_edge_eval": "auto",
    }
    torch.manual_seed(0)
    n2 = SignalGNN(5, lin_edge_eval="mlp")
    torch.manual_seed(0)
    named = SignalGNN(5, lin_edge_eval="mlp", signal_model_name="PDE_N2")
    assert not n2.edge_embedding and n2.lin_edge.net[0].in_features == 1
    u = torch.randn(3, 5)
    assert torch.equal(n2(u), named(u))
    assert torch.equal(n2.edge_term(u), n2.lin_edge(u.unsqueeze(-1)).squeeze(-1))  # u_j alone, no a_j
    assert n2.edge_term(torch.randn(7)).shape == (7,)  # elementwise on any shape
