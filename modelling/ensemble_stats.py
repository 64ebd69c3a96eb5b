"""Combine the predictions of a deep ensemble into a mean and its uncertainty components.

Law of total variance (thesis eqs. 2.7-2.9): the epistemic part is the spread of the members'
means, the aleatoric part the average of the members' predicted variances.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray


def _as_array(x: ArrayLike | torch.Tensor) -> NDArray[np.float64]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def combine_members(
    means: ArrayLike | torch.Tensor, sigmas: ArrayLike | torch.Tensor
) -> dict[str, NDArray[np.float64]]:
    """Reduce (W, n) member means and aleatoric sigmas to per-sample statistics.

    Returns ``mean`` (mean of means), ``epistemic_std`` (population std of the means, ddof=0, as
    the ensemble is the whole sample of models rather than a draw used to estimate a variance),
    ``aleatoric_std`` (sqrt of the mean of sigma^2: variances average, standard deviations do
    not) and ``total_std`` (sqrt of the sum of the two variances). Trailing dimensions beyond
    the first are kept, so (W, n, n_targets) works too.
    """
    mu = _as_array(means)
    sig = _as_array(sigmas)
    if mu.shape != sig.shape:
        raise ValueError(f"means {mu.shape} and sigmas {sig.shape} must have the same shape")
    if mu.ndim < 1 or mu.shape[0] < 1:
        raise ValueError("need at least one ensemble member along axis 0")
    if np.any(sig < 0):
        raise ValueError("sigmas must be non-negative (pass exp(log_sigma), not log_sigma)")
    epistemic_var = mu.var(axis=0)
    aleatoric_var = np.square(sig).mean(axis=0)
    return {
        "mean": mu.mean(axis=0),
        "epistemic_std": np.sqrt(epistemic_var),
        "aleatoric_std": np.sqrt(aleatoric_var),
        "total_std": np.sqrt(epistemic_var + aleatoric_var),
    }
