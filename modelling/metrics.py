"""Regression metrics, and for models with uncertainty the error-uncertainty rank correlation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike, std: ArrayLike | None = None) -> dict[str, float]:
    """MAE, RMSE, R^2 (and Spearman rho between |error| and predicted std when ``std`` is given)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    metrics = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(1 - np.sum(err**2) / np.sum((y_true - y_true.mean()) ** 2)) if len(y_true) > 1 else float("nan"),
        "n": float(len(y_true)),
    }
    if std is not None:
        from scipy.stats import spearmanr

        metrics["spearman_abs_error_std"] = float(spearmanr(np.abs(err), np.asarray(std)).statistic)
    return metrics


def confidence_curve(y_true: ArrayLike, y_pred: ArrayLike, std: ArrayLike, steps: int = 50) -> dict[str, np.ndarray]:
    """MAE of the rows kept after removing the X% most uncertain (by std), by largest error, and on average at random."""
    y_true, y_pred, std = (np.asarray(a, dtype=np.float64) for a in (y_true, y_pred, std))
    abs_err = np.abs(y_pred - y_true)
    n = len(abs_err)
    fractions = np.linspace(0, 0.99, steps)
    by_std = abs_err[np.argsort(std)]
    by_err = np.sort(abs_err)
    keep = [max(1, int(round(n * (1 - f)))) for f in fractions]
    return {
        "removed_fraction": fractions,
        "mae_by_std": np.array([by_std[:k].mean() for k in keep]),
        "mae_by_error": np.array([by_err[:k].mean() for k in keep]),
        "mae_random": np.full(len(keep), abs_err.mean()),
    }
