"""Metrics whose answers can be worked out by hand."""

import math

import numpy as np
import pytest

from matlake.modelling.metrics import pairwise_ranking_accuracy, regression_metrics


def test_regression_metrics_by_hand():
    m = regression_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert m["r2"] == pytest.approx(1 - 1.25 / 2.0)


def test_ranking_counts_only_pairs_within_a_group():
    groups = ["Fe2O3", "Fe2O3", "Fe2O3", "FeO", "FeO"]
    y = [0.0, 1.0, 2.0, 5.0, 4.0]
    pred = [0.1, 0.9, 0.5, 3.0, 9.0]  # Fe2O3: (0,1) right, (0,2) right, (1,2) wrong; FeO: wrong
    r = pairwise_ranking_accuracy(groups, y, pred)
    assert r["pairs"] == 4 and r["accuracy"] == pytest.approx(2 / 4)


def test_a_composition_only_model_scores_one_half_and_equal_targets_are_skipped():
    groups = ["A", "A", "A", "B"]
    y = [1.0, 2.0, 2.0, 0.0]
    r = pairwise_ranking_accuracy(groups, y, [7.0, 7.0, 7.0, 1.0])  # the (2.0, 2.0) pair has no order
    assert r == {"accuracy": 0.5, "pairs": 2.0}


def test_pairs_of_different_protostructures_are_scored_apart():
    groups = ["NaCl"] * 3
    labels = ["AB_cF8_225_a_b", "AB_cF8_225_a_b", "AB_cP2_221_a_b"]
    y = np.array([0.0, 0.1, 0.5])
    pred = np.array([0.2, 0.2, 0.6])  # same label -> same prediction: a tie, scored one half
    r = pairwise_ranking_accuracy(groups, y, pred, distinct=labels)
    assert r["pairs"] == 3 and r["accuracy"] == pytest.approx(2.5 / 3)
    assert r["distinct_pairs"] == 2 and r["distinct_accuracy"] == 1.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per row"):
        pairwise_ranking_accuracy(["A"], [1.0, 2.0], [1.0, 2.0])
