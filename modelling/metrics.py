"""Regression metrics, for models with uncertainty the error-uncertainty rank correlation, and polymorph ranking."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import combinations

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


def pairwise_ranking_accuracy(groups: Sequence[Hashable], y_true: ArrayLike, y_pred: ArrayLike,
                              distinct: Sequence[Hashable] | None = None) -> dict[str, float]:
    """How often a model orders two polymorphs as the reference does: over every pair of rows in the same group
    (e.g. reduced composition) whose true values differ, the fraction whose predictions are in the same order,
    a tied prediction counting one half (so a composition-only model scores exactly 0.5 on polymorphs).

    With ``distinct`` (e.g. protostructure labels) the pairs whose two rows have different values of it are also
    scored apart: the pairs a structure-aware model can tell apart at all."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if not (len(groups) == len(y_true) == len(y_pred)) or (distinct is not None and len(distinct) != len(y_true)):
        raise ValueError("groups, y_true, y_pred (and distinct) must have one entry per row")
    members: dict[Hashable, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    scores: dict[str, list[float]] = {"all": [], "distinct": []}
    for rows in members.values():
        for i, j in combinations(rows, 2):
            if y_true[i] == y_true[j]:
                continue
            score = 0.5 if y_pred[i] == y_pred[j] else float((y_pred[i] < y_pred[j]) == (y_true[i] < y_true[j]))
            scores["all"].append(score)
            if distinct is not None and distinct[i] != distinct[j]:
                scores["distinct"].append(score)
    out = {"accuracy": float(np.mean(scores["all"])) if scores["all"] else float("nan"),
           "pairs": float(len(scores["all"]))}
    if distinct is not None:
        out |= {"distinct_accuracy": float(np.mean(scores["distinct"])) if scores["distinct"] else float("nan"),
                "distinct_pairs": float(len(scores["distinct"]))}
    return out
