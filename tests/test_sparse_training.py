"""Sparse-recovery training settings: two-phase L1 and the proximal (soft-threshold) L1 step."""

from __future__ import annotations

import torch

from ntune.config import NtuneConfig, config_from_dict
from ntune.data.simulate import simulate
from ntune.learn.loss import l1_coefficient, soft_threshold_
from ntune.learn.train import fit


def test_two_phase_L1_uses_first_coeff_in_the_first_epochs() -> None:
    sim = {"connectivity_filling_factor": 0.5}
    tc = {"n_epochs": 3, "n_epochs_init": 2, "first_coeff_L1": 0.0, "coeff_W_L1": 1e-4}
    two_phase = config_from_dict({"simulation": sim, "training": tc})
    assert [l1_coefficient(two_phase, e) for e in range(3)] == [0.0, 0.0, 1e-4]
    tc = {"coeff_W_L1": 1e-4, "coeff_W_L1_scale_by_filling": True}
    assert l1_coefficient(config_from_dict({"simulation": sim, "training": tc}), 0) == 2e-4


def test_soft_threshold_shrinks_and_zeroes() -> None:
    W = torch.tensor([[0.5, -0.05], [-0.3, 0.01]])
    soft_threshold_(W, 0.1)
    assert torch.allclose(W, torch.tensor([[0.4, 0.0], [-0.2, 0.0]]))


def test_proximal_L1_gives_exact_zeros_and_the_loss_term_gives_none() -> None:
    sim = {"n_neurons": 12, "n_neuron_types": 2, "params": [[10.0, 1.0, 1.0], [10.0, 2.0, 2.0]]}
    sim.update(n_frames=300, start_frame=-50, device="cpu")
    train = {"data_augmentation_loop": 4, "n_log_points": 1, "n_rollout_frames": 10, "device": "cpu"}
    data = simulate(config_from_dict({"simulation": sim}).simulation)
    zeros = {}
    for proximal in (False, True):
        cfg: NtuneConfig = config_from_dict(
            {"simulation": sim, "training": {**train, "coeff_W_L1": 1.0, "W_L1_proximal": proximal}}
        )
        W = fit(cfg, data).model.W_masked().detach()
        zeros[proximal] = int((W == 0).sum()) - 12  # off-diagonal exact zeros
    assert zeros[True] > 20 and zeros[False] == 0
