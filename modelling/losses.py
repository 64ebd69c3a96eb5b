"""Heteroskedastic ("robust") regression losses: negative log-likelihoods, dropping constants.

The model predicts a mean and log sigma per target; training on a proper scoring rule lets it
learn an aleatoric uncertainty and down-weight noisy points (thesis eq. 2.6). Log sigma rather
than sigma is predicted so the network output is unconstrained.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_SQRT2 = math.sqrt(2.0)


def _check_shapes(mean: Tensor, log_sigma: Tensor, target: Tensor) -> None:
    # (n, 1) against (n,) would silently broadcast to an (n, n) loss
    if not mean.shape == log_sigma.shape == target.shape:
        raise ValueError(
            "mean, log_sigma and target must have the same shape, got "
            f"{tuple(mean.shape)}, {tuple(log_sigma.shape)}, {tuple(target.shape)}"
        )


def robust_l1_loss(mean: Tensor, log_sigma: Tensor, target: Tensor) -> Tensor:
    """Laplace NLL averaged over elements: sqrt(2) |y - mu| / sigma + log sigma.

    sigma is the standard deviation of the Laplace distribution (scale b = sigma / sqrt 2), so the
    sigma it learns is comparable with a Gaussian's. Minimised over sigma at
    sigma = sqrt(2) |y - mu|.
    """
    _check_shapes(mean, log_sigma, target)
    return (_SQRT2 * (target - mean).abs() * torch.exp(-log_sigma) + log_sigma).mean()


def robust_l2_loss(mean: Tensor, log_sigma: Tensor, target: Tensor) -> Tensor:
    """Gaussian NLL averaged over elements: (y - mu)^2 / (2 sigma^2) + log sigma.

    Minimised over sigma at sigma = |y - mu|.
    """
    _check_shapes(mean, log_sigma, target)
    return (0.5 * (target - mean).square() * torch.exp(-2.0 * log_sigma) + log_sigma).mean()
