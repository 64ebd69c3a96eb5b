"""Random forests as plain arrays: trained with scikit-learn, stored as safetensors, predicted with NumPy.

Storing the trees' arrays instead of a pickle means loading a model never executes code, and the predictions equal
scikit-learn's exactly (the same float32 comparison of features against float64 thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def export_forest(forest) -> dict[str, np.ndarray]:
    """Flatten the fitted trees of a RandomForestRegressor (single output) into concatenated node arrays."""
    lefts, rights, features, thresholds, values, roots = [], [], [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        n = tree.node_count
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        lefts.append(np.where(left >= 0, left + offset, -1))
        rights.append(np.where(right >= 0, right + offset, -1))
        features.append(tree.feature.astype(np.int64))
        thresholds.append(tree.threshold.astype(np.float64))
        values.append(tree.value[:, 0, 0].astype(np.float64))
        roots.append(offset)
        offset += n
    return {
        "left": np.concatenate(lefts), "right": np.concatenate(rights), "feature": np.concatenate(features),
        "threshold": np.concatenate(thresholds), "value": np.concatenate(values),
        "roots": np.asarray(roots, dtype=np.int64),
    }


@dataclass(frozen=True)
class ForestPredictor:
    """Vectorised descent of every tree for every row at once."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str = "") -> "ForestPredictor":
        return cls(*(tensors[prefix + k] for k in ("left", "right", "feature", "threshold", "value", "roots")))

    def tree_predictions(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_trees) leaf values."""
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            go_left = X[rows, np.where(inner, self.feature[node], 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean over trees, and the spread between trees (an epistemic standard deviation)."""
        per_tree = self.tree_predictions(X)
        mean = np.zeros(len(per_tree))
        for column in per_tree.T:  # scikit-learn's accumulation order, so the means agree to the last bit
            mean += column
        mean /= per_tree.shape[1]
        return mean, per_tree.std(axis=1)
