"""PDE_N4 (GitHub issue #29, part 1): right-hand side by hand, chaotic / low-rank W, Dale's law, the oracle,
upstream's effective rank at 90 % / 99 % of the variance, config validation, cache keys, what the trainer takes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ntune.data.simulate as S
from ntune.cli.app import app
from ntune.config import ConfigError, NtuneConfig, SimulationConfig, config_from_dict, load_config
from ntune.data import identifiability as I
from ntune.data.cache import entry_name
from ntune.data.connectivity import chaotic_W, dale_law, low_rank_W, make_connectivity, n_excitatory
from ntune.data.load import cache_entry, load_or_simulate
from ntune.data.pde_n4 import pde_n4_params, pde_n4_rhs, pde_n4_step

# Upstream signal_chaotic_Claude's first row, then three more types that differ in every column.
PARAMS4 = [
    [1.0, 0.0, 10.0, 0.0, 1.0, 0.0],
    [2.0, 0.5, 5.0, 1.0, 2.0, 1.0],
    [3.0, -1.0, 4.0, 2.0, 0.5, -1.0],
    [4.0, 0.0, 8.0, 0.5, 1.5, 3.0],
]
# Four chaotic types (gains 8-12, slow decay) whose w and h differ: no neuron rests, W is identifiable.
ORACLE_PARAMS = [
    [1.0, 0.0, 10.0, 0.0, 1.0, 0.0],
    [2.0, 0.5, 10.0, 1.0, 2.0, 1.0],
    [1.5, -0.5, 8.0, 0.5, 0.5, -1.0],
    [1.0, 0.0, 12.0, 0.0, 1.5, 0.5],
]
U3 = [0.5, -1.0, 2.0]
W3 = [[0.0, 0.2, -0.4], [0.3, 0.0, 0.1], [-0.5, 0.6, 0.0]]  # row i = postsynaptic
QUICKSTART_ENTRY = "pde_n2-c695d9fd71753089-v1"  # computed with `python -c` before issue #29
DEFAULT_ENTRY = "pde_n2-22d0457926f390b9-v1"


def _rhs(params: list[list[float]], types: list[int], phi: str = "tanh") -> np.ndarray:
    p = torch.tensor(params, dtype=torch.float64)  # (n_types, 6)
    u, W = torch.tensor(U3, dtype=torch.float64), torch.tensor(W3, dtype=torch.float64)
    cols = pde_n4_params(p, torch.tensor(types))
    return pde_n4_rhs(u, W, *cols, phi=phi).numpy()


def _n4(**fields: object) -> SimulationConfig:
    base: dict[str, object] = {
        "signal_model_name": "PDE_N4",
        "connectivity_type": "chaotic",
        "n_neurons": 40,
        "n_neuron_types": 4,
        "params": PARAMS4,
        "n_frames": 3000,
        "start_frame": -100,
        "device": "cpu",
        "seed": 7,
    }
    base.update(fields)
    return SimulationConfig(**base)


# ---- the right-hand side -----------------------------------------------------------------------------


def test_rhs_one_type_matches_hand_computation() -> None:
    t = math.tanh  # one type [a, b, g, s, w, h] = [1, 0, 10, 0, 1, 0]: du_i = -u_i + 10 sum_j W_ij tanh(u_j)
    expected = [
        -0.5 + 10 * (0.2 * t(-1.0) - 0.4 * t(2.0)),
        1.0 + 10 * (0.3 * t(0.5) + 0.1 * t(2.0)),
        -2.0 + 10 * (-0.5 * t(0.5) + 0.6 * t(-1.0)),
    ]
    got = _rhs(PARAMS4, [0, 0, 0])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, [-5.879298632214797, 3.350379051855846, -8.880150722034639], atol=1e-12)


def test_rhs_takes_the_transfer_function_of_the_source_neuron() -> None:
    t = math.tanh  # neurons of types 1, 2, 3: edge input of column j is tanh((u_j - h_j) / w_j)
    x0, x1, x2 = t((0.5 - 1.0) / 2.0), t((-1.0 + 1.0) / 0.5), t((2.0 - 3.0) / 1.5)
    expected = [
        -2.0 * 0.5 + 0.5 + 1.0 * t(0.5) + 5.0 * (0.2 * x1 - 0.4 * x2),
        -3.0 * -1.0 - 1.0 + 2.0 * t(-1.0) + 4.0 * (0.3 * x0 + 0.1 * x2),
        -4.0 * 2.0 + 0.0 + 0.5 * t(2.0) + 8.0 * (-0.5 * x0 + 0.6 * x1),
    ]
    got = _rhs(PARAMS4, [1, 2, 3])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        got, [1.1276830479558304, -0.050203884935144716, -6.538311560347255], atol=1e-12
    )
    linear = _rhs(PARAMS4, [1, 2, 3], phi="linear")  # phi = identity: x = (u - h) / w
    assert linear[2] == pytest.approx(-8.0 + 0.5 * t(2.0) + 8.0 * (-0.5 * -0.25 + 0.6 * 0.0), abs=1e-12)


def test_in_place_step_equals_the_formula() -> None:
    p = torch.tensor(PARAMS4, dtype=torch.float64)
    u, W = torch.tensor(U3, dtype=torch.float64), torch.tensor(W3, dtype=torch.float64)
    cols = pde_n4_params(p, torch.tensor([1, 2, 3]))
    y = torch.empty(3, dtype=torch.float64)
    pde_n4_step(W, *cols)(u, y)
    np.testing.assert_allclose(y.numpy(), _rhs(PARAMS4, [1, 2, 3]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_types", [1, 4])
def test_simulated_target_is_the_rhs_and_u_follows_euler(n_types: int) -> None:
    data = S.simulate(_n4(n_neurons=12, n_neuron_types=n_types, params=PARAMS4[:n_types], n_frames=200))
    assert data.params.shape == (n_types, 6) and np.bincount(data.types).tolist() == [12 // n_types] * n_types
    cols = pde_n4_params(torch.from_numpy(data.params).double(), torch.from_numpy(data.types))
    u = torch.from_numpy(data.u).double()  # (T, N)
    y = pde_n4_rhs(u, torch.from_numpy(data.W).double(), *cols).numpy()  # (T, N)
    np.testing.assert_allclose(data.y, y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.u[1:], data.u[:-1] + 0.01 * data.y[:-1], rtol=1e-5, atol=1e-5)
    assert data.u.std() > 1.0  # chaotic, not at a fixed point


# ---- connectivity ---------------------------------------------------------------------------------------


def test_chaotic_W_is_standard_normal_over_sqrt_N_and_ignores_connectivity_init() -> None:
    n = 400
    W, mask = make_connectivity(_n4(n_neurons=n, connectivity_init=[5.0, 9.0]), np.random.default_rng(0))
    off = W[mask]
    assert off.size == n * (n - 1) and np.all(np.diag(W) == 0)
    assert abs(off.mean()) < 4 * (1 / np.sqrt(n)) / np.sqrt(off.size)  # 4 standard errors of the mean
    assert off.std() == pytest.approx(1 / np.sqrt(n), rel=0.01)
    expected = np.random.default_rng(0).standard_normal((n, n)) / np.sqrt(n)
    np.testing.assert_array_equal(W, (expected * mask).astype(np.float32))
    small = np.random.default_rng(1).standard_normal((3, 3)) / np.sqrt(3)
    np.testing.assert_array_equal(chaotic_W(3, np.random.default_rng(1)), small)


def test_low_rank_W_has_rank_connectivity_rank_off_the_diagonal() -> None:
    n, r = 60, 5
    L = low_rank_W(n, r, np.random.default_rng(3))  # (N, N) before the diagonal is zeroed
    assert np.linalg.matrix_rank(L) == r
    assert L.std() == pytest.approx(1 / np.sqrt(n), rel=0.15)  # U V / sqrt(r N): entries of variance 1 / N
    cfg = _n4(n_neurons=n, connectivity_type="low_rank", connectivity_rank=r)
    W, _ = make_connectivity(cfg, np.random.default_rng(3))
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(W[off], L[off], rtol=1e-6)
    assert np.linalg.matrix_rank(W + np.diag(np.diag(L)), tol=1e-4) == r
    sv = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    # Weyl: zeroing the diagonal D moves singular value r + 1 from 0 by at most ||D|| = max |L_ii|
    assert sv[r] <= np.abs(np.diag(L)).max() * (1 + 1e-5) < sv[r - 1] / 5


def test_dale_law_one_sign_per_column_and_the_excitatory_fraction() -> None:
    n = 100
    plain, _ = make_connectivity(_n4(n_neurons=n), np.random.default_rng(5))
    W, mask = make_connectivity(
        _n4(n_neurons=n, Dale_law=True, Dale_law_factor=0.3), np.random.default_rng(5)
    )
    np.testing.assert_array_equal(np.abs(W), np.abs(plain))  # same draws, signs only
    assert np.all(W[:, :30][mask[:, :30]] > 0) and np.all(W[:, 30:][mask[:, 30:]] < 0)
    positive = [bool(np.all(W[:, j] >= 0)) for j in range(n)]
    negative = [bool(np.all(W[:, j] <= 0)) for j in range(n)]
    assert all(p != q for p, q in zip(positive, negative, strict=True))  # every column has exactly one sign
    assert sum(positive) / n == 0.3
    assert n_excitatory(100, 0.29) == 29 and int(100 * 0.29) == 28  # float guard against upstream's int()
    assert n_excitatory(7, 0.5) == 3 and n_excitatory(10, 1.0) == 10 and n_excitatory(10, 0.0) == 0
    signs = np.sign(dale_law(np.array([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]), 0.34))
    np.testing.assert_array_equal(signs, [[1, -1, -1], [1, -1, -1]])


# ---- the oracle -----------------------------------------------------------------------------------------


def test_oracle_recovers_a_noise_free_chaotic_pde_n4_network() -> None:
    data = S.simulate(_n4(params=ORACLE_PARAMS))
    found = I.of_data(data)
    assert found["R2_exact"] > 0.9999 and found["ceiling"] > 0.99 and found["n_silent"] == 0
    # the PDE_N2 regressor phi(u_j) ignores the source's w_j, h_j and cannot explain four types
    wrong = I.oracle(data.u, data.y, data.W, data.params[:, [2, 3, 0]], data.types)
    assert wrong["R2_exact"] < 0.9


def test_oracle_regressor_is_per_source_neuron() -> None:
    u = np.array([[0.5, -1.0, 2.0]])  # (F, N)
    p = np.asarray(PARAMS4, dtype=np.float64)[[1, 2, 3]]  # (N, 6)
    y = _rhs(PARAMS4, [1, 2, 3])[None, :]
    x, z, g = I.regression(u, y, p, "tanh", "PDE_N4")
    np.testing.assert_allclose(x[0], [math.tanh(-0.25), 0.0, math.tanh(-2 / 3)], atol=1e-12)
    np.testing.assert_allclose(z, x @ np.asarray(W3).T, atol=1e-12)  # z = x W^T exactly
    np.testing.assert_array_equal(g, [5.0, 4.0, 8.0])


# ---- activity complexity (upstream's effective rank at 90 % / 99 % of the variance) -----------------


def _signal(variances: list[float], T: int = 400, N: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    q1, _ = np.linalg.qr(rng.standard_normal((T, len(variances))))  # (T, r) orthonormal
    q2, _ = np.linalg.qr(rng.standard_normal((N, len(variances))))  # (N, r) orthonormal
    return (q1 * np.sqrt(variances)) @ q2.T  # (T, N), singular values sqrt(variances)


def test_variance_ranks_on_signals_of_known_spectrum() -> None:
    assert S.variance_ranks(_signal([50, 30, 15, 3.5, 1, 0.5])) == (3, 5)  # cumulative .5 .8 .95 .985 .995 1
    assert S.variance_ranks(_signal([1, 1, 1, 1])) == (4, 4)
    assert S.variance_ranks(_signal([1.0])) == (1, 1)
    # upstream keeps k = min(100, min(T, N) - 1) components: 5 equal ones over 5 neurons count as 4
    assert S.variance_ranks(_signal([1, 1, 1, 1, 1], N=5)) == (4, 4)
    assert S.variance_ranks(np.zeros((50, 8))) == (0, 0)


def test_variance_ranks_subsample_like_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    u = rng.standard_normal((300, 20))  # (T, N) full rank
    u[:, ::2] = rng.standard_normal(300)[:, None]  # every other neuron: one shared signal
    monkeypatch.setattr(S, "VARIANCE_MAX_NEURONS", 10)  # every 2nd neuron kept: rank 1
    assert S.variance_ranks(u) == (1, 1)
    monkeypatch.setattr(S, "VARIANCE_MAX_NEURONS", 1024)
    assert S.variance_ranks(u)[1] > 5
    v = rng.standard_normal((300, 20))
    v[::6] = np.outer(rng.standard_normal(50), rng.standard_normal(20))  # frames 0, 6, 12, ...: rank 1
    monkeypatch.setattr(S, "VARIANCE_MAX_VALUES", 1000)  # 6000 values: every 6th frame kept
    assert S.variance_ranks(v) == (1, 1)


def test_summary_has_the_ranks_and_old_cache_entries_get_them(tmp_path) -> None:
    cfg = _n4(n_neurons=20, n_frames=500)
    data = load_or_simulate(cfg, cache_dir=tmp_path)
    ranks = S.variance_ranks(data.u)
    assert (data.summary["effective_rank_90"], data.summary["effective_rank_99"]) == ranks
    assert 1 <= ranks[0] <= ranks[1] <= 19
    meta_path = cache_entry(cfg, tmp_path) / "meta.json"
    meta = json.loads(meta_path.read_text())
    for key in ("effective_rank_90", "effective_rank_99"):  # an entry written before issue #29
        meta["summary"].pop(key)
    meta_path.write_text(json.dumps(meta))
    again = load_or_simulate(cfg, cache_dir=tmp_path)
    assert (again.summary["effective_rank_90"], again.summary["effective_rank_99"]) == ranks
    assert json.loads(meta_path.read_text())["summary"]["effective_rank_99"] == ranks[1]
    assert again.summary["ceiling"] == pytest.approx(data.summary["ceiling"])


# ---- config, cache keys, trainer ------------------------------------------------------------------------


def test_existing_cache_keys_are_unchanged() -> None:
    quick = load_config("configs/quickstart.yaml")
    assert entry_name(quick.simulation.model_dump(mode="json")) == QUICKSTART_ENTRY
    assert quick.simulation_hash() == QUICKSTART_ENTRY.split("-")[1]
    assert entry_name(SimulationConfig().model_dump(mode="json")) == DEFAULT_ENTRY
    assert not {"connectivity_rank", "Dale_law", "Dale_law_factor"} & set(SimulationConfig().model_dump())
    dale = SimulationConfig(Dale_law=True)
    assert dale.model_dump()["Dale_law"] is True and entry_name(dale.model_dump()) != DEFAULT_ENTRY
    assert SimulationConfig.model_validate(dale.model_dump()) == dale


def test_signal_chaotic_config_is_upstream_and_keyed_pde_n4() -> None:
    cfg = load_config("configs/signal_chaotic.yaml")
    sim = cfg.simulation
    assert (sim.signal_model_name, sim.connectivity_type, sim.Dale_law, sim.Dale_law_factor) == (
        "PDE_N4",
        "chaotic",
        True,
        0.3,
    )
    assert (sim.n_neurons, sim.n_neuron_types, sim.n_frames, sim.delta_t, sim.start_frame) == (
        100,
        1,
        10_000,
        0.01,
        -100,
    )
    assert sim.params == [[1.0, 0.0, 10.0, 0.0, 1.0, 0.0]] and sim.phi == "tanh"
    assert entry_name(sim.model_dump(mode="json")).startswith("pde_n4-")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"params": [[1.0, 0.0, 10.0, 0.0, 1.0]]}, "each PDE_N4 row must be [a, b, g, s, w, h] (6 numbers)"),
        ({"params": [[1.0, 0.0, 10.0, 0.0, 0.0, 0.0]]}, "the width w divides u - h, it must not be 0"),
        ({"Dale_law_factor": 1.5}, "simulation.Dale_law_factor"),
        (
            {"connectivity_type": "low_rank", "connectivity_rank": 5},
            "connectivity_rank (5) must be <= n_neurons (3)",
        ),
        ({"connectivity_type": "ring"}, "simulation.connectivity_type"),
    ],
)
def test_bad_pde_n4_configs_name_the_field(fields: dict[str, object], message: str) -> None:
    sim = {
        "signal_model_name": "PDE_N4",
        "n_neurons": 3,
        "n_neuron_types": 1,
        "params": [[1, 0, 10, 0, 1, 0]],
    }
    with pytest.raises(ConfigError) as err:
        config_from_dict({"simulation": {**sim, **fields}})
    assert message in str(err.value) and "simulation" in str(err.value)


def test_pde_n2_rows_still_need_three_columns() -> None:
    with pytest.raises(ConfigError, match=r"each PDE_N2 row must be \[g, s, c\] \(3 numbers\)"):
        config_from_dict({"simulation": {"n_neuron_types": 1, "params": [[1.0, 0.0, 10.0, 0.0, 1.0, 0.0]]}})


def test_the_trainer_takes_pde_n4_and_still_refuses_a_model_without_a_trainer() -> None:
    sim = load_config("configs/signal_chaotic.yaml").simulation
    S.check_trainable(sim)  # issue #29 part 2: PDE_N4 trains (tests/test_pde_n4_model.py)
    S.check_trainable(NtuneConfig().simulation)
    unknown = SimulationConfig.model_construct(signal_model_name="PDE_N5")  # not validated: no such simulator
    with pytest.raises(
        ConfigError, match="simulation.signal_model_name: PDE_N5 is simulated, its trainer is not"
    ):
        S.check_trainable(unknown)
    with pytest.raises(
        ConfigError, match=r"simulation.params: rows have 6 columns, but PDE_N2 reads \[g, s, c\]"
    ):
        S.neuron_params(np.asarray(sim.params, dtype=np.float32), np.zeros(3, dtype=np.int64))


def test_cli_simulate_prints_the_activity_complexity(tmp_path) -> None:
    path = tmp_path / "n4.yaml"
    path.write_text(
        json.dumps({"simulation": _n4(n_neurons=20, n_frames=300, Dale_law=True).model_dump(mode="json")})
    )
    result = CliRunner().invoke(app, ["simulate", str(path)])
    assert result.exit_code == 0, result.output
    data = load_or_simulate(load_config(path).simulation)
    r90, r99 = int(data.summary["effective_rank_90"]), int(data.summary["effective_rank_99"])
    assert f"activity complexity: effective rank {r90} (90 % var), {r99} (99 % var)" in result.output
    assert "PDE_N4, 20 neurons x 300 frames" in result.output and "effective_rank_99" in result.output


def test_a_study_of_pde_n4_loads_with_its_model(tmp_path: Path) -> None:
    import yaml

    from ntune.study.load import load_study

    study = {
        "name": "n4",
        "base": str(Path(__file__).resolve().parents[1] / "configs" / "signal_chaotic.yaml"),
        "blocks": {"simulation.connectivity_filling_factor": [1.0]},
        "space": {"training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
    }
    path = tmp_path / "n4.yaml"
    path.write_text(yaml.safe_dump(study))
    _, base = load_study(path)
    assert base["graph_model"]["signal_model_name"] == "PDE_N4"  # the model follows the simulator
