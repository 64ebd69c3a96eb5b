"""Evaluation figures and metrics on synthetic predictions whose answer is known in advance."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import stats

from matlake.modelling.evaluation import calibration, confidence_error, evaluate, parity


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05, "the figure is blank"
    return image


def _heteroscedastic(n: int, seed: int = 0, scale: float = 1.0):
    """Targets, and predictions whose Gaussian errors have a known, varying std (the model's std is `scale`x it)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 2, n)
    sigma = rng.uniform(0.05, 1.0, n)
    mean = y + rng.normal(0, sigma)
    return y, mean, sigma * scale


def test_parity_metrics_and_png():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    mean = np.array([0.5, 1.0, 2.0, 2.5])
    fig = parity(y, mean, quantity="band gap", unit="eV")
    assert fig.metrics["mae"] == pytest.approx(0.25)
    assert fig.metrics["rmse"] == pytest.approx(np.sqrt(0.125))
    assert fig.metrics["r2"] == pytest.approx(1 - 0.5 / 5.0)
    _decode(fig.png)


def test_parity_of_many_points_uses_density_and_still_decodes():
    y, mean, std = _heteroscedastic(5000)
    _decode(parity(y, mean, std).png)


def test_calibrated_gaussian_errors_give_unit_slope_and_nominal_coverage():
    y, mean, std = _heteroscedastic(20000)
    fig = calibration(y, mean, std)
    m = fig.metrics
    assert m["qq_slope"] == pytest.approx(1.0, abs=0.03)
    assert m["qq_intercept"] == pytest.approx(0.0, abs=0.03)
    assert m["coverage_1sigma"] == pytest.approx(0.6827, abs=0.015)
    assert m["coverage_2sigma"] == pytest.approx(0.9545, abs=0.01)
    assert m["miscalibration_area"] < 0.01
    _decode(fig.png)


def test_overconfident_stds_show_as_a_steeper_qq_slope_and_low_coverage():
    y, mean, std = _heteroscedastic(20000, scale=0.5)  # stds half the true ones
    m = calibration(y, mean, std).metrics
    assert m["qq_slope"] == pytest.approx(2.0, rel=0.04)
    assert m["coverage_1sigma"] == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=0.015)
    assert m["miscalibration_area"] > 0.15


def test_std_uncorrelated_with_error_follows_the_random_curve():
    y, mean, _ = _heteroscedastic(20000)
    noise_std = np.random.default_rng(1).uniform(0.05, 1.0, len(y))  # says nothing about the errors
    m = confidence_error(y, mean, noise_std).metrics
    assert abs(m["confidence_gain"]) < 0.05
    assert abs(m["spearman_abs_error_std"]) < 0.03
    assert m["confidence_area_std"] == pytest.approx(m["confidence_area_random"], rel=0.03)


def test_std_equal_to_the_error_is_the_oracle_and_informative_std_lies_between():
    y, mean, std = _heteroscedastic(20000)
    oracle = confidence_error(y, mean, np.abs(y - mean) + 1e-9).metrics
    assert oracle["confidence_gain"] == pytest.approx(1.0, abs=1e-9)
    assert oracle["confidence_area_std"] == pytest.approx(oracle["confidence_area_error"])
    informative = confidence_error(y, mean, std)
    assert 0.3 < informative.metrics["confidence_gain"] < 0.95
    assert informative.metrics["confidence_area_std"] < informative.metrics["confidence_area_random"]
    _decode(informative.png)


def test_evaluate_collects_every_figure_and_metric_rows():
    y, mean, std = _heteroscedastic(500)
    result = evaluate(y, mean, std, quantity="formation enthalpy", unit="eV/atom")
    assert [f.name for f in result.figures] == ["parity", "confidence", "calibration"]
    rows = result.metric_rows("test")
    assert {r["metric"] for r in rows} >= {"mae", "rmse", "r2", "qq_slope", "confidence_gain", "coverage_1sigma"}
    assert all(r["part"] == "test" and r["member"] is None and np.isfinite(r["value"]) for r in rows)
    for f in result.figures:
        _decode(f.png)
    without_std = evaluate(y, mean)
    assert [f.name for f in without_std.figures] == ["parity"]


def test_zero_stds_rank_but_are_left_out_of_the_calibration():
    y, mean, std = _heteroscedastic(2000)
    std[:10] = 0.0
    result = evaluate(y, mean, std)
    assert [f.name for f in result.figures] == ["parity", "confidence", "calibration"]
    assert result.metrics["calibration_zero_std_excluded"] == 10
    assert result.metrics["qq_slope"] == pytest.approx(calibration(y[10:], mean[10:], std[10:]).metrics["qq_slope"])


def test_save_writes_the_figures_and_metrics(tmp_path):
    y, mean, std = _heteroscedastic(300)
    result = evaluate(y, mean, std)
    paths = result.save(tmp_path / "bench", "ex-roost")
    assert [p.name for p in paths] == ["ex-roost_parity.png", "ex-roost_confidence.png", "ex-roost_calibration.png",
                                       "ex-roost_metrics.json"]
    for path in paths[:3]:
        _decode(path.read_bytes())
    assert json.loads(paths[3].read_text()) == pytest.approx(result.metrics)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="equally long"):
        parity([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="needs predicted standard deviations"):
        calibration([1.0, 2.0], [1.0, 2.0], None)
    with pytest.raises(ValueError, match="strictly positive"):
        calibration([1.0, 2.0], [1.0, 2.0], [0.0, 1.0])


def test_uncertainty_metrics_are_the_figures_numbers_without_drawing():
    from matlake.modelling.evaluation import evaluate, uncertainty_metrics

    rng = np.random.default_rng(7)
    y = rng.normal(size=400)
    std = rng.uniform(0.1, 1.0, size=400)
    mean = y + rng.normal(size=400) * std
    std[:5] = 0.0  # a forest whose trees agree: left out of the calibration and counted
    drawn = evaluate(y, mean, std).metrics
    numbers = uncertainty_metrics(y, mean, std)
    assert numbers["calibration_zero_std_excluded"] == 5
    assert set(numbers) <= set(drawn)
    for key, value in numbers.items():
        assert value == pytest.approx(drawn[key], rel=1e-12), key
    assert numbers["confidence_gain"] > 0.3  # the std does rank these errors
