"""Robust (heteroskedastic) losses and the deep-ensemble combination of members."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from matlake.modelling.ensemble_stats import combine_members
from matlake.modelling.losses import robust_l1_loss, robust_l2_loss

MEAN = torch.tensor([0.0, 1.0], dtype=torch.float64)
LOG_SIGMA = torch.tensor([0.0, math.log(2.0)], dtype=torch.float64)
TARGET = torch.tensor([1.0, -1.0], dtype=torch.float64)


def test_robust_l1_hand_values() -> None:
    # sqrt2 * 1 / 1 + 0  and  sqrt2 * 2 / 2 + log 2
    expected = (math.sqrt(2) + (math.sqrt(2) + math.log(2))) / 2
    assert robust_l1_loss(MEAN, LOG_SIGMA, TARGET).item() == pytest.approx(expected, rel=1e-12)


def test_robust_l2_hand_values() -> None:
    # 0.5 * 1 / 1 + 0  and  0.5 * 4 / 4 + log 2
    expected = (0.5 + (0.5 + math.log(2))) / 2
    assert robust_l2_loss(MEAN, LOG_SIGMA, TARGET).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("loss", "optimal_sigma_per_abs_residual"),
    [(robust_l1_loss, math.sqrt(2.0)), (robust_l2_loss, 1.0)],
)
def test_log_sigma_gradient_vanishes_at_the_optimal_sigma(
    loss, optimal_sigma_per_abs_residual: float
) -> None:
    mean = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    target = torch.tensor([1.0, 0.5, 1.9], dtype=torch.float64)
    optimal = torch.log(optimal_sigma_per_abs_residual * (target - mean).abs())
    log_sigma = optimal.clone().requires_grad_(True)
    loss(mean, log_sigma, target).backward()
    assert torch.allclose(log_sigma.grad, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # and it is a minimum: moving log sigma either way raises the loss
    for step in (-0.1, 0.1):
        assert loss(mean, optimal + step, target) > loss(mean, optimal, target)


def test_l1_gradient_wrt_mean_is_scaled_by_sigma() -> None:
    mean = torch.tensor([0.0], requires_grad=True)
    robust_l1_loss(mean, torch.tensor([math.log(4.0)]), torch.tensor([1.0])).backward()
    assert mean.grad.item() == pytest.approx(-math.sqrt(2) / 4)


def test_losses_refuse_broadcasting_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        robust_l1_loss(torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        robust_l2_loss(torch.zeros(4), torch.zeros(4, 1), torch.zeros(4))


def test_combine_members_hand_numbers() -> None:
    means = [[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]]
    sigmas = [[1.0, 0.0, 3.0], [1.0, 2.0, 4.0]]
    out = combine_members(means, sigmas)
    np.testing.assert_allclose(out["mean"], [2.0, 2.0, 0.0])
    np.testing.assert_allclose(out["epistemic_std"], [1.0, 0.0, 0.0])  # population std of (1, 3)
    np.testing.assert_allclose(out["aleatoric_std"], [1.0, math.sqrt(2.0), math.sqrt(12.5)])
    np.testing.assert_allclose(out["total_std"], [math.sqrt(2.0), math.sqrt(2.0), math.sqrt(12.5)])


def test_combine_members_accepts_torch_and_single_member() -> None:
    sigmas = torch.tensor([[0.5, 2.0]], requires_grad=True)
    out = combine_members(torch.tensor([[1.0, 5.0]]), sigmas)
    np.testing.assert_allclose(out["epistemic_std"], [0.0, 0.0])
    np.testing.assert_allclose(out["total_std"], [0.5, 2.0])


def test_combine_members_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        combine_members(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        combine_members(np.zeros((2, 2)), -np.ones((2, 2)))
